"""CLIP's text tower (Radford et al. 2021, "Learning Transferable Visual Models From
Natural Language Supervision", Sec. 2.4): a GPT-2-style pre-LN transformer with causal
self-attention over byte-pair tokens, learned absolute positions, a final LayerNorm, and
the sequence representation taken at the end-of-text (EOT) token.

The text projection of CLIP is not part of the tower: it is a ``Projection`` neck
(``necks/projection.py``, ``bias=False``) mapping ``text_pooled`` to ``text_feat``.

``embed_cls=True`` makes it CoCa's unimodal text decoder (Yu et al. 2022, Sec. 3.2): a
learnable ``[CLS]`` embedding is appended after the last token; under the causal mask it
attends to the whole caption, and its final state after ``ln_final`` is the pooled text
representation (open_clip's ``embed_cls``).
"""
from typing import Dict, Optional

import torch
import torch.nn as nn

from vlp.registry import MODELS
from ..layers.attention import DecodingCache
from ..layers.transformer import (TransformerBlock, build_attn_mask, maybe_checkpoint,
                                  sdpa_mask)


@MODELS.register_module()
class TextTransformer(nn.Module):
    """CLIP text transformer.

    Args:
        vocab_size: BPE vocabulary size (49408 for CLIP).
        context_length: maximum sequence length (77 for CLIP).
        width: model width ``C``.
        layers: number of blocks.
        heads: attention heads.
        mlp_ratio: FFN width multiple.
        act_layer: ``'quick_gelu'`` (OpenAI CLIP) or ``'gelu'`` (most open_clip models).
        ln_eps: LayerNorm epsilon.
        eot_token_id: ``None``: pool at ``input_ids.argmax(-1)`` (the EOT id is the largest
            id of the OpenAI vocabulary; OpenAI / open_clip convention). An int: pool at the
            first occurrence of that id (HF ``CLIPTextModel`` for newer checkpoints); rows
            without it pool at their last real token.
        causal: causal self-attention (CLIP: True).
        embed_cls: append a learnable ``cls_emb [C]`` after the ``L`` tokens (position
            ``L``; ``positional_embedding`` gets ``context_length + 1`` rows) and pool its
            final state (CoCa). The ``[CLS]`` attends to the real tokens (the given
            ``attention_mask``, else positions up to and including EOT) and to itself.
        legacy_cls_mask: open_clip's original CoCa mask (``correct_cls_mask=False``, the
            mask its released CoCa weights were trained with): the padding mask is shifted
            one position right, so the ``[CLS]`` also attends to the first padding token
            after EOT and attends to itself only when the text fills all ``L`` positions.
            For converted open_clip CoCa weights only.

    Parameters (for converters; ``i`` indexes blocks):
        ``token_embedding.weight [V, C]``, ``positional_embedding [context_length, C]``,
        ``blocks.i.norm1``, ``blocks.i.attn.qkv`` (fused q, k, v rows, as open_clip's
        ``attn.in_proj_*``; HF ``q_proj/k_proj/v_proj`` concatenated), ``blocks.i.attn.proj``
        (``out_proj``), ``blocks.i.norm2``, ``blocks.i.mlp.fc1`` (``c_fc`` / ``fc1``),
        ``blocks.i.mlp.fc2`` (``c_proj`` / ``fc2``), ``ln_final``, ``cls_emb [C]``
        (``embed_cls``). open_clip's ``text_projection [C, D]`` is the transposed weight of
        the ``Projection`` neck.

    ``forward`` returns ``dict(text_embeds [B, L, C], text_mask [B, L], text_pooled [B, C],
    text_hidden [B, L, C])`` (``text_hidden``: the last block's output before ``ln_final``,
    what CoCa's multimodal decoder continues from; the ``[CLS]`` position is never in
    ``text_embeds`` / ``text_hidden``).
    """

    def __init__(self, vocab_size: int = 49408, context_length: int = 77, width: int = 512,
                 layers: int = 12, heads: int = 8, mlp_ratio: float = 4.0,
                 act_layer: str = 'quick_gelu', ln_eps: float = 1e-5,
                 eot_token_id: Optional[int] = None, causal: bool = True,
                 embed_cls: bool = False, legacy_cls_mask: bool = False):
        super().__init__()
        self.context_length = context_length
        self.width = self.out_dim = width
        self.num_layers = layers
        self.eot_token_id = eot_token_id
        self.causal = causal
        self.legacy_cls_mask = legacy_cls_mask
        self.grad_checkpointing = False
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.cls_emb = nn.Parameter(torch.empty(width)) if embed_cls else None
        self.positional_embedding = nn.Parameter(
            torch.empty(context_length + int(embed_cls), width))
        self.blocks = nn.ModuleList([
            TransformerBlock(width, heads, mlp_ratio=mlp_ratio, act_layer=act_layer,
                             norm_first=True, ln_eps=ln_eps) for _ in range(layers)])
        self.ln_final = nn.LayerNorm(width, eps=ln_eps)
        self._init_weights()

    def _init_weights(self) -> None:
        """CLIP's initialisation (``CLIP.initialize_parameters``). Not named
        ``init_weights`` so that mmengine's runner does not re-run it over loaded weights."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        if self.cls_emb is not None:
            nn.init.normal_(self.cls_emb, std=0.01)
        attn_std = self.width ** -0.5
        proj_std = attn_std * (2 * self.num_layers) ** -0.5
        fc_std = (2 * self.width) ** -0.5
        for blk in self.blocks:
            nn.init.normal_(blk.attn.qkv.weight, std=attn_std)
            nn.init.normal_(blk.attn.proj.weight, std=proj_std)
            nn.init.zeros_(blk.attn.qkv.bias)
            nn.init.zeros_(blk.attn.proj.bias)
            nn.init.normal_(blk.mlp.fc1.weight, std=fc_std)
            nn.init.normal_(blk.mlp.fc2.weight, std=proj_std)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set:
        return {'positional_embedding'} | ({'cls_emb'} if self.cls_emb is not None else set())

    def eot_index(self, input_ids: torch.Tensor,
                  attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B]`` position of the EOT token of each row."""
        if self.eot_token_id is None:
            return input_ids.argmax(dim=-1)
        is_eot = input_ids == self.eot_token_id
        first = is_eot.int().argmax(dim=-1)
        if attention_mask is not None:
            last = attention_mask.long().sum(dim=-1).clamp(min=1) - 1
        else:
            last = torch.full_like(first, input_ids.shape[1] - 1)
        return torch.where(is_eot.any(dim=-1), first, last)

    def forward(self, input_ids: torch.Tensor,
                attention_mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """
        Args:
            input_ids: ``[B, L]`` token ids, ``L <= context_length``.
            attention_mask: optional ``[B, L]`` padding mask (1 = real token). Not needed
                for CLIP's right padding after EOT (causality hides it); when given it is
                combined with the causal mask.

        Returns:
            ``text_embeds [B, L, C]`` (after ``ln_final``), ``text_mask [B, L]`` (the given
            mask, else positions up to and including EOT), ``text_pooled [B, C]`` (at EOT,
            or the ``[CLS]`` state with ``embed_cls``), ``text_hidden [B, L, C]`` (before
            ``ln_final``).
        """
        B, L = input_ids.shape
        if L > self.context_length:
            raise ValueError(f'sequence length {L} > context_length {self.context_length}')
        x = self.token_embedding(input_ids)  # (B, L, C)
        eot = self.eot_index(input_ids, attention_mask)  # (B,)
        if attention_mask is None:
            pos = torch.arange(L, device=x.device)
            text_mask = (pos[None, :] <= eot[:, None]).long()
        else:
            text_mask = attention_mask
        if self.cls_emb is not None:
            cls = self.cls_emb.to(x.dtype).expand(B, 1, -1)
            x = torch.cat([x, cls], dim=1)  # (B, L + 1, C)
            ones = text_mask.new_ones(B, 1)
            key_mask = (torch.cat([ones, text_mask], dim=1) if self.legacy_cls_mask
                        else torch.cat([text_mask, ones], dim=1))  # (B, L + 1)
            attn_mask = build_attn_mask(key_mask, causal=self.causal)  # (B, 1, L+1, L+1)
        else:
            attn_mask = build_attn_mask(attention_mask, causal=self.causal)  # (B,1,L,L)|None
        x = x + self.positional_embedding[:x.shape[1]]
        is_causal = self.causal and attn_mask is None
        attn_mask = sdpa_mask(attn_mask, x)  # converted once, not in every layer
        for blk in self.blocks:
            x = maybe_checkpoint(blk, x, attn_mask=attn_mask, is_causal=is_causal,
                                 enabled=self.grad_checkpointing)
        if self.cls_emb is not None:
            hidden = x[:, :-1]  # (B, L, C)
            pooled = self.ln_final(x[:, -1])  # (B, C)
            embeds = self.ln_final(hidden)
        else:
            hidden = x
            embeds = self.ln_final(x)
            pooled = embeds[torch.arange(B, device=x.device), eot]  # (B, C)
        return dict(text_embeds=embeds, text_mask=text_mask, text_pooled=pooled,
                    text_hidden=hidden)

    def decode_step(self, input_ids: torch.Tensor, cache: DecodingCache) -> torch.Tensor:
        """Incremental decoding (CoCa's captioner): the new tokens ``input_ids [N, T]`` at
        positions ``cache.length ...``, causal over the cached ones -> their
        ``text_hidden [N, T, C]`` (before ``ln_final``), what :meth:`forward` gives for
        those positions of the whole unpadded sequence (the appended ``[CLS]`` comes after
        every token, so causality hides it from them: it is not computed)."""
        if not self.causal:
            raise ValueError('incremental decoding needs a causal text transformer')
        P, T = cache.length, input_ids.shape[1]
        if P + T > self.context_length:
            raise ValueError(f'position {P + T - 1} >= context_length {self.context_length}')
        x = self.token_embedding(input_ids) + self.positional_embedding[P:P + T]  # (N, T, C)
        for blk in self.blocks:
            x = blk(x, is_causal=True, cache=cache)
        return x
