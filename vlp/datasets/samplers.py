"""Samplers whose indices carry their own randomness: exact resume with any worker setting.

A sample's random choices (the caption drawn for an image, random crops and flips, masks,
frame offsets) must not depend on which DataLoader worker fetched it, nor on how many
samples that worker fetched before: with ``persistent_workers=True`` the workers' RNGs
keep running across epochs and are not in any checkpoint, so a resumed run would draw
other captions than the uninterrupted one. Instead, every index these samplers yield is a
:class:`SampleKey`: an ``int`` (datasets index with it as before) that also carries the
sampler's ``seed`` and the ``epoch`` (pass over the data) it was drawn in. A dataset wraps
its fetch in :func:`sample_rng`, which seeds python's ``random``, numpy's global RNG and
torch's CPU generator from ``(seed, epoch, index)`` and puts the caller's states back
afterwards, so:

- the randomness of sample ``i`` in epoch ``e`` is the same in every run with the seed,
  whatever ``num_workers``, ``persistent_workers``, and wherever the run was resumed;
- fetching a sample in the main process (``num_workers=0``) leaves the training RNG
  (dropout, masking in the model) as it found it.

The rank is not part of the seed on purpose: a sample is the same sample on 1 or 8 ranks
(the sampler already gives ranks disjoint indices), so a 2-rank run with batch B sees the
same data as a 1-rank run with batch 2B.

``DefaultSampler`` and ``InfiniteSampler`` are registered in vlp's scope under mmengine's
names, so ``sampler=dict(type='DefaultSampler')`` in a vlp config resolves here; both also
take ``skip(n)``: the next pass starts ``n`` samples later (how a mid-epoch checkpoint
resumes at its next batch without loading the batches before it).
"""
import itertools
import random
from contextlib import contextmanager
from typing import Iterator, Optional

import numpy as np
import torch
from mmengine.dataset import DefaultSampler as MMDefaultSampler
from mmengine.dataset import InfiniteSampler as MMInfiniteSampler

from vlp.registry import DATA_SAMPLERS

__all__ = ['SampleKey', 'sample_rng', 'sample_seed', 'DefaultSampler', 'InfiniteSampler']


class SampleKey(int):
    """A dataset index with the ``seed`` and ``epoch`` of the pass that drew it."""

    def __new__(cls, index: int, seed: int, epoch: int):
        key = super().__new__(cls, index)
        key.seed = int(seed)
        key.epoch = int(epoch)
        return key

    def __reduce__(self):  # DataLoader workers receive indices pickled
        return SampleKey, (int(self), self.seed, self.epoch)

    def __repr__(self) -> str:
        return f'SampleKey({int(self)}, seed={self.seed}, epoch={self.epoch})'


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed from ``(seed, epoch, index)`` (numpy's ``SeedSequence`` hashing, so
    neighbouring indices and epochs give unrelated streams)."""
    words = [int(seed) & 0xFFFFFFFFFFFFFFFF, int(epoch), int(index)]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


@contextmanager
def sample_rng(index):
    """Seed python / numpy / torch (CPU) RNGs for sample ``index`` inside the block.

    A plain ``int`` index (a sampler that is not one of these, direct indexing) leaves the
    RNGs alone: the sample then draws from the process's streams as before. CUDA
    generators are never touched (``torch.manual_seed`` would reseed them too).
    """
    if not isinstance(index, SampleKey):
        yield
        return
    s = sample_seed(index.seed, index.epoch, int(index))
    py_state, np_state = random.getstate(), np.random.get_state()
    torch_state = torch.random.default_generator.get_state()
    random.seed(s)
    np.random.seed(s % (2 ** 32))
    torch.random.default_generator.manual_seed(s)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.random.default_generator.set_state(torch_state)


@DATA_SAMPLERS.register_module()
class DefaultSampler(MMDefaultSampler):
    """mmengine's ``DefaultSampler`` (same order, same rank split) yielding
    :class:`SampleKey` indices; ``skip(n)`` starts the next pass ``n`` samples in."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._skip = 0

    def skip(self, num_samples: int) -> None:
        """The next ``__iter__`` (only) leaves out its first ``num_samples`` indices."""
        if num_samples < 0:
            raise ValueError(f'skip takes a count >= 0, got {num_samples}')
        self._skip = int(num_samples)

    def __iter__(self) -> Iterator[SampleKey]:
        skip, self._skip = self._skip, 0
        seed, epoch = self.seed, self.epoch
        indices = itertools.islice(super().__iter__(), skip, None)
        return iter([SampleKey(i, seed, epoch) for i in indices])


@DATA_SAMPLERS.register_module()
class InfiniteSampler(MMInfiniteSampler):
    """mmengine's ``InfiniteSampler`` (same order, same rank split) yielding
    :class:`SampleKey` indices whose ``epoch`` counts the passes over the data."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._skip = 0

    def _infinite_indices(self) -> Iterator[SampleKey]:
        g = torch.Generator()
        g.manual_seed(self.seed)
        for epoch in itertools.count():
            order = (torch.randperm(self.size, generator=g) if self.shuffle
                     else torch.arange(self.size)).tolist()
            for i in order:
                yield SampleKey(i, self.seed, epoch)

    def skip(self, num_samples: int) -> None:
        """Advance this rank's stream by ``num_samples`` indices without yielding them."""
        next(itertools.islice(self.indices, num_samples, num_samples), None)
