"""Attentional pooler of CoCa (Yu et al. 2022, "CoCa: Contrastive Captioners are
Image-Text Foundation Models", Sec. 3.2 and the pseudo-code of Fig. 2).

``n_queries`` learnable queries attend, through one multi-head cross-attention, to the
tokens of an image encoder; the outputs are a task-specific image representation
(CoCa: 1 query for the contrastive embedding, 256 for the captioning decoder). As in
open_clip's ``AttentionalPooler`` the context and the queries are LayerNorm-ed first; as in
the paper's ``attentional_pooling`` (multi-head attention followed by ``layer_norm``) the
output is LayerNorm-ed too (``out_norm``; open_clip applies that norm, its ``ln_post``,
outside its pooler). There is no residual and no feed-forward layer.
"""
from typing import Optional

import torch
import torch.nn as nn

from vlp.registry import MODELS
from ..layers.attention import Attention


@MODELS.register_module()
class AttentionalPooler(nn.Module):
    """Learnable queries cross-attending to image tokens.

    Args:
        dim: width ``C`` of the queries and of the output.
        context_dim: width of the image tokens (``None``: ``dim``).
        num_heads: attention heads (open_clip's CoCa: 8).
        n_queries: number of queries ``Q`` = output tokens.
        out_norm: LayerNorm on the output (the paper's ``attentional_pooling``).
        ln_eps: LayerNorm epsilon.

    Parameters (for converters; open_clip's names in brackets): ``query [Q, C]``
    (``query``), ``norm_context`` (``ln_k``), ``norm_query`` (``ln_q``), ``attn.q``
    (rows ``[:C]`` of ``attn.in_proj_weight``, or ``q_proj_weight`` when
    ``context_dim != dim``), ``attn.kv`` (rows ``[C:]`` / ``k_proj_weight`` and
    ``v_proj_weight`` stacked), ``attn.proj`` (``attn.out_proj``), ``norm_out``.

    ``forward(context [B, N, C_ctx], context_mask=None) -> [B, Q, C]``.
    """

    def __init__(self, dim: int, context_dim: Optional[int] = None, num_heads: int = 8,
                 n_queries: int = 256, out_norm: bool = True, ln_eps: float = 1e-5):
        super().__init__()
        context_dim = dim if context_dim is None else context_dim
        self.dim, self.context_dim, self.n_queries = dim, context_dim, n_queries
        self.query = nn.Parameter(torch.randn(n_queries, dim))  # open_clip: N(0, 1)
        self.norm_context = nn.LayerNorm(context_dim, eps=ln_eps)
        self.norm_query = nn.LayerNorm(dim, eps=ln_eps)
        # the one cross-attention module of vlp (SDPA); q: Linear(C, C), kv: Linear(C_ctx, 2C)
        self.attn = Attention(dim, num_heads, context_dim=context_dim)
        self.norm_out = nn.LayerNorm(dim, eps=ln_eps) if out_norm else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """``nn.MultiheadAttention``'s initialisation (Xavier-uniform projections of the
        input, zero biases)."""
        for lin in (self.attn.q, self.attn.kv):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.attn.proj.bias)

    def no_weight_decay(self) -> set:
        return {'query'}

    def forward(self, context: torch.Tensor,
                context_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            context: ``[B, N, C_ctx]`` image tokens.
            context_mask: optional mask broadcastable to ``[B, nh, Q, N]`` (bool, True =
                attend, or additive).

        Returns:
            ``[B, Q, C]`` pooled tokens.
        """
        B = context.shape[0]
        context = self.norm_context(context)
        q = self.norm_query(self.query).to(context.dtype)  # (Q, C)
        q = q.unsqueeze(0).expand(B, -1, -1)  # (B, Q, C)
        out = self.attn(q, context=context, attn_mask=context_mask)  # (B, Q, C)
        return self.norm_out(out)

    def extra_repr(self) -> str:
        return f'n_queries={self.n_queries}, dim={self.dim}, context_dim={self.context_dim}'
