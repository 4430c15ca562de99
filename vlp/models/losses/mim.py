"""Masked image modelling (MIM): the regression target and the loss over the masked
patches (BEiT, Bao et al. 2022; VLMo's image stage; BEiT-3's ``'image'`` mode).

- :class:`PixelTarget`: MAE's regression target (He et al. 2022, Sec. 3): each patch's
  pixels normalised by the patch's own mean and variance, the alternative when no visual
  tokenizer is at hand (the frozen tokenizers are in
  :mod:`vlp.models.backbones.visual_tokenizers`);
- :func:`mim_loss`: cross-entropy against visual tokens, or the mean squared error against
  regression targets.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from vlp.registry import MODELS
from ..backbones.visual_tokenizers import _FrozenTarget, patchify


@MODELS.register_module()
class PixelTarget(_FrozenTarget):
    """MAE's regression target: each patch's pixels, normalised per patch.

    Args:
        patch_size, in_chans: patching of the input.
        norm_pix: normalise by the patch's mean and variance (MAE's default; eps 1e-6).
    """

    def __init__(self, patch_size: int = 16, in_chans: int = 3, norm_pix: bool = True):
        super().__init__()
        self.patch_size, self.norm_pix = patch_size, norm_pix
        self.target_dim = patch_size * patch_size * in_chans
        self._freeze(None)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = patchify(images.float(), self.patch_size)
        if self.norm_pix:
            x = (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True) + 1e-6) ** 0.5
        return x


def mim_loss(logits: torch.Tensor, targets: torch.Tensor, num_classes: Optional[int]):
    """``(loss, accuracy or None)`` over the masked patches: cross-entropy against visual
    tokens, or the mean squared error against regression targets."""
    if num_classes is not None:
        loss = F.cross_entropy(logits.float(), targets)
        return loss, (logits.argmax(-1) == targets).float().mean()
    return F.mse_loss(logits.float(), targets.float()), None


__all__ = ['PixelTarget', 'mim_loss']
