"""RNGStateHook: save every rank's python / numpy / torch / CUDA RNG states in each
checkpoint and restore them on resume, so a resumed run continues the same random
stream (dropout masks, random augmentations in the main process, DataLoader seeds).

When the states are taken and put back matters:

- **Saved**: just before the checkpoint is written. mmengine's ``Runner`` writes on rank 0
  only, so when a :class:`~mmengine.hooks.CheckpointHook` is about to save, this hook
  (priority ``LOW``, before the checkpoint hook's ``VERY_LOW``) all-gathers every rank's
  states first; ``before_save_checkpoint`` then stores them under ``checkpoint['rng_state']``.
- **Restored**: when the resumed run's data stand at the resume point, just before the
  first batch is fetched: vlp's training loops (``vlp.engine.runner.loops``) call the
  resume callback this hook registers in ``before_train_epoch``, after skipping the
  batches already trained. Nothing the uninterrupted run does between the save and that
  point draws from these RNGs: those loops' DataLoader draws its worker seeds from its
  own generator. Other loops: at the first ``before_train_iter`` (after the first fetch).
- **Validation** during training is made RNG-neutral (states stashed in ``before_val``,
  put back in ``after_val``), so whether a validation ran between a checkpoint and the
  next training step does not change the training stream.

A checkpoint loaded with ``load_from`` (not a resume) is recognised by the iteration
count and leaves the RNGs alone. States are stored as tensors and plain Python values,
so weights-only loading needs no extra allow-list.
"""
import random
from typing import Any, Dict, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import CheckpointHook, Hook

from vlp.registry import HOOKS

CKPT_KEY = 'rng_state'


def capture_rng_state() -> Dict[str, Any]:
    """This process's RNG states as tensors and plain Python values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=dict(bit_generator=name, keys=torch.from_numpy(keys.astype(np.int64)),
                   pos=int(pos), has_gauss=int(has_gauss), cached_gaussian=float(cached)),
        torch=torch.get_rng_state(),
        cuda=None)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    npst = state['numpy']
    np.random.set_state((npst['bit_generator'], npst['keys'].cpu().numpy().astype(np.uint32),
                         npst['pos'], npst['has_gauss'], npst['cached_gaussian']))
    torch.set_rng_state(state['torch'].cpu())
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'].cpu())


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Checkpoint and restore the RNG states of every rank (see the module docstring).

    Args:
        isolate_val: make validation during training leave the RNGs as it found them.
    """
    priority = 'LOW'

    def __init__(self, isolate_val: bool = True):
        self.isolate_val = isolate_val
        self._snapshot: Optional[dict] = None  # gathered states about to be saved
        self._pending: Optional[dict] = None  # loaded states waiting for their moment
        self._val_stash: Optional[dict] = None

    # -- saving ------------------------------------------------------------------------
    @staticmethod
    def _checkpoint_due(runner, by_epoch: bool) -> bool:
        """Whether a CheckpointHook saves at the end of this iteration/epoch."""
        for hook in runner.hooks:
            if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
                continue
            if by_epoch:
                due = (hook.every_n_epochs(runner, hook.interval, hook.save_begin)
                       or (hook.save_last and hook.is_last_train_epoch(runner)))
            else:
                due = (hook.every_n_train_iters(runner, hook.interval, hook.save_begin)
                       or (hook.save_last and hook.is_last_train_iter(runner)))
            if due:
                return True
        return False

    def _take_snapshot(self, iters_done: int) -> None:
        _, world_size = get_dist_info()
        local = capture_rng_state()
        states = all_gather_object(local) if world_size > 1 else [local]
        self._snapshot = dict(iter=iters_done, world_size=world_size, states=states)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._checkpoint_due(runner, by_epoch=False):
            self._take_snapshot(runner.iter + 1)

    def after_train_epoch(self, runner) -> None:
        if self._checkpoint_due(runner, by_epoch=True):
            self._take_snapshot(runner.iter)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        iters_done = checkpoint.get('meta', {}).get('iter')
        if self._snapshot is not None and self._snapshot['iter'] == iters_done:
            payload = self._snapshot
        else:
            # a save this hook did not foresee (e.g. the best checkpoint of a validation):
            # only this rank's states are at hand
            rank_state = self._val_stash if self._val_stash is not None else capture_rng_state()
            payload = dict(iter=iters_done, world_size=get_dist_info()[1],
                           states=[rank_state], partial=True)
        checkpoint[CKPT_KEY] = payload

    # -- restoring ---------------------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get(CKPT_KEY)

    def _restore(self, runner) -> None:
        payload, self._pending = self._pending, None
        if payload is None:
            return
        rank, world_size = get_dist_info()
        if payload['iter'] != runner.iter:
            # weights loaded with load_from, or a checkpoint of another iteration
            return
        if payload.get('partial') or payload['world_size'] != world_size:
            runner.logger.warning(
                f'RNG states in the checkpoint are for {payload["world_size"]} rank(s)'
                f'{" (incomplete)" if payload.get("partial") else ""}; running on '
                f'{world_size}: the RNGs are not restored')
            return
        restore_rng_state(payload['states'][rank])
        runner.logger.info(f'Restored the RNG states saved at iteration {payload["iter"]}')

    def before_train_epoch(self, runner) -> None:
        loop = runner.train_loop
        if self._pending is not None and callable(getattr(loop, 'add_resume_callback', None)):
            # vlp's loops call it when the data stand at the resume point, before the
            # first batch is fetched (a main-process fetch may draw from these RNGs)
            loop.add_resume_callback(lambda: self._restore(runner))

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending is not None:  # a loop without resume callbacks
            self._restore(runner)

    # -- validation leaves the training stream untouched --------------------------------
    def before_val(self, runner) -> None:
        if self.isolate_val:
            self._val_stash = capture_rng_state()

    def after_val(self, runner) -> None:
        if self.isolate_val and self._val_stash is not None:
            restore_rng_state(self._val_stash)
        self._val_stash = None
