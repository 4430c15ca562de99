"""The single-stream transformer of ViLT (Kim et al. 2021, "ViLT: Vision-and-Language
Transformer Without Convolution or Region Supervision", Sec. 3.1, Eq. 1-5).

Text and image tokens are embedded shallowly and concatenated into ONE sequence that a
ViT-style pre-LN transformer reads (no CNN, no region features):

- text: BERT embeddings (word + position + token-type, LayerNorm; HF ``ViltEmbeddings``'
  ``TextEmbeddings``), ``[CLS] ... [SEP]`` as the tokenizer writes them;
- image: a linear projection of flattened ``P x P`` patches (a strided convolution), a
  learned ``[class]`` token and learned position embeddings (ViT), resampled bilinearly
  (``align_corners=True``, as ViLT) when the image grid differs from ``img_size``;
- a modality-type embedding (0 text, 1 image) added to every token;
- ``[text; image]`` through ``depth`` pre-LN blocks (:class:`~vlp.models.layers.
  TransformerBlock`), a final LayerNorm, and a pooler (``tanh(W x_0 + b)`` on the first
  token, the text ``[CLS]``) that ITM reads.

ViLT's pre-training samples at most 200 patches per image (``max_image_len``; its images
are up to 384 x 640). Here patch sampling is optional (training only) and images in a
batch share one size (no pixel mask): a 384 x 384 image at patch 32 has 144 patches.
"""
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlp.registry import MODELS
from ..layers.transformer import (TransformerBlock, build_attn_mask, init_bert_style,
                                  maybe_checkpoint, sdpa_mask)


@MODELS.register_module()
class SingleStreamTransformer(nn.Module):
    """ViLT's backbone (ViT-B/32 layout by default).

    Args:
        img_size, patch_size, in_chans: image input (ViLT: 384, 32, 3).
        vocab_size, max_text_len, type_vocab_size: text input (BERT's 30522; ViLT: 40; 2).
        embed_dim, depth, num_heads, mlp_ratio: transformer sizes (ViT-B: 768, 12, 12, 4).
        mlp_dim: FFN hidden width (overrides ``mlp_ratio``; HF's ``intermediate_size``).
        qkv_bias: biases on the query/key/value projections.
        num_modality_types: rows of ``modality_embed`` (2; 3 for NLVR2's second image).
        drop, attn_drop, drop_path: dropout rates (ViLT: 0.1 dropout, 0.1 stochastic depth
            is ViT-B's timm default; HF's port has none).
        ln_eps: LayerNorm epsilon (HF ViLT: 1e-12 everywhere; timm's ViT: 1e-6).
        act_layer: FFN activation (``'gelu'``, exact).
        pad_token_id: padding id of the word embeddings.
        max_image_len: training only: keep a random subset of at most this many patches
            per image (ViLT: 200); ``None``: all patches.
        with_pooler: build the ``tanh`` pooler.
        initializer_range: std of the truncated-normal init.

    Parameter names: ``patch_embed``, ``cls_token``, ``pos_embed``, ``word_embeddings``,
    ``text_pos_embed``, ``token_type_embed``, ``text_norm``, ``modality_embed``,
    ``blocks.i.*`` (:class:`TransformerBlock`), ``norm``, ``pooler``.
    """

    def __init__(self, img_size: int = 384, patch_size: int = 32, in_chans: int = 3,
                 vocab_size: int = 30522, max_text_len: int = 40, type_vocab_size: int = 2,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, mlp_dim: Optional[int] = None, qkv_bias: bool = True,
                 num_modality_types: int = 2, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, ln_eps: float = 1e-12, act_layer: str = 'gelu',
                 pad_token_id: Optional[int] = 0, max_image_len: Optional[int] = None,
                 with_pooler: bool = True, initializer_range: float = 0.02):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f'img_size {img_size} is not a multiple of patch {patch_size}')
        self.embed_dim = self.out_dim = embed_dim
        self.grid = img_size // patch_size
        self.max_image_len = max_image_len
        self.grad_checkpointing = False
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid ** 2 + 1, embed_dim))
        self.word_embeddings = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_token_id)
        self.text_pos_embed = nn.Embedding(max_text_len, embed_dim)
        self.token_type_embed = nn.Embedding(type_vocab_size, embed_dim)
        self.text_norm = nn.LayerNorm(embed_dim, eps=ln_eps)
        # 0 text, 1 image (ViLT Eq. 1-3)
        self.modality_embed = nn.Embedding(num_modality_types, embed_dim)
        self.drop = nn.Dropout(drop)
        rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]  # timm's rule
        self.blocks = nn.ModuleList([
            TransformerBlock(embed_dim, num_heads, mlp_ratio=mlp_ratio, mlp_dim=mlp_dim,
                             act_layer=act_layer, qkv_bias=qkv_bias, norm_first=True,
                             ln_eps=ln_eps, drop=drop, attn_drop=attn_drop, drop_path=r)
            for r in rates])
        self.norm = nn.LayerNorm(embed_dim, eps=ln_eps)
        self.pooler = nn.Linear(embed_dim, embed_dim) if with_pooler else None
        self._init(initializer_range)

    def _init(self, std: float) -> None:
        init_bert_style(self, std)
        nn.init.trunc_normal_(self.cls_token, std=std)
        nn.init.trunc_normal_(self.pos_embed, std=std)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    # -- embeddings -----------------------------------------------------------------------
    def embed_text(self, input_ids: torch.Tensor,
                   token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B, L]`` ids -> ``[B, L, C]``: LN(word + position + token type) + modality 0."""
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = (self.word_embeddings(input_ids) + self.text_pos_embed(pos)[None]
             + self.token_type_embed(token_type_ids))
        return self.drop(self.text_norm(x)) + self.modality_embed.weight[0]

    def image_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Position embeddings ``[1, 1 + h w, C]`` for an ``h x w`` patch grid."""
        if (h, w) == (self.grid, self.grid):
            return self.pos_embed
        C = self.embed_dim
        grid = self.pos_embed[:, 1:].transpose(1, 2).reshape(1, C, self.grid, self.grid)
        grid = F.interpolate(grid, size=(h, w), mode='bilinear', align_corners=True)
        return torch.cat([self.pos_embed[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)

    def embed_image(self, images: torch.Tensor, image_token_type_idx: int = 1
                    ) -> torch.Tensor:
        """``[B, 3, H, W]`` -> ``[B, 1 + N, C]`` (``[class]`` first), plus modality type."""
        x = self.patch_embed(images)  # (B, C, h, w)
        h, w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2) + self.image_pos_embed(h, w)[:, 1:]  # (B, N, C)
        if self.training and self.max_image_len is not None and x.shape[1] > self.max_image_len:
            keep = torch.rand(x.shape[:2], device=x.device).argsort(dim=1)
            keep = keep[:, :self.max_image_len].sort(dim=1).values  # (B, n)
            x = x.gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = self.drop(torch.cat([cls, x], dim=1))
        return x + self.modality_embed.weight[image_token_type_idx]

    # -- the one stream -------------------------------------------------------------------
    def forward(self, images: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None,
                image_token_type_idx: int = 1) -> Dict[str, torch.Tensor]:
        """
        Args:
            images: ``[B, 3, H, W]`` normalised pixels (``H, W`` multiples of the patch).
            input_ids: ``[B, L]`` token ids; ``attention_mask``: ``[B, L]`` (1 = token).
            token_type_ids: BERT segment ids (default 0).
            image_token_type_idx: modality type of the image tokens (1; NLVR2's second
                image uses 2, with ``num_modality_types=3``).

        Returns:
            ``text_embeds [B, L, C]``, ``image_embeds [B, 1 + N, C]`` (the image
            ``[class]`` state first), ``text_mask [B, L]``, ``image_mask [B, 1 + N]``,
            ``pooled [B, C]`` (the pooler on the first token; absent without a pooler).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        text = self.embed_text(input_ids, token_type_ids)
        image = self.embed_image(images, image_token_type_idx)
        L = text.shape[1]
        image_mask = torch.ones(image.shape[:2], dtype=attention_mask.dtype,
                                device=image.device)
        x = torch.cat([text, image], dim=1)  # (B, L + 1 + N, C)
        mask = sdpa_mask(build_attn_mask(torch.cat([attention_mask, image_mask], dim=1)), x)
        for blk in self.blocks:
            x = maybe_checkpoint(blk, x, mask, enabled=self.grad_checkpointing)
        x = self.norm(x)
        out = dict(text_embeds=x[:, :L], image_embeds=x[:, L:], text_mask=attention_mask,
                   image_mask=image_mask)
        if self.pooler is not None:
            out['pooled'] = torch.tanh(self.pooler(x[:, 0]))
        return out
