"""Targets of masked image modelling: frozen visual tokenizers and the pixel target.

A target module maps images ``[B, 3, H, W]`` (as the model receives them, normalised by
the data preprocessor) to one target per patch, in the row-major patch order of a ViT:

- ``num_classes`` set: discrete visual tokens ``[B, N]`` (long), predicted with a softmax
  over ``num_classes`` (BEiT, VLMo stage 1, BEiT-3);
- ``num_classes`` ``None``: regression targets ``[B, N, target_dim]`` (float), predicted
  with a mean squared error on the masked patches (MAE).

Registered targets:

- :class:`RandomProjectionTokenizer`: BEST-RQ's random-projection quantizer (Chiu et al.
  2022, "Self-supervised Learning with Random-projection Quantizer for Speech
  Recognition"), applied to image patches: a frozen random projection of each flattened
  patch, l2-normalised, and the index of the nearest entry (cosine) of a frozen random
  codebook. Needs no training; its projection and codebook are buffers, so a checkpoint
  carries them, and ``checkpoint=`` loads a saved one.
- :class:`~vlp.models.losses.mim.PixelTarget` (in ``losses/mim.py``, with ``mim_loss``):
  MAE's normalised pixels, the alternative when no tokenizer is given.

BEiT / VLMo use DALL-E's dVAE and BEiT v2 / BEiT-3 the VQ-KD tokenizer; neither is
implemented here (their weights cannot be downloaded on our machines): any frozen module
with this interface, registered in ``MODELS``, plugs in.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlp.registry import MODELS


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``[B, C, H, W] -> [B, N, p * p * C]`` (row-major patches, pixels ``(p, p, C)``)."""
    B, C, H, W = images.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f'image size {H}x{W} is not a multiple of the patch size {p}')
    x = images.reshape(B, C, H // p, p, W // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p), p * p * C)


class _FrozenTarget(nn.Module):
    """Frozen: no parameters train, always in eval mode, no autograd."""

    num_classes: Optional[int] = None
    target_dim: Optional[int] = None

    def _freeze(self, checkpoint: Optional[str]) -> None:
        if checkpoint is not None:
            from vlp.engine.checkpoint import safe_load
            state = safe_load(checkpoint, map_location='cpu')
            self.load_state_dict(state.get('state_dict', state))
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True):
        return super().train(False)


@MODELS.register_module()
class RandomProjectionTokenizer(_FrozenTarget):
    """BEST-RQ on image patches: ``argmax_k cos(P x, c_k)``.

    Args:
        patch_size, in_chans: patching of the input (must match the backbone's).
        num_classes: codebook size (BEST-RQ: 8192; tiny demos: a few hundred).
        code_dim: projection width (BEST-RQ: 16).
        seed: seed of the projection (Xavier-uniform) and the codebook (standard normal):
            the same seed builds the same tokenizer.
        norm_patch: normalise each flattened patch by its mean and std before projecting
            (BEST-RQ normalises its input features).
        checkpoint: a saved ``state_dict`` (``projection``, ``codebook``) to load instead.
    """

    def __init__(self, patch_size: int = 16, in_chans: int = 3, num_classes: int = 8192,
                 code_dim: int = 16, seed: int = 0, norm_patch: bool = True,
                 checkpoint: Optional[str] = None):
        super().__init__()
        self.patch_size, self.num_classes, self.norm_patch = patch_size, num_classes, norm_patch
        g = torch.Generator().manual_seed(seed)
        d_in = patch_size * patch_size * in_chans
        bound = (6.0 / (d_in + code_dim)) ** 0.5
        self.register_buffer('projection', (torch.rand(d_in, code_dim, generator=g) * 2 - 1)
                             * bound)
        self.register_buffer('codebook', F.normalize(
            torch.randn(num_classes, code_dim, generator=g), dim=-1))
        self._freeze(checkpoint)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = patchify(images.float(), self.patch_size)
        if self.norm_patch:
            x = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-6)
        z = F.normalize(x @ self.projection, dim=-1)
        return (z @ self.codebook.t()).argmax(-1)  # (B, N)


def __getattr__(name: str):
    # PixelTarget and mim_loss moved to vlp.models.losses.mim (a target and its loss)
    if name in ('PixelTarget', 'mim_loss'):
        from ..losses import mim
        return getattr(mim, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = ['RandomProjectionTokenizer', 'patchify']
