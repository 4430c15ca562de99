"""BLIP-2 stage 1 (Li et al. 2023, "BLIP-2: Bootstrapping Language-Image Pre-training
with Frozen Image Encoders and Large Language Models", Sec. 3.2): vision-language
representation learning from a **frozen** image encoder through the Q-Former
(:class:`~vlp.models.necks.qformer.QFormer`), with three objectives, each under its own
self-attention mask over ``[queries; text]``:

- **ITC** (uni-modal mask): the 32 query outputs and the text ``[CLS]`` are projected to
  256-d and normalised; the image-text similarity is the **maximum over the queries** of
  query-to-text similarity; negatives are the batch of every rank (no queue, no momentum
  encoder: the image encoder is frozen, so large batches are cheap); label smoothing 0.1
  and a learned temperature (0.07, clamped to [0.001, 0.5]) as the reference code;
- **ITM** (bi-directional mask): the ITM logits of the query outputs averaged over the
  queries; one hard negative text per image and one hard negative image per text drawn
  from the ITC similarities of every rank, never the positive (ALBEF's sampler);
- **ITG** (multi-modal causal mask): ``[DEC]`` in place of ``[CLS]``; the text is
  generated from the queries, which alone see the image; label smoothing 0.1.

The image encoder is frozen: its parameters do not require gradients (so they never reach
the optimizer, and under DeepSpeed ZeRO they are not trainable state), it stays in eval
mode, and ``vision_dtype`` keeps it in fp16 / bf16. A trainable LayerNorm
(``ln_vision``) follows it, as in BLIP-2.

Retrieval (``predict_mode='retrieval'``) gives ``ITMRetrievalMetric`` the query features
``[Q, D]`` per image (ITC ranks by their maximum) and the caption ids for ITM re-ranking
(score: the "match" ITM logit plus the ITC similarity, as BLIP).
"""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import get_rank

from vlp.registry import MODELS
from ..losses.contrastive import all_gather_features
from .albef import ALBEF
from .base import VLPModel, build_part

_DTYPES = {None: None, 'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


@MODELS.register_module()
class BLIP2(ALBEF):
    """BLIP-2's first stage.

    Args:
        vision: the frozen image encoder (``TimmTower``: ``image_embeds [B, N, C_v]``).
        qformer: :class:`QFormer` config (``encoder_width`` = ``C_v``).
        vision_proj / text_proj: projections of the query outputs / text ``[CLS]`` (256).
        itm_head: ITM classifier of the query outputs.
        lm_head: the Q-Former's LM head for ITG (an ``MLMHead``, output matrix tied to the
            word embeddings); ``None``: no ITG.
        freeze_vision: keep the image encoder frozen (BLIP-2: True).
        vision_dtype: ``'fp16'`` / ``'bf16'`` to hold the frozen encoder in half precision
            (its output is cast back to float32 before ``ln_vision``).
        itc_label_smoothing / itg_label_smoothing: 0.1 and 0.1 (BLIP-2's code).
        dec_token_id: id of ``[DEC]`` (``None``: from the tokenizer).
        itm_negatives: ``'global'`` (every rank) or ``'local'``.
        predict_mode: only ``'retrieval'`` (ITC + ITM re-ranking) in stage 1.
        loss_weights: ``dict(itc=1, itm=1, itg=1)``.
    """

    itm_text_ids = True  # the ITM re-encodes the caption ids with the queries
    rerank_add_itc = True  # re-ranking score: ITM logit + ITC similarity (as BLIP)

    def __init__(self, vision: dict, qformer: dict, vision_proj: dict, text_proj: dict,
                 itm_head: Optional[dict] = None, lm_head: Optional[dict] = None,
                 freeze_vision: bool = True, vision_dtype: Optional[str] = None,
                 itc: Optional[dict] = None, itc_label_smoothing: float = 0.1,
                 itg_label_smoothing: float = 0.1, dec_token_id: Optional[int] = None,
                 itm_negatives: str = 'global', predict_mode: str = 'retrieval',
                 loss_weights: Optional[Dict[str, float]] = None,
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 grad_checkpointing: bool = False, init_cfg: Optional[dict] = None):
        VLPModel.__init__(self, data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                          init_cfg=init_cfg)
        if vision_dtype not in _DTYPES:
            raise ValueError(f'vision_dtype must be one of {list(_DTYPES)}, got {vision_dtype!r}')
        if predict_mode != 'retrieval':
            raise ValueError("BLIP-2 stage 1 predicts for retrieval only (predict_mode="
                             "'retrieval'); captioning is the second stage (BLIP2LM)")
        self.vision = build_part(vision)
        self.qformer = build_part(qformer)
        vision_width = getattr(self.vision, 'embed_dim', None) or getattr(self.vision,
                                                                          'out_dim')
        self.ln_vision = nn.LayerNorm(vision_width)
        self.vision_proj = build_part(vision_proj)
        self.text_proj = build_part(text_proj)
        self.itm_head = build_part(itm_head)
        self.lm_head = build_part(lm_head)
        if self.lm_head is not None:
            self.lm_head.tie_weights(self.qformer.word_embeddings)
        self.itc = build_part(itc if itc is not None else dict(
            type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
            max_logit_scale=1000.0))
        self.itc_label_smoothing = float(itc_label_smoothing)
        self.caption_loss = build_part(dict(type='CaptionLoss',
                                            label_smoothing=itg_label_smoothing))
        self.freeze_vision = freeze_vision
        self.vision_dtype = _DTYPES[vision_dtype]
        if freeze_vision:
            for p in self.vision.parameters():
                p.requires_grad_(False)
            if self.vision_dtype is not None:
                self.vision.to(self.vision_dtype)
        self._init_matching(itm_negatives)  # no queue, no momentum distillation
        self.mlm_head = None
        self._dec_token_id = dec_token_id
        self.predict_mode = predict_mode
        self.loss_weights = {**dict(itc=1.0, itm=1.0, itg=1.0), **(loss_weights or {})}
        self.set_grad_checkpointing(grad_checkpointing)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_vision:
            self.vision.eval()  # no dropout / drop-path in the frozen encoder
        return self

    def momentum_pairs(self) -> List[tuple]:
        return []  # no momentum encoders in BLIP-2

    @property
    def dec_token_id(self) -> int:
        if self._dec_token_id is None:
            tok = self.tokenizer
            tid = tok.token_to_id('[DEC]') if tok is not None else None
            if tid is None:
                raise ValueError("BLIP-2 ITG needs dec_token_id (or a tokenizer holding "
                                 "'[DEC]': additional_special_tokens=['[DEC]'])")
            self._dec_token_id = int(tid)
        return self._dec_token_id

    # -- encoders ---------------------------------------------------------------------------
    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen encoder -> ``ln_vision`` -> ``[B, N, C_v]`` (float32)."""
        if self.freeze_vision:
            with torch.no_grad():
                if self.vision_dtype is not None:
                    images = images.to(self.vision_dtype)
                tokens = self.vision(images)['image_embeds']
            tokens = tokens.float()
        else:
            tokens = self.vision(images)['image_embeds']
        return self.ln_vision(tokens)

    def _image(self, images: torch.Tensor, momentum: bool = False):
        """``(image_embeds [B, N, C_v], image_feat [B, Q, D])``: the query features."""
        image_embeds = self.image_tokens(images)
        queries = self.qformer(image_embeds)['query_embeds']  # (B, Q, C)
        return image_embeds, F.normalize(self.vision_proj(queries), dim=-1)

    def _text(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor],
              momentum: bool = False):
        out = self.qformer(input_ids=input_ids, attention_mask=attention_mask,
                           use_queries=False)
        return out['text_embeds'], F.normalize(self.text_proj(out['text_pooled']), dim=-1)

    @staticmethod
    def itc_similarity(image_feat: torch.Tensor, text_feat: torch.Tensor) -> torch.Tensor:
        """``[N_img, N_txt]``: the maximum over the query features ``image_feat
        [N_img, Q, D]`` of their similarity to ``text_feat [N_txt, D]``."""
        return torch.einsum('iqd,jd->ijq', image_feat.float(), text_feat.float()).amax(-1)

    def itm_logits(self, image_embeds: torch.Tensor, input_ids: torch.Tensor,
                   text_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """ITM logits ``[B, 2]``: the head on every query output (bi-directional mask),
        averaged over the queries."""
        if self.itm_head is None:
            raise RuntimeError('this BLIP-2 has no itm_head')
        q = self.qformer(image_embeds, input_ids, text_mask, mode='itm')['query_embeds']
        return self.itm_head(q).mean(dim=1)

    # -- training -----------------------------------------------------------------------------
    def itc_loss(self, image_feat: torch.Tensor, text_feat: torch.Tensor):
        """All-rank in-batch ITC with the max-over-queries similarity. Returns
        ``(loss, scale)``."""
        B = image_feat.shape[0]
        scale = self.itc.get_logit_scale()
        img_all = all_gather_features(image_feat)  # (W*B, Q, D)
        txt_all = all_gather_features(text_feat)  # (W*B, D)
        sim_i2t = scale * self.itc_similarity(image_feat, txt_all)  # (B, W*B)
        sim_t2i = scale * self.itc_similarity(img_all, text_feat).t()  # (B, W*B)
        labels = torch.arange(B, device=image_feat.device) + get_rank() * B
        ls = self.itc_label_smoothing
        loss = 0.5 * (F.cross_entropy(sim_i2t, labels, label_smoothing=ls)
                      + F.cross_entropy(sim_t2i, labels, label_smoothing=ls))
        return loss, scale.detach()

    def itg_loss(self, image_embeds: torch.Tensor, input_ids: torch.Tensor,
                 text_mask: torch.Tensor) -> torch.Tensor:
        """Next-token loss of the ``[DEC]``-led text under the multi-modal causal mask."""
        ids = input_ids.clone()
        ids[:, 0] = self.dec_token_id
        hidden = self.qformer(image_embeds, ids, text_mask, mode='itg')['text_embeds']
        logits = self.lm_head(hidden)  # (B, L, V)
        labels = ids.masked_fill(text_mask == 0, -100)
        return self.caption_loss(logits[:, :-1], labels[:, 1:])

    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        images, input_ids, text_mask, idx = self._unpack(inputs, data_samples)
        image_embeds, image_feat = self._image(images)  # (B, N, C_v), (B, Q, D)
        _, text_feat = self._text(input_ids, text_mask)  # (B, D)
        loss_itc, scale = self.itc_loss(image_feat, text_feat)
        losses = dict(loss_itc=self.loss_weights['itc'] * loss_itc, logit_scale=scale)
        if self.itm_head is not None:
            losses.update(self._itm_loss(image_embeds, image_feat, input_ids, text_feat,
                                         text_mask, idx, scale))
        if self.lm_head is not None:
            losses['loss_itg'] = self.loss_weights['itg'] * self.itg_loss(
                image_embeds, input_ids, text_mask)
        return losses
