"""CoCa's multimodal text decoder (Yu et al. 2022, "CoCa: Contrastive Captioners are
Image-Text Foundation Models", Sec. 3.2): the upper text layers, which continue the
unimodal decoder's hidden states with causal self-attention and cross-attention to the
image's captioning tokens, then a final LayerNorm and the projection to the vocabulary
(the captioning objective's next-token logits, Eq. 2).

Layer layout, vlp's one ``TransformerBlock`` either way (pre-LN, the image context
LayerNorm-ed by ``norm_context`` before cross-attention):

- ``cross_ffn=False`` (default): the standard decoder layer, causal self-attention ->
  cross-attention -> FFN. The paper does not spell the layer out, but its CoCa-Base
  parameter count (383M with a 64k vocabulary, Table 1) fits this layer, not the next.
- ``cross_ffn=True``: open_clip's ``MultimodalTransformer`` (and lucidrains'
  ``coca-pytorch``): a self-attention block with its FFN followed by a cross-attention
  block with its own FFN; what the open_clip converter needs.

No positional embedding is added: the input already carries the unimodal decoder's
positions.
"""
from typing import Optional

import torch
import torch.nn as nn

from vlp.registry import MODELS
from ..layers.attention import DecodingCache
from ..layers.transformer import TransformerBlock, maybe_checkpoint


@MODELS.register_module()
class MultimodalDecoder(nn.Module):
    """Causal text decoder with cross-attention to image tokens and a vocabulary head.

    Args:
        vocab_size: output vocabulary ``V``.
        width: model width ``C``.
        layers: number of (self-attention block, cross-attention block) pairs.
        heads: attention heads.
        context_dim: width of the image tokens (``None``: ``width``).
        mlp_ratio: FFN width multiple.
        act_layer: FFN activation (open_clip CoCa: ``'gelu'``).
        ln_eps: LayerNorm epsilon.
        cross_ffn: open_clip's layout (see the module docstring).

    Parameters: ``blocks.i`` (``norm1``, ``attn``, ``norm_cross``, ``norm_context``,
    ``cross_attn``, ``norm2``, ``mlp``), ``ln_final``, ``head.weight [V, C]``. With
    ``cross_ffn`` (open_clip's ``text_decoder.`` names in brackets):
    ``blocks.i`` (``resblocks.i``: ``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``,
    ``mlp.fc1``, ``mlp.fc2``), ``cross_blocks.i`` (``cross_attn.i``: ``norm_cross``
    = ``ln_1``, ``norm_context`` = ``ln_1_kv``, ``cross_attn.q`` / ``cross_attn.kv`` = rows
    ``[:C]`` / ``[C:]`` of ``attn.in_proj_*``, ``cross_attn.proj`` = ``attn.out_proj``,
    ``norm2``, ``mlp``), ``ln_final``, ``head.weight [V, C]`` (``text_projection [C, V]``
    transposed; no bias).

    ``forward(text_hidden [B, T, C], context [B, S, C_ctx]) -> logits [B, T, V]``.
    """

    def __init__(self, vocab_size: int, width: int = 512, layers: int = 12, heads: int = 8,
                 context_dim: Optional[int] = None, mlp_ratio: float = 4.0,
                 act_layer: str = 'gelu', ln_eps: float = 1e-5, cross_ffn: bool = False):
        super().__init__()
        context_dim = width if context_dim is None else context_dim
        self.width, self.num_layers, self.vocab_size = width, layers, vocab_size
        self.grad_checkpointing = False
        block = dict(mlp_ratio=mlp_ratio, act_layer=act_layer, norm_first=True, ln_eps=ln_eps)
        cross = dict(cross_attention_dim=context_dim, norm_context=True)
        self.blocks = nn.ModuleList([
            TransformerBlock(width, heads, **block, **({} if cross_ffn else cross))
            for _ in range(layers)])
        self.cross_blocks = nn.ModuleList([
            TransformerBlock(width, heads, **block, **cross, self_attention=False)
            for _ in range(layers)]) if cross_ffn else None
        self.ln_final = nn.LayerNorm(width, eps=ln_eps)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        """CLIP's text-tower initialisation (open_clip's ``MultimodalTransformer``)."""
        attn_std = self.width ** -0.5
        proj_std = attn_std * (2 * self.num_layers) ** -0.5
        fc_std = (2 * self.width) ** -0.5
        blocks = [m for m in self.modules() if isinstance(m, TransformerBlock)]
        for blk in blocks:
            attns = ([blk.attn] if blk.has_self_attn else []) + \
                ([blk.cross_attn] if blk.has_cross_attn else [])
            for attn in attns:
                for lin in ((attn.q, attn.kv) if attn.is_cross else (attn.qkv, )):
                    nn.init.normal_(lin.weight, std=attn_std)
                    nn.init.zeros_(lin.bias)
                nn.init.normal_(attn.proj.weight, std=proj_std)
                nn.init.zeros_(attn.proj.bias)
            nn.init.normal_(blk.mlp.fc1.weight, std=fc_std)
            nn.init.normal_(blk.mlp.fc2.weight, std=proj_std)
        nn.init.normal_(self.head.weight, std=attn_std)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward(self, text_hidden: torch.Tensor, context: torch.Tensor,
                context_mask: Optional[torch.Tensor] = None,
                cache: Optional[DecodingCache] = None) -> torch.Tensor:
        """
        Args:
            text_hidden: ``[B, T, C]`` hidden states of the unimodal decoder (before its
                final LayerNorm). Right padding needs no mask: under the causal mask a real
                token never sees a later padding token.
            context: ``[B, S, C_ctx]`` image tokens (CoCa: the captioning pooler output).
            context_mask: optional cross-attention mask broadcastable to ``[B, nh, T, S]``.
            cache: incremental decoding (``layers.attention.DecodingCache``):
                ``text_hidden`` holds the new positions only, ``context`` one row per image
                (``cache.route`` maps the rows to them); the image's keys/values are
                computed at the first step and kept, as are the self-attention ones.

        Returns:
            ``[B, T, V]`` next-token logits.
        """
        x = text_hidden
        ckpt = self.grad_checkpointing
        for i, blk in enumerate(self.blocks):
            if self.cross_blocks is None:  # self-attention -> cross-attention -> FFN
                x = maybe_checkpoint(blk, x, is_causal=True, context=context,
                                     context_mask=context_mask, cache=cache, enabled=ckpt)
            else:  # (self-attention -> FFN), (cross-attention -> FFN)
                x = maybe_checkpoint(blk, x, is_causal=True, cache=cache, enabled=ckpt)
                x = maybe_checkpoint(self.cross_blocks[i], x, context=context,
                                     context_mask=context_mask, cache=cache, enabled=ckpt)
        return self.head(self.ln_final(x))  # (B, T, V)
