"""Image-text datasets read from annotation files: the COCO / Flickr30k Karpathy JSON
(as ALBEF and BLIP ship it) and open_clip's CSV/TSV format.

Both follow one protocol (:class:`BaseImageTextDataset`):

- ``mode='train'``: one sample per (image, caption) pair (``text`` a str); ``image_id`` is
  the index of the image, shared by its captions (ALBEF/BLIP use it to mask positives);
- ``mode='eval'``: one sample per image with all its captions (``text`` a list of str,
  ``input_ids`` ``[K, L]`` after ``Tokenize``), ``image_id`` = index of the image.

A missing or unreadable image never crashes training: ``LoadImage`` returns ``None`` and
logs the path, the dataset counts the sample (:attr:`BaseImageTextDataset.num_skipped`, shared
with DataLoader workers) and fetches another index (a random one in training, the next one in
evaluation), at most ``max_refetch`` times in a row. In eval mode missing files are dropped
when the annotations are read (``check_files``), so evaluation covers each present image once.
"""
import csv
import json
import logging
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.fileio import exists
from mmengine.logging import print_log
from torch.utils.data import get_worker_info

from vlp.registry import DATASETS, TRANSFORMS
from .samplers import sample_rng


def build_transform(cfg):
    """A transform from its config through vlp's ``TRANSFORMS`` (so vlp names resolve
    without a default scope; mmengine/mmcv transforms are found through the parent)."""
    return TRANSFORMS.build(cfg) if isinstance(cfg, dict) else cfg


class SharedCounter:
    """An integer counter shared by a dataset and its DataLoader workers.

    A shared-memory int64 tensor with one slot per worker (slot 0: the main process),
    so increments from several workers never race; forked and spawned workers both write
    to the same memory. Copies (``deepcopy``) get their own counter.
    """

    def __init__(self, slots: int = 256):
        self._counts = torch.zeros(slots, dtype=torch.int64).share_memory_()

    def increment(self, n: int = 1) -> None:
        info = get_worker_info()
        slot = 0 if info is None else 1 + info.id % (len(self._counts) - 1)
        self._counts[slot] += n

    @property
    def value(self) -> int:
        return int(self._counts.sum())

    def reset(self) -> None:
        self._counts.zero_()


class BaseImageTextDataset(BaseDataset):
    """mmengine ``BaseDataset`` for image-text data with the vlp sampling protocol.

    Subclasses implement :meth:`load_records`, returning one dict per image with
    ``captions`` (list of str) and either ``img_path`` (read by ``LoadImage`` in the pipeline)
    or whatever their :meth:`load_image` needs to produce ``img``.

    Args:
        mode: ``'train'`` or ``'eval'`` (see the module docstring).
        train_sampling: in training, ``'pairs'`` (one sample per (image, caption)) or
            ``'random'`` (one sample per image, one of its captions drawn at each fetch).
        check_files: drop records whose image file does not exist when loading
            (default: in eval mode only; the check costs one ``stat`` per image).
        max_refetch: how many replacement samples to try in a row before giving up.
        Other arguments go to mmengine's ``BaseDataset``.
    """

    def __init__(self, ann_file: str = '', pipeline: Sequence = (), mode: str = 'train',
                 train_sampling: str = 'pairs', data_root: str = '', img_prefix: str = '',
                 check_files: Optional[bool] = None, metainfo: Optional[dict] = None,
                 max_refetch: int = 1000, backend_args: Optional[dict] = None, **kwargs):
        if mode not in ('train', 'eval'):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if train_sampling not in ('pairs', 'random'):
            raise ValueError(f"train_sampling must be 'pairs' or 'random', got {train_sampling!r}")
        self.mode = mode
        self.train_sampling = train_sampling
        self.check_files = (mode == 'eval') if check_files is None else check_files
        self.backend_args = backend_args
        self._skipped = SharedCounter()
        kwargs.setdefault('test_mode', mode == 'eval')
        super().__init__(ann_file=ann_file, metainfo=metainfo, data_root=data_root,
                         data_prefix=dict(img_path=img_prefix),
                         pipeline=[build_transform(t) for t in pipeline],
                         max_refetch=max_refetch, **kwargs)

    # ------------------------------------------------------------------ loading
    def load_records(self) -> List[dict]:
        """One dict per image: ``captions`` (list of str) plus ``img_path`` or other keys."""
        raise NotImplementedError

    def parse_record(self, record: dict) -> List[dict]:
        """Expand one image record into samples according to ``mode``."""
        record = dict(record)
        captions = list(record.pop('captions'))
        if self.mode == 'eval' or self.train_sampling == 'random':
            return [dict(record, text=captions)]
        return [dict(record, text=c) for c in captions]

    def load_data_list(self) -> List[dict]:
        records = self.load_records()
        if self.check_files:
            kept = []
            for r in records:
                if 'img_path' in r and not exists(r['img_path'], self.backend_args):
                    self._skipped.increment()
                    print_log(f'{type(self).__name__}: image file not found, dropping it: '
                              f'{r["img_path"]}', logger='current', level=logging.WARNING)
                    continue
                kept.append(r)
            records = kept
        data_list = []
        for image_id, r in enumerate(records):
            r.setdefault('image_id', image_id)
            data_list.extend(self.parse_record(r))
        return data_list

    def _img_path(self, rel: str) -> str:
        prefix = self.data_prefix.get('img_path', '')
        return rel if (not prefix or osp.isabs(rel) or '://' in rel) else osp.join(prefix, rel)

    # ---------------------------------------------------------------- fetching
    def load_image(self, data_info: dict) -> dict:
        """Hook for datasets that make ``img`` themselves (the demo renders it)."""
        return data_info

    def prepare_data(self, idx: int) -> Optional[dict]:
        data_info = self.get_data_info(idx)
        text = data_info.get('text')
        if self.mode == 'train' and isinstance(text, list):
            data_info['text'] = text[np.random.randint(len(text))]
        data_info = self.load_image(data_info)
        out = self.pipeline(data_info)
        if out is None:
            self._skipped.increment()
            if not data_info.get('_skip_logged', False):
                where = data_info.get('img_path', f'index {idx}')
                print_log(f'{type(self).__name__}: the pipeline dropped sample {idx} '
                          f'({where}); fetching another', logger='current',
                          level=logging.WARNING)
        return out

    def __getitem__(self, idx: int) -> dict:
        if not self._fully_initialized:
            self.full_init()
        # random choices of this sample (caption, augmentations, replacements) follow from
        # the sampler's (seed, epoch, index), not from the worker's RNG (datasets/samplers.py)
        with sample_rng(idx):
            return self._fetch(idx)

    def _fetch(self, idx: int) -> dict:
        for _ in range(self.max_refetch + 1):
            data = self.prepare_data(idx)
            if data is not None:
                return data
            idx = self._rand_another() if self.mode == 'train' else (idx + 1) % len(self)
        raise RuntimeError(f'{type(self).__name__}: no valid sample after {self.max_refetch} '
                           f'refetches ({self.num_skipped} skipped so far); check the image '
                           'paths and the pipeline')

    @property
    def num_skipped(self) -> int:
        """Samples skipped so far (missing/corrupt images, dropped files), summed over this
        process and its DataLoader workers."""
        return self._skipped.value


@DATASETS.register_module()
class ImageTextJsonDataset(BaseImageTextDataset):
    """COCO / Flickr30k Karpathy-split JSON: ``[{"image": rel_path, "caption": str or
    [str], ...}, ...]`` (ALBEF/BLIP's ``coco_train.json``, ``coco_test.json``...).

    Entries of the same image (a train file lists one caption per entry) are grouped, in
    order of first appearance; ``image_id`` is the index of the image in that order.

    Args:
        ann_file: the JSON file, or a list of them (concatenated; ALBEF's pre-training).
        data_root: root joined to ``ann_file`` and ``img_prefix``.
        img_prefix: folder the ``image`` paths are relative to.
        pipeline: transforms (start with ``LoadImage``).
        mode: ``'train'`` (a sample per pair) or ``'eval'`` (a sample per image, all captions).
        image_key, caption_key: field names.
    """

    def __init__(self, ann_file: Union[str, List[str]], pipeline: Sequence = (),
                 mode: str = 'train', data_root: str = '', img_prefix: str = '',
                 image_key: str = 'image', caption_key: str = 'caption', **kwargs):
        self.image_key = image_key
        self.caption_key = caption_key
        files = [ann_file] if isinstance(ann_file, str) else list(ann_file)
        self.ann_files = [f if (not data_root or osp.isabs(f)) else osp.join(data_root, f)
                          for f in files]
        super().__init__(ann_file=self.ann_files[0], pipeline=pipeline, mode=mode,
                         data_root=data_root, img_prefix=img_prefix, **kwargs)

    def load_records(self) -> List[dict]:
        groups: Dict[str, List[str]] = OrderedDict()
        for path in self.ann_files:
            with open(path, encoding='utf-8') as f:
                entries = json.load(f)
            for e in entries:
                caps = e[self.caption_key]
                caps = [caps] if isinstance(caps, str) else list(caps)
                groups.setdefault(e[self.image_key], []).extend(caps)
        return [dict(img_path=self._img_path(img), captions=caps)
                for img, caps in groups.items()]


@DATASETS.register_module()
class CsvImageTextDataset(BaseImageTextDataset):
    """open_clip's CSV/TSV format: a header row, an image-path column (``img_key``) and a
    caption column (``caption_key``), ``sep``-separated (open_clip's ``--csv-img-key
    filepath --csv-caption-key title --csv-separator '\\t'``).

    Rows of the same image are grouped (eval mode gives all their captions).

    Args:
        csv_file: the file.
        img_root: folder relative image paths are joined to (open_clip uses them as given:
            leave it empty for the same behaviour).
    """

    def __init__(self, csv_file: str, img_root: str = '', img_key: str = 'filepath',
                 caption_key: str = 'title', sep: str = '\t', pipeline: Sequence = (),
                 mode: str = 'train', **kwargs):
        self.img_key = img_key
        self.caption_key = caption_key
        self.sep = sep
        super().__init__(ann_file=csv_file, pipeline=pipeline, mode=mode,
                         img_prefix=img_root, **kwargs)

    def load_records(self) -> List[dict]:
        groups: Dict[str, List[str]] = OrderedDict()
        with open(self.ann_file, encoding='utf-8', newline='') as f:
            reader = csv.DictReader(f, delimiter=self.sep)
            for col in (self.img_key, self.caption_key):
                if col not in (reader.fieldnames or []):
                    raise KeyError(f'column {col!r} not in {self.ann_file} '
                                   f'(columns: {reader.fieldnames})')
            for row in reader:
                groups.setdefault(row[self.img_key], []).append(str(row[self.caption_key]))
        return [dict(img_path=self._img_path(img), captions=caps)
                for img, caps in groups.items()]
