"""Training loops that resume where they stopped; validation / test loops that hand the
model to metrics that need it.

``EpochBasedTrainLoop`` / ``IterBasedTrainLoop`` are mmengine's, registered in vlp's scope
under the same names, with exact resume: a mid-epoch checkpoint resumes at its next batch,
the batches already trained are skipped by the sampler instead of being loaded, and the
DataLoader draws its worker seeds from its own generator (not the training RNG).

ITM re-ranked retrieval (:class:`~vlp.evaluation.ITMRetrievalMetric`) runs the model's
fusion encoder on the top-k candidates after all features are collected, so its metric
needs the model. ``RetrievalValLoop`` / ``RetrievalTestLoop`` are mmengine's ``ValLoop`` /
``TestLoop`` that first call ``metric.bind_model(runner.model)`` on every metric that has
``bind_model`` (as mmpretrain's retrieval loops feed the model to ITM re-ranking).
"""
import logging
from typing import Iterator, Optional

import torch
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop as MMEpochBasedTrainLoop
from mmengine.runner import IterBasedTrainLoop as MMIterBasedTrainLoop
from mmengine.runner import TestLoop, ValLoop

from vlp.datasets.samplers import InfiniteSampler
from vlp.registry import LOOPS


def _bind(loop) -> None:
    for metric in getattr(loop.evaluator, 'metrics', []):
        if callable(getattr(metric, 'bind_model', None)):
            metric.bind_model(loop.runner.model)


@LOOPS.register_module()
class RetrievalValLoop(ValLoop):
    """``ValLoop`` that binds the model to metrics needing it (ITM re-ranking)."""

    def run(self) -> dict:
        _bind(self)
        return super().run()


@LOOPS.register_module()
class RetrievalTestLoop(TestLoop):
    """``TestLoop`` that binds the model to metrics needing it (ITM re-ranking)."""

    def run(self) -> dict:
        _bind(self)
        return super().run()


# ------------------------------------------------------------------------------ training
def _seed_loader_generator(loop) -> None:
    """Give the train DataLoader its own ``torch.Generator``.

    Each new DataLoader iterator draws its workers' base seed; without a generator the draw
    comes from the global torch RNG, i.e. the training stream (dropout, masks): once per
    epoch with non-persistent workers, once per run with persistent ones, once more in a
    resumed run. With a loop-owned generator the training stream does not depend on the
    worker settings or on where a run was resumed. (Per-sample randomness comes from the
    sampler's keys: vlp/datasets/samplers.py.)
    """
    loader = loop.dataloader
    if getattr(loader, 'generator', None) is None:
        seed = loop.runner.seed if loop.runner.seed is not None else 0
        loader.generator = torch.Generator().manual_seed(int(seed) + 0x5EED)


def _batch_size(loader) -> Optional[int]:
    """Samples per batch when the batches are consecutive runs of the sampler's indices."""
    from torch.utils.data import BatchSampler
    bs = getattr(loader, 'batch_sampler', None)
    if type(bs) is BatchSampler and loader.batch_size is not None:
        return loader.batch_size
    return None


def skip_batches(loader, num_batches: int) -> Optional[Iterator]:
    """An iterator over ``loader`` that starts ``num_batches`` batches in, without loading
    the batches before (the sampler's ``skip``), or ``None`` when the sampler or batch
    sampler cannot skip (the caller then loads and drops them)."""
    sampler = getattr(loader, 'sampler', None)
    bs = _batch_size(loader)
    if num_batches == 0:
        return iter(loader)
    if bs is None or not callable(getattr(sampler, 'skip', None)):
        return None
    if isinstance(sampler, InfiniteSampler):
        sampler.indices = sampler._indices_of_rank()  # a fresh stream, as at construction
    sampler.skip(num_batches * bs)
    return iter(loader)


class _ResumeCallbacks:
    """The loop's promise to hooks: functions added with :meth:`add_resume_callback` run
    once, when the data stream stands at the resume point and before its first batch is
    fetched (the moment that matches the uninterrupted run's state after the save: the
    ``RNGStateHook`` restores the RNGs there)."""

    def add_resume_callback(self, fn) -> None:
        self.__dict__.setdefault('_resume_callbacks', []).append(fn)

    def _run_resume_callbacks(self) -> None:
        callbacks, self._resume_callbacks = self.__dict__.get('_resume_callbacks', []), []
        for fn in callbacks:
            fn()


@LOOPS.register_module()
class EpochBasedTrainLoop(_ResumeCallbacks, MMEpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop`` that resumes a mid-epoch checkpoint at its next
    batch (mmengine's restarts the epoch from its first batch, training those batches
    twice), and owns its DataLoader's seed generator (:func:`_seed_loader_generator`).

    The batches already trained are left out by the sampler (vlp's ``DefaultSampler.skip``),
    not loaded; with a sampler that cannot skip they are loaded and dropped (logged).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _seed_loader_generator(self)

    def run_epoch(self) -> None:
        per_epoch = len(self.dataloader)
        start = self._iter - self._epoch * per_epoch  # batches of this epoch already trained
        if start == per_epoch and per_epoch > 0:
            # saved by an iteration-based checkpoint after the epoch's last batch, before its
            # end-of-epoch hooks: run those (validation, epoch checkpoint, schedulers) only
            self.runner.call_hook('before_train_epoch')
            self._run_resume_callbacks()
            self.runner.call_hook('after_train_epoch')
            self._epoch += 1
            return
        if not 0 <= start < per_epoch:
            if start != 0:
                print_log(f'Resumed at iteration {self._iter}, epoch {self._epoch}, which does '
                          f'not fall in that epoch with {per_epoch} batches per epoch (another '
                          'batch size or dataset?): the epoch starts at its first batch',
                          logger='current', level=logging.WARNING)
            start = 0
        self.runner.call_hook('before_train_epoch')  # sets the sampler's epoch
        self.runner.model.train()
        batches = skip_batches(self.dataloader, start)
        if batches is None:
            print_log(f'{type(self.dataloader.sampler).__name__} cannot skip: loading and '
                      f'dropping the {start} batches already trained in this epoch',
                      logger='current', level=logging.WARNING)
            batches = iter(self.dataloader)
            for _ in range(start):
                next(batches)
        elif start:
            print_log(f'Resuming epoch {self._epoch + 1} at batch {start + 1} of {per_epoch}',
                      logger='current')
        self._run_resume_callbacks()
        for idx, data_batch in enumerate(batches, start):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


@LOOPS.register_module()
class IterBasedTrainLoop(_ResumeCallbacks, MMIterBasedTrainLoop):
    """mmengine's ``IterBasedTrainLoop`` whose resume moves the sampler to the right place
    (pass over the data and position in it) instead of loading every batch already trained
    (mmengine loads them all: hours for a long run); owns its DataLoader's seed generator.
    Falls back to mmengine's loading when the sampler cannot skip."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _seed_loader_generator(self)

    def _seek(self, num_batches: int) -> bool:
        loader, it = self.dataloader, self.dataloader_iterator
        sampler = getattr(loader, 'sampler', None)
        if isinstance(sampler, InfiniteSampler):
            epoch, offset = 0, num_batches
        else:
            try:
                per_epoch = len(loader)
            except TypeError:
                return False
            epoch, offset = divmod(num_batches, per_epoch)
            if hasattr(sampler, 'set_epoch'):
                sampler.set_epoch(epoch)
        batches = skip_batches(loader, offset)
        if batches is None:
            return False
        it._epoch, it._iterator = epoch, batches
        print_log(f'Resuming at iteration {num_batches}: pass {epoch + 1} over the data, '
                  f'batch {offset + 1} (earlier batches skipped by the sampler, not loaded)',
                  logger='current')
        return True

    def run(self) -> None:
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0 and not self._seek(self._iter):
            print_log(f'Advance dataloader {self._iter} steps to skip data that has already '
                      'been trained (the sampler cannot skip)', logger='current',
                      level=logging.WARNING)
            for _ in range(self._iter):
                next(self.dataloader_iterator)
        self._run_resume_callbacks()
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model
