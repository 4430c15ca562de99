"""Projections from a tower's pooled output ``[B, C]`` (or tokens ``[..., C]``) to the
joint embedding space ``[B, D]``.

``Projection`` is the linear map of CLIP (Radford et al. 2021, Sec. 2.4: ``W_i``, ``W_t``,
no bias) and of ALBEF/BLIP's ``vision_proj``/``text_proj`` (with bias). ``MLPProjection``
is the two-layer MLP connector of LLaVA-1.5 (Liu et al. 2023, "Improved Baselines with
Visual Instruction Tuning"): ``Linear -> GELU -> Linear``.
"""
from typing import Optional

import torch
import torch.nn as nn

from vlp.registry import MODELS
from ..layers.attention import build_activation


@MODELS.register_module()
class Projection(nn.Module):
    """``y = x W^T (+ b)``.

    Args:
        in_dim: input width ``C``.
        out_dim: output width ``D``.
        bias: add a bias (CLIP: False; ALBEF/BLIP: True).
        init_std: std of the normal weight init; ``None``: ``in_dim ** -0.5`` (CLIP's
            ``text_projection`` / ``visual.proj`` init). Biases start at zero.

    The weight is ``proj.weight [D, C]``: open_clip's ``text_projection [C, D]`` transposed.
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = False,
                 init_std: Optional[float] = None):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.proj = nn.Linear(in_dim, out_dim, bias=bias)
        nn.init.normal_(self.proj.weight, std=in_dim ** -0.5 if init_std is None else init_std)
        if bias:
            nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., C] -> [..., D]``."""
        return self.proj(x)


@MODELS.register_module()
class MLPProjection(nn.Module):
    """``Linear(C, H) -> act -> Linear(H, D)`` (LLaVA-1.5's ``mlp2x_gelu`` connector).

    Args:
        in_dim: input width ``C``.
        out_dim: output width ``D``.
        hidden_dim: hidden width ``H`` (default ``out_dim``, as in LLaVA).
        act_layer: activation name (``'gelu'``).
        bias: biases on both linear layers.

    Weights keep PyTorch's default ``nn.Linear`` init, as in LLaVA.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: Optional[int] = None,
                 act_layer: str = 'gelu', bias: bool = True):
        super().__init__()
        hidden_dim = out_dim if hidden_dim is None else hidden_dim
        self.in_dim, self.out_dim = in_dim, out_dim
        self.fc1 = nn.Linear(in_dim, hidden_dim, bias=bias)
        self.act = build_activation(act_layer)
        self.fc2 = nn.Linear(hidden_dim, out_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., C] -> [..., D]`` (pooled features or a sequence of tokens)."""
        return self.fc2(self.act(self.fc1(x)))


#: the projections :func:`llm_projector` builds
LLM_PROJECTORS = ('linear', 'mlp2x_gelu')


def llm_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """The vision-to-LLM projection of ``BLIP2LM`` by name, in the key layout of the
    released checkpoints: ``'linear'`` (BLIP-2, MiniGPT-4, LLaVA v1: ``weight`` / ``bias``)
    or ``'mlp2x_gelu'`` (LLaVA-1.5's ``mm_projector``: ``Linear -> GELU -> Linear`` as an
    ``nn.Sequential``, keys ``0.*`` / ``2.*``)."""
    if kind not in LLM_PROJECTORS:
        raise ValueError(f'projector must be one of {LLM_PROJECTORS}, got {kind!r}')
    if kind == 'linear':
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
