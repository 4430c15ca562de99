"""The one transformer block of vlp (Vaswani et al. 2017), pre-LN or post-LN.

``norm_first=True`` is the pre-LN block of GPT-2 / CLIP (Radford et al. 2021):
``x + attn(ln(x))``, ``x + mlp(ln(x))``. ``norm_first=False`` is the post-LN block of BERT
(Devlin et al. 2019): ``ln(x + attn(x))``, ``ln(x + mlp(x))``. With ``cross_attention_dim``
set, a cross-attention sub-layer sits between self-attention and the FFN (the BERT decoder /
ALBEF / BLIP / BLIP-2 Q-Former layer). Each sub-layer is also a public method so a module
that routes tokens differently (the Q-Former's query/text split) can reuse them.

Masks everywhere are boolean (True = attend) or additive float, broadcastable to
``[B, nh, T, S]``; :func:`build_attn_mask` turns a ``[B, S]`` padding mask (and causality)
into one, never leaving a query row with nothing to attend to (a fully masked softmax row
is NaN in older torch and in additive-mask code; torch >= 2.5's SDPA returns zeros).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint
from timm.layers import DropPath

from .attention import Attention, DecodingCache, Mlp


def build_attn_mask(key_mask: Optional[torch.Tensor] = None, query_len: Optional[int] = None,
                    causal: bool = False) -> Optional[torch.Tensor]:
    """Boolean SDPA mask (True = attend) from a padding mask and/or causality.

    Args:
        key_mask: ``[B, S]`` padding mask of the keys (nonzero = real token) or ``None``.
        query_len: number of queries ``T`` (needed for ``causal``; defaults to ``S``).
        causal: query ``i`` attends to keys ``j <= i`` (self-attention, ``T == S``).

    Returns:
        ``None`` when there is nothing to mask (use ``is_causal`` / no mask), else a bool
        tensor ``[B, 1, T, S]`` (``[B, 1, 1, S]`` without causality). A query row that would
        attend to nothing (a padded position before any real token, or an all-padding
        sequence) attends to itself under causality, otherwise to every key: its output is
        finite and meaningless, and real tokens never see padding.
    """
    if key_mask is None:
        return None
    S = key_mask.shape[-1]
    mask = key_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
    if causal:
        T = S if query_len is None else query_len
        tril = torch.ones(T, S, dtype=torch.bool, device=key_mask.device).tril()
        mask = mask & tril  # (B, 1, T, S)
        fallback = torch.eye(T, S, dtype=torch.bool, device=key_mask.device)
    else:
        fallback = torch.ones(1, S, dtype=torch.bool, device=key_mask.device)
    empty = ~mask.any(dim=-1, keepdim=True)  # (B, 1, T|1, 1)
    return mask | (empty & fallback)


def sdpa_mask(mask: Optional[torch.Tensor], like: torch.Tensor) -> Optional[torch.Tensor]:
    """A boolean mask (True = attend) as the additive float mask SDPA builds from it (0,
    or the dtype's minimum where masked), once for a stack of layers: SDPA converts a
    boolean mask on every call and keeps the copy for its backward, one per layer. The
    dtype is the one attention runs in (autocast's when enabled, else ``like``'s); float
    masks and ``None`` pass through."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    kind = like.device.type
    dtype = (torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind)
             else like.dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
        ~mask, torch.finfo(dtype).min)


def add_causal(attn_mask: torch.Tensor, query_len: int, key_len: int) -> torch.Tensor:
    """Combine a boolean or additive mask with a causal (lower-triangular) mask."""
    tril = torch.ones(query_len, key_len, dtype=torch.bool, device=attn_mask.device).tril()
    if attn_mask.dtype == torch.bool:
        return attn_mask & tril
    neg = torch.finfo(attn_mask.dtype).min
    return attn_mask.masked_fill(~tril, neg)


def init_bert_style(module: nn.Module, std: float = 0.02) -> None:
    """BERT / BEiT initialisation of every submodule: linear weights and embeddings from a
    truncated normal (``std``), biases zero, the padding embedding zero, LayerNorms at
    identity."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.padding_idx is not None:
                nn.init.zeros_(m.weight[m.padding_idx])
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def maybe_checkpoint(module: nn.Module, *args, enabled: bool = False, **kwargs):
    """Run ``module(*args, **kwargs)``, through non-reentrant activation checkpointing when
    ``enabled`` and the module is training with autograd on."""
    if enabled and module.training and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(module, *args, use_reentrant=False, **kwargs)
    return module(*args, **kwargs)


class TransformerBlock(nn.Module):
    """Self-attention [-> cross-attention] -> FFN, each with a residual and a LayerNorm.

    Args:
        dim: width ``C``.
        num_heads: attention heads.
        mlp_ratio: FFN hidden width as a multiple of ``dim`` (ignored if ``mlp_dim``).
        mlp_dim: FFN hidden width (BERT's ``intermediate_size``).
        act_layer: FFN activation name (see ``layers.attention.build_activation``).
        norm_first: pre-LN (True, CLIP/GPT-2) or post-LN (False, BERT).
        ln_eps: LayerNorm epsilon (1e-5 CLIP, 1e-12 BERT).
        qkv_bias: biases on the query/key/value projections.
        drop: dropout on each sub-layer's output before the residual add (BERT's
            ``hidden_dropout_prob``; as in BERT there is no dropout inside the FFN).
        attn_drop: dropout on attention probabilities.
        drop_path: stochastic depth rate on each residual branch.
        cross_attention_dim: width of the cross-attention context; ``None``: no
            cross-attention sub-layer.
        self_attention: False drops the self-attention sub-layer (a cross-attention-only
            block, e.g. the cross-attention layers of CoCa's multimodal decoder).
        norm_context: pre-LN only: LayerNorm the context before cross-attention (CoCa).

    Parameter names: ``attn.{qkv,proj}``, ``norm1``, ``cross_attn.{q,kv,proj}``,
    ``norm_cross``, ``norm_context``, ``mlp.{fc1,fc2}``, ``norm2``. In a pre-LN block
    ``norm*`` precede their sub-layer; in a post-LN block they follow its residual add.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0,
                 mlp_dim: Optional[int] = None, act_layer: str = 'gelu',
                 norm_first: bool = True, ln_eps: float = 1e-5, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 cross_attention_dim: Optional[int] = None, self_attention: bool = True,
                 norm_context: bool = False):
        super().__init__()
        if not self_attention and cross_attention_dim is None:
            raise ValueError('a block needs self-attention, cross-attention or both')
        if norm_context and norm_first is False:
            raise ValueError('norm_context is a pre-LN option')
        self.norm_first = norm_first
        self.has_self_attn = self_attention
        self.has_cross_attn = cross_attention_dim is not None
        if self_attention:
            self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                                  proj_drop=drop)
            self.norm1 = nn.LayerNorm(dim, eps=ln_eps)
        if self.has_cross_attn:
            self.cross_attn = Attention(dim, num_heads, context_dim=cross_attention_dim,
                                        qkv_bias=qkv_bias, attn_drop=attn_drop,
                                        proj_drop=drop)
            self.norm_cross = nn.LayerNorm(dim, eps=ln_eps)
            self.norm_context = (nn.LayerNorm(cross_attention_dim, eps=ln_eps)
                                 if norm_context else nn.Identity())
        hidden = mlp_dim if mlp_dim is not None else int(dim * mlp_ratio)
        self.mlp = Mlp(dim, hidden, act_layer=act_layer, drop=0.0)
        self.mlp_drop = nn.Dropout(drop)
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _residual(self, x: torch.Tensor, fn, norm: nn.Module) -> torch.Tensor:
        if self.norm_first:
            return x + self.drop_path(fn(norm(x)))
        return norm(x + self.drop_path(fn(x)))

    def forward_self_attn(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                          is_causal: bool = False,
                          cache: Optional[DecodingCache] = None) -> torch.Tensor:
        """Self-attention sub-layer with residual and norm. ``x``: ``[B, T, C]`` (with a
        ``cache``: the new positions of incremental decoding, causal)."""
        if is_causal and attn_mask is not None:
            attn_mask = add_causal(attn_mask, x.shape[1], x.shape[1])
        extra = {} if cache is None else dict(cache=cache)
        return self._residual(
            x, lambda h: self.attn(h, attn_mask=attn_mask, is_causal=is_causal, **extra),
            self.norm1)

    def forward_cross_attn(self, x: torch.Tensor, context: torch.Tensor,
                           context_mask: Optional[torch.Tensor] = None,
                           cache: Optional[DecodingCache] = None,
                           context_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Cross-attention sub-layer: queries ``x [B, T, C]``, keys/values
        ``context [B, S, C_ctx]``; ``context_mask`` broadcastable to ``[B, nh, T, S]``.
        ``context_index [B]``: ``context`` holds ``M`` distinct contexts (and
        ``context_mask`` ``M`` rows), row ``b`` of ``x`` reads ``context[context_index[b]]``.
        ``cache``: incremental decoding, ``context`` per context item (its keys/values are
        computed at the first step only)."""
        if cache is None or self.cross_attn not in cache.context_kv:
            context = self.norm_context(context)
        # only when used: a replaced cross-attention (BLIP's NLVR2 twin) takes neither
        extra = {k: v for k, v in (('cache', cache), ('context_index', context_index))
                 if v is not None}
        return self._residual(
            x, lambda h: self.cross_attn(h, context=context, attn_mask=context_mask, **extra),
            self.norm_cross)

    def forward_ffn(self, x: torch.Tensor) -> torch.Tensor:
        """Feed-forward sub-layer with residual and norm."""
        return self._residual(x, lambda h: self.mlp_drop(self.mlp(h)), self.norm2)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                is_causal: bool = False, context: Optional[torch.Tensor] = None,
                context_mask: Optional[torch.Tensor] = None,
                cache: Optional[DecodingCache] = None,
                context_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x: ``[B, T, C]`` tokens.
            attn_mask: self-attention mask, bool (True = attend) or additive, broadcastable
                to ``[B, nh, T, T]``; combined with ``is_causal`` when both are given.
            is_causal: causal self-attention.
            context: ``[B, S, C_ctx]`` for the cross-attention sub-layer. ``None`` skips
                that sub-layer (BLIP's unimodal text mode shares a block's other weights).
            context_mask: cross-attention mask broadcastable to ``[B, nh, T, S]``.
            cache: incremental decoding (``layers.attention.DecodingCache``): ``x`` holds
                the new positions only.
            context_index: ``[B]`` row of ``context`` that each row of ``x`` reads (shared
                contexts, see :meth:`forward_cross_attn`).

        Returns:
            ``[B, T, C]``.
        """
        if self.has_self_attn:
            x = self.forward_self_attn(x, attn_mask, is_causal, cache)
        if context is not None:
            if not self.has_cross_attn:
                raise ValueError('context given to a block without cross-attention')
            x = self.forward_cross_attn(x, context, context_mask, cache, context_index)
        return self.forward_ffn(x)

