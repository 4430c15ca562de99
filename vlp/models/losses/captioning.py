"""Captioning (language-modelling) loss: token-level cross-entropy of next-token logits.

The objective of every image-conditioned text decoder in vlp: CoCa's captioning loss
(Yu et al. 2022, Sec. 3.1, Eq. 2: ``-sum_t log P(y_t | y_<t, x)``), BLIP's LM loss (Li et
al. 2022, Sec. 3.2, with label smoothing 0.1), BLIP-2's generative loss. The loss sees
tensors, never the model: callers align the inputs and the targets themselves
(``logits = decoder(ids)[:, :-1]``, ``labels = ids[:, 1:]`` with padding, prompts or
anything else not to be predicted set to ``ignore_index``); nothing is shifted here.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from vlp.registry import MODELS


@MODELS.register_module()
class CaptionLoss(nn.Module):
    """Mean cross-entropy over the non-ignored tokens of a batch.

    Args:
        label_smoothing: mass moved from the target to a uniform distribution over the
            vocabulary, with the semantics of ``F.cross_entropy(label_smoothing=...)``:
            per token ``(1 - eps) * (-log p_y) + eps * mean_v(-log p_v)`` (BLIP: 0.1; CoCa: 0).
        ignore_index: label value that contributes nothing (padding, prompt tokens).

    ``forward(logits [B, T, V], labels [B, T]) -> scalar``: the mean over every
    non-ignored token of the batch (a token mean, not a mean of per-caption means),
    computed in at least float32. A batch without any target token gives a zero that
    still depends on ``logits`` (no NaN, gradients of zero).
    """

    def __init__(self, label_smoothing: float = 0.0, ignore_index: int = -100):
        super().__init__()
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f'label_smoothing must be in [0, 1], got {label_smoothing}')
        self.label_smoothing = float(label_smoothing)
        self.ignore_index = int(ignore_index)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 3 or labels.shape != logits.shape[:2]:
            raise ValueError(f'expected logits [B, T, V] and labels [B, T], got '
                             f'{tuple(logits.shape)} and {tuple(labels.shape)}')
        flat = logits.reshape(-1, logits.shape[-1])  # (B*T, V)
        if flat.dtype in (torch.float16, torch.bfloat16):
            flat = flat.float()
        target = labels.reshape(-1).long()
        if not (target != self.ignore_index).any():
            return flat.sum() * 0.0
        return F.cross_entropy(flat, target, ignore_index=self.ignore_index,
                               label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return f'label_smoothing={self.label_smoothing}, ignore_index={self.ignore_index}'
