"""Multi-head attention through ``torch.nn.functional.scaled_dot_product_attention``.

One attention module serves every transformer in vlp: self-attention (bidirectional,
causal, or any additive/boolean mask) and cross-attention (queries from ``x``, keys and
values from ``context``). SDPA picks flash / memory-efficient kernels on CUDA.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    """Multi-head attention.

    Args:
        dim: model width of the queries.
        num_heads: heads; ``dim`` must divide evenly.
        context_dim: width of keys/values for cross-attention (``None``: self-attention
            with one fused ``qkv`` projection).
        qkv_bias / proj_bias: biases of the input and output projections.
        attn_drop / proj_drop: dropout on attention probabilities / on the output.
    """

    def __init__(self, dim: int, num_heads: int, context_dim: Optional[int] = None,
                 qkv_bias: bool = True, proj_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.is_cross = context_dim is not None
        if self.is_cross:
            self.q = nn.Linear(dim, dim, bias=qkv_bias)
            self.kv = nn.Linear(context_dim, 2 * dim, bias=qkv_bias)
        else:
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, T, _ = t.shape
        return t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None,
                attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False
                ) -> torch.Tensor:
        """
        Args:
            x: ``[B, T, C]`` queries (and keys/values for self-attention).
            context: ``[B, S, C_ctx]`` keys/values for cross-attention.
            attn_mask: boolean (True = attend) or additive float mask broadcastable to
                ``[B, nh, T, S]``.
            is_causal: causal self-attention (no ``attn_mask`` needed).
        """
        B, T, C = x.shape
        if self.is_cross:
            if context is None:
                raise ValueError('cross-attention needs a context')
            q = self._heads(self.q(x))
            k, v = self.kv(context).chunk(2, dim=-1)
            k, v = self._heads(k), self._heads(v)  # (B, nh, S, hs)
        else:
            q, k, v = (self._heads(t) for t in self.qkv(x).chunk(3, dim=-1))  # (B, nh, T, hs)
        if attn_mask is not None and attn_mask.dtype.is_floating_point:
            attn_mask = attn_mask.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop if self.training else 0.0,
            is_causal=is_causal and attn_mask is None)  # (B, nh, T, hs)
        out = out.transpose(1, 2).reshape(B, T, C)
        return self.proj_drop(self.proj(out))


class Mlp(nn.Module):
    """Two-layer feed-forward block ``fc1 -> act -> drop -> fc2 -> drop``."""

    def __init__(self, dim: int, hidden_dim: int, act_layer: str = 'gelu', drop: float = 0.0,
                 bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = build_activation(act_layer)
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class QuickGELU(nn.Module):
    """OpenAI CLIP's ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


_ACTIVATIONS = {
    'gelu': lambda: nn.GELU(),
    'gelu_tanh': lambda: nn.GELU(approximate='tanh'),
    'quick_gelu': QuickGELU,
    'relu': lambda: nn.ReLU(),
    'silu': lambda: nn.SiLU(),
}


def build_activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f'Unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}')
