"""The multiway (mixture-of-modality-experts) transformer of VLMo (Bao et al. 2022, "VLMo:
Unified Vision-Language Pre-Training with Mixture-of-Modality-Experts", Sec. 3.1), in the
layout of its public reference code (unilm/vlmo ``MultiWayTransformer``).

Every block has one self-attention (with its pre-norm) shared by all modalities and a pool
of feed-forward experts, each with its own pre-norm: a vision expert (V-FFN) for image
tokens and a language expert (L-FFN) for text tokens; in the top ``num_vl_layers`` blocks
(VLMo-Base: 2 of 12) a vision-language expert (VL-FFN) replaces both for the concatenated
sequence in fusion mode. The same weights serve as an image encoder, a text encoder
(dual-encoder mode, for ITC) and a fusion encoder (``[text; image]`` in one sequence, for
ITM / MLM). BEiT-style pre-LN blocks with layer scale (``gamma``, 0.1) and stochastic depth,
one final norm, and optionally BEiT's relative position bias as VLMo-Base uses it (one
table for all layers: 2-D image offsets, 1-D text offsets, a text->image and an
image->text entry, and the ``[CLS]`` entries).

Inputs: images through a patch embedding with a ``[CLS]`` token (and absolute position
embeddings where ``abs_pos_embed``); masked image modelling replaces chosen patch
embeddings by a learned ``[MASK]`` embedding (BEiT); texts through BERT embeddings (word,
absolute position where ``abs_pos_embed``, LayerNorm); each plus a modality-type embedding
(0 text, 1 image). The BEiT-3 architecture as released (multiway attention projections,
sub-LN) is :mod:`vlp.models.backbones.beit3`.
"""
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint
from timm.layers import DropPath

from vlp.registry import MODELS
from ..layers.attention import Attention, Mlp
from ..layers.transformer import init_bert_style

EXPERTS = ('v', 'l', 'vl')


class MultiwayBlock(nn.Module):
    """``x + g1 * attn(norm1(x))`` with one shared attention, then ``x + g2 *
    ffn_e(norm2_e(x))`` where the expert ``e`` is chosen per token (``'l'`` / ``'v'`` by the
    token's modality) or for the whole sequence (``'vl'``)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0,
                 with_vl: bool = False, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, ln_eps: float = 1e-6,
                 layer_scale_init: Optional[float] = 0.1, act_layer: str = 'gelu'):
        super().__init__()
        experts = EXPERTS if with_vl else ('v', 'l')
        self.norm1 = nn.LayerNorm(dim, eps=ln_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                              proj_drop=drop)
        self.norm2 = nn.ModuleDict({e: nn.LayerNorm(dim, eps=ln_eps) for e in experts})
        hidden = int(dim * mlp_ratio)
        self.ffn = nn.ModuleDict({e: Mlp(dim, hidden, act_layer=act_layer, drop=drop)
                                  for e in experts})
        if layer_scale_init is not None:
            self.gamma_1 = nn.Parameter(torch.full((dim,), float(layer_scale_init)))
            self.gamma_2 = nn.Parameter(torch.full((dim,), float(layer_scale_init)))
        else:
            self.gamma_1 = self.gamma_2 = None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _scale(self, x: torch.Tensor, gamma: Optional[torch.Tensor]) -> torch.Tensor:
        return self.drop_path(x if gamma is None else gamma * x)

    def _ffn(self, x: torch.Tensor, expert: str) -> torch.Tensor:
        return self.ffn[expert](self.norm2[expert](x))

    def forward(self, x: torch.Tensor, num_text: int, attn_mask: Optional[torch.Tensor],
                expert: Optional[str] = None) -> torch.Tensor:
        """``x [B, N_txt + N_img, C]`` (text tokens first); ``expert`` ``None`` routes by
        modality, otherwise one expert for every token."""
        x = x + self._scale(self.attn(self.norm1(x), attn_mask=attn_mask), self.gamma_1)
        if expert is not None:
            return x + self._scale(self._ffn(x, expert), self.gamma_2)
        out = torch.cat([self._ffn(x[:, :num_text], 'l'), self._ffn(x[:, num_text:], 'v')], 1)
        return x + self._scale(out, self.gamma_2)


@MODELS.register_module()
class MultiwayTransformer(nn.Module):
    """VLMo backbone.

    Args:
        img_size, patch_size, in_chans: image input (224, 16, 3).
        vocab_size, max_text_len: text input (BERT's 30522, 40 in VLMo).
        embed_dim, depth, num_heads, mlp_ratio: transformer sizes (ViT-B: 768, 12, 12, 4).
        num_vl_layers: top blocks with a VL-FFN used in fusion mode (VLMo-Base: 2).
        qkv_bias, drop, attn_drop, drop_path_rate, ln_eps: as ViT / BEiT.
        layer_scale_init: initial layer-scale value (VLMo: 0.1; ``None``: no layer scale).
        abs_pos_embed: learned absolute position embeddings for patches and text tokens
            (VLMo-Base uses the relative position bias instead; VLMo-Base+ absolute ones).
        rel_pos_bias: BEiT relative position bias, one table shared by the layers
            (``rel_pos_bias_table [num_distances, depth * num_heads]``, VLMo's layout).
        text_rel_pos_len: text length the table's 1-D part is sized for (VLMo:
            ``max_text_len_of_initckpt``, 196); defaults to ``max_text_len``.
        pad_token_id: padding id of the text (masked out of attention).

    ``forward(images=None, input_ids=None, attention_mask=None, image_mask=None)``: images
    only or texts only run the modality's experts in every block (dual-encoder mode); both
    run ``[text; image]`` through modality experts in the lower blocks and the VL expert in
    the top ``num_vl_layers`` (fusion mode). ``image_mask [B, N_patches]`` (bool) replaces
    those patch embeddings by the ``[MASK]`` embedding (masked image modelling). Returns
    ``image_embeds`` (``[CLS]`` first), ``image_pooled``, ``text_embeds``, ``text_pooled``,
    ``text_mask``, as present, after the final norm.
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 vocab_size: int = 30522, max_text_len: int = 40, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 num_vl_layers: int = 2, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path_rate: float = 0.0, ln_eps: float = 1e-6,
                 layer_scale_init: Optional[float] = 0.1, abs_pos_embed: bool = True,
                 rel_pos_bias: bool = False, text_rel_pos_len: Optional[int] = None,
                 pad_token_id: int = 0, initializer_range: float = 0.02):
        super().__init__()
        if not 0 <= num_vl_layers <= depth:
            raise ValueError(f'num_vl_layers must be in [0, {depth}], got {num_vl_layers}')
        if img_size % patch_size:
            raise ValueError(f'img_size {img_size} is not a multiple of patch {patch_size}')
        self.embed_dim = self.out_dim = embed_dim
        self.depth, self.num_heads, self.num_vl_layers = depth, num_heads, num_vl_layers
        self.max_text_len = max_text_len
        self.grad_checkpointing = False
        self.grid = img_size // patch_size
        self.num_patches = self.grid ** 2
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))  # BEiT's [MASK] patch
        self.word_embeddings = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_token_id)
        if abs_pos_embed:
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, embed_dim))
            self.text_pos_embed = nn.Embedding(max_text_len, embed_dim)
        else:
            self.pos_embed = self.text_pos_embed = None
        self.text_norm = nn.LayerNorm(embed_dim, eps=1e-12)  # BERT embeddings' LayerNorm
        self.type_embed = nn.Embedding(2, embed_dim)  # 0 text, 1 image (VLMo)
        self.embed_drop = nn.Dropout(drop)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList([
            MultiwayBlock(embed_dim, num_heads, mlp_ratio,
                          with_vl=i >= depth - num_vl_layers, qkv_bias=qkv_bias, drop=drop,
                          attn_drop=attn_drop, drop_path=dpr[i], ln_eps=ln_eps,
                          layer_scale_init=layer_scale_init)
            for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=ln_eps)
        self.rel_pos_bias_table = None
        if rel_pos_bias:
            self._build_rel_pos(text_rel_pos_len or max_text_len)
        self._init(initializer_range)

    # -- relative position bias (BEiT; VLMo's merged table) -------------------------------------
    def _build_rel_pos(self, text_len0: int) -> None:
        if self.max_text_len > text_len0:
            raise ValueError(f'max_text_len {self.max_text_len} exceeds text_rel_pos_len '
                             f'{text_len0}')
        w = self.grid
        n_img = (2 * w - 1) ** 2 + 3  # 2-D offsets + cls->patch, patch->cls, cls->cls
        n_all = n_img + 2 * text_len0 + 2
        self.rel_pos_bias_table = nn.Parameter(torch.zeros(n_all, self.depth * self.num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing='ij'))
        coords = coords.flatten(1)  # (2, w*w)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (w*w, w*w, 2)
        rel = (rel[..., 0] + w - 1) * (2 * w - 1) + (rel[..., 1] + w - 1)
        img = torch.zeros(w * w + 1, w * w + 1, dtype=torch.long)
        img[1:, 1:] = rel
        img[0, :], img[:, 0], img[0, 0] = n_img - 3, n_img - 2, n_img - 1
        L = self.max_text_len
        pos = torch.arange(L - 1)
        txt = torch.zeros(L, L, dtype=torch.long)
        txt[1:, 1:] = (pos[None, :] - pos[:, None]) + (text_len0 - 2) + n_img + 2
        txt[0, :], txt[:, 0], txt[0, 0] = n_all - 3, n_all - 2, n_all - 1
        self.register_buffer('rel_index_image', img, persistent=False)
        self.register_buffer('rel_index_text', txt, persistent=False)
        self._t2i, self._i2t = n_img, n_img + 1

    def _rel_pos(self, n_text: int, n_img: int) -> torch.Tensor:
        """``[depth, heads, N, N]`` bias for ``[text (n_text); image (n_img)]``."""
        if n_text and n_img:
            top = torch.cat([self.rel_index_text[:n_text, :n_text],
                             self.rel_index_text.new_full((n_text, n_img), self._t2i)], 1)
            bottom = torch.cat([self.rel_index_image.new_full((n_img, n_text), self._i2t),
                                self.rel_index_image], 1)
            index = torch.cat([top, bottom], 0)
        else:
            index = self.rel_index_text[:n_text, :n_text] if n_text else self.rel_index_image
        bias = self.rel_pos_bias_table[index]  # (N, N, depth * heads)
        return bias.permute(2, 0, 1).reshape(self.depth, self.num_heads, *index.shape)

    def _init(self, std: float) -> None:
        init_bert_style(self, std)
        nn.init.trunc_normal_(self.cls_token, std=std)
        nn.init.trunc_normal_(self.mask_token, std=std)
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=std)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set:
        return {'pos_embed', 'cls_token', 'mask_token', 'rel_pos_bias_table'}

    # -- embeddings -------------------------------------------------------------------------
    def embed_image(self, images: torch.Tensor,
                    image_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, N, C)
        if image_mask is not None:
            w = image_mask.unsqueeze(-1).to(x.dtype)
            x = x * (1 - w) + self.mask_token.to(x.dtype) * w
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        return x + self.type_embed.weight[1]

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] > self.max_text_len:
            raise ValueError(f'text of {input_ids.shape[1]} tokens exceeds max_text_len '
                             f'{self.max_text_len}')
        x = self.word_embeddings(input_ids)
        if self.text_pos_embed is not None:
            x = x + self.text_pos_embed(torch.arange(input_ids.shape[1],
                                                     device=input_ids.device))
        return self.text_norm(x) + self.type_embed.weight[0]

    # -- forward -----------------------------------------------------------------------------
    def forward(self, images: Optional[torch.Tensor] = None,
                input_ids: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None,
                image_mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        if images is None and input_ids is None:
            raise ValueError('MultiwayTransformer needs images, input_ids or both')
        parts, n_text, n_img = [], 0, 0
        if input_ids is not None:
            parts.append(self.embed_text(input_ids))
            n_text = input_ids.shape[1]
        if images is not None:
            parts.append(self.embed_image(images, image_mask))
            n_img = parts[-1].shape[1]
        x = self.embed_drop(torch.cat(parts, dim=1))
        B, N = x.shape[:2]
        mask = None  # additive (B or 1, heads or 1, N, N)
        if input_ids is not None and attention_mask is not None:
            keep = torch.ones(B, N, dtype=torch.bool, device=x.device)
            keep[:, :n_text] = attention_mask.bool()
            mask = torch.zeros(B, 1, 1, N, dtype=x.dtype, device=x.device)
            mask = mask.masked_fill(~keep[:, None, None, :], float('-inf'))
        bias = self._rel_pos(n_text, n_img) if self.rel_pos_bias_table is not None else None
        fusion = n_text and n_img
        modality = None if fusion else ('l' if n_text else 'v')
        for i, blk in enumerate(self.blocks):
            expert = 'vl' if fusion and i >= self.depth - self.num_vl_layers else modality
            layer_mask = mask
            if bias is not None:
                layer_mask = bias[i].unsqueeze(0).to(x.dtype) + (0 if mask is None else mask)
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(blk, x, n_text, layer_mask, expert,
                                                      use_reentrant=False)
            else:
                x = blk(x, n_text, layer_mask, expert)
        x = self.norm(x)
        out = {}
        if n_text:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            out.update(text_embeds=x[:, :n_text], text_pooled=x[:, 0], text_mask=attention_mask)
        if n_img:
            out.update(image_embeds=x[:, n_text:], image_pooled=x[:, n_text])
        return out

