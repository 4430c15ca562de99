"""Skipped samples: why, where, how many, across DataLoader workers.

A per-sample fault (a missing, empty or corrupt file, a bad caption, an annotation entry
without a key, an exception inside a transform) never stops a run and never goes
unnoticed: the dataset skips the sample and records it in its :class:`SkipLog` with a
reason (one of :data:`SKIP_REASONS`), the file, the annotation entry and the dataset index.
``DataSkipReportHook`` (vlp/engine/hooks/data_skips.py) reads :meth:`SkipLog.report` and
logs the counts per reason with examples, and stops a run whose data are mostly broken.

- Counts of skips at fetch time live in a shared-memory tensor with one row per
  DataLoader worker (as :class:`SharedCounter`), so forked and spawned workers add to the
  numbers the main process reads, without races.
- Examples (the first ``max_examples`` of each reason) are appended by each process to its
  own small JSON-lines file in a folder named when the log is created (under the system
  temporary folder, removed with the dataset); the report reads them all. A worker that
  dies keeps what it wrote.
- Faults found when the annotations are read (load time, in the main process) are counted
  in plain attributes: the annotations are read once, before the workers start.
- The first occurrence of each distinct exception type raised by a transform is logged with
  its traceback once over all workers (a marker file in the same folder), later ones with
  one line: a programming error is visible at once, and ``max_skip_fraction`` bounds how
  long it can go on.

:class:`BadSample` is what a transform raises for a data fault with a known reason
(``CleanCaption`` on a caption that cleaning empties); any other exception of a transform
is recorded as ``transform_error`` with the transform's name.
"""
import copy
import glob
import json
import logging
import os
import os.path as osp
import shutil
import tempfile
import time
import traceback
import uuid
import weakref
from collections import Counter
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from torch.utils.data import get_worker_info

__all__ = ['SKIP_REASONS', 'BadSample', 'SharedCounter', 'SkipLog', 'run_pipeline',
           'caption_problem', 'transform_name']

#: Why a sample was skipped.
SKIP_REASONS: Tuple[str, ...] = (
    'missing_file',     # the image / video / shard file does not exist
    'empty_file',       # the file (or shard member) has zero bytes
    'corrupt_file',     # truncated, not an image / video, undecodable
    'bad_caption',      # null, not a string, empty, blank, [], not UTF-8, empty after cleaning
    'missing_key',      # an annotation entry / shard member lacks the image or the caption
    'bad_entry',        # an annotation entry that is not an object, a path that is not a string
    'transform_error',  # an exception raised by a transform of the pipeline
    'dropped',          # a transform returned None without saying why
    'truncated_shard',  # samples lost to a truncated, corrupt or unopenable webdataset shard
    'other',
)
_REASON_INDEX = {r: i for i, r in enumerate(SKIP_REASONS)}


class BadSample(ValueError):
    """A per-sample data fault with a known reason (one of :data:`SKIP_REASONS`), raised by
    a transform or a reader; the dataset skips and records the sample."""

    def __init__(self, reason: str, message: str, file: Optional[str] = None):
        super().__init__(message)
        self.reason = reason if reason in _REASON_INDEX else 'other'
        self.file = file


def _slot(n_slots: int) -> int:
    info = get_worker_info()
    return 0 if info is None else 1 + info.id % (n_slots - 1)


class SharedCounter:
    """An integer counter shared by a dataset and its DataLoader workers.

    A shared-memory int64 tensor with one slot per worker (slot 0: the main process),
    so increments from several workers never race; forked and spawned workers both write
    to the same memory. Copies (``deepcopy``) get their own counter.
    """

    def __init__(self, slots: int = 256):
        self._counts = torch.zeros(slots, dtype=torch.int64).share_memory_()

    def increment(self, n: int = 1) -> None:
        self._counts[_slot(len(self._counts))] += n

    @property
    def value(self) -> int:
        return int(self._counts.sum())

    def reset(self) -> None:
        self._counts.zero_()


def caption_problem(caption) -> Optional[str]:
    """What is wrong with one caption (``None``: nothing): null, not a string, empty or
    blank, or not encodable as UTF-8 (a lone surrogate such as ``"\\ud800"`` in JSON)."""
    if caption is None:
        return 'the caption is null'
    if not isinstance(caption, str):
        return f'the caption is a {type(caption).__name__} ({str(caption)[:40]}), not a string'
    if not caption.strip():
        return f'the caption is empty ({caption!r})'
    try:
        caption.encode('utf-8')
    except UnicodeEncodeError as e:
        return (f'the caption has a character UTF-8 cannot encode ({caption[e.start]!r} at '
                f'position {e.start}, a lone surrogate)')
    return None


def transform_name(t) -> str:
    return type(t).__name__ if not isinstance(t, type) else t.__name__


def _cleanup(path: str, pid: int) -> None:
    if os.getpid() == pid:  # never from a forked worker's copy
        shutil.rmtree(path, ignore_errors=True)


class SkipLog:
    """The skipped samples of one dataset (see the module docstring).

    Args:
        owner: the dataset's name, for messages.
        max_examples: examples kept per reason (and skips logged one by one per reason by
            :meth:`record`; later ones are counted, and in the report).
        slots: rows of the shared count tensor (one per DataLoader worker, modulo).
    """

    def __init__(self, owner: str, max_examples: int = 20, slots: int = 256):
        self.owner = owner
        self.max_examples = max_examples
        self._fetch = torch.zeros(slots, len(SKIP_REASONS), dtype=torch.int64).share_memory_()
        self._delivered = SharedCounter(slots)
        self._load: Counter = Counter()
        self._load_examples: List[dict] = []
        self.dir = osp.join(tempfile.gettempdir(),
                            f'vlp-skips-{os.getpid()}-{uuid.uuid4().hex[:12]}')
        weakref.finalize(self, _cleanup, self.dir, os.getpid())

    _muted = False

    @contextmanager
    def muted(self):
        """Record nothing inside the block (a stand-in sample in evaluation: its own fault
        is recorded when its own index is fetched)."""
        self._muted = True
        try:
            yield
        finally:
            self._muted = False

    def __deepcopy__(self, memo):
        new = SkipLog(self.owner, self.max_examples, len(self._fetch))
        new._fetch.copy_(self._fetch)
        new._delivered.increment(self._delivered.value)
        new._load = Counter(self._load)
        new._load_examples = copy.deepcopy(self._load_examples, memo)
        return new

    # ------------------------------------------------------------------ recording
    def delivered(self, n: int = 1) -> None:
        """Count ``n`` samples handed out (the denominator of skip fractions)."""
        self._delivered.increment(n)

    def record(self, reason: str, message: str, *, file: Optional[str] = None,
               entry=None, index=None, count: int = 1, at_load: bool = False,
               exc: Optional[BaseException] = None, log: bool = True,
               action: str = '') -> None:
        """Record ``count`` skipped samples.

        Args:
            reason: one of :data:`SKIP_REASONS` (others are recorded as ``'other'``).
            message: what is wrong, in words.
            file: the image / annotation / shard file at fault.
            entry: the annotation entry (its number in ``file``) or shard member key.
            index: the dataset index being fetched.
            at_load: found when the annotations were read (main process) rather than when
                a sample was fetched.
            exc: the exception of a ``transform_error``: the first one of each type is
                logged with its traceback.
            log: log a warning (the first ``max_examples`` per reason; pass ``False`` when
                the caller already logged it, e.g. ``LoadImage``).
            action: what happens next ("fetching another"), appended to the warning.
        """
        if self._muted:
            return
        reason = reason if reason in _REASON_INDEX else 'other'
        example = dict(reason=reason, file=file, entry=entry,
                       index=None if index is None else int(index), message=message,
                       phase='load' if at_load else 'fetch', time=time.time())
        if at_load:
            before = self._load[reason]
            self._load[reason] += count
            if before < self.max_examples:
                self._load_examples.append(example)
        else:
            row = self._fetch[:, _REASON_INDEX[reason]]
            before = int(row.sum())
            self._fetch[_slot(len(self._fetch)), _REASON_INDEX[reason]] += count
            if before < self.max_examples:
                self._write_example(example)
        if exc is not None and self._first_of_type(exc):
            tb = ''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            print_log(f'{self.owner}: first {type(exc).__name__} raised in the data pipeline '
                      f'({where(file, entry, index)}); the sample is skipped and counted as '
                      f'{reason!r}. If this is a bug, fix it: every occurrence is skipped, and '
                      f'DataSkipReportHook(max_skip_fraction) stops the run when too many '
                      f'are.\n{tb}', logger='current', level=logging.ERROR)
        elif log and before < self.max_examples:
            more = '' if before + 1 < self.max_examples else (
                f' (the last {reason!r} skip logged one by one; later ones are counted, see '
                'the skip report)')
            print_log(f'{self.owner}: skipped {where(file, entry, index)}: {reason}: {message}'
                      f'{"; " + action if action else ""}{more}', logger='current',
                      level=logging.WARNING)

    def _write_example(self, example: dict) -> None:
        try:
            os.makedirs(self.dir, exist_ok=True)
            with open(osp.join(self.dir, f'skips-{os.getpid()}.jsonl'), 'a',
                      encoding='utf-8') as f:
                f.write(json.dumps(example, default=str, ensure_ascii=True) + '\n')
        except OSError:  # the report loses an example; the counts are in shared memory
            pass

    def _first_of_type(self, exc: BaseException) -> bool:
        name = f'{type(exc).__module__}.{type(exc).__qualname__}'
        try:
            os.makedirs(self.dir, exist_ok=True)
            fd = os.open(osp.join(self.dir, f'traceback-{name}'),
                         os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
            return True
        except FileExistsError:
            return False
        except OSError:
            return True

    # ------------------------------------------------------------------ reading
    @property
    def num_load(self) -> int:
        return sum(self._load.values())

    @property
    def num_fetch(self) -> int:
        return int(self._fetch.sum())

    @property
    def total(self) -> int:
        return self.num_load + self.num_fetch

    @property
    def num_delivered(self) -> int:
        return self._delivered.value

    def examples(self) -> List[dict]:
        out = list(self._load_examples)
        for path in sorted(glob.glob(osp.join(self.dir, 'skips-*.jsonl'))):
            try:
                with open(path, encoding='utf-8') as f:
                    lines = f.read().splitlines()
            except OSError:
                continue
            for line in lines:
                try:
                    out.append(json.loads(line))
                except ValueError:  # a line cut by a worker that died while writing it
                    continue
        return out

    def report(self) -> dict:
        """``dict(dataset, total, at_load, at_fetch, counts, delivered, examples)``:
        counts per reason (at load time, at fetch time, both) and up to ``max_examples``
        distinct examples per reason (``reason, file, entry, index, message, phase``),
        oldest first."""
        fetch = self._fetch.sum(0).tolist()
        at_fetch = {r: int(n) for r, n in zip(SKIP_REASONS, fetch) if n}
        at_load = {r: int(n) for r, n in self._load.items() if n}
        counts = Counter(at_load)
        counts.update(at_fetch)
        examples: Dict[str, List[dict]] = {}
        seen = set()
        for e in sorted(self.examples(), key=lambda e: e.get('time', 0)):
            kept = examples.setdefault(e['reason'], [])
            key = (e['reason'], e.get('file'), e.get('entry'))
            if len(kept) < self.max_examples and key not in seen:  # a sample met again
                seen.add(key)
                kept.append({k: v for k, v in e.items() if k != 'time'})
        return dict(dataset=self.owner, total=self.total, at_load=at_load,
                    at_fetch=at_fetch, counts=dict(counts), delivered=self.num_delivered,
                    examples=examples)


def where(file=None, entry=None, index=None) -> str:
    parts = []
    if file is not None:
        parts.append(str(file))
    if entry is not None:
        parts.append(f'entry {entry}')
    if index is not None:
        parts.append(f'index {int(index)}')
    return ', '.join(parts) if parts else 'a sample'


def run_pipeline(transforms: Sequence, results: dict, skips: SkipLog, *, index=None,
                 file: Optional[str] = None, entry=None, action: str = '') -> Optional[dict]:
    """Apply ``transforms`` to ``results``; on a fault return ``None`` after recording it in
    ``skips``: a :class:`BadSample` with its reason, any other exception as
    ``transform_error`` (the transform's name and the exception; the first of each type with
    its traceback), a transform returning ``None`` with the reason it left in
    ``results['_skip']`` (``LoadImage``), else ``dropped``. ``MemoryError`` is not caught."""
    for t in transforms:
        name = transform_name(t)
        try:
            out = t(results)
        except MemoryError:
            raise
        except BadSample as e:
            message = str(e) if str(e).startswith(name) else f'{name}: {e}'
            skips.record(e.reason, message, file=e.file or file, entry=entry, index=index,
                         action=action)
            return None
        except Exception as e:  # noqa: BLE001 - any exception of one sample is skipped
            skips.record('transform_error', f'{name} raised {type(e).__name__}: {e}',
                         file=file, entry=entry, index=index, exc=e, action=action)
            return None
        if out is None:
            info = results.get('_skip') if isinstance(results, dict) else None
            if info:
                skips.record(info.get('reason', 'dropped'), f'{name}: {info.get("message")}',
                             file=info.get('file', file), entry=entry, index=index,
                             log=not results.get('_skip_logged', False), action=action)
            else:
                skips.record('dropped', f'{name} returned None', file=file, entry=entry,
                             index=index, log=not results.get('_skip_logged', False),
                             action=action)
            return None
        results = out
    return results
