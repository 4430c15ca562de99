"""Hooks of the momentum-distillation models (ALBEF, BLIP, ...).

- :class:`MomentumUpdateHook`: after every optimizer step, the EMA update of each momentum
  twin the model lists in ``momentum_pairs()`` (ALBEF / BLIP / MoCo:
  ``theta_m <- m theta_m + (1 - m) theta``, m = 0.995), with an optional cosine schedule of
  ``m`` towards 1 (BYOL, Grill et al. 2020).
- :class:`FeatureQueueHook`: after every training iteration, every
  :class:`~vlp.models.utils.FeatureQueue` in the model enqueues the features its model
  staged during the step, all-gathered from every rank (ALBEF's ``_dequeue_and_enqueue``).
- :class:`DistillAlphaHook`: ALBEF's ramp of the distillation weight ``alpha`` from 0 to
  its value over the first epoch (``alpha * min(1, i / len(loader))``).
- :class:`ITMNegativeWarmupHook`: uniform ITM negatives for the first iterations.

The hooks talk to the model through declared protocols only, never by setting attributes:
``model.momentum_pairs()`` (a :class:`~vlp.models.algorithms.base.VLPModel` method), and
parts found by type, as mmengine's ``EMAHook`` finds its model:
:class:`~vlp.models.utils.feature_queue.FeatureQueue` (``commit`` / ``discard``),
:class:`~vlp.models.losses.distill.DistillationSchedule` (``set_alpha``) and
:class:`~vlp.models.losses.matching.ITMLoss` (``set_hard_negatives``). A model without the
part a hook needs is an error naming the model when training starts.

All four work on the bare model inside DDP / DeepSpeed wrappers; the EMA runs on the
local ZeRO-3 partitions when parameters are partitioned. With gradient accumulation the
EMA runs only on iterations where the optimizer stepped.
"""
import math
import warnings
from typing import List, Optional

import torch.nn as nn
from mmengine.hooks import Hook

from vlp.registry import HOOKS
from .zero_shot import unwrap_model


def find_deepspeed_engine(model: nn.Module):
    """The ``DeepSpeedEngine`` inside mmengine's wrapper, or ``None``."""
    seen = set()
    obj = model
    while obj is not None and id(obj) not in seen:
        seen.add(id(obj))
        if hasattr(obj, 'global_steps') and hasattr(obj, 'is_gradient_accumulation_boundary'):
            return obj
        obj = getattr(obj, 'model', None) if not hasattr(obj, 'module') else obj.module
    return None


def find_parts(model: nn.Module, part_type: type, hook: str) -> List[nn.Module]:
    """The modules of ``part_type`` in the (unwrapped) model; a ``TypeError`` naming the
    hook, the model and the part when there is none."""
    model = unwrap_model(model)
    parts = [m for m in model.modules() if isinstance(m, part_type)]
    if not parts:
        raise TypeError(f'{hook}: {type(model).__name__} has no {part_type.__name__} (the '
                        'part this hook drives)')
    return parts


class _StepTracker:
    """Tells, after a training iteration, whether the optimizer stepped in it."""

    def __init__(self):
        self._last_global_steps = None

    def stepped(self, runner) -> bool:
        engine = find_deepspeed_engine(runner.model)
        if engine is not None:
            steps = int(engine.global_steps)
            changed = self._last_global_steps is None or steps != self._last_global_steps
            self._last_global_steps = steps
            return changed
        should_update = getattr(runner.optim_wrapper, 'should_update', None)
        return bool(should_update()) if callable(should_update) else True


@HOOKS.register_module()
class MomentumUpdateHook(Hook):
    """EMA of the model's momentum twins after each optimizer step.

    Args:
        momentum: the EMA coefficient ``m`` (ALBEF / BLIP: 0.995).
        schedule: ``'constant'`` or ``'cosine'``: ``m_t = 1 - (1 - m) (cos(pi t / T) + 1)
            / 2`` over the ``T`` training iterations (BYOL), ending at 1.
        interval: update every ``interval`` optimizer steps (with ``m`` as given).

    The model must list its twins in ``momentum_pairs() -> [(online, twin), ...]``.
    """
    priority = 'NORMAL'

    def __init__(self, momentum: float = 0.995, schedule: str = 'constant',
                 interval: int = 1):
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f'momentum must be in [0, 1], got {momentum}')
        if schedule not in ('constant', 'cosine'):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
        self.momentum = momentum
        self.schedule = schedule
        self.interval = interval
        self._tracker = _StepTracker()
        self._steps = 0
        self.current_momentum = momentum

    def before_train(self, runner) -> None:
        model = unwrap_model(runner.model)
        if not callable(getattr(model, 'momentum_pairs', None)) or not model.momentum_pairs():
            raise TypeError(f'MomentumUpdateHook: {type(model).__name__} has no momentum '
                            'twins (momentum_pairs() is missing or empty)')
        engine = find_deepspeed_engine(runner.model)
        self._tracker._last_global_steps = (int(engine.global_steps) if engine is not None
                                            else None)

    def momentum_at(self, iteration: int, max_iters: int) -> float:
        if self.schedule == 'constant' or max_iters <= 0:
            return self.momentum
        progress = min(1.0, iteration / max_iters)
        return 1.0 - (1.0 - self.momentum) * (math.cos(math.pi * progress) + 1) / 2

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self._tracker.stepped(runner):
            return
        self._steps += 1
        if self._steps % self.interval:
            return
        from vlp.models.utils.momentum import ema_update
        model = unwrap_model(runner.model)
        self.current_momentum = self.momentum_at(runner.iter, runner.max_iters)
        ema_update(model.momentum_pairs(), self.current_momentum)


@HOOKS.register_module()
class FeatureQueueHook(Hook):
    """Commit the features staged by the model into every ``FeatureQueue`` of the model
    after each training iteration (all ranks take part: the rows are all-gathered).

    Args:
        start_iter: iterations before the first commit (their staged rows are dropped).
            0 (ALBEF / BLIP) enqueues from the first step. With a queue built with
            ``init='empty'`` the queue then contributes no negatives for the first
            ``start_iter`` steps: a warm-up for models trained from scratch, whose early
            features are near-copies of each other (not in the papers).
    """
    priority = 'NORMAL'

    def __init__(self, start_iter: int = 0):
        if start_iter < 0:
            raise ValueError(f'start_iter must be >= 0, got {start_iter}')
        self.start_iter = int(start_iter)

    def _queues(self, runner):
        from vlp.models.utils.feature_queue import FeatureQueue
        return find_parts(runner.model, FeatureQueue, 'FeatureQueueHook')

    def before_train(self, runner) -> None:
        self._queues(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        # runner.iter is the index of the iteration that just ran
        commit = runner.iter >= self.start_iter
        for queue in self._queues(runner):
            if commit:
                queue.commit()
            else:
                queue.discard()

    def before_val(self, runner) -> None:
        for queue in self._queues(runner):
            queue.discard()  # nothing staged in eval mode; be safe after an interruption


@HOOKS.register_module()
class DistillAlphaHook(Hook):
    """Ramp the model's distillation weight: ``alpha_i = alpha * min(1, i / warmup)``,
    through :meth:`DistillationSchedule.set_alpha` of every such part of the model.

    Args:
        alpha: the final value (``None``: each schedule's ``alpha_max``).
        warmup_iters: iterations of the ramp; ``None``: one epoch (the length of the
            training dataloader), as ALBEF.
        attr: deprecated, ignored (the hook once set this model attribute).
    """
    priority = 'NORMAL'

    def __init__(self, alpha: Optional[float] = None, warmup_iters: Optional[int] = None,
                 attr: Optional[str] = None):
        if attr is not None:
            warnings.warn('DistillAlphaHook(attr=...) is deprecated and ignored: the hook '
                          'drives the model\'s DistillationSchedule', DeprecationWarning)
        self.alpha = alpha
        self.warmup_iters = warmup_iters

    def _warmup(self, runner) -> int:
        if self.warmup_iters is not None:
            return int(self.warmup_iters)
        try:
            return len(runner.train_dataloader)
        except TypeError as e:
            raise ValueError('DistillAlphaHook: the training dataloader has no length; set '
                             'warmup_iters') from e

    def _schedules(self, runner):
        from vlp.models.losses.distill import DistillationSchedule
        return find_parts(runner.model, DistillationSchedule, 'DistillAlphaHook')

    def before_train(self, runner) -> None:
        self._schedules(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        warmup = self._warmup(runner)
        ramp = 1.0 if warmup <= 0 else min(1.0, runner.iter / warmup)
        for schedule in self._schedules(runner):
            target = self.alpha if self.alpha is not None else schedule.alpha_max
            schedule.set_alpha(target if warmup <= 0 else target * ramp)


@HOOKS.register_module()
class ITMNegativeWarmupHook(Hook):
    """Draw ITM negatives uniformly (not by ITC similarity) for the first ``iters``
    iterations, then hard negatives as the paper, through
    :meth:`ITMLoss.set_hard_negatives` of every such part of the model. A warm-up for
    fusion encoders trained from scratch, whose ITM head otherwise sits at the class prior
    while the ITC similarities already pick near-duplicate negatives (not in ALBEF / BLIP,
    which start from pretrained encoders).
    """
    priority = 'NORMAL'

    def __init__(self, iters: int):
        if iters < 0:
            raise ValueError(f'iters must be >= 0, got {iters}')
        self.iters = int(iters)

    def _losses(self, runner):
        from vlp.models.losses.matching import ITMLoss
        return find_parts(runner.model, ITMLoss, 'ITMNegativeWarmupHook')

    def before_train(self, runner) -> None:
        self._losses(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        for itm in self._losses(runner):
            itm.set_hard_negatives(runner.iter >= self.iters)
