"""Datasets of the vision-language classification tasks and of image classification:

- :class:`NLVR2Dataset`: NLVR2 (Suhr et al. 2019, "A Corpus for Reasoning About Natural
  Language Grounded in Photographs"): is a sentence true of a PAIR of images? Binary
  accuracy on dev / test-P, as fine-tuned by ViLT, ALBEF and VLMo. Official JSON-lines files
  or ALBEF's JSON list.
- :class:`SNLIVEDataset`: SNLI-VE (Xie et al. 2019, "Visual Entailment"): does a Flickr30k
  image entail, contradict or stay neutral to a hypothesis? 3-way accuracy on val / test
  (ALBEF's labels: contradiction 0, neutral 1, entailment 2). Official JSON-lines files
  or ALBEF's JSON list.
- :class:`ImageFolderClassification`: a folder of class sub-folders (ImageNet style), for
  zero-shot (CLIP protocol, with ``ZeroShotClassifierHook`` and ``ZeroShotAccuracy``) or
  fine-tuned classification.

Scoring: :class:`~vlp.evaluation.metrics.classification.ClassificationAccuracy` (NLVR2,
SNLI-VE) or :class:`~vlp.evaluation.metrics.zero_shot.ZeroShotAccuracy`. Missing or
unreadable images are skipped and counted in ``num_skipped`` as in
:class:`~vlp.datasets.image_text.BaseImageTextDataset`.
"""
import json
import logging
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.dataset import Compose
from mmengine.fileio import exists
from mmengine.logging import print_log

from vlp.registry import DATASETS
from .image_text import BaseImageTextDataset, build_transform
from .skips import run_pipeline

__all__ = ['NLVR2Dataset', 'SNLIVEDataset', 'ImageFolderClassification']

StrList = Union[str, Sequence[str]]
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.gif', '.tif', '.tiff')


def _as_list(x) -> list:
    return [x] if isinstance(x, str) else list(x)


def _join(root: str, path: str) -> str:
    if not root or not path or osp.isabs(path) or '://' in path:
        return path
    return osp.join(root, path)


def _files(paths: StrList, data_root: str) -> List[str]:
    out = [_join(data_root, p) for p in _as_list(paths)]
    if not out:
        raise ValueError('no annotation file given')
    for p in out:
        if not osp.exists(p):
            raise FileNotFoundError(f'annotation file not found: {p}')
    return out


def _prefixes(img_prefix: StrList, n: int, data_root: str) -> List[str]:
    prefixes = _as_list(img_prefix) or ['']
    if len(prefixes) == 1:
        prefixes = prefixes * n
    if len(prefixes) != n:
        raise ValueError(f'{len(prefixes)} img_prefix values for {n} annotation files')
    return [_join(data_root, p) for p in prefixes]


def read_json_or_lines(path: str) -> List[dict]:
    """A JSON list (ALBEF) or JSON lines (the official NLVR2 / SNLI-VE ``.jsonl``)."""
    with open(path, encoding='utf-8') as f:
        text = f.read()
    if text.lstrip().startswith('['):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _bool_label(v) -> int:
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ('true', '1'):
            return 1
        if s in ('false', '0'):
            return 0
        raise ValueError(f'NLVR2: bad label {v!r}')
    return int(bool(v))


@DATASETS.register_module()
class NLVR2Dataset(BaseImageTextDataset):
    """NLVR2: a sentence and two images, labelled True (1) / False (0).

    Formats (per file, detected from the content):

    - official JSON lines: ``{"identifier": "train-10171-0-0", "sentence", "label":
      "True"/"False", "directory": 67 (train only), ...}``; the images are
      ``{img_prefix}/{directory}/{id}-img0.png`` and ``-img1.png`` when ``directory`` is
      given, ``{img_prefix}/{id}-img0.png`` otherwise, ``id`` being the identifier without
      its last ``-`` field (``train-10171-0``);
    - ALBEF JSON list: ``[{"images": [left, right], "sentence", "label": "True"/"False",
      bool or int}]``, paths relative to ``img_prefix`` (``identifier`` optional; default
      ``'{file index}-{entry index}'``).

    Args:
        ann_file: the file(s) (relative to ``data_root``).
        img_prefix: image folder(s) (one, or one per file).
        image_pipeline: transforms for EACH image, from ``dict(img_path=...)``: start with
            ``LoadImage``, end with ``ToTensor`` (writes ``image`` ``uint8 [3, H, W]``); give
            both images one size (``Resize``). ``None``: ``[LoadImage, ToTensor]``.
        pipeline: transforms of the pair sample (after stacking), e.g. ``Tokenize`` on
            ``text``.
        mode: ``'train'`` (default) or ``'eval'``.

    A sample: ``image`` ``uint8 [2, 3, H, W]`` (left, right), ``text`` (the sentence),
    ``label`` (int), ``identifier`` (str), ``image_id`` (the index of the pair).
    ``metainfo['classes'] = ('False', 'True')``.
    """

    METAINFO = dict(dataset_name='nlvr2', classes=('False', 'True'))

    def __init__(self, ann_file: StrList, img_prefix: StrList = '',
                 image_pipeline: Optional[Sequence] = None, pipeline: Sequence = (),
                 mode: str = 'train', data_root: str = '', **kwargs):
        self.ann_files = _files(ann_file, data_root)
        self.img_prefixes = _prefixes(img_prefix, len(self.ann_files), data_root)
        if image_pipeline is None:
            image_pipeline = [dict(type='LoadImage'), dict(type='ToTensor')]
        self.image_pipeline = Compose([build_transform(t) for t in image_pipeline])
        super().__init__(ann_file='', pipeline=pipeline, mode=mode, data_root=data_root,
                         img_prefix='', **kwargs)

    @staticmethod
    def official_image_paths(entry: dict, prefix: str) -> List[str]:
        stem = entry['identifier'].rsplit('-', 1)[0]
        folder = prefix
        if entry.get('directory') is not None:
            folder = _join(prefix, str(entry['directory']))
        return [_join(folder, f'{stem}-img{k}.png') for k in (0, 1)]

    def load_records(self) -> List[dict]:
        records = []
        for fi, (path, prefix) in enumerate(zip(self.ann_files, self.img_prefixes)):
            for i, e in enumerate(read_json_or_lines(path)):
                if 'images' in e:
                    paths = [_join(prefix, p) for p in e['images']]
                    if len(paths) != 2:
                        raise ValueError(f'{path}: entry {i} has {len(paths)} images, not 2')
                    ident = str(e.get('identifier', f'{fi}-{i}'))
                else:
                    paths = self.official_image_paths(e, prefix)
                    ident = str(e['identifier'])
                records.append(dict(img_paths=paths, text=e['sentence'],
                                    label=_bool_label(e['label']), identifier=ident))
        if self.check_files:
            kept = []
            for r in records:
                missing = [p for p in r['img_paths'] if not exists(p, self.backend_args)]
                if missing:
                    self.drop_entry('missing_file', f'image file not found, dropping the '
                                    f'pair {r["identifier"]}: {missing[0]}', file=missing[0])
                    continue
                kept.append(r)
            records = kept
        return records

    def parse_record(self, record: dict) -> List[dict]:
        return [dict(record)]

    def prepare_data(self, idx: int) -> Optional[dict]:
        info = self.get_data_info(idx)
        images = []
        for path in info['img_paths']:
            res = run_pipeline(self.image_pipeline.transforms, dict(img_path=path),
                               self.skips, index=idx, file=path, action=self._action)
            if res is None:  # recorded (LoadImage logged the path)
                return None
            if 'image' not in res:
                raise KeyError(f"{type(self).__name__}: image_pipeline must write 'image' "
                               '(end it with ToTensor)')
            images.append(res['image'])
        if images[0].shape != images[1].shape:
            raise ValueError(f'{type(self).__name__}: the two images of {info["identifier"]} '
                             f'have shapes {tuple(images[0].shape)} and '
                             f'{tuple(images[1].shape)}: resize them in image_pipeline')
        sample = dict(image=torch.stack(images), text=info['text'], label=info['label'],
                      identifier=info['identifier'], image_id=info['image_id'])
        return run_pipeline(self.pipeline.transforms, sample, self.skips, index=idx,
                            file=info['img_paths'][0], action=self._action)


SNLI_VE_CLASSES = ('contradiction', 'neutral', 'entailment')


@DATASETS.register_module()
class SNLIVEDataset(BaseImageTextDataset):
    """SNLI-VE: a Flickr30k image (premise) and a hypothesis, labelled contradiction (0),
    neutral (1) or entailment (2) (ALBEF's mapping; ``metainfo['classes']``).

    Formats (per file, detected from the content):

    - official JSON lines: ``{"Flickr30K_ID": "3534548254", "sentence2": hypothesis,
      "gold_label": ..., "pairID": ...}``, image ``{img_prefix}/{Flickr30K_ID}.jpg``; pairs
      whose ``gold_label`` is ``'-'`` (no annotator majority) are left out, and their number
      logged;
    - ALBEF JSON list: ``[{"image": "xxx.jpg", "sentence": str, "label": "entailment"...}]``
      (``pair_id`` is then ``'{file index}-{entry index}'``).

    A sample: ``img_path``, ``text`` (the hypothesis), ``label`` (int), ``pair_id`` (str) and
    ``image_id`` (the index of the image, in order of first appearance).
    """

    METAINFO = dict(dataset_name='snli_ve', classes=SNLI_VE_CLASSES)

    def __init__(self, ann_file: StrList, img_prefix: StrList = '', pipeline: Sequence = (),
                 mode: str = 'train', data_root: str = '', **kwargs):
        self.ann_files = _files(ann_file, data_root)
        self.img_prefixes = _prefixes(img_prefix, len(self.ann_files), data_root)
        super().__init__(ann_file='', pipeline=pipeline, mode=mode, data_root=data_root,
                         img_prefix='', **kwargs)

    def load_records(self) -> List[dict]:
        label_of = {c: i for i, c in enumerate(SNLI_VE_CLASSES)}
        records, image_ids = [], {}
        no_label = 0
        for fi, (path, prefix) in enumerate(zip(self.ann_files, self.img_prefixes)):
            for i, e in enumerate(read_json_or_lines(path)):
                if 'Flickr30K_ID' in e:
                    gold = e['gold_label']
                    if gold == '-':
                        no_label += 1
                        continue
                    img = _join(prefix, f"{e['Flickr30K_ID']}.jpg")
                    text, pair_id = e['sentence2'], str(e.get('pairID', f'{fi}-{i}'))
                else:
                    gold = e['label']
                    img = _join(prefix, e['image'])
                    text, pair_id = e['sentence'], str(e.get('pair_id', f'{fi}-{i}'))
                if isinstance(gold, str):
                    if gold not in label_of:
                        raise ValueError(f'{path}: entry {i} has label {gold!r}, not one of '
                                         f'{SNLI_VE_CLASSES}')
                    label = label_of[gold]
                else:
                    label = int(gold)
                records.append(dict(img_path=img, text=text, label=label, pair_id=pair_id,
                                    image_id=image_ids.setdefault(img, len(image_ids))))
        if no_label:
            print_log(f"{type(self).__name__}: left out {no_label} pairs with gold_label '-'",
                      logger='current')
        self.num_unlabelled = no_label
        return records

    def parse_record(self, record: dict) -> List[dict]:
        return [dict(record)]


def _read_class_names(class_names, folders: List[str]) -> List[str]:
    if class_names is None:
        return list(folders)
    if isinstance(class_names, str):
        if class_names.endswith('.json'):
            with open(class_names, encoding='utf-8') as f:
                class_names = json.load(f)
        else:
            with open(class_names, encoding='utf-8') as f:
                class_names = [line.strip() for line in f if line.strip()]
    if isinstance(class_names, dict):
        missing = [d for d in folders if d not in class_names]
        if missing:
            raise KeyError(f'class_names has no name for the folders {missing[:5]}')
        return [str(class_names[d]) for d in folders]
    names = [str(n) for n in class_names]
    if len(names) != len(folders):
        raise ValueError(f'{len(names)} class names for {len(folders)} class folders')
    return names


@DATASETS.register_module()
class ImageFolderClassification(BaseImageTextDataset):
    """Images in class sub-folders (``root/<class folder>/**/<image>``, ImageNet style).

    The label of an image is the index of its folder among the sorted folder names; the
    images of a class are listed recursively, sorted. For zero-shot classification (CLIP)
    ``metainfo['classes']`` holds human-readable names (read by ``ZeroShotClassifierHook``).

    Args:
        img_dir: the root folder (relative to ``data_root``).
        class_names: names in label order: ``None`` (the folder names), a dict folder ->
            name, a JSON file of that dict (e.g. ImageNet wnid -> name), a text file with one
            name per line in sorted-folder order, or a list in that order.
        templates: zero-shot prompt templates stored in ``metainfo['templates']`` (a preset
            name or a list of ``'{}'`` strings; ``None``: not set, the hook's default).
        extensions: image suffixes (case-insensitive).
        pipeline: transforms (``LoadImage`` ...).

    A sample: ``img_path``, ``label`` (int), ``image_id`` (the image's index). Evaluation mode
    (``test_mode``); missing / unreadable images are skipped and counted.
    """

    def __init__(self, img_dir: str, class_names: Union[None, str, Dict[str, str],
                                                        Sequence[str]] = None,
                 templates: Union[None, str, Sequence[str]] = None,
                 extensions: Sequence[str] = IMAGE_EXTENSIONS, pipeline: Sequence = (),
                 data_root: str = '', metainfo: Optional[dict] = None, **kwargs):
        self.img_dir = _join(data_root, img_dir)
        if not osp.isdir(self.img_dir):
            raise FileNotFoundError(f'image folder not found: {self.img_dir}')
        self.folders = sorted(d for d in os.listdir(self.img_dir)
                              if osp.isdir(osp.join(self.img_dir, d)))
        if not self.folders:
            raise ValueError(f'{self.img_dir} has no class sub-folders')
        self.extensions = tuple(e.lower() for e in extensions)
        meta = dict(classes=_read_class_names(class_names, self.folders),
                    folders=list(self.folders))
        if templates is not None:
            meta['templates'] = templates if isinstance(templates, str) else list(templates)
        meta.update(metainfo or {})
        kwargs.setdefault('mode', 'eval')
        super().__init__(pipeline=pipeline, metainfo=meta, data_root=data_root, **kwargs)

    def load_records(self) -> List[dict]:
        records = []
        for label, folder in enumerate(self.folders):
            paths = []
            for root, _, names in os.walk(osp.join(self.img_dir, folder)):
                paths += [osp.join(root, n) for n in names
                          if n.lower().endswith(self.extensions)]
            records += [dict(img_path=p, label=label) for p in sorted(paths)]
        return records

    def parse_record(self, record: dict) -> List[dict]:
        return [dict(record)]
