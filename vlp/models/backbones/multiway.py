"""The multiway (mixture-of-modality-experts) transformer of VLMo (Bao et al. 2022, "VLMo:
Unified Vision-Language Pre-Training with Mixture-of-Modality-Experts", Sec. 3.1) and
BEiT-3 (Wang et al. 2022, "Image as a Foreign Language: BEiT Pretraining for All Vision
and Vision-Language Tasks", Sec. 2.1).

Every block has one self-attention shared by all modalities and a pool of feed-forward
experts: a vision expert (V-FFN) for image tokens and a language expert (L-FFN) for text
tokens; in the top ``num_vl_layers`` blocks (VLMo-Base: 2 of 12) a vision-language expert
(VL-FFN) replaces both for the concatenated image-text sequence in fusion mode. The same
weights therefore serve as an image encoder, a text encoder (dual-encoder mode, for ITC)
and a fusion encoder (image and text tokens in one sequence, for ITM / MLM). Pre-LN blocks
(ViT / BEiT layout), the norms are per expert as in VLMo.

Inputs: images through a patch embedding with a ``[CLS]`` token and learned position
embeddings (ViT), texts through word + position embeddings (BERT-style, ``[CLS]`` first),
each plus a learned modality-type embedding. Not implemented here (the VLMo/BEiT-3 models
built on this backbone are the next step): the relative position bias of BEiT, layer-scale.
"""
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint

from vlp.registry import MODELS
from ..layers.attention import Attention, Mlp
from ..layers.transformer import build_attn_mask

EXPERTS = ('v', 'l', 'vl')


class MultiwayBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln1_e(x))`` with one shared attention, then ``x +
    ffn_e(ln2_e(x))`` where the expert ``e`` is chosen per token (``'v'`` / ``'l'`` by the
    token's modality) or for the whole sequence (``'vl'``)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0,
                 with_vl: bool = False, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, ln_eps: float = 1e-6, act_layer: str = 'gelu'):
        super().__init__()
        experts = ('v', 'l', 'vl') if with_vl else ('v', 'l')
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                              proj_drop=drop)
        self.norm1 = nn.ModuleDict({e: nn.LayerNorm(dim, eps=ln_eps) for e in experts})
        self.norm2 = nn.ModuleDict({e: nn.LayerNorm(dim, eps=ln_eps) for e in experts})
        hidden = int(dim * mlp_ratio)
        self.ffn = nn.ModuleDict({e: Mlp(dim, hidden, act_layer=act_layer, drop=drop)
                                  for e in experts})

    def _route(self, modules: nn.ModuleDict, x: torch.Tensor, num_image: int,
               expert: Optional[str]) -> torch.Tensor:
        if expert is not None:
            return modules[expert](x)
        return torch.cat([modules['v'](x[:, :num_image]), modules['l'](x[:, num_image:])],
                         dim=1)

    def forward(self, x: torch.Tensor, num_image: int, attn_mask: Optional[torch.Tensor],
                expert: Optional[str] = None) -> torch.Tensor:
        """``x [B, N_img + N_txt, C]`` (image tokens first); ``expert`` ``None`` routes by
        modality, ``'vl'`` uses the vision-language expert for every token."""
        x = x + self.attn(self._route(self.norm1, x, num_image, expert), attn_mask=attn_mask)
        return x + self._route(self.ffn, self._route(self.norm2, x, num_image, expert),
                               num_image, expert)


@MODELS.register_module()
class MultiwayTransformer(nn.Module):
    """VLMo / BEiT-3 backbone.

    Args:
        img_size, patch_size, in_chans: image input (224, 16, 3).
        vocab_size, max_text_len: text input (BERT's 30522, 40 in VLMo).
        embed_dim, depth, num_heads, mlp_ratio: transformer sizes (ViT-B: 768, 12, 12, 4).
        num_vl_layers: top blocks with a VL-FFN used in fusion mode (VLMo-Base: 2).
        drop, attn_drop, ln_eps: dropout rates and LayerNorm epsilon.
        pad_token_id: padding id of the text (masked out of attention).

    ``forward(images=None, input_ids=None, attention_mask=None)``: images only or texts only
    run the modality's experts in every block (dual-encoder mode); both run the
    concatenated sequence through modality experts in the lower blocks and the VL expert in
    the top ``num_vl_layers`` (fusion mode). Returns ``image_embeds``, ``image_pooled`` (the
    image ``[CLS]``), ``text_embeds``, ``text_pooled`` (the text ``[CLS]``), ``text_mask``,
    as present, after the final norm of the expert that produced them.
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 vocab_size: int = 30522, max_text_len: int = 40, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 num_vl_layers: int = 2, drop: float = 0.0, attn_drop: float = 0.0,
                 ln_eps: float = 1e-6, pad_token_id: int = 0, initializer_range: float = 0.02):
        super().__init__()
        if not 0 <= num_vl_layers <= depth:
            raise ValueError(f'num_vl_layers must be in [0, {depth}], got {num_vl_layers}')
        if img_size % patch_size:
            raise ValueError(f'img_size {img_size} is not a multiple of patch {patch_size}')
        self.embed_dim = self.out_dim = embed_dim
        self.depth, self.num_vl_layers = depth, num_vl_layers
        self.grad_checkpointing = False
        num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.word_embeddings = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_token_id)
        self.text_pos_embed = nn.Embedding(max_text_len, embed_dim)
        self.type_embed = nn.Embedding(2, embed_dim)  # 0 text, 1 image (VLMo)
        self.blocks = nn.ModuleList([
            MultiwayBlock(embed_dim, num_heads, mlp_ratio,
                          with_vl=i >= depth - num_vl_layers, drop=drop, attn_drop=attn_drop,
                          ln_eps=ln_eps)
            for i in range(depth)])
        experts = ('v', 'l', 'vl') if num_vl_layers else ('v', 'l')
        self.norm = nn.ModuleDict({e: nn.LayerNorm(embed_dim, eps=ln_eps) for e in experts})
        self._init(initializer_range)

    def _init(self, std: float) -> None:
        for m in self.modules():
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
        nn.init.trunc_normal_(self.cls_token, std=std)
        nn.init.trunc_normal_(self.pos_embed, std=std)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, N, C)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embed + self.type_embed.weight[1]

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        return (self.word_embeddings(input_ids) + self.text_pos_embed(pos)
                + self.type_embed.weight[0])

    def forward(self, images: Optional[torch.Tensor] = None,
                input_ids: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        if images is None and input_ids is None:
            raise ValueError('MultiwayTransformer needs images, input_ids or both')
        parts, key_masks = [], []
        n_img = 0
        if images is not None:
            img = self.embed_image(images)
            n_img = img.shape[1]
            parts.append(img)
            key_masks.append(torch.ones(img.shape[:2], dtype=torch.long, device=img.device))
        if input_ids is not None:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            parts.append(self.embed_text(input_ids))
            key_masks.append(attention_mask.long())
        x = torch.cat(parts, dim=1)
        mask = build_attn_mask(torch.cat(key_masks, dim=1))
        fusion = images is not None and input_ids is not None
        modality = None if fusion else ('v' if images is not None else 'l')
        for i, blk in enumerate(self.blocks):
            expert = modality
            if fusion and i >= self.depth - self.num_vl_layers:
                expert = 'vl'
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(blk, x, n_img, mask, expert,
                                                      use_reentrant=False)
            else:
                x = blk(x, n_img, mask, expert)
        if fusion and self.num_vl_layers:
            x = self.norm['vl'](x)
        elif fusion:
            x = torch.cat([self.norm['v'](x[:, :n_img]), self.norm['l'](x[:, n_img:])], 1)
        else:
            x = self.norm[modality](x)
        out = {}
        if images is not None:
            out.update(image_embeds=x[:, :n_img], image_pooled=x[:, 0])
        if input_ids is not None:
            out.update(text_embeds=x[:, n_img:], text_pooled=x[:, n_img],
                       text_mask=attention_mask)
        return out
