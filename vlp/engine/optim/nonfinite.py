"""The non-finite guard: a NaN/inf loss or gradient never updates the weights unnoticed.

Every optimizer step checks that the gradients it is about to apply are finite (one global
norm, reused for ``clip_grad`` when that clips by norm; a loss that is NaN or inf shows up
there too, since its gradient is then non-finite). A non-finite step is skipped (no update,
gradients cleared) and counted, like a loss scaler's overflow step, and logged with the
iteration and the loss terms; ``max_consecutive`` skipped steps in a row stop the run with
an error naming the iteration and the loss terms (``action='stop'``: the first one does).
The count is logged as ``nonfinite_skips``.

Configured on the optim wrapper, on by default::

    optim_wrapper = dict(type='OptimWrapper', optimizer=...,
                         nonfinite=dict(action='skip', max_consecutive=10))  # None: off

- ``OptimWrapper`` / ``AmpOptimWrapper`` (vlp's, registered under mmengine's names): the
  check above. Under data parallelism every rank holds the same reduced gradients, so all
  ranks take the same decision without communicating. With an enabled loss scaler (fp16 on
  GPUs) overflow steps are the scaler's business (it skips them and lowers the scale); the
  guard counts the steps whose *loss* is non-finite on any rank and stops after
  ``max_consecutive`` of them.
- ``DeepSpeedOptimWrapper``: the loss is checked before ``backward`` (an all-reduced flag, so
  every rank skips the same micro-step: no rank enters a collective the others skip). A
  finite loss whose gradients overflow is seen after DeepSpeed's step, through its global
  gradient norm (bf16 / fp32; fp16 has DeepSpeed's own loss scaler): the run then stops,
  since DeepSpeed has already applied the update; the checkpoint guard
  (``vlp.engine.hooks.checkpoint``) keeps the non-finite weights off the disk.

Messages name the loss terms of the step (``VLPModel.parse_losses`` keeps them:
``vlp.models.algorithms.base.last_loss_terms``).
"""
import logging
import math
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine._strategy.deepspeed import DeepSpeedOptimWrapper as MMDeepSpeedOptimWrapper
from mmengine.logging import MessageHub, print_log
from mmengine.optim import OptimWrapper as MMOptimWrapper

from vlp.registry import OPTIM_WRAPPERS

DEFAULT = dict(action='skip', max_consecutive=10)


def _format_terms() -> str:
    from vlp.models.algorithms.base import last_loss_terms
    out = []
    for k, v in last_loss_terms().items():
        try:
            out.append(f'{k}={float(v):.4g}')
        except (TypeError, ValueError, RuntimeError):
            continue
    return ', '.join(out) or 'no loss terms recorded'


class NonFiniteError(FloatingPointError):
    """A run stopped by the non-finite guard."""


class NonFiniteGuard:
    """Counts non-finite steps and decides whether the run goes on.

    Args:
        action: ``'skip'`` (skip the step, stop after ``max_consecutive`` in a row) or
            ``'stop'`` (stop at the first one).
        max_consecutive: skipped steps in a row that stop the run.
    """

    def __init__(self, action: str = 'skip', max_consecutive: int = 10):
        if action not in ('skip', 'stop'):
            raise ValueError(f"nonfinite.action must be 'skip' or 'stop', got {action!r}")
        if int(max_consecutive) < 1:
            raise ValueError(f'nonfinite.max_consecutive must be >= 1, got {max_consecutive}')
        self.action, self.max_consecutive = action, int(max_consecutive)
        self.consecutive = 0
        self.skipped = 0

    @staticmethod
    def _iteration() -> str:
        hub = MessageHub.get_current_instance()
        it = hub.get_info('iter')
        return 'unknown' if it is None else str(int(it) + 1)

    def record(self, finite: bool, what: str, can_skip: bool = True) -> bool:
        """Note one step; ``True`` when it was finite. Raises :class:`NonFiniteError` when
        the policy says stop (always when ``can_skip`` is False: the update happened)."""
        hub = MessageHub.get_current_instance()
        if finite:
            self.consecutive = 0
            hub.update_scalar('train/nonfinite_skips', self.skipped)
            return True
        self.consecutive += 1
        self.skipped += 1
        hub.update_scalar('train/nonfinite_skips', self.skipped)
        msg = (f'non-finite {what} at iteration {self._iteration()} ({_format_terms()})')
        if not can_skip or self.action == 'stop' or self.consecutive >= self.max_consecutive:
            why = ('the update was already applied' if not can_skip else
                   f'{self.consecutive} step(s) in a row' if self.action == 'skip' else
                   "nonfinite.action='stop'")
            raise NonFiniteError(
                f'{msg}: stopping ({why}; {self.skipped} non-finite step(s) in this run). '
                'Lower the learning rate, clip gradients (optim_wrapper.clip_grad), use bf16 '
                'instead of fp16, or check the data; then resume from the last checkpoint '
                '(checkpoints are never written with NaN/inf weights).')
        print_log(f'{msg}: step skipped ({self.consecutive} in a row, {self.skipped} in total; '
                  f'the run stops at {self.max_consecutive} in a row)', logger='current',
                  level=logging.WARNING)
        return False


def build_guard(nonfinite) -> Optional[NonFiniteGuard]:
    if nonfinite is None or nonfinite is False:
        return None
    return NonFiniteGuard(**(DEFAULT if nonfinite is True else dict(DEFAULT, **nonfinite)))


def _any_rank(flag: bool, device) -> bool:
    """``flag`` OR-ed over the ranks (one small all-reduce when there are several)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()
            and torch_dist.get_world_size() > 1):
        return flag
    t = torch.tensor([int(flag)], device=device if torch_dist.get_backend() == 'nccl' else 'cpu')
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return bool(t.item())


class GuardedStep:
    """The guard for mmengine-style optim wrappers (mixed in before the wrapper class)."""

    def _setup_guard(self, nonfinite) -> None:
        self.nonfinite_guard = build_guard(nonfinite)
        self._loss_finite: Optional[torch.Tensor] = None

    def _params_with_grad(self):
        return [p for g in self.optimizer.param_groups for p in g['params']
                if p.requires_grad and p.grad is not None]

    def _scaler_enabled(self) -> bool:
        scaler = getattr(self, 'loss_scaler', None)
        return scaler is not None and getattr(scaler, 'is_enabled', lambda: True)()

    def update_params(self, loss, step_kwargs=None, zero_kwargs=None) -> None:
        if self.nonfinite_guard is not None:  # a tensor: no synchronisation here
            ok = torch.isfinite(loss.detach()).all()
            self._loss_finite = ok if self._loss_finite is None else self._loss_finite & ok
        super().update_params(loss, step_kwargs=step_kwargs, zero_kwargs=zero_kwargs)

    def _guarded_norm(self, params):
        """The global gradient norm (``clip_grad``'s norm type if it clips by norm)."""
        kw = self.clip_grad_kwargs or {}
        norm_type = float(kw.get('norm_type', 2.0)) if self._clips_by_norm() else 2.0
        grads = [p.grad for p in params]
        return torch.nn.utils.get_total_norm(grads, norm_type=norm_type,
                                             foreach=kw.get('foreach'))

    def _clips_by_norm(self) -> bool:
        return bool(self.clip_grad_kwargs) and self.clip_func is torch.nn.utils.clip_grad_norm_

    def step(self, **kwargs) -> None:
        guard = self.nonfinite_guard
        loss_ok, self._loss_finite = self._loss_finite, None
        if guard is None:
            return super().step(**kwargs)
        if self._scaler_enabled():  # fp16 loss scaling: overflow steps are the scaler's
            bad_loss = loss_ok is not None and not bool(loss_ok)
            guard.record(not _any_rank(bad_loss, loss_ok.device if loss_ok is not None else 'cpu'),
                         'loss' if bad_loss else 'loss on another rank')
            return super().step(**kwargs)
        params = self._params_with_grad()
        if not params:
            return super().step(**kwargs)
        norm = self._guarded_norm(params)
        finite = torch.isfinite(norm)
        if loss_ok is not None:  # a NaN loss term without gradient is caught here
            finite = finite & loss_ok.to(finite.device)
        # the gradients are the same on every rank, a loss need not be: one decision for all
        local_ok = bool(finite)
        if not guard.record(not _any_rank(not local_ok, norm.device),
                            f'loss or gradient (global grad norm {float(norm):.4g})' if not local_ok
                            else 'loss on another rank'):
            return  # update_params clears the gradients next
        self._step_with_norm(params, norm, **kwargs)

    def _step_with_norm(self, params, norm, **kwargs) -> None:
        super().step(**kwargs)


@OPTIM_WRAPPERS.register_module(name='OptimWrapper')
class OptimWrapper(GuardedStep, MMOptimWrapper):
    """mmengine's ``OptimWrapper`` with the non-finite guard (module docstring).

    Args:
        nonfinite: ``dict(action='skip' | 'stop', max_consecutive=N)``, ``None`` to turn
            the guard off. Other arguments: mmengine's.
    """

    def __init__(self, *args, nonfinite=DEFAULT, **kwargs):
        super().__init__(*args, **kwargs)
        self._setup_guard(nonfinite)

    def _step_with_norm(self, params, norm, **kwargs) -> None:
        if self._clips_by_norm():  # clip with the norm already computed (one pass, not two)
            kw = self.clip_grad_kwargs
            torch.nn.utils.clip_grads_with_norm_(params, kw['max_norm'], norm,
                                                 foreach=kw.get('foreach'))
            self.message_hub.update_scalar(f'train/{self.grad_name}', float(norm))
            self.optimizer.step(**kwargs)
        else:
            MMOptimWrapper.step(self, **kwargs)


@OPTIM_WRAPPERS.register_module(name='DeepSpeedOptimWrapper')
class DeepSpeedOptimWrapper(MMDeepSpeedOptimWrapper):
    """mmengine's ``DeepSpeedOptimWrapper`` with the non-finite guard (module docstring)."""

    def __init__(self, optimizer, nonfinite=DEFAULT):
        super().__init__(optimizer)
        self.nonfinite_guard = build_guard(nonfinite)

    def update_params(self, loss) -> None:
        guard = self.nonfinite_guard
        if guard is None:
            return super().update_params(loss)
        local_bad = not bool(torch.isfinite(loss.detach()).all())
        bad = _any_rank(local_bad, loss.device)
        if not guard.record(not bad, 'loss' if local_bad else 'loss on another rank'):
            return  # every rank skips this micro-step's backward and step
        self.backward(loss)
        self.step()
        engine = self.model
        if getattr(engine, 'fp16_enabled', lambda: False)():
            return  # DeepSpeed's loss scaler skips overflow steps itself
        norm = engine.get_global_grad_norm()  # of the latest optimizer step (None before)
        if norm is not None and not math.isfinite(float(norm)):
            guard.record(False, f'gradient (global grad norm {float(norm)})', can_skip=False)
