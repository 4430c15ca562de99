"""The Querying Transformer (Q-Former) of BLIP-2 (Li et al. 2023, "BLIP-2: Bootstrapping
Language-Image Pre-training with Frozen Image Encoders and Large Language Models", Sec. 3.1).

A BERT-style stack over ``[queries; text]``: ``num_query_tokens`` learnable query
embeddings (32) are prepended to the text embeddings; every layer has one self-attention
shared by queries and text, a cross-attention from the **queries only** to the frozen image
features in every ``cross_attention_freq``-th layer (2: layers 0, 2, 4, ...), and separate
feed-forward layers for the queries and for the text (both initialised from BERT's). What
the queries and the text may see of each other is the self-attention mask, one per
objective (Fig. 2 of the paper; :func:`qformer_attention_mask`):

- ``'itc'`` (uni-modal): queries see queries, text sees text;
- ``'itm'`` (bi-directional): everything sees everything;
- ``'itg'`` (multi-modal causal): queries see queries, text sees every query and the text
  up to itself.

Without text, the Q-Former maps image features to ``[B, Q, C]`` query outputs (the visual
prompt of BLIP-2's second stage, MiniGPT-4, InstructBLIP).
"""
import re
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint

from vlp.registry import MODELS
from ..backbones.bert import BertEncoder
from ..layers.attention import Mlp
from ..layers.transformer import sdpa_mask

QFORMER_MASKS = ('itc', 'itm', 'itg')


def qformer_attention_mask(num_query: int, text_mask: Optional[torch.Tensor], mode: str,
                           batch_size: Optional[int] = None,
                           device: Optional[torch.device] = None) -> torch.Tensor:
    """Boolean self-attention mask ``[B, 1, Q + L, Q + L]`` (True = may attend) of BLIP-2's
    objectives over ``[queries; text]``.

    Args:
        num_query: ``Q``.
        text_mask: ``[B, L]`` padding mask of the text (1 = real token), or ``None`` (no
            text: a ``[B, 1, Q, Q]`` all-True mask).
        mode: ``'itc'``, ``'itm'`` or ``'itg'`` (see the module docstring). Padding keys
            are never attended to; a padded query row falls back to attending to itself
            (its output is ignored).
    """
    if mode not in QFORMER_MASKS:
        raise ValueError(f'mode must be one of {QFORMER_MASKS}, got {mode!r}')
    if text_mask is None:
        B = batch_size or 1
        return torch.ones(B, 1, num_query, num_query, dtype=torch.bool, device=device)
    B, L = text_mask.shape
    device = text_mask.device
    Q, T = num_query, num_query + L
    is_q = torch.arange(T, device=device) < Q  # (T,)
    rows_q, cols_q = is_q[:, None], is_q[None, :]
    if mode == 'itm':
        allowed = torch.ones(T, T, dtype=torch.bool, device=device)
    elif mode == 'itc':
        allowed = rows_q == cols_q  # same modality only
    else:  # itg
        causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()
        allowed = (rows_q & cols_q) | (~rows_q & (cols_q | causal))
    keys = torch.cat([torch.ones(B, Q, dtype=torch.bool, device=device),
                      text_mask.bool()], dim=1)  # (B, T)
    mask = allowed[None, None] & keys[:, None, None, :]  # (B, 1, T, T)
    empty = ~mask.any(dim=-1, keepdim=True)
    eye = torch.eye(T, dtype=torch.bool, device=device)[None, None]
    return mask | (empty & eye)


class QueryFFN(nn.Module):
    """The queries' own post-LN feed-forward sub-layer (BLIP-2's ``intermediate_query`` /
    ``output_query``): ``LN(x + fc2(act(fc1(x))))``."""

    def __init__(self, dim: int, hidden: int, act_layer: str = 'gelu', ln_eps: float = 1e-12,
                 drop: float = 0.0):
        super().__init__()
        self.mlp = Mlp(dim, hidden, act_layer=act_layer, drop=0.0)
        self.drop = nn.Dropout(drop)
        self.norm = nn.LayerNorm(dim, eps=ln_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.drop(self.mlp(x)))


@MODELS.register_module()
class QFormer(BertEncoder):
    """BLIP-2's Q-Former: a :class:`BertEncoder` (word/position embeddings, post-LN blocks
    with cross-attention every ``cross_attention_freq`` layers) plus the learnable queries
    and the queries' feed-forward layers.

    Args:
        num_query_tokens: ``Q`` (32).
        encoder_width: width of the frozen image features (1408 for EVA ViT-g).
        cross_attention_freq: cross-attention in layers ``0, f, 2f, ...`` (2).
        vocab_size, hidden_size, num_layers, num_heads, intermediate_size,
        max_position_embeddings, hidden_dropout, attention_dropout, ln_eps, act_layer,
        initializer_range, pretrained: as :class:`BertEncoder` (bert-base by default,
            ``type_vocab_size=0``; BLIP-2 adds ``[DEC]`` to BERT's vocabulary: 30523).
            ``pretrained`` (a HF BERT checkpoint) also initialises the query FFNs from the
            text FFNs, as BLIP-2 does.

    Parameters: the :class:`BertEncoder` ones, ``query_tokens [1, Q, C]`` and
    ``query_ffn.i.{mlp.fc1, mlp.fc2, norm}``.
    """

    def __init__(self, num_query_tokens: int = 32, encoder_width: int = 1408,
                 cross_attention_freq: int = 2, vocab_size: int = 30523,
                 hidden_size: int = 768, num_layers: int = 12, num_heads: int = 12,
                 intermediate_size: int = 3072, max_position_embeddings: int = 512,
                 hidden_dropout: float = 0.1, attention_dropout: float = 0.1,
                 ln_eps: float = 1e-12, act_layer: str = 'gelu',
                 initializer_range: float = 0.02, pretrained: Optional[str] = None,
                 pad_token_id: int = 0):
        if cross_attention_freq < 1:
            raise ValueError(f'cross_attention_freq must be >= 1, got {cross_attention_freq}')
        super().__init__(vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers,
                         num_heads=num_heads, intermediate_size=intermediate_size,
                         max_position_embeddings=max_position_embeddings, type_vocab_size=0,
                         hidden_dropout=hidden_dropout, attention_dropout=attention_dropout,
                         pad_token_id=pad_token_id, ln_eps=ln_eps, act_layer=act_layer,
                         cross_attention_layers=f'every_{cross_attention_freq}',
                         cross_attention_dim=encoder_width,
                         initializer_range=initializer_range)
        self.num_query_tokens = num_query_tokens
        self.query_tokens = nn.Parameter(torch.zeros(1, num_query_tokens, hidden_size))
        nn.init.normal_(self.query_tokens, std=initializer_range)
        self.query_ffn = nn.ModuleList([
            QueryFFN(hidden_size, intermediate_size, act_layer, ln_eps, hidden_dropout)
            for _ in range(num_layers)])
        self.query_ffn.apply(self._init_module)
        if pretrained is not None:
            self.load_hf_state_dict(pretrained)

    def load_hf_state_dict(self, src, layer_offset: int = 0, strict: bool = True):
        """Load a HF BERT checkpoint (see :meth:`BertEncoder.load_hf_state_dict`); the
        queries and the cross-attention stay at init, the query FFNs start as copies of the
        text FFNs. Returns the keys left at init."""
        missing = super().load_hf_state_dict(src, layer_offset=layer_offset, strict=False)
        new = ('query_tokens', 'query_ffn.', '.cross_attn.', '.norm_cross.', '.norm_context.')
        bad = [k for k in missing if not any(n in k or k.startswith(n) for n in new)]
        if strict and bad:
            raise KeyError(f'HF BERT checkpoint mismatch: missing {bad}')
        self.init_query_ffn_from_text()
        return [k for k in missing if not k.startswith('query_ffn.')]

    #: parameters only the text reads (embeddings, pooler, the text FFNs): a query-only pass
    #: never reaches them
    TEXT_ONLY = re.compile(r'^(word_embeddings|position_embeddings|token_type_embeddings|'
                           r'pooler)\.|^blocks\.\d+\.(mlp|norm2)\.')

    def freeze_text_only(self) -> None:
        """Freeze :attr:`TEXT_ONLY` (BLIP-2 stage 2 deletes them; frozen, the stage-1 key
        layout stays and DDP sees no trainable parameter without a gradient)."""
        for name, p in self.named_parameters():
            if self.TEXT_ONLY.match(name):
                p.requires_grad_(False)

    def init_query_ffn_from_text(self) -> None:
        """Copy each layer's text FFN into the query FFN (BLIP-2's initialisation)."""
        with torch.no_grad():
            for blk, qffn in zip(self.blocks, self.query_ffn):
                qffn.mlp.load_state_dict(blk.mlp.state_dict())
                qffn.norm.load_state_dict(blk.norm2.state_dict())

    def _layer(self, i: int, x: torch.Tensor, num_query: int, attn_mask,
               image_embeds: Optional[torch.Tensor],
               image_mask: Optional[torch.Tensor]) -> torch.Tensor:
        blk = self.blocks[i]
        x = blk.forward_self_attn(x, attn_mask)
        q, t = x[:, :num_query], x[:, num_query:]
        if num_query:
            if i in self.cross_layers:
                if image_embeds is None:
                    raise ValueError('the Q-Former queries need image_embeds')
                q = blk.forward_cross_attn(q, image_embeds, image_mask)
            q = self.query_ffn[i](q)
        if t.shape[1]:
            t = blk.forward_ffn(t)
        return torch.cat([q, t], dim=1)

    def forward(self, image_embeds: Optional[torch.Tensor] = None,
                input_ids: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None, mode: str = 'itm',
                use_queries: bool = True, image_mask: Optional[torch.Tensor] = None,
                self_attn_mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """
        Args:
            image_embeds: ``[B, N, C_img]`` frozen image features (needed with queries).
            input_ids / attention_mask: ``[B, L]`` text (optional).
            mode: the self-attention mask over ``[queries; text]`` (``'itc'``, ``'itm'``,
                ``'itg'``); irrelevant without text or without queries (text alone is
                bidirectional unless ``mode='itg'``, then causal).
            use_queries: prepend the queries (False: a text-only pass, BLIP-2's text
                encoder for ITC).
            image_mask: ``[B, N]`` padding mask of ``image_embeds``.
            self_attn_mask: explicit mask replacing the one of ``mode``.

        Returns:
            ``query_embeds [B, Q, C]`` (with queries), ``text_embeds [B, L, C]`` (with
            text), ``text_pooled [B, C]`` (the first text token's state).
        """
        B = (image_embeds.shape[0] if image_embeds is not None else input_ids.shape[0])
        prefix = self.query_tokens.expand(B, -1, -1) if use_queries else None
        Q = self.num_query_tokens if use_queries else 0
        if input_ids is None and prefix is None:
            raise ValueError('QFormer needs queries or input_ids')
        x = self.embed(input_ids, prefix_embeds=prefix)  # (B, Q + L, C)
        if input_ids is not None and attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self_attn_mask is None:
            self_attn_mask = qformer_attention_mask(Q, attention_mask, mode, B, x.device)
        ctx_mask = None
        if image_mask is not None:
            ctx_mask = image_mask.bool()[:, None, None, :]
        # converted once, not in every layer
        self_attn_mask, ctx_mask = sdpa_mask(self_attn_mask, x), sdpa_mask(ctx_mask, x)
        ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for i in range(len(self.blocks)):
            if ckpt:
                x = torch.utils.checkpoint.checkpoint(self._layer, i, x, Q, self_attn_mask,
                                                      image_embeds, ctx_mask,
                                                      use_reentrant=False)
            else:
                x = self._layer(i, x, Q, self_attn_mask, image_embeds, ctx_mask)
        out = {}
        if Q:
            out['query_embeds'] = x[:, :Q]
        if input_ids is not None:
            out['text_embeds'] = x[:, Q:]
            out['text_pooled'] = x[:, Q]
            out['text_mask'] = attention_mask
        return out
