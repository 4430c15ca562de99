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
- ``shuffle_buffer``: webdataset's sample shuffle buffer (0: off);
- a member or shard that cannot be read (a truncated tar, an undecodable image, a
  pipeline failure) is skipped, logged with its shard and key, and counted in
  :attr:`num_skipped` (shared with the workers, as the map-style datasets' counter);
  above ``max_skip_fraction`` of the samples read the run stops with an error.

A sample reaching the pipeline is ``dict(img=<PIL RGB>, text=<caption>, key=..., url=...)``
(the caption from ``.txt``, else the ``caption_key`` of ``.json``; ``image_id`` too when the
``.json`` has one, as tools/data/json_to_shards.py writes); configs use the same pipelines
as the JSON datasets, without ``LoadImage``.

Use ``sampler=None`` in the dataloader config (mmengine passes it through) and an
iteration-based loop, or set ``epoch_size`` for epoch-based ones.
"""
import io
import logging
import os.path as osp
import random
import zlib
from functools import partial
from typing import Iterator, List, Optional, Sequence, Union

import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from torch.utils.data import IterableDataset, get_worker_info

from vlp.registry import DATASETS
from .image_text import SharedCounter, build_transform
from .samplers import SampleKey, sample_rng

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
        rank, world_size: override mmengine's distributed info (tests, tools).
    """

    def __init__(self, urls: Union[str, Sequence[str]], pipeline: Sequence = (),
                 data_root: str = '', resampled: bool = False, shardshuffle: bool = False,
                 shuffle_buffer: int = 0, epoch_size: Optional[int] = None,
                 caption_key: str = 'caption', seed: int = 0,
                 max_skip_fraction: Optional[float] = None, skip_check_after: int = 100,
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
        self._skipped = SharedCounter()
        self._read = SharedCounter()

    @property
    def num_skipped(self) -> int:
        """Members / shards skipped so far (this process and its workers)."""
        return self._skipped.value

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.epoch_size is None:
            raise TypeError('WebDatasetImageText has no length without epoch_size')
        return self.epoch_size

    # -----------------------------------------------------------------------------------------
    def _handler(self, exn: Exception) -> bool:
        """webdataset's error handler: log, count, continue."""
        self._skipped.increment()
        print_log(f'{type(self).__name__}: skipped an unreadable sample or shard '
                  f'({type(exn).__name__}: {exn}); {self.num_skipped} skipped so far',
                  logger='current', level=logging.WARNING)
        skipped, total = self.num_skipped, self.num_skipped + self._read.value
        if self.max_skip_fraction is not None and total >= self.skip_check_after and \
                skipped > self.max_skip_fraction * total:
            raise RuntimeError(
                f'{type(self).__name__}: {skipped} of {total} samples read could not be '
                f'used ({skipped / total:.1%} > max_skip_fraction '
                f'{self.max_skip_fraction:.1%}); last error: {type(exn).__name__}: {exn}')
        return True

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
        stages += [wds.tarfile_to_samples(handler=self._handler)]
        if self.shuffle_buffer:
            stages.append(wds.shuffle(self.shuffle_buffer))
        stages.append(wds.map(self._to_sample, handler=self._handler))
        stages.append(wds.select(lambda s: s is not None))
        return wds.DataPipeline(*stages)

    def _to_sample(self, raw: dict) -> Optional[dict]:
        from PIL import Image
        key, url = raw.get('__key__'), raw.get('__url__')
        ext = next((e for e in IMAGE_EXTS if e in raw), None)
        if ext is None:
            raise ValueError(f'{url}: {key} has no image member')
        img = Image.open(io.BytesIO(raw[ext]))
        img.load()  # decode now: a truncated image raises here, inside the handler
        meta = {}
        if 'json' in raw:
            import json
            meta = json.loads(raw['json'])
        if 'txt' in raw:
            text = raw['txt'].decode('utf-8').strip()
        elif self.caption_key in meta:
            text = meta[self.caption_key]
        else:
            raise ValueError(f'{url}: {key} has no txt member or json caption')
        sample = dict(img=img.convert('RGB'), text=text, key=key, url=url)
        if 'image_id' in meta:  # ALBEF / BLIP: captions of one image are positives
            sample['image_id'] = int(meta['image_id'])
        self._read.increment()
        # the sample's random choices follow from (seed, epoch, url/key), not from which
        # worker read it (as the map-style datasets' SampleKey, vlp/datasets/samplers.py)
        with sample_rng(SampleKey(zlib.crc32(f'{url}/{key}'.encode()), self.seed, self.epoch)):
            for t in self.pipeline:
                sample = t(sample)
                if sample is None:
                    raise ValueError(f'{url}: the pipeline dropped {key}')
        return sample

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
