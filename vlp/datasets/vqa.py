"""VQA v2 (Goyal et al. 2017, "Making the V in VQA Matter") question-answer data, in the
official VQA API format and in the JSON list format of ALBEF / BLIP.

One sample per question: ``img_path``, ``question`` (str), ``question_id`` (int),
``image_id``, ``answers`` (the raw human answers, 10 in VQA v2; ``[]`` without
annotations, e.g. test-dev) and ``answer_type`` (``'yes/no'``, ``'number'``, ``'other'``;
``''`` when unknown). The config's pipeline then runs ``LoadImage``, the image transforms and
``Tokenize(key='question')``; answers are scored by
:class:`~vlp.evaluation.metrics.vqa.VQAAccuracy` (the official accuracy) or turned into
soft targets by :func:`~vlp.evaluation.metrics.vqa.answer_scores`.

Missing or unreadable images follow :class:`~vlp.datasets.image_text.BaseImageTextDataset`:
counted in ``num_skipped`` and replaced by another sample (training), dropped when the
annotations are read (evaluation, ``check_files``).
"""
import json
import os.path as osp
import re
from typing import List, Optional, Sequence, Union

from vlp.registry import DATASETS
from .image_text import BaseImageTextDataset

__all__ = ['VQAv2Dataset']

StrList = Union[str, Sequence[str], None]


def _as_list(x: StrList) -> List:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


def _join(root: str, path: str) -> str:
    if not root or not path or osp.isabs(path) or '://' in path:
        return path
    return osp.join(root, path)


def _load_json(path: str):
    if not osp.exists(path):
        raise FileNotFoundError(f'annotation file not found: {path}')
    with open(path, encoding='utf-8') as f:
        return json.load(f)


_TRAILING_INT = re.compile(r'(\d+)$')


def _image_id_from_path(path: str) -> Union[int, str]:
    """``COCO_val2014_000000393225.jpg`` -> 393225 (VG ``2345.jpg`` -> 2345), else the stem."""
    stem = osp.splitext(osp.basename(path))[0]
    m = _TRAILING_INT.search(stem)
    return int(m.group(1)) if m else stem


@DATASETS.register_module()
class VQAv2Dataset(BaseImageTextDataset):
    """VQA v2 questions with their human answers.

    Two input formats (one of them):

    - official: ``question_file`` (``{"questions": [{"image_id", "question",
      "question_id"}], "data_subtype": "val2014", ...}``) and, optionally,
      ``annotation_file`` (``{"annotations": [{"question_id", "image_id", "answers":
      [{"answer", "answer_confidence", "answer_id"}], "multiple_choice_answer",
      "answer_type", "question_type"}]}``), matched by ``question_id``. The image of a
      question is ``{img_prefix}/{img_template.format(split=..., image_id=...)}``;
    - ALBEF / BLIP: ``ann_file``, a JSON list of ``{"question_id", "question", "answer":
      [str] or str, "image": path relative to img_prefix, "dataset": optional}`` (test
      files have no ``answer``). ``image_id`` is the trailing number of the file name (the
      COCO / VG id), else the file stem; a missing ``question_id`` is the entry's index.

    Each of ``question_file``, ``annotation_file`` (same length, or ``None``), ``ann_file``,
    ``img_prefix`` and ``split`` may be a list, one item per file (e.g. train + val for the
    final training; a single ``img_prefix`` / ``split`` is used for every file).

    Args:
        question_file, annotation_file: official files (relative to ``data_root``).
        ann_file: ALBEF/BLIP JSON list(s) (relative to ``data_root``).
        img_prefix: image folder(s) (relative to ``data_root``), e.g. ``'val2014'``.
        split: the COCO split of the images, filling ``{split}`` of ``img_template``:
            ``'train'`` / ``'val'`` with the default template (-> ``COCO_val2014_...``), or a
            full subtype with a year (``'val2014'``, ``'test2015'``), used as is
            (-> ``COCO_test2015_...``). ``None``: the question file's ``data_subtype``
            (``'train2014'``, ``'test-dev2015'`` is mapped to ``'test2015'``, the folder the
            test-dev images live in).
        img_template: the image file name; ``None``: ``'COCO_{split}2014_{image_id:012d}.jpg'``
            for a split without a year, ``'COCO_{split}_{image_id:012d}.jpg'`` for one with.
            Any ``str.format`` template of ``split`` and ``image_id`` overrides it.
        pipeline: transforms (``LoadImage`` ... ``Tokenize(key='question')``).
        mode: ``'train'`` (a missing image is replaced by a random sample) or ``'eval'``
            (missing images dropped when reading; ``test_mode``).
    """

    METAINFO = dict(dataset_name='vqav2')

    def __init__(self, question_file: StrList = None, annotation_file: StrList = None,
                 ann_file: StrList = None, img_prefix: StrList = '',
                 split: StrList = None, img_template: Optional[str] = None,
                 pipeline: Sequence = (), mode: str = 'train', data_root: str = '',
                 **kwargs):
        self.question_files = [_join(data_root, f) for f in _as_list(question_file)]
        self.annotation_files = [_join(data_root, f) for f in _as_list(annotation_file)]
        self.list_files = [_join(data_root, f) for f in _as_list(ann_file)]
        if bool(self.question_files) == bool(self.list_files):
            raise ValueError('VQAv2Dataset: give question_file (official format) or ann_file '
                             '(ALBEF/BLIP list), not both and not neither')
        if self.annotation_files and len(self.annotation_files) != len(self.question_files):
            raise ValueError(f'VQAv2Dataset: {len(self.annotation_files)} annotation files '
                             f'for {len(self.question_files)} question files')
        n = len(self.question_files) or len(self.list_files)
        self.img_prefixes = self._per_file('img_prefix', _as_list(img_prefix) or [''], n)
        self.img_prefixes = [_join(data_root, p) for p in self.img_prefixes]
        self.splits = self._per_file('split', _as_list(split) or [None], n)
        self.img_template = img_template
        super().__init__(ann_file='', pipeline=pipeline, mode=mode, data_root=data_root,
                         img_prefix='', **kwargs)

    @staticmethod
    def _per_file(name: str, values: list, n: int) -> list:
        if len(values) == 1:
            return values * n
        if len(values) != n:
            raise ValueError(f'VQAv2Dataset: {len(values)} values of {name} for {n} files')
        return values

    def image_file(self, split: Optional[str], image_id) -> str:
        """The image file name of ``image_id`` in ``split`` (see the class docstring)."""
        template = self.img_template
        if template is None:
            has_year = split is not None and re.search(r'\d{4}$', split) is not None
            template = ('COCO_{split}_{image_id:012d}.jpg' if has_year
                        else 'COCO_{split}2014_{image_id:012d}.jpg')
        return template.format(split=split, image_id=image_id)

    # ------------------------------------------------------------------ reading
    def _official_records(self, qfile: str, afile: Optional[str], prefix: str,
                          split: Optional[str]) -> List[dict]:
        qdata = _load_json(qfile)
        if split is None:
            split = qdata.get('data_subtype')
            if split is None:
                raise ValueError(f'{qfile} has no "data_subtype": give split=')
            if split.startswith('test-dev'):
                split = 'test' + split[len('test-dev'):]
        anns = {}
        if afile is not None:
            for a in _load_json(afile)['annotations']:
                anns[int(a['question_id'])] = a
        records = []
        for q in qdata['questions']:
            qid = int(q['question_id'])
            ann = anns.get(qid)
            if afile is not None and ann is None:
                raise KeyError(f'question {qid} of {qfile} has no annotation in {afile}')
            answers = [] if ann is None else [str(a['answer']) for a in ann['answers']]
            records.append(dict(
                img_path=_join(prefix, self.image_file(split, int(q['image_id']))),
                question=q['question'], question_id=qid, image_id=int(q['image_id']),
                answers=answers,
                answer_type='' if ann is None else str(ann.get('answer_type', ''))))
        return records

    def _list_records(self, path: str, prefix: str) -> List[dict]:
        entries = _load_json(path)
        if not isinstance(entries, list):
            raise ValueError(f'{path}: expected a JSON list of questions')
        records = []
        for i, e in enumerate(entries):
            ans = e.get('answer', [])
            answers = [ans] if isinstance(ans, str) else [str(a) for a in ans]
            records.append(dict(
                img_path=_join(prefix, e['image']), question=e['question'],
                question_id=int(e.get('question_id', i)),
                image_id=e.get('image_id', _image_id_from_path(e['image'])),
                answers=answers, answer_type=str(e.get('answer_type', ''))))
        return records

    def load_records(self) -> List[dict]:
        records = []
        if self.question_files:
            afiles = self.annotation_files or [None] * len(self.question_files)
            for qf, af, prefix, split in zip(self.question_files, afiles, self.img_prefixes,
                                             self.splits):
                records += self._official_records(qf, af, prefix, split)
        else:
            for f, prefix in zip(self.list_files, self.img_prefixes):
                records += self._list_records(f, prefix)
        return records

    def parse_record(self, record: dict) -> List[dict]:
        return [dict(record)]
