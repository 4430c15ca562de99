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

- :class:`VQKDTokenizer`: BEiT v2's VQ-KD (BEiT v2, BEiT-3), loading BEiT v2's released
  file (not downloaded by vlp).

BEiT / VLMo use DALL-E's dVAE, which is not implemented here: any frozen module with this
interface, registered in ``MODELS``, plugs in.
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


@MODELS.register_module()
class VQKDTokenizer(_FrozenTarget):
    """BEiT v2's VQ-KD tokenizer (Peng et al. 2022, "BEiT v2: Masked Image Modeling with
    Vector-Quantized Visual Tokenizers", Sec. 2.2), the visual tokens of BEiT v2's and
    BEiT-3's masked image modelling: a ViT-B/16 encoder; its patch tokens (mean-pooling
    ``fc_norm`` applied to each) through ``encode_task_layer`` (Linear-Tanh-Linear to
    ``code_dim`` = 32), l2-normalised; each patch's token is the nearest of the
    ``num_classes`` = 8192 codes (the codebook is l2-normalised, so the nearest is the most
    cosine-similar). Inference only: the decoder and the CLIP teacher that trained it are
    not built (and dropped when a released file is read).

    Args:
        checkpoint: BEiT v2's released file (``vqkd_encoder_base_decoder_3x768x12_clip-*.pth``;
            its keys mapped by :data:`vlp.convert.formats.vqkd.VQKD`) or a state dict saved
            from this class; read weights-only. ``None``: random weights (tests).
        image_size, patch_size, embed_dim, depth, num_heads: the encoder (ViT-B/16).
        num_classes, code_dim: the codebook.
        mean, std: the statistics the model's data preprocessor normalised the images with
            (0-255 scale): VQ-KD reads pixels scaled to [-1, 1] (its ``process_type=
            'default'``), so they are undone first.
    """
    def __init__(self, checkpoint: Optional[str] = None, image_size: int = 224,
                 patch_size: int = 16, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, num_classes: int = 8192, code_dim: int = 32,
                 mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5)):
        super().__init__()
        import timm
        from functools import partial
        self.num_classes, self.patch_size = num_classes, patch_size
        self.encoder = timm.models.vision_transformer.VisionTransformer(
            img_size=image_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, qkv_bias=True, num_classes=0, global_pool='avg',
            fc_norm=True, norm_layer=partial(nn.LayerNorm, eps=1e-6))
        self.encode_task_layer = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.Tanh(),
                                               nn.Linear(embed_dim, code_dim))
        self.register_buffer('codebook', F.normalize(torch.randn(num_classes, code_dim), dim=-1))
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        if checkpoint is not None:
            self.load_released(checkpoint)
        self._freeze(None)

    def load_released(self, path: str) -> None:
        """Load BEiT v2's released file or a state dict of this class (weights-only)."""
        from vlp.convert.formats.vqkd import VQKD
        from vlp.convert.rules import convert_state_dict
        from vlp.engine.checkpoint import read_state_dict
        state = read_state_dict(path)
        if 'quantize.embedding.weight' in state:  # BEiT v2's layout
            state, _ = convert_state_dict(state, VQKD, expected=self.state_dict(),
                                          what='VQKDTokenizer')
        self.load_state_dict(state)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` normalised images -> ``[B, N, code_dim]`` l2-normalised features."""
        pixels = images.float() * self.std + self.mean  # back to 0-255
        x = pixels / 127.5 - 1.0  # VQ-KD's input range
        tokens = self.encoder.forward_features(x)  # (B, 1 + N, C); encoder.norm is Identity
        patches = self.encoder.fc_norm(tokens[:, self.encoder.num_prefix_tokens:])
        return F.normalize(self.encode_task_layer(patches), dim=-1)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        z = self.encode(images)  # (B, N, D)
        # nearest code in Euclidean distance (as BEiT v2's quantizer computes it)
        d = (z.pow(2).sum(-1, keepdim=True) + self.codebook.pow(2).sum(-1)
             - 2 * z @ self.codebook.t())
        return d.argmin(-1)  # (B, N)


def __getattr__(name: str):
    # PixelTarget and mim_loss moved to vlp.models.losses.mim (a target and its loss)
    if name in ('PixelTarget', 'mim_loss'):
        from ..losses import mim
        return getattr(mim, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = ['RandomProjectionTokenizer', 'VQKDTokenizer', 'patchify']
