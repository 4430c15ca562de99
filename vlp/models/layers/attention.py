"""Multi-head attention through ``torch.nn.functional.scaled_dot_product_attention``.

One attention module serves every transformer in vlp: self-attention (bidirectional,
causal, or any additive/boolean mask) and cross-attention (queries from ``x``, keys and
values from ``context``). SDPA picks flash / memory-efficient kernels on CUDA.

Two ways to avoid recomputing keys and values:

- **Incremental decoding** (:class:`DecodingCache`, one per ``generate`` call): a
  self-attention layer keeps the keys/values of the positions decoded so far and computes
  only the new positions' (reordered with the hypotheses under beam search); a
  cross-attention layer computes the keys/values of each context item (an image) once per
  sequence and reuses them at every step. Hypotheses map to context items through
  ``DecodingCache.route``: when every item has the same number of consecutive hypotheses
  (all beams of every item), their queries are folded into one query sequence per item,
  so each item's keys/values are read once per step and never copied per hypothesis.
- **Shared contexts** (``context_index``): a batch of pairs whose contexts repeat (ITM
  re-ranking: an image scored against many texts) gives each distinct context once and
  ``context_index [B]``; keys/values are computed per distinct context and gathered.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

KV = Tuple[torch.Tensor, torch.Tensor]


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Attention of the few query positions of a decoding step ``q [N, nh, T, hs]`` over
    ``k, v [N, nh, S, hs]`` (``mask`` boolean, True = attend, or additive). On CUDA: SDPA.
    On a CPU with ``T <= 16``: ``softmax(q k^T / sqrt(hs)) v`` as two matmuls, which CPU
    SDPA's blocked kernel runs several times slower for one query position (measured:
    4.7 ms against 1.7 ms per call for ``[16, 4, 1, 64]`` over 577 image tokens)."""
    if q.device.type != 'cpu' or q.shape[-2] > 16:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    s = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (N, nh, T, S)
    if mask is not None:
        s = s.masked_fill(~mask, float('-inf')) if mask.dtype == torch.bool else s + mask
    return s.softmax(dim=-1) @ v


class DecodingCache:
    """The state of one incremental decoding (see the module docstring).

    Attributes:
        length: positions already decoded (their self-attention keys/values are here);
            the position embeddings of the next tokens start at it.
        self_kv: ``{self-attention module: (k, v)}``, each ``[N, nh, length, hs]`` for the
            ``N`` hypotheses of the last step.
        context_kv: ``{cross-attention module: (k, v)}``, each ``[M, nh, S, hs]`` for the
            ``M`` context items held (``items``: their indices among the original ones).
        items: ``[M]`` original indices of the held context items (``None``: all, in
            order); :meth:`route` drops items no hypothesis reads any more.
        rows: ``[N]`` held item of each hypothesis, or ``None`` when ``group`` says it.
        group: ``g > 0``: hypotheses ``g * m ... g * m + g - 1`` read item ``m`` (``rows``
            is ``None``); 0: use ``rows``.
    """

    def __init__(self):
        self.length = 0
        self.self_kv: Dict[nn.Module, KV] = {}
        self.context_kv: Dict[nn.Module, KV] = {}
        self.items: Optional[torch.Tensor] = None
        self.rows: Optional[torch.Tensor] = None
        self.group = 1

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the self-attention keys/values of hypotheses ``index`` (in that order): the
        beams chosen by a search step, or the rows still unfinished."""
        self.self_kv = {m: (k.index_select(0, index), v.index_select(0, index))
                        for m, (k, v) in self.self_kv.items()}

    def route(self, rows: torch.Tensor, n_items: int) -> None:
        """Hypothesis ``n`` reads context item ``rows[n]`` (an index in ``[0, n_items)``).
        Items no hypothesis reads any more are dropped from ``context_kv`` (one copy of the
        rest, instead of a gather at every step); a regular layout (``g`` consecutive
        hypotheses per held item) is detected so cross-attention reads each item once."""
        items = self.items
        if items is None:
            items = torch.arange(n_items, device=rows.device)
        needed = torch.unique(rows)  # sorted
        if needed.numel() < items.numel():
            keep = torch.searchsorted(items, needed)
            self.context_kv = {m: (k.index_select(0, keep), v.index_select(0, keep))
                               for m, (k, v) in self.context_kv.items()}
            items = needed
        self.items = None if items.numel() == n_items else items
        local = rows if self.items is None else torch.searchsorted(items, rows)
        M, N = items.numel(), rows.numel()
        self.rows, self.group = local, 0
        if N % M == 0:
            g = N // M
            if torch.equal(local, torch.arange(M, device=rows.device).repeat_interleave(g)):
                self.rows, self.group = None, g

    def held(self, t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """A per-item tensor ``[n_items, ...]`` (a context, its mask) restricted to the
        held items."""
        if t is None or self.items is None or t.shape[0] == 1:
            return t
        return t.index_select(0, self.items)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: Optional[torch.Tensor]) -> torch.Tensor:
        """SDPA of hypothesis queries ``q [N, nh, T, hs]`` over the held items' keys and
        values ``[M, nh, S, hs]`` (``mask``: per held item, broadcastable to
        ``[M, nh, T, S]``) -> ``[N, nh, T, hs]``."""
        N, nh, T, hs = q.shape
        if mask is not None and mask.dtype.is_floating_point:
            mask = mask.to(q.dtype)
        if self.group:
            M, g = k.shape[0], self.group
            if g == 1:
                return decode_attention(q, k, v, mask)
            # the g hypotheses of an item as one query sequence of g * T positions
            qf = q.view(M, g, nh, T, hs).transpose(1, 2).reshape(M, nh, g * T, hs)
            out = decode_attention(qf, k, v, mask)
            return out.view(M, nh, g, T, hs).transpose(1, 2).reshape(N, nh, T, hs)
        k, v = k.index_select(0, self.rows), v.index_select(0, self.rows)
        if mask is not None and mask.shape[0] > 1:
            mask = mask.index_select(0, self.rows)
        return decode_attention(q, k, v, mask)


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

    def context_kv(self, context: torch.Tensor) -> KV:
        """Keys and values ``[B, nh, S, hs]`` of a cross-attention ``context [B, S, C_ctx]``."""
        k, v = self.kv(context).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None,
                attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False,
                cache: Optional[DecodingCache] = None,
                context_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            x: ``[B, T, C]`` queries (and keys/values for self-attention).
            context: ``[B, S, C_ctx]`` keys/values for cross-attention (``[M, S, C_ctx]``
                with ``context_index``; per context item with ``cache``; not read once
                ``cache`` holds its keys/values).
            attn_mask: boolean (True = attend) or additive float mask broadcastable to
                ``[B, nh, T, S]`` (cross-attention with ``context_index`` or ``cache``:
                one row per context, ``[M, 1, 1, S]``).
            is_causal: causal self-attention (no ``attn_mask`` needed).
            cache: incremental decoding (:class:`DecodingCache`): ``x`` holds only the new
                positions; self-attention is causal over the cached ones and these.
            context_index: ``[B]`` context of each query row (cross-attention).
        """
        B, T, C = x.shape
        if cache is not None:
            out = (self._cross_cached(x, context, attn_mask, cache) if self.is_cross
                   else self._self_cached(x, attn_mask, cache))
            return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, T, C)))
        if self.is_cross:
            if context is None:
                raise ValueError('cross-attention needs a context')
            q = self._heads(self.q(x))
            k, v = self.context_kv(context)  # (B | M, nh, S, hs)
            if context_index is not None:
                k, v = k.index_select(0, context_index), v.index_select(0, context_index)
                if attn_mask is not None and attn_mask.shape[0] > 1:
                    attn_mask = attn_mask.index_select(0, context_index)
        else:
            q, k, v = (self._heads(t) for t in self.qkv(x).chunk(3, dim=-1))  # (B, nh, T, hs)
        if attn_mask is not None and attn_mask.dtype.is_floating_point:
            attn_mask = attn_mask.to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop if self.training else 0.0,
            is_causal=is_causal and attn_mask is None)  # (B, nh, T, hs)
        out = out.transpose(1, 2).reshape(B, T, C)
        return self.proj_drop(self.proj(out))

    def _self_cached(self, x, attn_mask, cache: DecodingCache) -> torch.Tensor:
        if attn_mask is not None:
            raise ValueError('incremental decoding takes no self-attention mask (rows of '
                             'one prompt length, causal)')
        q, k, v = (self._heads(t) for t in self.qkv(x).chunk(3, dim=-1))  # (N, nh, T, hs)
        past = cache.self_kv.get(self)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        cache.self_kv[self] = (k, v)
        T, P = q.shape[2], k.shape[2] - q.shape[2]
        mask = None
        if T > 1 and P > 0:  # new positions P..P+T-1 see the past and themselves causally
            mask = torch.ones(T, P + T, dtype=torch.bool, device=x.device).tril(P)
        if T > 1 and P == 0:  # the prompt: causal over itself
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return decode_attention(q, k, v, mask)

    def _cross_cached(self, x, context, attn_mask, cache: DecodingCache) -> torch.Tensor:
        kv = cache.context_kv.get(self)
        if kv is None:
            if context is None:
                raise ValueError('cross-attention needs a context')
            # contiguous once: every step's matmuls read them without a copy
            kv = cache.context_kv[self] = tuple(
                t.contiguous() for t in self.context_kv(cache.held(context)))
        q = self._heads(self.q(x))  # (N, nh, T, hs)
        return cache.attend(q, *kv, cache.held(attn_mask))


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
