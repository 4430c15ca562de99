"""The CapFilt engine: reads a dataset, runs the stages on batches of images, writes the
dataset back in its own format, on one process or many.

**Units and ranks.** The input is cut into units (:mod:`vlp.capfilt.formats`: a shard, or
``records_per_unit`` entries of a JSON / CSV file). Rank ``r`` of ``N`` takes units
``r, r + N, r + 2N, ...``; a unit is read, processed and written by one rank only, under
temporary names, then committed: its output renamed into place, then its statistics
written to ``<work_dir>/units/<unit>.json`` (the mark that it is done). No two ranks write
one file; the merged JSON / CSV output and the summary are written by rank 0 once every
unit is done.

**Resume.** Restarted with the same command, a run skips the units that are done and
does the others; the results are byte for byte those of an uninterrupted run, because
nothing depends on the rank, the number of ranks or the history: batches are formed within
a unit, and the sampling seed of a batch is derived from (seed, unit name, batch index,
stage). ``<work_dir>/run.json`` holds the fingerprint of the configuration (input, stages,
models and checkpoint files, seed, batch size, output options); another configuration in
the same work folder is refused (``overwrite=True`` starts again). ``max_units`` stops a
rank after that many units (time-sliced jobs), exit code 3 until the run is complete.

**Bad data.** A missing, empty or undecodable image, an entry without its image, a bad
``.json`` member, or an exception of a stage on one image skips that sample (counted per
reason, with examples); a bad web caption is dropped and counted, its image still
captioned. A truncated shard gives what it holds and is reported. A shard that cannot be
opened fails its unit (retried by the next run; the summary lists it). What stops
everything is what no later sample can fix: an unreadable config or input file, an output
folder that cannot be written, a model that cannot do its stage, a full disk, and data
that are mostly broken (more than ``max_skip_fraction`` of the samples read by a rank, after
``min_records_for_skip_check`` of them: a wrong ``img_root``).
"""
import datetime
import hashlib
import io
import json
import os
import os.path as osp
import shutil
import sys
import time
import traceback
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Dict, List, Optional

import torch

from vlp.engine.safe_io import atomic_write_text
from .formats import Record, Skipped, Unit, build_format
from .items import Item
from .models import ModelPool
from .stages import CapFiltStage, build_stages, derive_seed
from .stats import UnitStats, derived, merge_stats

__all__ = ['CapFiltEngine', 'CapFiltDataError', 'run_capfilt', 'DEFAULT_RUNTIME',
           'DEFAULT_OUTPUT', 'EXIT_INCOMPLETE']

EXIT_INCOMPLETE = 3

DEFAULT_RUNTIME = dict(batch_size=32, num_workers=4, seed=0, device='auto', amp=None,
                       progress_interval=10.0, max_skip_fraction=0.5,
                       min_records_for_skip_check=100, dist_timeout=7 * 24 * 3600)
DEFAULT_OUTPUT = dict(web='kept', keep_empty=False, scores=False, samples='per_caption',
                      work_dir=None, summary=None)
# runtime options that do not change a result (not in the fingerprint)
_NOT_IN_FINGERPRINT = ('num_workers', 'device', 'progress_interval', 'max_skip_fraction',
                       'min_records_for_skip_check', 'dist_timeout')


class CapFiltDataError(RuntimeError):
    """The data are mostly broken (more than ``max_skip_fraction`` of the samples skipped)."""


class _BadImage(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class _UnitReadError(Exception):
    """The unit's input cannot be read (a shard that cannot be opened)."""


def _fmt_time(s: float) -> str:
    return str(datetime.timedelta(seconds=int(max(s, 0))))


class Progress:
    """Progress lines on stderr every ``interval`` seconds and at each unit's end: units,
    images, images per second, elapsed time, ETA."""

    def __init__(self, units: List[Unit], rank: int, world: int, interval: float,
                 stream=None):
        self.units, self.rank, self.world = units, rank, world
        self.interval = float(interval or 0)
        self.total = sum(u.size for u in units)
        self.stream = stream or sys.stderr
        self.start = self.last = time.time()
        self.images = self.done_units = 0
        self.done_size = 0
        self.unit_records = 0
        self.size_per_record: Optional[float] = None
        self.current: Optional[Unit] = None

    def begin(self, unit: Unit) -> None:
        self.current, self.unit_records = unit, 0

    def batch(self, records: int, images: int) -> None:
        self.unit_records += records
        self.images += images
        if self.interval and time.time() - self.last >= self.interval:
            self.print()

    def end_unit(self, unit: Unit) -> None:
        self.done_units += 1
        self.done_size += unit.size
        if self.unit_records:
            est = unit.size / self.unit_records
            self.size_per_record = est if self.size_per_record is None else \
                0.5 * (self.size_per_record + est)
        self.current = None
        if self.interval:
            self.print()

    def print(self) -> None:
        self.last = now = time.time()
        elapsed = now - self.start
        done = self.done_size
        if self.current is not None and self.size_per_record is not None:
            done += min(self.current.size, self.unit_records * self.size_per_record)
        rate = self.images / elapsed if elapsed > 0 else 0.0
        eta = '?'
        if self.total and done > 0:
            eta = _fmt_time(elapsed * (self.total - done) / done)
        pct = f' ({100.0 * done / self.total:.1f}%)' if self.total else ''
        where = f' {self.current.name}' if self.current is not None else ''
        self.stream.write(
            f'capfilt [rank {self.rank}/{self.world}] unit {self.done_units}/{len(self.units)}'
            f'{where} | {self.images:,} images{pct} | {rate:.2f} img/s | elapsed '
            f'{_fmt_time(elapsed)} | ETA {eta}\n')
        self.stream.flush()


def _decode(record: Record, transforms: Dict[str, object]) -> Dict[str, torch.Tensor]:
    """The record's image through every model transform (``{key: uint8 [3, H, W]}``);
    a per-sample fault raises :class:`_BadImage` with its reason."""
    from PIL import Image
    try:
        data = record.fetch()
    except FileNotFoundError as e:
        raise _BadImage('missing_file', f'{record.where}: image not found ({e})') from None
    except OSError as e:
        raise _BadImage('missing_file', f'{record.where}: image cannot be read '
                        f'({type(e).__name__}: {e})') from None
    if not data:
        raise _BadImage('empty_file', f'{record.where}: the image file is empty (0 bytes)')
    buf = io.BytesIO(data)
    try:
        img = Image.open(buf)
        img.load()
        img = img.convert('RGB')
    except Exception as e:  # noqa: BLE001 - any undecodable image is skipped
        error = str(e).replace(repr(buf), 'it')  # no memory address: messages repeat
        raise _BadImage('corrupt_file', f'{record.where}: the image cannot be decoded '
                        f'({type(e).__name__}: {error})') from None
    out = {}
    for key, t in transforms.items():
        try:
            out[key] = t(img)
        except Exception as e:  # noqa: BLE001
            raise _BadImage('transform_error', f'{record.where}: the image transform failed '
                            f'({type(e).__name__}: {e})') from None
    return out


def _decode_safe(record, transforms):
    try:
        return _decode(record, transforms)
    except _BadImage as e:
        return e


def _config_dict(cfg) -> dict:
    if hasattr(cfg, 'to_dict'):
        return cfg.to_dict()
    return dict(cfg)


def _fingerprint(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class CapFiltEngine:
    """Run CapFilt as a config says (see configs/capfilt/ and docs/capfilt.md).

    Args:
        cfg: a dict / mmengine ``Config`` with ``input``, ``output``, ``stages`` and
            optionally ``runtime`` and ``custom_imports``.
        launcher: ``'none'`` (one process) or ``'pytorch'`` / ``'slurm'`` / ``'mpi'``
            (a gloo process group across the ranks: only for coordination; the models run
            on each rank's own device).
        max_units: this rank stops after that many units (None: all of its units).
        overwrite: forget the units a previous run of this work folder finished.
        progress: print progress lines (``runtime.progress_interval`` seconds apart).
    """

    def __init__(self, cfg, launcher: str = 'none', max_units: Optional[int] = None,
                 overwrite: bool = False, progress: bool = True):
        cfg = _config_dict(cfg)
        for key in ('input', 'output', 'stages'):
            if not cfg.get(key):
                raise ValueError(f'a CapFilt config needs {key}= (see configs/capfilt/ and '
                                 'docs/capfilt.md)')
        unknown = set(cfg) - {'input', 'output', 'stages', 'runtime', 'custom_imports',
                              'default_scope'}
        unknown = {k for k in unknown if not k.startswith('_')}
        if unknown:
            raise ValueError(f'unknown top-level keys in the CapFilt config: {sorted(unknown)} '
                             '(expected input, output, stages, runtime, custom_imports)')
        self.input_cfg = dict(cfg['input'])
        if 'path' not in self.input_cfg:
            raise ValueError('input.path is required (a JSON / CSV file or shards)')
        self.output_cfg = dict(DEFAULT_OUTPUT)
        self.output_cfg.update(cfg['output'])
        if not self.output_cfg.get('path'):
            raise ValueError('output.path is required')
        if self.output_cfg['web'] not in ('kept', 'all', 'none'):
            raise ValueError(f"output.web must be 'kept', 'all' or 'none', got "
                             f"{self.output_cfg['web']!r}")
        unknown = set(self.output_cfg) - set(DEFAULT_OUTPUT) - {'path'}
        if unknown:
            raise ValueError(f'unknown output keys {sorted(unknown)} (expected path, '
                             f'{", ".join(DEFAULT_OUTPUT)})')
        self.runtime = dict(DEFAULT_RUNTIME)
        self.runtime.update(cfg.get('runtime') or {})
        unknown = set(self.runtime) - set(DEFAULT_RUNTIME)
        if unknown:
            raise ValueError(f'unknown runtime keys {sorted(unknown)} (expected '
                             f'{", ".join(DEFAULT_RUNTIME)})')
        if int(self.runtime['batch_size']) < 1:
            raise ValueError(f'runtime.batch_size must be >= 1, got '
                             f'{self.runtime["batch_size"]}')
        if int(self.runtime['num_workers']) < 0:
            raise ValueError('runtime.num_workers must be >= 0')
        if cfg.get('custom_imports'):
            from mmengine.utils import import_modules_from_strings
            import_modules_from_strings(**cfg['custom_imports'])
        out = str(self.output_cfg['path']).rstrip('/') or '.'
        self.work_dir = self.output_cfg['work_dir'] or out + '.capfilt'
        self.summary_path = self.output_cfg['summary'] or out + '.summary.json'
        self.fmt = build_format(self.input_cfg, self.output_cfg, self.work_dir)
        self.stages: List[CapFiltStage] = build_stages(cfg['stages'])
        missing = [f'stage {s.name}: {p}' for s in self.stages if s.model_spec is not None
                   for p in s.model_spec.missing_files()]
        if missing:
            raise FileNotFoundError('CapFilt model files not found:\n  ' + '\n  '.join(missing))
        self.launcher = launcher or 'none'
        self.max_units = max_units
        self.overwrite = overwrite
        self.progress = progress
        self.rank, self.world = 0, 1
        self._own_group = False

    # ------------------------------------------------------------------ set-up
    def _init_dist(self) -> None:
        if self.launcher == 'none':
            return
        import torch.distributed as dist
        from vlp.engine.dist import init_dist
        self._own_group = not dist.is_initialized()
        init_dist(self.launcher, backend='gloo', timeout=self.runtime['dist_timeout'])
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def _close_dist(self, barrier: bool = True) -> None:
        """Destroy the process group this run created: a gloo group still alive when the
        interpreter exits can abort the process after the run ("terminate called without an
        active exception", exit code -6) although every rank finished. ``barrier``: after a
        complete run, wait for every rank first (not after an error: the others may be
        elsewhere)."""
        if self._own_group:
            import torch.distributed as dist
            if barrier:
                dist.barrier()
            dist.destroy_process_group()
            self._own_group = False

    def _barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def _broadcast(self, obj):
        if self.world == 1:
            return obj
        import torch.distributed as dist
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _device(self) -> str:
        dev = self.runtime['device']
        if dev in (None, 'auto'):
            if torch.cuda.is_available():
                return f'cuda:{int(os.environ.get("LOCAL_RANK", 0))}'
            return 'cpu'
        return str(dev)

    def describe(self, units: List[Unit]) -> dict:
        """What the run's results depend on (its fingerprint)."""
        runtime = {k: v for k, v in self.runtime.items() if k not in _NOT_IN_FINGERPRINT}
        return dict(data=self.fmt.describe(), stages=[s.describe() for s in self.stages],
                    runtime=runtime, units=[u.name for u in units])

    def _check_work_dir(self, desc: dict) -> None:
        """Rank 0: the work folder is writable and holds this run (or none)."""
        wd = self.work_dir
        try:
            os.makedirs(osp.join(wd, 'units'), exist_ok=True)
            probe = osp.join(wd, f'.probe{os.getpid()}')
            with open(probe, 'w') as f:
                f.write('ok')
            os.remove(probe)
            out_dir = osp.dirname(osp.abspath(self.fmt.output_path)) \
                if self.fmt.name != 'shards' else osp.abspath(self.fmt.output_path)
            os.makedirs(out_dir, exist_ok=True)
            probe = osp.join(out_dir, f'.probe{os.getpid()}')
            with open(probe, 'w') as f:
                f.write('ok')
            os.remove(probe)
        except OSError as e:
            raise OSError(e.errno, f'CapFilt cannot write its output: {e} (output '
                          f'{self.fmt.output_path}, work folder {wd})') from None
        fp = _fingerprint(desc)
        run_file = osp.join(wd, 'run.json')
        if osp.exists(run_file) and not self.overwrite:
            with open(run_file, encoding='utf-8') as f:
                old = json.load(f)
            if old.get('fingerprint') != fp:
                diff = [k for k in ('data', 'stages', 'runtime', 'units')
                        if json.dumps(old.get('config', {}).get(k), sort_keys=True,
                                      default=str)
                        != json.dumps(desc.get(k), sort_keys=True, default=str)]
                raise ValueError(
                    f'{wd} holds a CapFilt run with another configuration (differs in: '
                    f'{", ".join(diff) or "the checkpoint files"}); rerun with the same '
                    'configuration to resume it, point output.path (or output.work_dir) '
                    'elsewhere, or pass --overwrite to start again')
            return
        if self.overwrite:
            for sub in ('units', 'failed', 'parts'):
                shutil.rmtree(osp.join(wd, sub), ignore_errors=True)
            os.makedirs(osp.join(wd, 'units'), exist_ok=True)
        atomic_write_text(run_file, json.dumps(dict(fingerprint=fp, config=desc), indent=1,
                                               default=str) + '\n')

    def _remove_stale(self, units: List[Unit]) -> None:
        """Rank 0, before any rank writes: temporary files a killed run left behind (its
        own names only: the work folder's, and the output files' siblings)."""
        from vlp.engine.safe_io import is_temp_name
        folders = [osp.join(self.work_dir, sub) for sub in ('', 'units', 'parts', 'failed')]
        names = None
        if self.fmt.name == 'shards':
            folders.append(self.fmt.output_path)
            names = set()
            for u in units:
                stem = u.name[:-len('.tar.gz')] if u.name.endswith('.tar.gz') else \
                    osp.splitext(u.name)[0]
                names |= {f'.{u.name}.partial', f'.{stem}_stats.json.partial'}
        else:
            folders.append(osp.dirname(osp.abspath(self.fmt.output_path)))
            names = {f'.{osp.basename(self.fmt.output_path)}.partial'}
        for i, folder in enumerate(folders):
            if not osp.isdir(folder):
                continue
            for name in os.listdir(folder):
                if not is_temp_name(name):
                    continue
                ours = i < 4 or any(name.startswith(n) for n in names)
                if ours:
                    try:
                        os.remove(osp.join(folder, name))
                    except OSError:
                        pass

    def _unit_file(self, unit: Unit) -> str:
        return osp.join(self.work_dir, 'units', unit.name + '.json')

    def _failed_file(self, unit: Unit) -> str:
        return osp.join(self.work_dir, 'failed', unit.name + '.json')

    # ------------------------------------------------------------------ the run
    def run(self) -> dict:
        self._init_dist()
        try:
            result = self._run()
        except BaseException:
            self._close_dist(barrier=False)
            raise
        self._close_dist()
        return result

    def _run(self) -> dict:
        units = self.fmt.plan()
        desc = self.describe(units)
        if self.rank == 0:
            self._check_work_dir(desc)
            self._remove_stale(units)
        # unique per run (two runs within a second must not share an id: the summary's
        # this_run counts the units whose statistics carry it)
        run_id = self._broadcast(datetime.datetime.now().strftime('%Y%m%d-%H%M%S-')
                                 + uuid.uuid4().hex[:8])
        self._barrier()
        mine = [u for u in units[self.rank::self.world] if not osp.exists(self._unit_file(u))]
        if self.max_units is not None:
            mine = mine[:max(0, int(self.max_units))]
        start = time.time()
        if mine:
            self._process_units(mine, run_id)
        self._barrier()
        summary = None
        if self.rank == 0:
            summary = self._summarize(units, run_id, time.time() - start)
        return self._broadcast(summary)

    def _setup_stages(self) -> Dict[str, object]:
        pool = ModelPool(self._device())
        transforms = {}
        for s in self.stages:
            s.setup(pool)
            if s.image_key is not None:
                transforms.setdefault(s.image_key, s.image_transform)
        return transforms

    def _process_units(self, units: List[Unit], run_id: str) -> None:
        transforms = self._setup_stages()
        progress = Progress(units, self.rank, self.world,
                            self.runtime['progress_interval'] if self.progress else 0)
        self._seen = dict(records=0, skipped=0)
        self._errors_shown = set()
        workers = int(self.runtime['num_workers'])
        pool = ThreadPoolExecutor(workers) if workers > 0 else None
        try:
            for unit in units:
                try:
                    self._process_unit(unit, transforms, pool, progress, run_id)
                except _UnitReadError as e:
                    msg = str(e.__cause__ or e)
                    sys.stderr.write(f'capfilt [rank {self.rank}/{self.world}] unit '
                                     f'{unit.name} failed: {msg}; the next run retries it\n')
                    atomic_write_text(self._failed_file(unit), json.dumps(
                        dict(unit=unit.name, source=unit.source, error=msg, run=run_id)) + '\n')
        finally:
            if pool is not None:
                pool.shutdown(wait=True)

    def _read(self, unit: Unit):
        """The unit's records; an error of the input itself becomes :class:`_UnitReadError`."""
        it = iter(self.fmt.read(unit))
        while True:
            try:
                rec = next(it)
            except StopIteration:
                return
            except (OSError, ValueError) as e:
                raise _UnitReadError(f'{unit.source}: {type(e).__name__}: {e}') from e
            yield rec

    def _process_unit(self, unit, transforms, pool, progress, run_id) -> None:
        stats = UnitStats(unit.name, unit.source, self.stages)
        progress.begin(unit)
        t_unit = time.time()
        bs = int(self.runtime['batch_size'])
        reader = self._read(unit)
        writer = self.fmt.open_writer(unit)
        try:
            def next_batch():
                recs = []
                for rec in reader:
                    if isinstance(rec, Skipped):
                        stats.counts['records'] += rec.count
                        stats.skip(rec.reason, rec.message, rec.where, rec.count)
                        self._seen['records'] += rec.count
                        self._seen['skipped'] += rec.count
                        continue
                    recs.append(rec)
                    if len(recs) == bs:
                        break
                if not recs:
                    return None
                t0 = time.time()
                if pool is None:
                    got = [_decode_safe(r, transforms) for r in recs]
                else:
                    got = [pool.submit(_decode_safe, r, transforms) for r in recs]
                stats.time('read', time.time() - t0)
                return recs, got

            pending = next_batch()
            index = 0
            while pending is not None:
                recs, got = pending
                pending = next_batch()  # the next batch decodes while this one runs
                t0 = time.time()
                decoded = [g.result() if hasattr(g, 'result') else g for g in got]
                stats.time('decode_wait', time.time() - t0)
                n_img = self._process_batch(unit, index, recs, decoded, writer, stats)
                progress.batch(len(recs), n_img)
                index += 1
                self._check_skips()
            t0 = time.time()
            writer.commit()
            stats.time('write', time.time() - t0)
        except BaseException:
            writer.abort()
            raise
        total = time.time() - t_unit
        stats.time('total', total)
        result = stats.to_dict()
        result['timing'].update(rank=self.rank, world=self.world, run=run_id,
                                images_per_second=round(result['images'] / total, 4)
                                if total > 0 else None)
        # the unit is done once this file exists (after its output is in place)
        atomic_write_text(self._unit_file(unit), json.dumps(result, indent=1) + '\n')
        failed = self._failed_file(unit)
        if osp.exists(failed):
            os.remove(failed)
        progress.end_unit(unit)

    def _autocast(self):
        amp = self.runtime.get('amp')
        if not amp:
            return nullcontext()
        device = self._device().split(':')[0]
        dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}[amp]
        return torch.autocast(device_type=device, dtype=dtype)

    def _process_batch(self, unit, index, recs, decoded, writer, stats) -> int:
        items: List[Item] = []
        for rec, dec in zip(recs, decoded):
            stats.counts['records'] += 1
            self._seen['records'] += 1
            for reason, msg in rec.bad_captions:
                stats.skip(reason, msg, rec.where, caption=True)
            if isinstance(dec, _BadImage):
                stats.skip(dec.reason, str(dec), rec.where)
                self._seen['skipped'] += 1
                continue
            items.append(Item(rec.key, rec, dec, rec.web))
        seed = derive_seed(int(self.runtime['seed']), zlib.crc32(unit.name.encode()), index)
        failed = set()
        for si, stage in enumerate(self.stages):
            live = [it for it in items if id(it) not in failed]
            if not live:
                break
            t0 = time.time()
            for it, exc in self._run_stage(stage, live, derive_seed(seed, si)):
                failed.add(id(it))
                stats.skip('stage_error', f'{it.record.where}: stage {stage.name} failed: '
                           f'{type(exc).__name__}: {exc}', it.record.where)
                self._seen['skipped'] += 1
            stats.time(stage.name, time.time() - t0)
        n = 0
        for it in items:
            if id(it) in failed:
                continue
            captions = it.output_captions(self.output_cfg['web'])
            written = 0
            if captions or self.output_cfg['keep_empty']:
                written = writer.write(it.record, captions,
                                       [c.to_dict() for c in it.candidates])
            stats.add_item(it, written, len(captions))
            n += 1
        return n

    def _stack(self, items: List[Item], key: Optional[str]):
        if key is None:
            return None
        return torch.stack([it.images[key] for it in items])

    def _run_stage(self, stage, items, seed):
        """Run ``stage``; when it raises on the batch, image by image: returns the
        ``(item, exception)`` of the images that fail alone."""
        try:
            with self._autocast():
                stage.run(items, self._stack(items, stage.image_key), seed)
            return []
        except Exception as exc:  # noqa: BLE001 - isolated below, image by image
            self._show(stage, exc)
            if len(items) == 1:
                return [(items[0], exc)]
        failed = []
        for j, it in enumerate(items):
            try:
                with self._autocast():
                    stage.run([it], self._stack([it], stage.image_key), derive_seed(seed, j))
            except Exception as exc:  # noqa: BLE001
                self._show(stage, exc)
                failed.append((it, exc))
        return failed

    def _show(self, stage, exc) -> None:
        """The first exception of each type per stage, with its traceback."""
        key = (stage.name, type(exc).__name__)
        if key in self._errors_shown:
            return
        self._errors_shown.add(key)
        sys.stderr.write(f'capfilt: stage {stage.name} raised {type(exc).__name__}: {exc}; '
                         'the batch is run again image by image and the images that fail '
                         'are skipped (stage_error). First traceback:\n'
                         + ''.join(traceback.format_exception(type(exc), exc,
                                                              exc.__traceback__)))

    def _check_skips(self) -> None:
        seen = self._seen
        limit = self.runtime['max_skip_fraction']
        if limit is None or seen['records'] < int(self.runtime['min_records_for_skip_check']):
            return
        if seen['skipped'] > limit * seen['records']:
            raise CapFiltDataError(
                f'{seen["skipped"]} of the {seen["records"]} samples read on rank {self.rank} '
                f'were skipped (> max_skip_fraction {limit}): the data are mostly broken. '
                f'Check input.path / input.img_root; the reasons are in the skips of '
                f'{self.work_dir}/units/*.json and the errors above')

    # ------------------------------------------------------------------ summary
    def _summarize(self, units: List[Unit], run_id: str, wall: float) -> dict:
        done, failed, pending = [], [], []
        for u in units:
            path = self._unit_file(u)
            if osp.exists(path):
                with open(path, encoding='utf-8') as f:
                    done.append(json.load(f))
            elif osp.exists(self._failed_file(u)):
                with open(self._failed_file(u), encoding='utf-8') as f:
                    failed.append(json.load(f))
            else:
                pending.append(u.name)
        complete = len(done) == len(units)
        outputs = self.fmt.finalize(units) if complete else []
        if self.fmt.name == 'shards':
            outputs = [self.fmt.output_file(u) for u in units
                       if osp.exists(self._unit_file(u))]
        total = merge_stats(done)
        this_run = [d for d in done if d.get('timing', {}).get('run') == run_id]
        images_now = sum(d['images'] for d in this_run)
        process_seconds = sum(d['timing']['seconds'].get('total', 0.0) for d in done)
        timing = total.pop('timing')
        summary = dict(
            complete=complete,
            units=dict(total=len(units), done=len(done), failed=failed, pending=pending),
            **{k: v for k, v in total.items() if k not in ('stages', 'examples')},
            total_kept=total['web_kept'] + total['synthetic_kept'],
            fractions=derived(total),
            stages=total['stages'],
            examples=total['examples'],
            input=self.input_cfg, output=dict(self.output_cfg, files=len(outputs)),
            config=dict(stages=[s.describe() for s in self.stages],
                        runtime={k: v for k, v in self.runtime.items()}),
            timing=dict(
                seconds_per_stage=timing,
                process_seconds=round(process_seconds, 3),
                images_per_process_second=round(total['images'] / process_seconds, 4)
                if process_seconds else None,
                this_run=dict(id=run_id, ranks=self.world, units=len(this_run),
                              images=images_now, wall_seconds=round(wall, 3),
                              images_per_second=round(images_now / wall, 4)
                              if wall > 0 and images_now else None)),
            work_dir=self.work_dir)
        if self.fmt.name == 'shards':
            summary['output_shards'] = outputs
        else:
            summary['output_file'] = outputs[0] if outputs else None
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2, default=str) + '\n')
        lines = ['unit\timages\tskipped\tweb_kept\tweb_removed\tsynthetic_kept\t'
                 'synthetic_removed\timages_kept\tseconds']
        for d in done:
            lines.append('\t'.join(str(x) for x in (
                d['unit'], d['images'], d['samples_skipped'], d['web_kept'], d['web_removed'],
                d['synthetic_kept'], d['synthetic_removed'], d['images_kept'],
                d['timing']['seconds'].get('total', ''))))
        atomic_write_text(osp.join(self.work_dir, 'units.tsv'), '\n'.join(lines) + '\n')
        return summary


def run_capfilt(cfg, launcher: str = 'none', max_units: Optional[int] = None,
                overwrite: bool = False, progress: bool = True) -> dict:
    """Run CapFilt (:class:`CapFiltEngine`); returns the summary (also written to
    ``output.summary``, default ``<output path>.summary.json``)."""
    return CapFiltEngine(cfg, launcher, max_units, overwrite, progress).run()
