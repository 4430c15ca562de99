"""``WarmupCosineLR``: linear warm-up then cosine decay, computed in closed form from the
base learning rates.

mmengine's ``LinearLR`` / ``CosineAnnealingLR`` are chainable: each step rescales the
current value, so a schedule that starts again in the middle of a run (a new pre-training
stage with its own warm-up, VLMo Sec. 3.3) would start from wherever the previous one
ended. This scheduler sets ``lr = base_lr * f(t)``, ``t`` counted from its ``begin``:
``f`` rises linearly from ``warmup_start_factor`` to 1 over ``warmup_iters`` steps, then
falls along a half cosine to ``eta_min_ratio`` at ``end``. One per stage, with
``begin`` / ``end`` at the stage boundaries, gives every stage the paper's schedule.
"""
import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import _ParamScheduler

from vlp.registry import PARAM_SCHEDULERS


class WarmupCosineParamScheduler(_ParamScheduler):
    """Closed-form warm-up + cosine of any optimizer hyper-parameter (see module doc).

    Args:
        optimizer: the optimizer (wrapper).
        param_name: the scheduled key of the param groups.
        begin, end: steps (iterations unless ``by_epoch``) where it applies; ``end`` is
            required (the cosine's length).
        warmup_iters: warm-up length in steps (0: none).
        warmup_start_factor: factor at the first step of the warm-up.
        eta_min_ratio: factor reached at ``end``.
    """

    def __init__(self, optimizer, param_name: str, *, begin: int = 0, end: int,
                 warmup_iters: int = 0, warmup_start_factor: float = 0.001,
                 eta_min_ratio: float = 0.0, last_step: int = -1, by_epoch: bool = False,
                 verbose: bool = False):
        if not 0 <= warmup_iters <= end - begin:
            raise ValueError(f'warmup_iters must be in [0, end - begin], got {warmup_iters}')
        self.warmup_iters = warmup_iters
        self.warmup_start_factor = warmup_start_factor
        self.eta_min_ratio = eta_min_ratio
        super().__init__(optimizer, param_name, begin=begin, end=end, last_step=last_step,
                         by_epoch=by_epoch, verbose=verbose)

    def factor(self, t: int) -> float:
        if t < self.warmup_iters:
            return self.warmup_start_factor + (1 - self.warmup_start_factor) * \
                t / self.warmup_iters
        span = max(1, self.end - self.begin - self.warmup_iters)
        progress = min(1.0, (t - self.warmup_iters) / span)
        return self.eta_min_ratio + (1 - self.eta_min_ratio) * 0.5 * \
            (1 + math.cos(math.pi * progress))

    def _get_value(self):
        f = self.factor(self.last_step)
        return [base * f for base in self.base_values]


@PARAM_SCHEDULERS.register_module()
class WarmupCosineLR(LRSchedulerMixin, WarmupCosineParamScheduler):
    """:class:`WarmupCosineParamScheduler` of the learning rate."""
