"""``CheckpointHook``: saves that a kill, a full disk or a NaN cannot turn into a lost run.

mmengine 0.10.7's ``CheckpointHook`` deletes the oldest checkpoint *before* writing the new
one, writes in place, and writes ``last_checkpoint`` in place: with ``max_keep_ckpts=1`` a
kill during a save leaves no complete checkpoint and a ``last_checkpoint`` naming a file
that is gone. This subclass, registered in vlp's scope under mmengine's name (configs keep
``type='CheckpointHook'``):

- writes every checkpoint under a temporary name and renames it when complete (plain files:
  :class:`vlp.engine.safe_io.AtomicLocalBackend`; DeepSpeed directories: the strategy's
  ``save_checkpoint``);
- removes old checkpoints (``max_keep_ckpts``, the previous best) only after the new one is
  complete, and rewrites ``last_checkpoint`` atomically;
- refuses to write a checkpoint whose parameters or buffers hold NaN/inf: the run stops with
  the iteration and the tensors at fault, and the newest checkpoint on disk stays the last
  finite one.

:func:`find_resumable_checkpoint` is what ``tools/train.py --resume`` uses: the checkpoint
``last_checkpoint`` names if it is complete, else the newest complete one in the folder;
truncated files, DeepSpeed directories missing their model states and temporary names are
reported and never picked.
"""
import os
import os.path as osp
import re
import shutil
import zipfile
from contextlib import contextmanager
from typing import List, Optional, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook as MMCheckpointHook
from mmengine.logging import print_log

from vlp.engine.safe_io import atomic_write_text, is_temp_name
from vlp.registry import HOOKS

_CKPT_NAME = re.compile(r'^(epoch|iter)_\d+(\.pth)?$')
_DS_MODEL_STATES = ('mp_rank_00_model_states.pt', 'zero_pp_rank_0_mp_rank_00_model_states.pt')


class _DeferredRemovals:
    """A file backend whose ``remove`` / ``rmtree`` wait in a list (delegates the rest)."""

    def __init__(self, backend, pending: list):
        self._backend, self._pending = backend, pending

    def remove(self, path) -> None:
        self._pending.append(('remove', path))

    def rmtree(self, path) -> None:
        self._pending.append(('rmtree', path))

    def __getattr__(self, name):
        return getattr(self._backend, name)


def non_finite_tensors(module: torch.nn.Module, limit: int = 5) -> Tuple[int, List[str]]:
    """(number of parameters / buffers holding NaN or inf, the first names) over all
    ranks (every rank must call it). ZeRO-3 partitions are checked where they live."""
    bad = []
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        t = getattr(t, 'ds_tensor', t)  # ZeRO-3: this rank's partition
        if t is not None and t.is_floating_point() and t.numel() and \
                not bool(torch.isfinite(t).all()):
            bad.append(name)
    count = torch.tensor([len(bad)], dtype=torch.long)
    if torch_dist.is_available() and torch_dist.is_initialized() and \
            torch_dist.get_world_size() > 1:
        if torch_dist.get_backend() == 'nccl':
            count = count.cuda()
        torch_dist.all_reduce(count)
    return int(count.item()), bad[:limit]


def _bare_module(model) -> torch.nn.Module:
    while isinstance(getattr(model, 'module', None), torch.nn.Module):
        model = model.module
    return model


@HOOKS.register_module(name='CheckpointHook')
class CheckpointHook(MMCheckpointHook):
    """mmengine's ``CheckpointHook`` with atomic saves, removal after completion and a
    non-finite guard (see the module docstring). Same arguments."""

    _depth = 0

    @contextmanager
    def _removals_after_save(self):
        """Hold back the removals mmengine makes before a save until the save is complete;
        a failed save keeps every old checkpoint."""
        outer = self._depth == 0
        if outer:
            self._pending: list = []
            self._real_backend = self.file_backend
            self.file_backend = _DeferredRemovals(self._real_backend, self._pending)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if outer:
                self.file_backend = self._real_backend
        if outer and is_main_process():
            for op, path in self._pending:
                if op == 'remove' and self.file_backend.isfile(path):
                    self.file_backend.remove(path)
                elif self.file_backend.isdir(path):
                    self.file_backend.rmtree(path)

    def _refuse_non_finite(self, runner, what: str) -> None:
        count, names = non_finite_tensors(_bare_module(runner.model))
        if count:
            last = self.last_ckpt or 'none was saved in this run'
            raise RuntimeError(
                f'Refusing to save {what} at iteration {runner.iter + 1}: {count} parameter(s) '
                f'or buffer(s) hold NaN/inf (e.g. {", ".join(names) or "on another rank"}). '
                f'The newest checkpoint ({last}) is the last finite one: resume from it with a '
                'lower learning rate, gradient clipping or bf16 instead of fp16.')

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not is_main_process():
            return
        for path in remove_stale_temporaries(self.out_dir):
            runner.logger.warning(f'Removed {path}, left by a save that did not finish')
        keep = list(getattr(self, 'keep_ckpt_ids', []))
        if self.max_keep_ckpts > 0 and keep:
            # a run killed between a save and its pruning left older checkpoints that the
            # restored keep list no longer names: finish the pruning (older ones only)
            for step in range(1, max(keep)):
                path = osp.join(self.out_dir, self.filename_tmpl.format(step))
                if step not in keep and osp.exists(path):
                    (shutil.rmtree if osp.isdir(path) else os.remove)(path)
                    runner.logger.info(f'Removed {path} (max_keep_ckpts={self.max_keep_ckpts}; '
                                       'its removal was interrupted)')

    def _save_checkpoint_with_step(self, runner, step, meta):
        self._refuse_non_finite(runner, self.filename_tmpl.format(step))
        with self._removals_after_save():
            super()._save_checkpoint_with_step(runner, step, meta)
            if is_main_process():
                # mmengine wrote it in place; the atomic rewrite leaves a complete file
                atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not self.save_best:
            return
        self._refuse_non_finite(runner, 'the best checkpoint')
        with self._removals_after_save():
            super()._save_best_checkpoint(runner, metrics)


# ------------------------------------------------------------------ picking a checkpoint
def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from (``None`` when it is complete): missing, a
    temporary name, a truncated or corrupted file, a DeepSpeed directory without model
    states or with an unreadable file."""
    name = osp.basename(path.rstrip(os.sep))
    if is_temp_name(name):
        return 'a temporary file of an unfinished save'
    if osp.isdir(path):
        states = [s for s in _DS_MODEL_STATES if osp.isfile(osp.join(path, s))]
        if not states:
            return f'a directory without DeepSpeed model states ({" or ".join(_DS_MODEL_STATES)})'
        for f in sorted(os.listdir(path)):
            if f.endswith('.pt'):
                try:
                    with zipfile.ZipFile(osp.join(path, f)) as z:
                        z.namelist()
                except (zipfile.BadZipFile, OSError) as exc:
                    return f'{f} is truncated or corrupted ({exc})'
        return None
    if not osp.isfile(path):
        return 'not found'
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()  # reads every member and checks its CRC
            if bad is not None:
                return f'member {bad} is corrupted'
            if not any(n.endswith('data.pkl') for n in z.namelist()):
                return 'not a torch checkpoint (no data.pkl)'
    except (zipfile.BadZipFile, OSError) as exc:
        return f'truncated or corrupted ({exc})'
    return None


def find_resumable_checkpoint(work_dir: str, logger=None) -> Optional[str]:
    """The checkpoint to resume ``work_dir``'s run from: what ``last_checkpoint`` names if it
    is complete, else the newest complete ``epoch_*`` / ``iter_*`` checkpoint (by completion
    time) in the folders of ``work_dir`` and of ``last_checkpoint``'s target. Incomplete ones
    are reported. ``None`` when the folder holds no checkpoint at all; an error when it holds
    checkpoints but none is complete."""
    def log(msg, level='WARNING'):
        print_log(msg, logger=logger or 'current', level=getattr(__import__('logging'), level))

    named = None
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            named = f.read().strip() or None
        if named is not None:
            problem = checkpoint_problem(named)
            if problem is None:
                return named
            log(f'last_checkpoint names {named}, which cannot be resumed from ({problem}); '
                'looking for the newest complete checkpoint')
        else:
            log(f'{marker} is empty (a save was interrupted); looking for the newest complete '
                'checkpoint')
    folders = {work_dir} | ({osp.dirname(named)} if named else set())
    candidates = []
    for folder in folders:
        if not osp.isdir(folder):
            continue
        for name in os.listdir(folder):
            path = osp.join(folder, name)
            if _CKPT_NAME.match(name) and path != named:
                candidates.append((osp.getmtime(path), path))
    found = []
    for _, path in sorted(candidates, reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            log(f'Resuming from {path}, the newest complete checkpoint', level='INFO')
            return path
        found.append(f'{path}: {problem}')
        log(f'Skipping {path}: {problem}')
    if found or named:
        raise FileNotFoundError(
            f'--resume: no complete checkpoint in {sorted(folders)}: ' + '; '.join(
                found + ([f'{named}: named by last_checkpoint'] if named else [])) +
            '. Start without --resume, or give --resume a checkpoint path.')
    return None


def remove_stale_temporaries(folder: str) -> List[str]:
    """Remove the temporary files / directories unfinished saves left in ``folder``."""
    removed = []
    if not osp.isdir(folder):
        return removed
    for name in os.listdir(folder):
        if is_temp_name(name):
            path = osp.join(folder, name)
            (shutil.rmtree if osp.isdir(path) else os.remove)(path)
            removed.append(path)
    return removed
