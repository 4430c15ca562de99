"""Image-text datasets read from annotation files: the COCO / Flickr30k Karpathy JSON
(as ALBEF and BLIP ship it) and open_clip's CSV/TSV format.

Both follow one protocol (:class:`BaseImageTextDataset`):

- ``mode='train'``: one sample per (image, caption) pair (``text`` a str); ``image_id`` is
  the index of the image, shared by its captions (ALBEF/BLIP use it to mask positives);
- ``mode='eval'``: one sample per image with all its captions (``text`` a list of str,
  ``input_ids`` ``[K, L]`` after ``Tokenize``), ``image_id`` = index of the image.

Bad data never crashes a run and never vanishes (vlp/datasets/skips.py):

- per-entry faults are found when the annotations are read (both modes): an entry that is
  not an object, lacks the image or caption key, or whose caption is null, not a string,
  empty, blank, ``[]`` or not encodable as UTF-8; in eval mode also a caption that the
  pipeline's cleaning (``CleanCaption``, the tokenizer's ``clean_fn``) empties, and a
  missing or zero-byte image file (``check_files``). The entry (or caption) is dropped,
  logged with its file and entry number and counted in the skip report, once;
- per-sample faults found when a sample is fetched (a missing, empty, truncated or
  non-image file; a caption the cleaning empties, in training; any exception inside a
  transform) skip the sample, record it with its reason, file and index, and fetch
  another: a random one in training, the next one in evaluation (metrics that deduplicate
  ``image_id`` count it once, so evaluation lacks the sample, and the report says so), at
  most ``max_refetch`` times in a row;
- structural faults (a file that is not valid UTF-8 JSON, a top level that is not a list,
  a CSV without its header or columns) raise :class:`AnnotationError` at once, naming the
  file, line, column and entry (or row).

The counts are summed over the DataLoader workers (:attr:`num_skipped`,
:meth:`skip_report`); ``DataSkipReportHook`` logs them per reason and stops a run whose data
are mostly broken.
"""
import csv
import json
import logging
import os
import os.path as osp
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.fileio import exists
from mmengine.logging import print_log

from vlp.registry import DATASETS, TRANSFORMS
from .samplers import sample_rng
from .skips import SharedCounter  # noqa: F401  (its former home: still importable here)
from .skips import SkipLog, caption_problem, run_pipeline, transform_name

__all__ = ['AnnotationError', 'BaseImageTextDataset', 'ImageTextJsonDataset',
           'CsvImageTextDataset', 'SharedCounter', 'build_transform', 'load_json_annotations']


def build_transform(cfg):
    """A transform from its config through vlp's ``TRANSFORMS`` (so vlp names resolve
    without a default scope; mmengine/mmcv transforms are found through the parent)."""
    return TRANSFORMS.build(cfg) if isinstance(cfg, dict) else cfg


class AnnotationError(ValueError):
    """An annotation file that cannot be read as a whole (not valid UTF-8 JSON, a top level
    of the wrong type, a CSV without its header): the message names the file, the line and
    column, and the entry or row."""


# ----------------------------------------------------------------------- structural checks
def _line_col(text: str, pos: int):
    line = text.count('\n', 0, pos) + 1
    return line, pos - (text.rfind('\n', 0, pos) + 1) + 1


def _entry_at(text: str, pos: int) -> Optional[int]:
    """The number (from 0) of the top-level list entry at character ``pos`` of JSON
    ``text``: how many entries parse completely before it (``None``: not a list)."""
    dec = json.JSONDecoder()
    i, n = 0, len(text)

    def ws(j):
        while j < n and text[j] in ' \t\r\n\ufeff':
            j += 1
        return j
    i = ws(i)
    if i >= n or text[i] != '[':
        return None
    i, count = ws(i + 1), 0
    while i < min(pos, n):
        try:
            _, end = dec.raw_decode(text, i)
        except ValueError:
            return count
        if end > pos:
            return count
        count, i = count + 1, ws(end)
        if i < n and text[i] == ',':
            i = ws(i + 1)
        else:
            return count
    return count


def load_json_annotations(path: str, what: str = 'a JSON list of entries') -> list:
    """Read a JSON annotation file whose top level must be a list; a file that is not
    valid UTF-8 JSON, or another top level, raises :class:`AnnotationError` with the file,
    line, column and entry."""
    with open(path, 'rb') as f:
        data = f.read()
    try:
        text = data.decode('utf-8-sig')
    except UnicodeDecodeError as e:
        start = e.start + (3 if data.startswith(b'\xef\xbb\xbf') else 0)
        prefix = data[:start].decode('utf-8-sig', errors='replace')
        line, col = _line_col(prefix, len(prefix))
        entry = _entry_at(prefix, len(prefix))
        raise AnnotationError(
            f'{path}: line {line}, column {col}'
            f'{"" if entry is None else f" (entry {entry})"}: byte 0x{data[start]:02x} is not '
            'valid UTF-8; JSON annotation files must be UTF-8: re-encode the file (e.g. '
            '`iconv -f latin1 -t utf-8`) or fix that entry') from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        entry = _entry_at(text, e.pos)
        end = text.rstrip()
        truncated = e.pos >= len(end) or not end.endswith((']', '}'))
        raise AnnotationError(
            f'{path}: not valid JSON at line {e.lineno}, column {e.colno}'
            f'{"" if entry is None else f" (entry {entry})"}: {e.msg}; '
            + ('the file ends before its closing bracket: it is probably truncated, write '
               'or download it again' if truncated else 'fix that entry')) from None
    if not isinstance(obj, list):
        keys = f' with keys {sorted(obj)[:8]}' if isinstance(obj, dict) else ''
        raise AnnotationError(
            f'{path}: line 1, column 1: the top level is a JSON {type(obj).__name__}{keys}; '
            f'expected {what} (ALBEF / BLIP\'s coco_karpathy_*.json layout: '
            '[{"image": ..., "caption": ...}, ...]); convert the file to that layout')
    return obj


class BaseImageTextDataset(BaseDataset):
    """mmengine ``BaseDataset`` for image-text data with the vlp sampling protocol.

    Subclasses implement :meth:`load_records`, returning one dict per image with
    ``captions`` (list of str) and either ``img_path`` (read by ``LoadImage`` in the pipeline)
    or whatever their :meth:`load_image` needs to produce ``img``. They validate entries
    with :meth:`valid_captions` / :meth:`drop_entry`, which record what they drop.

    Args:
        mode: ``'train'`` or ``'eval'`` (see the module docstring).
        train_sampling: in training, ``'pairs'`` (one sample per (image, caption)) or
            ``'random'`` (one sample per image, one of its captions drawn at each fetch).
        check_files: drop records whose image file does not exist or is empty when
            loading (default: in eval mode only; the check costs one ``stat`` per image).
        check_cleaned_captions: drop captions that the pipeline's cleaning (``CleanCaption``
            and the tokenizer's ``clean_fn`` of ``Tokenize`` on ``text``) empties when
            loading (default: in eval mode only; in training they are skipped when fetched).
        max_refetch: how many replacement samples to try in a row before giving up.
        max_skip_examples: examples kept (and skips logged one by one) per reason.
        Other arguments go to mmengine's ``BaseDataset``.
    """

    def __init__(self, ann_file: str = '', pipeline: Sequence = (), mode: str = 'train',
                 train_sampling: str = 'pairs', data_root: str = '', img_prefix: str = '',
                 check_files: Optional[bool] = None, metainfo: Optional[dict] = None,
                 max_refetch: int = 1000, backend_args: Optional[dict] = None,
                 check_cleaned_captions: Optional[bool] = None, max_skip_examples: int = 20,
                 **kwargs):
        if mode not in ('train', 'eval'):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        if train_sampling not in ('pairs', 'random'):
            raise ValueError(f"train_sampling must be 'pairs' or 'random', got {train_sampling!r}")
        self.mode = mode
        self.train_sampling = train_sampling
        self.check_files = (mode == 'eval') if check_files is None else check_files
        self.check_cleaned_captions = (mode == 'eval') if check_cleaned_captions is None \
            else check_cleaned_captions
        self.backend_args = backend_args
        self.skips = SkipLog(type(self).__name__, max_examples=max_skip_examples)
        kwargs.setdefault('test_mode', mode == 'eval')
        super().__init__(ann_file=ann_file, metainfo=metainfo, data_root=data_root,
                         data_prefix=dict(img_path=img_prefix),
                         pipeline=[build_transform(t) for t in pipeline],
                         max_refetch=max_refetch, **kwargs)

    # ------------------------------------------------------------------ loading
    def load_records(self) -> List[dict]:
        """One dict per image: ``captions`` (list of str) plus ``img_path`` or other keys."""
        raise NotImplementedError

    def drop_entry(self, reason: str, message: str, file: Optional[str] = None,
                   entry=None, count: int = 1) -> None:
        """Record an annotation entry (or caption) dropped when loading."""
        self.skips.record(reason, message, file=file, entry=entry, count=count, at_load=True,
                          action='dropped when reading the annotations')

    def _caption_cleaners(self) -> List[Tuple[str, Callable[[str], str]]]:
        """``(name, clean)`` of the caption cleanings of the pipeline, in its order."""
        cleaners = []
        for t in getattr(self.pipeline, 'transforms', []):
            if getattr(t, 'key', None) != 'text':
                continue
            if callable(getattr(t, 'clean', None)):  # CleanCaption
                cleaners.append((transform_name(t), t.clean))
            clean_fn = getattr(getattr(t, 'tokenizer', None), 'clean_fn', None)
            if callable(clean_fn):  # Tokenize's tokenizer
                cleaners.append((f'{transform_name(t)} ({transform_name(t.tokenizer)})',
                                 clean_fn))
        return cleaners

    def valid_captions(self, captions, file: Optional[str] = None, entry=None) -> List[str]:
        """The usable captions of one entry (a str or a list of them); every other one is
        dropped and recorded (``'bad_caption'``)."""
        if not hasattr(self, '_cleaners'):
            self._cleaners = self._caption_cleaners() if self.check_cleaned_captions else []
        caps = captions if isinstance(captions, list) else [captions]
        if not caps:
            self.drop_entry('bad_caption', 'the caption is an empty list', file, entry)
            return []
        good = []
        for k, c in enumerate(caps):
            label = f'caption {k}: ' if len(caps) > 1 else ''
            problem = caption_problem(c)
            if problem is None:
                text = c
                for name, clean in self._cleaners:
                    text = clean(text)
                    if not text.strip():
                        problem = f'the caption {c!r} is empty after the cleaning of {name}'
                        break
            if problem is not None:
                self.drop_entry('bad_caption', label + problem, file, entry)
                continue
            good.append(c)
        return good

    def parse_record(self, record: dict) -> List[dict]:
        """Expand one image record into samples according to ``mode``."""
        record = dict(record)
        captions = list(record.pop('captions'))
        if not captions:
            self.drop_entry('bad_caption', 'the image has no caption',
                            file=record.get('img_path', record.get('video_path')))
            return []
        if self.mode == 'eval' or self.train_sampling == 'random':
            return [dict(record, text=captions)]
        return [dict(record, text=c) for c in captions]

    def _file_problem(self, path: str) -> Optional[tuple]:
        """``(reason, message)`` when ``path`` is missing or empty (``check_files``)."""
        if '://' in path or self.backend_args:  # a storage backend: ask it
            if not exists(path, self.backend_args):
                return 'missing_file', f'image file not found: {path}'
            return None
        try:
            size = os.stat(path).st_size
        except OSError:
            return 'missing_file', f'image file not found: {path}'
        if size == 0 and osp.isfile(path):
            return 'empty_file', f'image file is empty (0 bytes): {path}'
        return None

    def load_data_list(self) -> List[dict]:
        records = self.load_records()
        if self.check_files:
            kept = []
            for r in records:
                problem = self._file_problem(r['img_path']) if 'img_path' in r else None
                if problem is not None:
                    # the samples lost: the image's pairs in 'pairs' training, else one
                    pairs = self.mode == 'train' and self.train_sampling == 'pairs'
                    lost = max(1, len(r.get('captions') or ())) if pairs else 1
                    self.drop_entry(problem[0], problem[1], file=r['img_path'], count=lost)
                    continue
                kept.append(r)
            records = kept
        data_list = []
        for image_id, r in enumerate(records):
            r.setdefault('image_id', image_id)
            data_list.extend(self.parse_record(r))
        self.__dict__.pop('_cleaners', None)  # used while loading only
        dropped = self.skips.report()['at_load']
        if dropped:
            counts = ', '.join(f'{r} {n}' for r, n in dropped.items())
            print_log(f'{type(self).__name__}: {sum(dropped.values())} annotation entries or '
                      f'captions dropped when reading them ({counts}); {len(data_list)} '
                      'samples kept. Their files and entries are in the warnings above and '
                      'in the skip report', logger='current', level=logging.WARNING)
        return data_list

    def _img_path(self, rel: str) -> str:
        prefix = self.data_prefix.get('img_path', '')
        return rel if (not prefix or osp.isabs(rel) or '://' in rel) else osp.join(prefix, rel)

    # ---------------------------------------------------------------- fetching
    def load_image(self, data_info: dict) -> dict:
        """Hook for datasets that make ``img`` themselves (the demo renders it)."""
        return data_info

    @property
    def _action(self) -> str:
        return ('fetching another (random) sample' if self.mode == 'train'
                else 'the next sample stands in')

    def prepare_data(self, idx: int) -> Optional[dict]:
        data_info = self.get_data_info(idx)
        text = data_info.get('text')
        if self.mode == 'train' and isinstance(text, list) and text:
            data_info['text'] = text[np.random.randint(len(text))]
        where = data_info.get('img_path', data_info.get('video_path'))
        try:
            data_info = self.load_image(data_info)
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - one sample's failure is skipped, counted
            self.skips.record('transform_error', f'{type(self).__name__}.load_image raised '
                              f'{type(e).__name__}: {e}', file=where, index=idx, exc=e,
                              action=self._action)
            return None
        return run_pipeline(self.pipeline.transforms, data_info, self.skips, index=idx,
                            file=where, action=self._action)

    def __getitem__(self, idx: int) -> dict:
        if not self._fully_initialized:
            self.full_init()
        # random choices of this sample (caption, augmentations, replacements) follow from
        # the sampler's (seed, epoch, index), not from the worker's RNG (datasets/samplers.py)
        with sample_rng(idx):
            return self._fetch(idx)

    def _fetch(self, idx: int) -> dict:
        for attempt in range(self.max_refetch + 1):
            if self.mode == 'eval' and attempt > 0:
                # a stand-in: its own fault is recorded when its own index is fetched
                with self.skips.muted():
                    data = self.prepare_data(idx)
            else:
                data = self.prepare_data(idx)
            if data is not None:
                self.skips.delivered()
                return data
            idx = self._rand_another() if self.mode == 'train' else (idx + 1) % len(self)
        counts = self.skips.report()['counts']
        raise RuntimeError(f'{type(self).__name__}: no valid sample after {self.max_refetch} '
                           f'refetches ({self.num_skipped} skipped so far: {counts}); almost '
                           'every sample fails: check the image paths (img_prefix, '
                           'data_root) and the pipeline (the first error of each kind is '
                           'in the log with its traceback)')

    @property
    def num_skipped(self) -> int:
        """Samples skipped so far (dropped when reading the annotations, missing / corrupt
        images, bad captions, transform errors), summed over this process and its
        DataLoader workers."""
        return self.skips.total

    def skip_report(self) -> dict:
        """Counts per reason and examples of the skipped samples (:meth:`SkipLog.report`)."""
        return self.skips.report()


@DATASETS.register_module()
class ImageTextJsonDataset(BaseImageTextDataset):
    """COCO / Flickr30k Karpathy-split JSON: ``[{"image": rel_path, "caption": str or
    [str], ...}, ...]`` (ALBEF/BLIP's ``coco_train.json``, ``coco_test.json``...).

    Entries of the same image (a train file lists one caption per entry) are grouped, in
    order of first appearance; ``image_id`` is the index of the image in that order. Bad
    entries are dropped and recorded, a file that is not a JSON list raises
    :class:`AnnotationError` (see the module docstring).

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
        ik, ck = self.image_key, self.caption_key
        for path in self.ann_files:
            entries = load_json_annotations(
                path, f'a JSON list of {{"{ik}": path, "{ck}": str or [str]}} entries')
            for i, e in enumerate(entries):
                if not isinstance(e, dict):
                    self.drop_entry('bad_entry', f'the entry is a JSON {type(e).__name__} '
                                    f'({str(e)[:40]}), not an object', path, i)
                    continue
                missing = [k for k in (ik, ck) if k not in e]
                if missing:
                    self.drop_entry('missing_key', f'the entry has no {missing[0]!r} key '
                                    f'(keys: {sorted(e)[:8]}); set image_key / caption_key '
                                    'if the file names them differently', path, i)
                    continue
                img = e[ik]
                if not isinstance(img, str) or not img.strip():
                    self.drop_entry('bad_entry', f'{ik!r} is {img!r}, not a file path', path, i)
                    continue
                caps = self.valid_captions(e[ck], path, i)
                if caps:
                    groups.setdefault(img, []).extend(caps)
        return [dict(img_path=self._img_path(img), captions=caps)
                for img, caps in groups.items()]


@DATASETS.register_module()
class CsvImageTextDataset(BaseImageTextDataset):
    """open_clip's CSV/TSV format: a header row, an image-path column (``img_key``) and a
    caption column (``caption_key``), ``sep``-separated (open_clip's ``--csv-img-key
    filepath --csv-caption-key title --csv-separator '\\t'``).

    Rows of the same image are grouped (eval mode gives all their captions). A row without
    a path or caption, or with a bad caption, is dropped and recorded; a file without the
    header or its columns, or with bytes that are not UTF-8, raises
    :class:`AnnotationError` naming the file, line, column and row.

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
        path = self.ann_file
        # undecodable bytes become lone surrogates, found per row with their place
        with open(path, encoding='utf-8-sig', errors='surrogateescape', newline='') as f:
            reader = csv.DictReader(f, delimiter=self.sep)
            try:
                fields = reader.fieldnames
            except csv.Error as e:
                raise AnnotationError(f'{path}: line 1: the header row cannot be read: '
                                      f'{e}') from None
            if not fields:
                raise AnnotationError(f'{path}: line 1: the file is empty; expected a header '
                                      f'row with the columns {self.img_key!r} and '
                                      f'{self.caption_key!r} ({self.sep!r}-separated)')
            self._check_text(path, 1, 'the header', self.sep.join(fields))
            for col in (self.img_key, self.caption_key):
                if col not in fields:
                    raise KeyError(f'{path}: line 1: column {col!r} not in the header '
                                   f'(columns: {fields}); set img_key / caption_key / sep '
                                   f'(sep={self.sep!r})')
            row_no = 0
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as e:
                    raise AnnotationError(f'{path}: line {reader.line_num} (row {row_no}): '
                                          f'the CSV cannot be parsed: {e}') from None
                entry = row_no
                row_no += 1
                img, cap = row.get(self.img_key), row.get(self.caption_key)
                for col, value in ((self.img_key, img), (self.caption_key, cap)):
                    if value is not None:
                        self._check_text(path, reader.line_num, f'row {entry}, column {col!r}',
                                         value)
                if not img or not img.strip():
                    self.drop_entry('missing_key', f'the row has no {self.img_key!r} value '
                                    f'(line {reader.line_num})', path, entry)
                    continue
                if cap is None:
                    self.drop_entry('missing_key', f'the row has no {self.caption_key!r} '
                                    f'value (line {reader.line_num}: too few fields)', path,
                                    entry)
                    continue
                caps = self.valid_captions(cap, path, entry)
                if caps:
                    groups.setdefault(img, []).extend(caps)
        return [dict(img_path=self._img_path(img), captions=caps)
                for img, caps in groups.items()]

    @staticmethod
    def _check_text(path: str, line: int, what: str, value: str) -> None:
        try:
            value.encode('utf-8')
        except UnicodeEncodeError as e:
            bad = value[e.start]
            byte = f'byte 0x{ord(bad) - 0xdc00:02x}' if '\udc80' <= bad <= '\udcff' \
                else f'character {bad!r}'
            raise AnnotationError(
                f'{path}: line {line}, {what}, character {e.start + 1}: {byte} is not valid '
                'UTF-8; CSV annotation files must be UTF-8: re-encode the file (e.g. '
                '`iconv -f latin1 -t utf-8`) or fix that row') from None
