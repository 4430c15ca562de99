"""The BEiT-3 multiway transformer (Wang et al. 2022, "Image as a Foreign Language: BEiT
Pretraining for All Vision and Vision-Language Tasks"), in the layout of its released code:
torchscale's ``BEiT3`` encoder, which the official unilm/beit3 models wrap (``beit3.*``).

Departure of the code from the paper, and the one we follow: Sec. 2.1 of the paper
describes a Multiway Transformer whose blocks share one self-attention among modalities,
with vision / language experts in the feed-forward layers and vision-language experts in
the top layers (as VLMo, :mod:`vlp.models.backbones.multiway`). The released
architecture has *no* VL expert, and its attention is multiway as well: every block holds
a vision (torchscale ``A``) and a language (``B``) copy of the query / key / value / output
projections, of both layer norms and of the FFN, while the softmax runs jointly over the
whole ``[image; text]`` sequence. We follow the released code, because the published
checkpoints are in that layout and checkpoint parity (``tools/convert/
torchscale_beit3_to_vlp.py``) is what makes this backbone useful.

Each block is Magneto / sub-LN (Wang et al. 2022, "Foundation Transformers"): pre-LN
``x + attn(norm1(x))`` with a LayerNorm on the attention output before its output
projection (``attn.norm``, torchscale ``inner_attn_ln``), then ``x + ffn(norm2(x))`` with a
LayerNorm between the activation and ``fc2`` (``ffn.*.norm``, ``ffn_layernorm``); a final
multiway LayerNorm. Embeddings: a patch convolution with ``[CLS]`` and BEiT's ``[MASK]``
token; word embeddings without LayerNorm; learned absolute positions, one table per
modality, indexed from 2 (fairseq's offset; the text table's ``max_text_len`` rows thus
hold ``max_text_len - 2`` usable positions, torchscale's ``max_source_positions``).
No modality-type embedding: the experts tell the modalities apart.
"""
import math
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.layers import DropPath

from vlp.registry import MODELS

POS_OFFSET = 2  # torchscale / fairseq: position ids start at 2


class Multiway(nn.Module):
    """Two experts of the same shape: ``v`` for the first ``split`` tokens of the sequence
    (the image part), ``l`` for the rest (the text part)."""

    def __init__(self, make):
        super().__init__()
        self.v = make()
        self.l = make()  # noqa: E741  (language expert)

    def forward(self, x: torch.Tensor, split: int) -> torch.Tensor:
        """``x [B, N, ...]``; ``split`` in ``[0, N]``: tokens ``[:split]`` go to ``v``."""
        if split >= x.shape[1]:
            return self.v(x)
        if split <= 0:
            return self.l(x)
        return torch.cat([self.v(x[:, :split]), self.l(x[:, split:])], dim=1)


class SubLNMlp(nn.Module):
    """``fc2(norm(drop(act(fc1(x)))))`` then dropout (torchscale FeedForwardNetwork with
    ``subln``); the activation runs in fp32 as there."""

    def __init__(self, dim: int, hidden: int, eps: float, subln: bool = True,
                 act_drop: float = 0.0, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act_drop = nn.Dropout(act_drop)
        self.norm = nn.LayerNorm(hidden, eps=eps) if subln else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = self.act_drop(F.gelu(h.float()).type_as(h))
        return self.drop(self.fc2(self.norm(h)))


class MultiwayAttention(nn.Module):
    """Self-attention with modality-specific projections and one joint softmax: queries,
    keys and values of the image tokens come from ``qkv.v``, those of the text tokens from
    ``qkv.l``; every token attends to every (unpadded) token; the per-head outputs go
    through the sub-LN ``norm`` and ``proj`` of their token's modality."""

    def __init__(self, dim: int, num_heads: int, eps: float, subln: bool = True,
                 attn_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = Multiway(lambda: nn.Linear(dim, 3 * dim))  # q, k, v stacked
        self.norm = Multiway(lambda: nn.LayerNorm(dim, eps=eps) if subln else nn.Identity())
        self.proj = Multiway(lambda: nn.Linear(dim, dim))
        self.attn_drop = attn_drop

    def forward(self, x: torch.Tensor, split: int,
                attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``attn_mask``: boolean, True = attend, broadcastable to ``[B, nh, N, N]``."""
        B, N, C = x.shape
        qkv = self.qkv(x, split).view(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, nh, N, hs)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask,
            dropout_p=self.attn_drop if self.training else 0.0)  # (B, nh, N, hs)
        out = out.transpose(1, 2).reshape(B, N, C)
        return self.proj(self.norm(out, split), split)


class BEiT3Block(nn.Module):
    """``x + dp(drop(attn(norm1(x))))``, ``x + dp(ffn(norm2(x)))``; every part multiway."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, eps: float, subln: bool,
                 drop: float, attn_drop: float, act_drop: float, drop_path: float):
        super().__init__()
        self.norm1 = Multiway(lambda: nn.LayerNorm(dim, eps=eps))
        self.attn = MultiwayAttention(dim, num_heads, eps, subln, attn_drop)
        self.drop = nn.Dropout(drop)
        self.norm2 = Multiway(lambda: nn.LayerNorm(dim, eps=eps))
        self.ffn = Multiway(lambda: SubLNMlp(dim, ffn_dim, eps, subln, act_drop, drop))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, split: int,
                attn_mask: Optional[torch.Tensor]) -> torch.Tensor:
        x = x + self.drop_path(self.drop(self.attn(self.norm1(x, split), split, attn_mask)))
        return x + self.drop_path(self.ffn(self.norm2(x, split), split))


@MODELS.register_module()
class BEiT3Transformer(nn.Module):
    """BEiT-3 backbone (torchscale ``BEiT3`` as used by unilm/beit3).

    Args:
        img_size, patch_size, in_chans: image input (224, 16, 3).
        vocab_size: text vocabulary (unilm/beit3: 64010, its XLM-R sentencepiece).
        max_text_len: rows of the text position table, torchscale's ``max_source_positions``
            (1024); texts may have up to ``max_text_len - 2`` tokens (ids start at 2).
        embed_dim, depth, num_heads: sizes (BEiT-3 base: 768, 12, 12; large: 1024, 24, 16).
        mlp_ratio / ffn_dim: FFN width ``ffn_dim`` (default ``embed_dim * mlp_ratio``).
        drop, attn_drop, act_drop, drop_path_rate: torchscale's ``dropout``,
            ``attention_dropout``, ``activation_dropout``, ``drop_path_rate`` (linear in depth).
        layernorm_eps: every LayerNorm's eps (torchscale: 1e-5).
        subln: Magneto sub-LN (``attn.norm``, ``ffn.*.norm``) and its init gain.
        init_std: ``None``: torchscale's init (PyTorch's default for linear and conv layers,
            N(0, dim^-1/2) word and N(0, 1) position embeddings, zero ``[CLS]``/``[MASK]``);
            a float: unilm's ``BEiT3Wrapper`` re-init of linear layers,
            ``trunc_normal(std, a=-std, b=std)`` with zero biases.
        subln_init_gain: multiply ``fc1``, ``fc2``, attention output and value projections
            (weights and biases) by ``sqrt(log(2 * depth))`` after the init, as torchscale's
            Encoder does with ``subln`` (unilm's wrapper re-init discards this gain: set
            ``init_std=0.02, subln_init_gain=False`` to start as unilm's fine-tuning models).
        output_projection: torchscale's output layer (a bias-free ``[V, C]`` linear map of
            the final states to the vocabulary; :meth:`output_logits`), for checkpoints
            that hold ``encoder.output_projection.weight``.

    Pre-LN only (``normalize_before=True``), GELU, no embedding scale / LayerNorm, no
    relative position bias: BEiT-3's settings of torchscale's EncoderConfig.

    ``forward(images=None, input_ids=None, attention_mask=None, vision_masked_position=None)``
    runs images only (vision experts), texts only (language experts) or ``[image; text]``
    in one sequence (fusion: the first ``1 + N_patches`` tokens use the vision experts, the
    rest the language ones). ``attention_mask [B, T]``: 1 = keep (torchscale's
    ``text_padding_position`` is its negation); padded tokens are zeroed after the
    embedding and masked as keys. ``vision_masked_position [B, N_patches]`` (bool / 0-1)
    replaces those patch embeddings by ``mask_token`` (masked image modelling). Returns
    ``image_embeds`` (``[CLS]`` first), ``image_pooled`` (``[CLS]``), ``text_embeds``,
    ``text_pooled`` (first text token), ``text_mask``, as present, after the final norm.
    The word embedding is ``self.word_embeddings`` (for a tied MLM head).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
                 vocab_size: int = 64010, max_text_len: int = 1024, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 ffn_dim: Optional[int] = None, drop: float = 0.0, attn_drop: float = 0.0,
                 act_drop: float = 0.0, drop_path_rate: float = 0.0,
                 layernorm_eps: float = 1e-5, subln: bool = True,
                 init_std: Optional[float] = None, subln_init_gain: bool = True,
                 output_projection: bool = False):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f'img_size {img_size} is not a multiple of patch {patch_size}')
        if max_text_len <= POS_OFFSET:
            raise ValueError(f'max_text_len must exceed {POS_OFFSET}, got {max_text_len}')
        self.embed_dim = self.out_dim = embed_dim
        self.depth, self.num_heads = depth, num_heads
        self.max_text_len = max_text_len
        self.grad_checkpointing = False
        self.num_patches = (img_size // patch_size) ** 2
        ffn_dim = ffn_dim or int(embed_dim * mlp_ratio)
        # embeddings (torchscale VisionEmbedding, TextEmbedding, PositionalEmbedding A / B)
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.word_embeddings = nn.Embedding(vocab_size, embed_dim)
        self.image_pos_embed = nn.Embedding(self.num_patches + 1 + POS_OFFSET, embed_dim)
        self.text_pos_embed = nn.Embedding(max_text_len, embed_dim)
        self.embed_drop = nn.Dropout(drop)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # linear
        self.blocks = nn.ModuleList([
            BEiT3Block(embed_dim, num_heads, ffn_dim, layernorm_eps, subln, drop, attn_drop,
                       act_drop, dpr[i])
            for i in range(depth)])
        self.norm = Multiway(lambda: nn.LayerNorm(embed_dim, eps=layernorm_eps))
        self._init(init_std, subln and subln_init_gain)
        # torchscale's output layer (pre-training checkpoints hold it; unilm's task models
        # build BEiT3 with no_output_layer=True): kept, applied by output_logits only
        self.output_projection = None
        if output_projection:
            self.output_projection = nn.Linear(embed_dim, vocab_size, bias=False)
            nn.init.normal_(self.output_projection.weight, std=embed_dim ** -0.5)

    def output_logits(self, states: torch.Tensor) -> torch.Tensor:
        """torchscale's ``output_projection`` of final states ``[..., C] -> [..., V]``
        (its ``encoder_out`` with an output layer)."""
        if self.output_projection is None:
            raise RuntimeError('this BEiT3Transformer has no output layer '
                               '(output_projection=False)')
        return self.output_projection(states)

    def _init(self, std: Optional[float], gain: bool) -> None:
        nn.init.normal_(self.word_embeddings.weight, std=self.embed_dim ** -0.5)
        nn.init.normal_(self.image_pos_embed.weight)
        nn.init.normal_(self.text_pos_embed.weight)
        if std is not None:
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=std, a=-std, b=std)
                    nn.init.zeros_(m.bias)
        if gain:  # Magneto: sqrt(log(2N)) on the FFN, the value and output projections
            scale = math.sqrt(math.log(2 * self.depth))
            dim = self.embed_dim
            with torch.no_grad():
                for blk in self.blocks:
                    for e in ('v', 'l'):
                        qkv = getattr(blk.attn.qkv, e)
                        qkv.weight[2 * dim:].mul_(scale)  # value rows only
                        qkv.bias[2 * dim:].mul_(scale)
                        for m in (getattr(blk.attn.proj, e), getattr(blk.ffn, e).fc1,
                                  getattr(blk.ffn, e).fc2):
                            m.weight.mul_(scale)
                            m.bias.mul_(scale)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set:
        return {'cls_token', 'mask_token', 'image_pos_embed.weight'}

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm-style parameter groups (embeddings, each block, final norm) for layer-wise
        learning-rate decay."""
        return dict(stem=r'^(cls_token|mask_token|patch_embed|word_embeddings|'
                         r'image_pos_embed|text_pos_embed)',
                    blocks=r'^blocks\.(\d+)' if coarse else
                    [(r'^blocks\.(\d+)', None), (r'^norm\.', (99999,))])

    # -- embeddings -------------------------------------------------------------------------
    def embed_image(self, images: torch.Tensor,
                    vision_masked_position: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, N, C)
        if vision_masked_position is not None:
            w = vision_masked_position.unsqueeze(-1).to(x.dtype)
            x = x * (1 - w) + self.mask_token.to(x.dtype) * w
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        pos = torch.arange(POS_OFFSET, POS_OFFSET + x.shape[1], device=x.device)
        return x + self.image_pos_embed(pos)

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        if T > self.max_text_len - POS_OFFSET:
            raise ValueError(f'text of {T} tokens exceeds max_text_len - {POS_OFFSET} = '
                             f'{self.max_text_len - POS_OFFSET}')
        pos = torch.arange(POS_OFFSET, POS_OFFSET + T, device=input_ids.device)
        return self.word_embeddings(input_ids) + self.text_pos_embed(pos)

    # -- forward -----------------------------------------------------------------------------
    def forward(self, images: Optional[torch.Tensor] = None,
                input_ids: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None,
                vision_masked_position: Optional[torch.Tensor] = None
                ) -> Dict[str, torch.Tensor]:
        if images is None and input_ids is None:
            raise ValueError('BEiT3Transformer needs images, input_ids or both')
        parts, n_img, n_text = [], 0, 0
        if images is not None:
            parts.append(self.embed_image(images, vision_masked_position))
            n_img = parts[-1].shape[1]
        if input_ids is not None:
            parts.append(self.embed_text(input_ids))
            n_text = input_ids.shape[1]
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        mask = None  # boolean (B, 1, 1, N), True = attend
        if n_text and attention_mask is not None:
            keep = attention_mask.bool()
            if n_img:
                keep = torch.cat([keep.new_ones(keep.shape[0], n_img), keep], dim=1)
            x = x * keep.unsqueeze(-1).to(x.dtype)  # torchscale zeroes padded embeddings
            mask = keep[:, None, None, :]
        x = self.embed_drop(x)
        split = n_img  # tokens [:n_img] use the vision experts
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(blk, x, split, mask, use_reentrant=False)
            else:
                x = blk(x, split, mask)
        x = self.norm(x, split)
        out = {}
        if n_img:
            out.update(image_embeds=x[:, :n_img], image_pooled=x[:, 0])
        if n_text:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            out.update(text_embeds=x[:, n_img:], text_pooled=x[:, n_img],
                       text_mask=attention_mask)
        return out
