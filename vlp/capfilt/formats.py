"""The data CapFilt reads and writes, in the format it reads: BLIP / ALBEF JSON
annotation files, open_clip CSV / TSV files and webdataset shards.

The work is cut into **units**, the pieces a rank processes, resumes and commits whole:

- shards: one unit per input shard, written to one output shard of the same name in the
  output folder (``.tar`` or ``.tar.gz`` as the input), plus ``<stem>_stats.json``
  (img2dataset's ``successes``: vlp's shard reader counts a truncated output exactly);
- JSON / CSV: ``records_per_unit`` entries (rows) per unit, each written to a part file
  (JSON lines) in the work folder; once every unit is done the parts are merged, in order,
  into the output file.

A reader yields :class:`Record` (a sample whose image can be fetched) or :class:`Skipped`
(an entry that cannot be one: no image key, not an object, a bad ``.json`` member); a
writer takes a record and the captions to write and keeps every other field as it was.
Every file is written under a temporary name and renamed when complete
(:mod:`vlp.engine.safe_io`), so a killed run leaves complete files or none.
"""
import csv
import glob
import gzip
import io
import json
import os
import os.path as osp
import tarfile
import zlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from vlp.datasets.skips import caption_problem
from vlp.datasets.webdataset import TarTailReader
from vlp.engine.safe_io import atomic_write_text, disk_full_error, fsync_dir, temp_name

__all__ = ['Unit', 'Record', 'Skipped', 'DataFormat', 'JsonFormat', 'CsvFormat',
           'ShardFormat', 'build_format', 'detect_format']

IMAGE_EXTS = ('jpg', 'jpeg', 'png', 'webp')


class Unit:
    """A piece of work: ``name`` (unique; names its files), ``index`` (its place in the
    plan), ``source`` (what it reads, for messages), ``size`` (records, or bytes for a
    shard: the progress bar's measure) and format-specific ``data``."""
    __slots__ = ('name', 'index', 'source', 'size', 'data')

    def __init__(self, name: str, index: int, source: str, size: int, data: Any):
        self.name, self.index, self.source, self.size, self.data = \
            name, index, source, size, data

    def __repr__(self) -> str:
        return f'Unit({self.name!r}, {self.source!r})'


class Record:
    """A sample: ``key``, the format's ``raw`` record, its valid web captions ``web``,
    the problems of its invalid ones (``bad_captions``: ``(reason, message)``) and
    ``fetch()`` -> the image file's bytes."""
    __slots__ = ('key', 'raw', 'web', 'bad_captions', 'fetch', 'where')

    def __init__(self, key: str, raw: Any, web: List[str], fetch: Callable[[], bytes],
                 where: str, bad_captions: Optional[List[Tuple[str, str]]] = None):
        self.key, self.raw, self.web, self.fetch, self.where = key, raw, web, fetch, where
        self.bad_captions = bad_captions or []


class Skipped:
    """An input record that is not a usable sample: ``reason`` (one of
    :data:`vlp.datasets.skips.SKIP_REASONS`), ``message``, ``where`` (file and entry),
    ``count`` samples it stands for."""
    __slots__ = ('reason', 'message', 'where', 'count')

    def __init__(self, reason: str, message: str, where: str, count: int = 1):
        self.reason, self.message, self.where, self.count = reason, message, where, count


def _web_captions(value, where: str) -> Tuple[List[str], List[Tuple[str, str]]]:
    """Valid captions of a caption field (a str or a list) and the problems of the rest."""
    if value is None:
        return [], [('bad_caption', f'{where}: the caption is null')]
    values = value if isinstance(value, list) else [value]
    if not values:
        return [], [('bad_caption', f'{where}: the caption is an empty list')]
    good, bad = [], []
    for v in values:
        problem = caption_problem(v)
        if problem is None:
            good.append(v.strip())
        else:
            bad.append(('bad_caption', f'{where}: {problem}'))
    return good, bad


def _read_file(path: str, backend_args: Optional[dict] = None) -> bytes:
    if '://' in path:
        from mmengine.fileio import get
        return get(path, backend_args=backend_args)
    with open(path, 'rb') as f:
        return f.read()


class _AtomicFile:
    """A binary file written under a temporary name, renamed over ``path`` by
    :meth:`commit` (fsync'd, folder fsync'd), removed by :meth:`abort`."""

    def __init__(self, path: str):
        self.path = osp.abspath(path)
        os.makedirs(osp.dirname(self.path), exist_ok=True)
        self.tmp = temp_name(self.path)
        self.f = open(self.tmp, 'wb')

    def commit(self) -> None:
        try:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            os.replace(self.tmp, self.path)
        except OSError as e:
            self.abort()
            if e.errno is not None and e.errno in (28, 122, 27):  # ENOSPC, EDQUOT, EFBIG
                raise disk_full_error(self.path, -1, e) from e
            raise
        fsync_dir(osp.dirname(self.path))

    def abort(self) -> None:
        try:
            self.f.close()
        except OSError:
            pass
        try:
            os.remove(self.tmp)
        except OSError:
            pass


# ------------------------------------------------------------------------------ base
class DataFormat:
    """What the engine asks of a format."""
    name = ''

    def __init__(self, input_cfg: dict, output_cfg: dict, work_dir: str):
        self.input_cfg, self.output_cfg, self.work_dir = input_cfg, output_cfg, work_dir
        self.output_path = str(output_cfg['path'])

    def plan(self) -> List[Unit]:
        raise NotImplementedError

    def read(self, unit: Unit) -> Iterator[Union[Record, Skipped]]:
        raise NotImplementedError

    def open_writer(self, unit: Unit):
        raise NotImplementedError

    def finalize(self, units: List[Unit]) -> List[str]:
        """Called once every unit is done; returns the output files."""
        return []

    def describe(self) -> dict:
        return dict(format=self.name, input=self.input_cfg, output=self.output_cfg)


class _PartWriter:
    """JSON lines of output records for one unit (merged by ``finalize``)."""

    def __init__(self, path: str, to_lines: Callable):
        self.path, self.to_lines, self.lines = path, to_lines, []
        self.samples = 0

    def write(self, record: Record, captions: List[str], candidates: List[dict]) -> int:
        lines = self.to_lines(record, captions, candidates)
        self.lines += lines
        self.samples += len(lines)
        return len(lines)

    def commit(self) -> None:
        atomic_write_text(self.path, ''.join(ln + '\n' for ln in self.lines))

    def abort(self) -> None:
        self.lines = []


def _chunk_units(n: int, per_unit: int, source: str) -> List[Unit]:
    per_unit = max(1, int(per_unit))
    return [Unit(f'part-{i:06d}', i, f'{source}[{s}:{min(n, s + per_unit)}]',
                 min(n, s + per_unit) - s, (s, min(n, s + per_unit)))
            for i, s in enumerate(range(0, max(n, 1) if n else 0, per_unit))]


# ------------------------------------------------------------------------------ JSON
class JsonFormat(DataFormat):
    """BLIP / ALBEF JSON: ``[{"image": path, "caption": str or [str], ...}, ...]``.

    Output: the same list, one entry per kept image with ``caption`` the list of kept
    captions (web first, then synthetic) and every other key as it was; with
    ``output.scores`` a ``capfilt`` key lists every candidate with its scores and the stage
    that removed it. ``input``: ``path``, ``img_root``, ``image_key`` ('image'),
    ``caption_key`` ('caption'), ``records_per_unit`` (10,000)."""
    name = 'json'

    def __init__(self, input_cfg, output_cfg, work_dir):
        super().__init__(input_cfg, output_cfg, work_dir)
        self.path = str(input_cfg['path'])
        self.img_root = input_cfg.get('img_root') or ''
        self.image_key = input_cfg.get('image_key', 'image')
        self.caption_key = input_cfg.get('caption_key', 'caption')
        self.per_unit = int(input_cfg.get('records_per_unit', 10000))
        self.backend_args = input_cfg.get('backend_args')
        self._entries = None

    def entries(self) -> list:
        if self._entries is None:
            from vlp.datasets.image_text import load_json_annotations
            if not osp.isfile(self.path):
                raise FileNotFoundError(f'CapFilt input {self.path} not found')
            self._entries = load_json_annotations(self.path)
        return self._entries

    def plan(self) -> List[Unit]:
        return _chunk_units(len(self.entries()), self.per_unit, self.path)

    def _image_path(self, rel: str) -> str:
        if not self.img_root or osp.isabs(rel) or '://' in rel:
            return rel
        return osp.join(self.img_root, rel)

    def read(self, unit):
        entries = self.entries()
        start, end = unit.data
        for i in range(start, end):
            entry = entries[i]
            where = f'{self.path}: entry {i}'
            if not isinstance(entry, dict):
                yield Skipped('bad_entry', f'{where}: a {type(entry).__name__}, not an '
                              'object', where)
                continue
            if self.image_key not in entry:
                yield Skipped('missing_key', f'{where}: no {self.image_key!r} key', where)
                continue
            rel = entry[self.image_key]
            if not isinstance(rel, str) or not rel:
                yield Skipped('bad_entry', f'{where}: {self.image_key!r} is not a path '
                              f'({str(rel)[:60]!r})', where)
                continue
            if self.caption_key in entry:
                web, bad = _web_captions(entry[self.caption_key], where)
            else:
                web, bad = [], [('missing_key', f'{where}: no {self.caption_key!r} key')]
            path = self._image_path(rel)
            yield Record(str(i), entry, web,
                         lambda p=path: _read_file(p, self.backend_args),
                         f'{where} ({path})', bad)

    def _lines(self, record, captions, candidates):
        entry = dict(record.raw)
        entry[self.caption_key] = captions
        if self.output_cfg.get('scores'):
            entry['capfilt'] = candidates
        return [json.dumps(entry, ensure_ascii=False)]

    def open_writer(self, unit):
        return _PartWriter(osp.join(self.work_dir, 'parts', unit.name + '.jsonl'),
                           self._lines)

    def finalize(self, units):
        out = _AtomicFile(self.output_path)
        try:
            out.f.write(b'[')
            first = True
            for u in units:
                with open(osp.join(self.work_dir, 'parts', u.name + '.jsonl'), 'rb') as f:
                    for line in f:
                        out.f.write((b'\n' if first else b',\n') + line.rstrip(b'\n'))
                        first = False
            out.f.write(b'\n]\n')
        except BaseException:
            out.abort()
            raise
        out.commit()
        return [self.output_path]


# ------------------------------------------------------------------------------- CSV
class CsvFormat(DataFormat):
    """open_clip's CSV / TSV: a header row, an image column (``img_key``, 'filepath') and a
    caption column (``caption_key``, 'title'); ``sep`` (default: tab for ``.tsv``, else
    sniffed from the header: tab or comma). One sample per row.

    Output: the same columns, one row per kept caption (web first, then synthetic), every
    other column as it was; with ``output.scores`` two more columns, ``capfilt_source``
    and ``capfilt_scores`` (JSON)."""
    name = 'csv'

    def __init__(self, input_cfg, output_cfg, work_dir):
        super().__init__(input_cfg, output_cfg, work_dir)
        self.path = str(input_cfg['path'])
        self.img_root = input_cfg.get('img_root') or ''
        self.img_key = input_cfg.get('img_key', 'filepath')
        self.caption_key = input_cfg.get('caption_key', 'title')
        self.per_unit = int(input_cfg.get('records_per_unit', 10000))
        self.backend_args = input_cfg.get('backend_args')
        self.sep = input_cfg.get('sep')
        self._rows = self._fields = None

    def _load(self):
        if self._rows is not None:
            return
        from vlp.datasets.image_text import AnnotationError
        if not osp.isfile(self.path):
            raise FileNotFoundError(f'CapFilt input {self.path} not found')
        with open(self.path, encoding='utf-8-sig', errors='surrogateescape', newline='') as f:
            text = f.read()
        if self.sep is None:
            head = text.split('\n', 1)[0]
            self.sep = '\t' if (self.path.endswith('.tsv') or '\t' in head) else ','
        reader = csv.DictReader(io.StringIO(text, newline=''), delimiter=self.sep)
        fields = reader.fieldnames
        if not fields:
            raise AnnotationError(f'{self.path}: line 1: the file is empty; expected a header '
                                  f'with {self.img_key!r} and {self.caption_key!r}')
        for col in (self.img_key, self.caption_key):
            if col not in fields:
                raise AnnotationError(f'{self.path}: line 1: column {col!r} not in the header '
                                      f'(columns: {fields}); set input.img_key / caption_key '
                                      f'/ sep (sep={self.sep!r})')
        self._fields = list(fields)
        self._rows = list(reader)

    def plan(self):
        self._load()
        return _chunk_units(len(self._rows), self.per_unit, self.path)

    def read(self, unit):
        self._load()
        start, end = unit.data
        for i in range(start, end):
            row = self._rows[i]
            where = f'{self.path}: row {i + 1}'
            rel = row.get(self.img_key)
            if None in row or rel is None:  # too many / too few fields
                yield Skipped('bad_entry', f'{where}: {len(row)} fields, the header has '
                              f'{len(self._fields)}', where)
                continue
            if not rel.strip():
                yield Skipped('missing_key', f'{where}: no image path', where)
                continue
            caption = row.get(self.caption_key)
            web, bad = _web_captions(caption, where)
            path = rel if (not self.img_root or osp.isabs(rel)) else osp.join(self.img_root, rel)
            yield Record(str(i), row, web, lambda p=path: _read_file(p, self.backend_args),
                         f'{where} ({path})', bad)

    def _lines(self, record, captions, candidates):
        by_text = {}
        for c in candidates:
            by_text.setdefault(c['text'], c)
        out = []
        for cap in captions:
            row = dict(record.raw)
            row[self.caption_key] = cap
            if self.output_cfg.get('scores'):
                c = by_text.get(cap, {})
                row['capfilt_source'] = c.get('source', '')
                row['capfilt_scores'] = json.dumps(c.get('scores', {}), sort_keys=True)
            out.append(json.dumps(row, ensure_ascii=False))
        if not captions:  # keep_empty
            row = dict(record.raw)
            row[self.caption_key] = ''
            out.append(json.dumps(row, ensure_ascii=False))
        return out

    def open_writer(self, unit):
        return _PartWriter(osp.join(self.work_dir, 'parts', unit.name + '.jsonl'),
                           self._lines)

    def finalize(self, units):
        self._load()
        fields = self._fields + (['capfilt_source', 'capfilt_scores']
                                 if self.output_cfg.get('scores') else [])
        out = _AtomicFile(self.output_path)
        try:
            text = io.TextIOWrapper(out.f, encoding='utf-8', errors='surrogateescape',
                                    newline='')
            writer = csv.DictWriter(text, fieldnames=fields, delimiter=self.sep,
                                    lineterminator='\n')
            writer.writeheader()
            for u in units:
                with open(osp.join(self.work_dir, 'parts', u.name + '.jsonl'),
                          encoding='utf-8', errors='surrogateescape') as f:
                    for line in f:
                        writer.writerow(json.loads(line))
            text.flush()
            text.detach()
        except BaseException:
            out.abort()
            raise
        out.commit()
        return [self.output_path]


# ---------------------------------------------------------------------------- shards
def expand_shards(spec: Union[str, Sequence[str]]) -> List[str]:
    """Shard paths from brace patterns, globs (``*``), ``.txt`` lists or lists of them."""
    from vlp.datasets.webdataset import expand_urls
    out = []
    for s in ([spec] if isinstance(spec, str) else list(spec)):
        s = str(s)
        if any(ch in s for ch in '*?[') and '{' not in s:
            found = sorted(glob.glob(s))
            if not found:
                raise FileNotFoundError(f'no shard matches {s}')
            out += found
        else:
            out += expand_urls(s)
    return out


def _shard_size(path: str) -> Optional[int]:
    """Samples of a shard by img2dataset's ``<stem>_stats.json``, when there is one."""
    stem = path[:-len('.tar.gz')] if path.endswith('.tar.gz') else osp.splitext(path)[0]
    try:
        with open(f'{stem}_stats.json', encoding='utf-8') as f:
            return int(json.load(f)['successes'])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _Member:
    __slots__ = ('name', 'ext', 'info', 'data')

    def __init__(self, name, ext, info, data):
        self.name, self.ext, self.info, self.data = name, ext, info, data


class ShardFormat(DataFormat):
    """Webdataset shards (img2dataset's layout): per sample ``<key>.jpg|png|webp``, a
    ``<key>.txt`` caption and / or a ``<key>.json`` with ``caption_key`` ('caption'),
    and any other members.

    Output, one shard per input shard (same name, same compression), members in their
    order, each copied byte for byte except: ``.txt`` holds the caption, and the ``.json``
    (when there is one) gets ``capfilt`` (``captions``: every kept caption, ``web``: the
    original ones; ``candidates`` with their scores with ``output.scores``) and, if it has
    ``caption_key``, that caption. ``output.samples``: ``'per_caption'`` (default) writes a
    sample per kept caption (keys ``<key>``, ``<key>_1``, ...; the image repeated), as
    vlp's and most shard readers take one caption per sample; ``'per_image'`` one sample
    with the first caption in ``.txt`` and all of them in the ``.json``."""
    name = 'shards'

    def __init__(self, input_cfg, output_cfg, work_dir):
        super().__init__(input_cfg, output_cfg, work_dir)
        self.shards = expand_shards(input_cfg['path'])
        if not self.shards:
            raise FileNotFoundError(f'no shards in {input_cfg["path"]!r}')
        self.caption_key = input_cfg.get('caption_key', 'caption')
        self.samples = output_cfg.get('samples', 'per_caption')
        if self.samples not in ('per_caption', 'per_image'):
            raise ValueError(f"output.samples must be 'per_caption' or 'per_image', got "
                             f'{self.samples!r}')

    def plan(self):
        names, units = {}, []
        out_dir = osp.abspath(self.output_path)
        for i, path in enumerate(self.shards):
            base = osp.basename(path)
            if base in names:
                raise ValueError(f'two input shards are named {base} ({names[base]} and '
                                 f'{path}): each writes {osp.join(self.output_path, base)}; '
                                 'give them distinct names')
            names[base] = path
            if '://' not in path and osp.dirname(osp.abspath(path)) == out_dir:
                raise ValueError(f'the output folder {self.output_path} holds the input '
                                 f'shard {path}: write to another folder')
            size = osp.getsize(path) if '://' not in path and osp.exists(path) else 0
            units.append(Unit(base, i, path, size, path))
        return units

    def output_file(self, unit: Unit) -> str:
        return osp.join(self.output_path, unit.name)

    # -- reading
    def _samples(self, unit: Unit):
        """Raw samples ``(key, [members])`` of a shard; a truncated or corrupt shard ends
        with a :class:`Skipped` naming what was lost."""
        from webdataset.tariterators import base_plus_ext
        path = unit.data
        stream = open(path, 'rb')  # an error here fails the unit (retried by the next run)
        raw = stream
        if path.endswith(('.gz', '.tgz')):
            raw = gzip.GzipFile(fileobj=stream, mode='rb')
        tail = TarTailReader(raw)
        done, key, members, error = 0, None, [], None
        try:
            tar = tarfile.open(fileobj=tail, mode='r|')
            for info in tar:
                if not info.isreg():
                    continue
                prefix, suffix = base_plus_ext(info.name)
                if prefix is None or osp.basename(info.name).startswith('__'):
                    continue
                if key is not None and prefix != key:
                    yield key, members
                    done, key, members = done + 1, None, []
                key = prefix
                data = tar.extractfile(info).read()
                members.append(_Member(info.name, suffix, info, data))
            if not tail.ends_cleanly(tar.offset):
                error = 'the archive ends without its end-of-archive block'
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            error = f'{type(e).__name__}: {e}'
        finally:
            stream.close()
        if error is None:
            if key is not None:
                yield key, members
            return
        # truncated or corrupt: the sample being read at the cut is lost, and the rest
        cut = f' (sample {key} was being read)' if key else ''
        expected = _shard_size(path)
        if expected is not None:
            lost = max(expected - done, 1)
            msg = f'{done} of its {expected} samples read{cut}, {lost} lost'
        else:
            lost = 1
            msg = (f'{done} complete samples read{cut}; how many followed is unknown '
                   '(counted as 1 lost; keep img2dataset\'s <shard>_stats.json to count them)')
        yield Skipped('truncated_shard', f'{path}: truncated or corrupt shard ({error}): '
                      f'{msg}', path, count=lost)

    def read(self, unit):
        for got in self._samples(unit):
            if isinstance(got, Skipped):
                yield got
                continue
            key, members = got
            where = f'{unit.data}: {key}'
            exts = {m.ext.lower(): m for m in members}
            img = next((exts[e] for e in IMAGE_EXTS if e in exts), None)
            if img is None:
                yield Skipped('missing_key', f'{where}: no image member (members: '
                              f'{sorted(exts)})', where)
                continue
            meta = None
            if 'json' in exts:
                try:
                    meta = json.loads(exts['json'].data)
                except ValueError as e:
                    yield Skipped('bad_entry', f'{where}: the .json member is not valid JSON '
                                  f'({e})', where)
                    continue
                if not isinstance(meta, dict):
                    yield Skipped('bad_entry', f'{where}: the .json member is a '
                                  f'{type(meta).__name__}, not an object', where)
                    continue
            if 'txt' in exts:
                try:
                    web, bad = _web_captions(exts['txt'].data.decode('utf-8'), where)
                except UnicodeDecodeError as e:
                    web, bad = [], [('bad_caption', f'{where}: the .txt member is not UTF-8 '
                                     f'({e})')]
            elif meta is not None and self.caption_key in meta:
                web, bad = _web_captions(meta[self.caption_key], where)
            else:
                web, bad = [], [('missing_key', f'{where}: no caption (.txt or '
                                 f'{self.caption_key!r} in .json)')]
            data = img.data
            yield Record(key, dict(members=members, meta=meta, image=img), web,
                         lambda d=data: d, where, bad)

    # -- writing
    def open_writer(self, unit):
        return _ShardWriter(self, unit)


class _ShardWriter:
    def __init__(self, fmt: ShardFormat, unit: Unit):
        self.fmt, self.unit = fmt, unit
        self.path = fmt.output_file(unit)
        self.file = _AtomicFile(self.path)
        self.gz = None
        fileobj = self.file.f
        if unit.name.endswith(('.gz', '.tgz')):
            # no name, no time in the gzip header: the same input gives the same bytes
            self.gz = gzip.GzipFile(filename='', mode='wb', fileobj=fileobj, mtime=0)
            fileobj = self.gz
        self.tar = tarfile.open(fileobj=fileobj, mode='w', format=tarfile.PAX_FORMAT)
        self.samples = 0

    @staticmethod
    def _info(template: tarfile.TarInfo, name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = template.mode
        info.mtime = int(template.mtime)
        info.uid, info.gid = template.uid, template.gid
        info.uname, info.gname = template.uname, template.gname
        return info

    def _add(self, template, name: str, data: bytes) -> None:
        self.tar.addfile(self._info(template, name, len(data)), io.BytesIO(data))

    def write(self, record: Record, captions: List[str], candidates: List[dict]) -> int:
        raw = record.raw
        members, meta, img = raw['members'], raw['meta'], raw['image']
        key_cfg = self.fmt.caption_key
        scores = self.fmt.output_cfg.get('scores')
        if self.fmt.samples == 'per_image' or not captions:
            plan = [(record.key, captions[0] if captions else None, 0)]
        else:
            plan = [(record.key if i == 0 else f'{record.key}_{i}', c, i)
                    for i, c in enumerate(captions)]
        for key, caption, index in plan:
            has_txt = False
            for m in members:
                # webdataset keys hold the folder: '<dir>/<key>' + '.<ext>'
                name = key + m.name[len(record.key):]
                data = m.data
                if m.ext.lower() == 'txt':
                    has_txt = True
                    if caption is None:
                        continue  # keep_empty: a sample without a caption
                    data = caption.encode('utf-8')
                elif m.ext.lower() == 'json' and meta is not None:
                    obj = dict(meta)
                    info = dict(captions=captions, web=record.web)
                    if self.fmt.samples == 'per_caption' and captions:
                        info['index'] = index
                    if scores:
                        info['candidates'] = candidates
                    obj['capfilt'] = info
                    if key_cfg in obj and caption is not None:
                        obj[key_cfg] = caption
                    data = json.dumps(obj, ensure_ascii=False).encode('utf-8')
                self._add(m.info, name, data)
            if not has_txt and caption is not None and (meta is None or key_cfg not in meta):
                self._add(img.info, f'{key}.txt', caption.encode('utf-8'))
            self.samples += 1
        return len(plan)

    def commit(self) -> None:
        self.tar.close()
        if self.gz is not None:
            self.gz.close()
        self.file.commit()
        stem = self.path[:-len('.tar.gz')] if self.path.endswith('.tar.gz') else \
            osp.splitext(self.path)[0]
        # img2dataset's per-shard stats: readers count a truncated copy exactly
        atomic_write_text(f'{stem}_stats.json', json.dumps(dict(successes=self.samples)) + '\n')

    def abort(self) -> None:
        try:
            self.tar.close()
            if self.gz is not None:
                self.gz.close()
        except Exception:  # noqa: BLE001 - the temporary file goes anyway
            pass
        self.file.abort()


# ---------------------------------------------------------------------------- choose
FORMATS: Dict[str, type] = {'json': JsonFormat, 'csv': CsvFormat, 'shards': ShardFormat}


def detect_format(path) -> str:
    """``json`` (``.json``), ``csv`` (``.csv`` / ``.tsv``), ``shards`` (``.tar``,
    ``.tar.gz``, brace patterns, globs, ``.txt`` shard lists, lists)."""
    if not isinstance(path, str):
        return 'shards'
    p = path.lower()
    if p.endswith('.json'):
        return 'json'
    if p.endswith(('.csv', '.tsv')):
        return 'csv'
    if p.endswith(('.tar', '.tar.gz', '.tgz', '.txt')) or '{' in p or '*' in p:
        return 'shards'
    raise ValueError(f'cannot tell the format of the CapFilt input {path!r}: set '
                     "input.format to 'json', 'csv' or 'shards'")


def build_format(input_cfg: dict, output_cfg: dict, work_dir: str) -> DataFormat:
    fmt = input_cfg.get('format') or detect_format(input_cfg['path'])
    if fmt not in FORMATS:
        raise ValueError(f'input.format must be one of {sorted(FORMATS)}, got {fmt!r}')
    return FORMATS[fmt](input_cfg, output_cfg, work_dir)
