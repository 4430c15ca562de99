"""Momentum distillation (ALBEF, Li et al. 2021, Sec. 3.3), in one place for ITC and MLM.

The momentum ("teacher") encoders' predictions are soft targets mixed with the ground truth
by a weight ``alpha`` (ALBEF: 0.4, ramped up from 0 over the first epoch):

- :func:`mix_soft_targets` (ITC): the targets are mixed, ``alpha * softmax(s_m) +
  (1 - alpha) * y`` with ``s_m`` the momentum features' (scaled) similarities to the same
  columns (ALBEF's ``sim_i2t_targets``);
- :func:`distilled_cross_entropy` (MLM): the losses are mixed, ``(1 - alpha) CE(z, y) +
  alpha * H(softmax(z_m), softmax(z))`` (ALBEF's ``loss_mlm`` with ``loss_distill``).

Both are the same objective (cross-entropy is linear in its target); each is written as
ALBEF's code writes it, so the losses match the reference to the last bit.

:class:`DistillationSchedule` holds the current ``alpha``: a model with momentum
distillation owns one, and :class:`~vlp.engine.hooks.DistillAlphaHook` finds it by type and
calls :meth:`DistillationSchedule.set_alpha` (its protocol; no model attribute is set).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def mix_soft_targets(hard: torch.Tensor, teacher_logits: torch.Tensor,
                     alpha: float) -> torch.Tensor:
    """``alpha * softmax(teacher_logits) + (1 - alpha) * hard`` along the last dim (rows of
    ``hard [R, C]`` sum to 1)."""
    return alpha * teacher_logits.softmax(dim=1) + (1 - alpha) * hard


def distilled_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                            teacher_logits: Optional[torch.Tensor] = None,
                            alpha: float = 0.0) -> torch.Tensor:
    """Cross-entropy of ``logits [M, V]`` against class ids ``target [M]``, mixed with the
    soft cross-entropy against ``softmax(teacher_logits)`` by ``alpha`` (none when
    ``alpha`` is 0 or no teacher is given)."""
    loss = F.cross_entropy(logits, target)
    if alpha > 0 and teacher_logits is not None:
        soft = teacher_logits.float().softmax(dim=-1)
        distill = -(soft * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
        loss = (1 - alpha) * loss + alpha * distill
    return loss


class DistillationSchedule(nn.Module):
    """The distillation weight of a model: ``alpha_max`` once ramped up, the current
    ``alpha`` (set by :class:`~vlp.engine.hooks.DistillAlphaHook`; the full value until a
    hook sets it) and whether distillation is on at all. No state in checkpoints (the hook
    sets ``alpha`` before every iteration, as ALBEF computes it from the iteration).

    Args:
        alpha: the final weight (ALBEF / BLIP: 0.4).
        enabled: ``False`` turns distillation off (:attr:`value` is then 0).
    """

    def __init__(self, alpha: float = 0.4, enabled: bool = True):
        super().__init__()
        self.alpha_max = self.alpha = float(alpha)
        self.enabled = bool(enabled)

    def set_alpha(self, alpha: float) -> None:
        """The protocol of :class:`~vlp.engine.hooks.DistillAlphaHook`."""
        self.alpha = float(alpha)

    @property
    def value(self) -> float:
        """The weight the losses use now: ``alpha``, or 0 when disabled."""
        return self.alpha if self.enabled else 0.0

    def extra_repr(self) -> str:
        return f'alpha={self.alpha:g}, alpha_max={self.alpha_max:g}, enabled={self.enabled}'
