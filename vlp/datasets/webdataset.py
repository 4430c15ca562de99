"""Image-text pairs from webdataset shards (tar files of ``<key>.jpg`` / ``.png`` / ``.webp``
with ``<key>.txt`` and/or ``<key>.json``, as img2dataset writes them), read through the
``webdataset`` library.

:class:`WebDatasetImageText` is an ``IterableDataset``:

- ``urls``: a brace pattern (``data/cc3m/{00000..00331}.tar``), a list of them, or a
  ``.txt`` file listing one shard per line; relative to ``data_root``;
- non-resampled mode (``resampled=False``, evaluation and exact epochs): the shard list is
  split by rank (round-robin), then by DataLoader worker, so that every sample is read
  exactly once per epoch over all ranks and workers (with fewer shards than ranks x workers
  some workers read nothing); ``shardshuffle`` shuffles the shard order (the same order on
  every rank and worker: seeded with ``seed`` + the epoch given to :meth:`set_epoch`);
- resampled mode (``resampled=True``, multi-node pre-training): every worker of every rank
  draws shards with replacement, with its own seed, forever; ``epoch_size`` (samples per
  rank) makes the epochs;
- ``shuffle_buffer``: webdataset's sample shuffle buffer (0: off), seeded from (``seed``,
  epoch, rank, worker) so a run and its resume shuffle alike;
- bad data never stops the stream and never vanishes (vlp/datasets/skips.py): a member
  without an image or a caption, an empty or undecodable image, a caption that is blank or
  not UTF-8, an exception inside a transform: the sample is skipped and recorded with its
  reason, shard and key; a truncated or corrupt shard is reported with its name and the
  number of samples it lost: exactly when the shard's size is known (``shard_sizes``, or
  the ``<shard>_stats.json`` img2dataset writes next to it: ``successes``), else the one
  sample cut at the truncation: a truncated tar does not say how many members followed,
  and the report says so. The counts are shared with the workers (:attr:`num_skipped`,
  :meth:`skip_report`); above ``max_skip_fraction`` of the samples read the run stops
  with an error.

A sample reaching the pipeline is ``dict(img=<PIL RGB>, text=<caption>, key=..., url=...)``
(the caption from ``.txt``, else the ``caption_key`` of ``.json``; ``image_id`` too when the
``.json`` has one, as tools/data/json_to_shards.py writes); configs use the same pipelines
as the JSON datasets (``LoadImage`` passes the decoded ``img`` through).

Use ``sampler=None`` in the dataloader config (mmengine passes it through) and an
iteration-based loop, or set ``epoch_size`` for epoch-based ones.
"""
import io
import json
import os.path as osp
import random
import zlib
from functools import partial
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np
from mmengine.dist import get_dist_info
from torch.utils.data import IterableDataset, get_worker_info

from vlp.registry import DATASETS
from .image_text import build_transform
from .samplers import SampleKey, sample_rng
from .skips import BadSample, SkipLog, caption_problem, run_pipeline

IMAGE_EXTS = ('jpg', 'jpeg', 'png', 'webp')


def expand_urls(urls: Union[str, Sequence[str]], data_root: str = '') -> List[str]:
    """Brace-expand shard patterns (``a/{000..009}.tar``) or read a ``.txt`` list."""
    import braceexpand
    if isinstance(urls, str):
        urls = [urls]
    out: List[str] = []
    for u in urls:
        if u.endswith('.txt'):
            path = osp.join(data_root, u) if data_root else u
            with open(path, encoding='utf-8') as f:
                out += [ln.strip() for ln in f if ln.strip()]
        else:
            out += list(braceexpand.braceexpand(u))
    return [u if (not data_root or '://' in u or osp.isabs(u)) else osp.join(data_root, u)
            for u in out]


def _split_by_rank(src, rank: int, world_size: int):
    for i, item in enumerate(src):
        if i % world_size == rank:
            yield item


class TarTailReader:
    """A read-only stream that counts the bytes read and keeps the last ones: after
    ``tarfile`` stops, whether the archive ended with its end-of-archive block (a tar cut
    at a member boundary otherwise ends silently)."""

    def __init__(self, stream, keep: int = 1 << 16):
        self.stream, self.keep = stream, keep
        self.pos, self.tail = 0, b''

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.pos += len(data)
        self.tail = (self.tail + data)[-self.keep:]
        return data

    def ends_cleanly(self, offset: int) -> bool:
        start = offset - (self.pos - len(self.tail))
        if start < 0:  # not kept: cannot tell, trust tarfile
            return True
        block = self.tail[start:start + 512]
        return len(block) == 512 and not any(block)


def _read_sizes(shard_sizes) -> dict:
    if shard_sizes is None:
        return {}
    if isinstance(shard_sizes, str):
        with open(shard_sizes, encoding='utf-8') as f:
            shard_sizes = json.load(f)
    if not isinstance(shard_sizes, dict):
        raise TypeError(f'shard_sizes must map shard names to sample counts, got '
                        f'{type(shard_sizes).__name__}')
    return {str(k): int(v) for k, v in shard_sizes.items()}


@DATASETS.register_module()
class WebDatasetImageText(IterableDataset):
    """Image-text pairs streamed from webdataset shards (see the module docstring).

    Args:
        urls: shard pattern(s) or a ``.txt`` shard list.
        pipeline: vlp transforms applied to each sample (``ToTensor``, ``Tokenize`` ...).
        data_root: prefix of relative shard paths.
        resampled: draw shards with replacement (infinite; needs ``epoch_size``).
        shardshuffle: shuffle the shard order each epoch (non-resampled mode).
        shuffle_buffer: sample shuffle buffer size (0: none).
        epoch_size: samples per rank and epoch (``None``: one pass over the shards).
        caption_key: caption field of ``.json`` members.
        seed: base seed of the shard order.
        max_skip_fraction: stop with an error once more than this fraction of the samples
            read so far (over this process and its workers) was skipped, checked from
            ``skip_check_after`` samples on (``None``: never stop).
        shard_sizes: samples per shard, so that a truncated shard counts exactly what it
            lost: a dict (shard path or file name -> count) or a JSON file of one. Without
            it, img2dataset's ``<shard>_stats.json`` (``successes``) is used when present.
        max_skip_examples: examples kept (and skips logged one by one) per reason.
        rank, world_size: override mmengine's distributed info (tests, tools).
    """

    def __init__(self, urls: Union[str, Sequence[str]], pipeline: Sequence = (),
                 data_root: str = '', resampled: bool = False, shardshuffle: bool = False,
                 shuffle_buffer: int = 0, epoch_size: Optional[int] = None,
                 caption_key: str = 'caption', seed: int = 0,
                 max_skip_fraction: Optional[float] = None, skip_check_after: int = 100,
                 shard_sizes: Union[None, str, dict] = None, max_skip_examples: int = 20,
                 rank: Optional[int] = None, world_size: Optional[int] = None):
        super().__init__()
        self.urls = expand_urls(urls, data_root)
        if not self.urls:
            raise ValueError(f'no shards in {urls!r}')
        missing = [u for u in self.urls if '://' not in u and not osp.exists(u)]
        if missing:
            raise FileNotFoundError(f'{len(missing)} shard(s) not found, e.g. {missing[0]}')
        if resampled and epoch_size is None:
            raise ValueError('resampled=True streams forever: set epoch_size')
        self.pipeline = [build_transform(t) for t in pipeline]
        self.resampled, self.shardshuffle = resampled, shardshuffle
        self.shuffle_buffer, self.epoch_size = shuffle_buffer, epoch_size
        self.caption_key, self.seed = caption_key, seed
        r, w = get_dist_info()
        self.rank = r if rank is None else rank
        self.world_size = w if world_size is None else world_size
        self.epoch = 0
        self.max_skip_fraction, self.skip_check_after = max_skip_fraction, skip_check_after
        self.shard_sizes = _read_sizes(shard_sizes)
        self.skips = SkipLog(type(self).__name__, max_examples=max_skip_examples)

    @property
    def num_skipped(self) -> int:
        """Samples skipped so far (this process and its workers), including those a
        truncated shard lost."""
        return self.skips.total

    def skip_report(self) -> dict:
        """Counts per reason and examples of the skipped samples (:meth:`SkipLog.report`)."""
        return self.skips.report()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.epoch_size is None:
            raise TypeError('WebDatasetImageText has no length without epoch_size')
        return self.epoch_size

    # -----------------------------------------------------------------------------------------
    def _skip(self, reason: str, message: str, url: Optional[str], key=None,
              count: int = 1, exc: Optional[BaseException] = None) -> None:
        self.skips.record(reason, message, file=url, entry=key, count=count, exc=exc,
                          action='reading on')
        self._check_fraction(f'{reason}: {message}')

    def _check_fraction(self, last: str) -> None:
        skipped = self.skips.num_fetch
        total = skipped + self.skips.num_delivered
        if self.max_skip_fraction is not None and total >= self.skip_check_after and \
                skipped > self.max_skip_fraction * total:
            raise RuntimeError(
                f'{type(self).__name__}: {skipped} of {total} samples read could not be '
                f'used ({skipped / total:.1%} > max_skip_fraction '
                f'{self.max_skip_fraction:.1%}; by reason: {self.skips.report()["counts"]}); '
                f'last: {last}. Check the shards (tools/data/json_to_shards.py rewrites them)')

    def shard_size(self, url: str) -> Optional[int]:
        """Samples in shard ``url`` when known (``shard_sizes``, img2dataset's stats)."""
        for k in (url, osp.basename(url)):
            if k in self.shard_sizes:
                return self.shard_sizes[k]
        if '://' not in url and not url.startswith('pipe:'):
            stem = osp.splitext(url)[0]
            stats = f'{stem}_stats.json'
            if osp.exists(stats):
                try:
                    with open(stats, encoding='utf-8') as f:
                        return int(json.load(f)['successes'])
                except (OSError, ValueError, KeyError, TypeError):
                    return None
        return None

    def _read_shard(self, url: str) -> Iterator[dict]:
        """The raw samples (``__key__``, ``__url__`` and one bytes value per member
        extension) of one shard; a truncated or corrupt shard is recorded with what it
        lost (see the module docstring)."""
        import tarfile
        from webdataset import gopen
        from webdataset.tariterators import base_plus_ext
        try:
            stream = open(url, 'rb') if '://' not in url and not url.startswith('pipe:') \
                else gopen(url)
        except FileNotFoundError as e:
            self._skip('missing_file', f'shard not found ({e}); its samples are not read '
                       '(how many is unknown)', url)
            return
        except OSError as e:
            self._skip('truncated_shard', f'shard cannot be opened ({type(e).__name__}: {e}); '
                       'its samples are not read', url)
            return
        tail = TarTailReader(stream)
        plain = url.endswith('.tar')
        done, current, error = 0, None, None
        try:
            tar = tarfile.open(fileobj=tail, mode='r|' if plain else 'r|*')
            for info in tar:
                if not info.isreg():
                    continue
                prefix, suffix = base_plus_ext(info.name)
                if prefix is None or osp.basename(info.name).startswith('__'):
                    continue
                if current is not None and prefix != current['__key__']:
                    yield current  # complete: the next sample's header was read
                    done, current = done + 1, None
                if current is None:
                    current = dict(__key__=prefix, __url__=url)
                current[suffix.lower()] = tar.extractfile(info).read()
            if plain and not tail.ends_cleanly(tar.offset):
                error = 'the archive ends without its end-of-archive block'
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            error = f'{type(e).__name__}: {e}'
        finally:
            stream.close()
        if error is None:
            if current is not None:
                yield current
            return
        # truncated or corrupt: the sample being read at the cut is lost, and the rest
        expected = self.shard_size(url)
        cut = f' (sample {current["__key__"]} was being read)' if current else ''
        if expected is not None:
            lost = max(expected - done, 0)
            msg = (f'truncated or corrupt shard ({error}): {done} of its {expected} samples '
                   f'read{cut}, {lost} lost')
        else:
            lost = 1
            msg = (f'truncated or corrupt shard ({error}) after {done} complete samples{cut}; '
                   'how many samples followed the cut is unknown (a truncated tar does not '
                   'say; give shard_sizes= or keep img2dataset\'s <shard>_stats.json to count '
                   'them): counted as 1 lost')
        self._skip('truncated_shard', msg, url, current['__key__'] if current else None,
                   count=lost)

    def _samples(self, src) -> Iterator[dict]:
        for item in src:
            yield from self._read_shard(item['url'] if isinstance(item, dict) else item)

    def _pipeline(self):
        import webdataset as wds
        if self.resampled:
            info = get_worker_info()
            worker = info.id if info is not None else 0
            seed = self.seed + 1000003 * self.rank + 7919 * worker + self.epoch
            shards = wds.ResampledShards(self.urls, seed=seed)
            stages = [shards]
        else:
            urls = list(self.urls)
            if self.shardshuffle:
                random.Random(self.seed + self.epoch).shuffle(urls)  # same order on all ranks
            stages = [wds.SimpleShardList(urls),
                      partial(_split_by_rank, rank=self.rank, world_size=self.world_size),
                      wds.split_by_worker]
        stages.append(self._samples)
        if self.shuffle_buffer:
            # seeded per (seed, epoch, rank, worker): webdataset's default seeds the buffer
            # from the pid and the clock, so no two runs (or a run and its resume) agree
            info = get_worker_info()
            worker = info.id if info is not None else 0
            stages.append(wds.shuffle(self.shuffle_buffer, seed=int(np.random.SeedSequence(
                [self.seed, self.epoch, self.rank, worker, 11]).generate_state(1)[0])))
        stages.append(self._decode_all)
        return wds.DataPipeline(*stages)

    def _decode_all(self, src) -> Iterator[dict]:
        for raw in src:
            sample = self._to_sample(raw)
            if sample is not None:
                self.skips.delivered()
                yield sample

    def _decode(self, raw: dict) -> dict:
        """A raw sample -> ``dict(img, text, key, url[, image_id])``; a data fault raises
        :class:`BadSample` with its reason."""
        from PIL import Image
        key, url = raw.get('__key__'), raw.get('__url__')
        ext = next((e for e in IMAGE_EXTS if e in raw), None)
        if ext is None:
            raise BadSample('missing_key', f'no image member (.{"/.".join(IMAGE_EXTS)}; '
                            f'members: {sorted(k for k in raw if not k.startswith("__"))})')
        if not raw[ext]:
            raise BadSample('empty_file', f'the .{ext} member is empty (0 bytes)')
        try:
            img = Image.open(io.BytesIO(raw[ext]))
            img.load()  # decode now: a truncated image fails here
            img = img.convert('RGB')
        except Exception as e:  # noqa: BLE001 - any undecodable image is skipped
            raise BadSample('corrupt_file', f'the .{ext} member cannot be decoded: '
                            f'{type(e).__name__}: {e}') from None
        meta = {}
        if 'json' in raw:
            try:
                meta = json.loads(raw['json'])
            except ValueError as e:
                raise BadSample('bad_entry', f'the .json member is not valid JSON: {e}') \
                    from None
            if not isinstance(meta, dict):
                raise BadSample('bad_entry', f'the .json member is a {type(meta).__name__}, '
                                'not an object')
        if 'txt' in raw:
            try:
                text = raw['txt'].decode('utf-8').strip()
            except UnicodeDecodeError as e:
                raise BadSample('bad_caption', f'the .txt member is not UTF-8 ({e})') from None
        elif self.caption_key in meta:
            text = meta[self.caption_key]
        else:
            raise BadSample('missing_key', f'no caption: no .txt member and no '
                            f'{self.caption_key!r} in the .json member')
        problem = caption_problem(text)
        if problem is not None:
            raise BadSample('bad_caption', problem)
        sample = dict(img=img, text=text.strip(), key=key, url=url)
        if 'image_id' in meta:  # ALBEF / BLIP: captions of one image are positives
            try:
                sample['image_id'] = int(meta['image_id'])
            except (TypeError, ValueError):
                raise BadSample('bad_entry', f'image_id {meta["image_id"]!r} in the .json '
                                'member is not an integer') from None
        return sample

    def _to_sample(self, raw: dict) -> Optional[dict]:
        key, url = raw.get('__key__'), raw.get('__url__')
        try:
            sample = self._decode(raw)
        except BadSample as e:
            self._skip(e.reason, str(e), url, key)
            return None
        # the sample's random choices follow from (seed, epoch, url/key), not from which
        # worker read it (as the map-style datasets' SampleKey, vlp/datasets/samplers.py)
        with sample_rng(SampleKey(zlib.crc32(f'{url}/{key}'.encode()), self.seed, self.epoch)):
            out = run_pipeline(self.pipeline, sample, self.skips, file=url, entry=key,
                               action='reading on')
        if out is None:
            self._check_fraction(f'{url}: {key} skipped by the pipeline')
        return out

    def __iter__(self) -> Iterator[dict]:
        it = iter(self._pipeline())
        if self.epoch_size is None:
            yield from it
            return
        info = get_worker_info()
        n_workers = info.num_workers if info is not None else 1
        worker = info.id if info is not None else 0
        # this worker's share of the rank's epoch
        share = self.epoch_size // n_workers + (worker < self.epoch_size % n_workers)
        done = 0
        while done < share:
            got = 0
            for sample in it:
                yield sample
                got += 1
                done += 1
                if done == share:
                    return
            if got == 0:  # this worker has no shard (or nothing readable): stop
                return
            it = iter(self._pipeline())  # another pass over the shards
