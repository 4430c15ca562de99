"""BLIP-2 stage 1 (Li et al. 2023, "BLIP-2: Bootstrapping Language-Image Pre-training
with Frozen Image Encoders and Large Language Models", Sec. 3.2): vision-language
representation learning from a **frozen** image encoder through the Q-Former
(:class:`~vlp.models.necks.qformer.QFormer`), with three objectives, each under its own
self-attention mask over ``[queries; text]``:

- **ITC** (uni-modal mask): the 32 query outputs and the text ``[CLS]``, projected to 256-d;
  the similarity is the **maximum over the queries**; negatives from every rank (no queue,
  no momentum encoder); label smoothing 0.1, learned temperature (0.07 in [0.001, 0.5]):
  the shared ``ContrastiveLoss`` with ``similarity='max_query'``, ``local_loss=True``;
- **ITM** (bi-directional mask): the ITM logits of the query outputs averaged over the
  queries; one hard negative per image and per text (the shared ``ITMLoss``);
- **ITG** (multi-modal causal mask): ``[DEC]`` in place of ``[CLS]``; label smoothing 0.1.

The image encoder is frozen (no gradients, eval mode, optionally fp16 / bf16 via
``vision_dtype``) and followed by a trainable LayerNorm (``ln_vision``). Retrieval gives
``ITMRetrievalMetric`` the query features ``[Q, D]`` per image and the caption ids for ITM
re-ranking (score: the "match" logit plus the ITC similarity, as BLIP).
"""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlp.registry import MODELS
from ..losses.contrastive import CLAMPED_ITC
from ..utils.retrieval import retrieval_predictions
from . import shared
from .base import VLPModel, build_part, pair_batch, replace_first_token, token_id_property

_DTYPES = {None: None, 'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


@MODELS.register_module()
class BLIP2(VLPModel):
    """BLIP-2's first stage.

    Args:
        vision: the frozen image encoder (``TimmTower``: ``image_embeds [B, N, C_v]``).
        qformer: :class:`QFormer` config (``encoder_width`` = ``C_v``).
        vision_proj / text_proj: projections of the query outputs / text ``[CLS]`` (256).
        itm_head: ITM classifier of the query outputs (``None``: no ITM).
        lm_head: the Q-Former's LM head for ITG (tied to the word embeddings; ``None``: no
            ITG).
        freeze_vision / vision_dtype: keep the image encoder frozen (BLIP-2: True), in
            ``'fp16'`` / ``'bf16'`` if given (its output cast back to float32).
        itc: contrastive loss config (temperature and bounds; the max-over-queries
            similarity, the local loss and ``itc_label_smoothing`` are set here).
        itm: ITM loss config (default ``ITMLoss(negatives=itm_negatives,
            similarity='max_query')``).
        itc_label_smoothing / itg_label_smoothing: 0.1 and 0.1 (BLIP-2's code).
        dec_token_id: id of ``[DEC]`` (default: the tokenizer's).
        itm_negatives: ``'global'`` (every rank) or ``'local'``.
        predict_mode: only ``'retrieval'`` in stage 1.
        loss_weights: ``dict(itc=1, itm=1, itg=1)``.
    """
    capabilities = frozenset({'loss', 'predict', 'extract_feat', 'encode_image',
                              'encode_text', 'itm_score', 'rerank_scores', 'fused_features',
                              'query_features'})

    def __init__(self, vision: dict, qformer: dict, vision_proj: dict, text_proj: dict,
                 itm_head: Optional[dict] = None, lm_head: Optional[dict] = None,
                 freeze_vision: bool = True, vision_dtype: Optional[str] = None,
                 itc: Optional[dict] = None, itm: Optional[dict] = None,
                 itc_label_smoothing: float = 0.1, itg_label_smoothing: float = 0.1,
                 dec_token_id: Optional[int] = None, itm_negatives: str = 'global',
                 predict_mode: str = 'retrieval',
                 loss_weights: Optional[Dict[str, float]] = None,
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 grad_checkpointing: bool = False, init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
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
        self.vision_proj, self.text_proj = build_part(vision_proj), build_part(text_proj)
        self.itm_head, self.lm_head = build_part(itm_head), build_part(lm_head)
        if self.itm_head is None:
            self.drop_capabilities('built with itm_head=None', 'itm_score', 'rerank_scores')
        if self.lm_head is not None:
            self.lm_head.tie_weights(self.qformer.word_embeddings)
        itc = itc if itc is not None else CLAMPED_ITC
        if isinstance(itc, dict):  # BLIP-2's ITC: max over queries, rows of this rank
            itc = dict(itc, similarity='max_query', local_loss=True,
                       label_smoothing=float(itc_label_smoothing))
        self.itc = build_part(itc)
        self.itc_label_smoothing = float(itc_label_smoothing)
        self.caption_loss = build_part(dict(type='CaptionLoss',
                                            label_smoothing=itg_label_smoothing))
        self.itm = build_part(itm if itm is not None else dict(
            type='ITMLoss', negatives=itm_negatives, similarity='max_query'))
        self.freeze_vision = freeze_vision
        self.vision_dtype = _DTYPES[vision_dtype]
        if freeze_vision:
            for p in self.vision.parameters():
                p.requires_grad_(False)
            if self.vision_dtype is not None:
                self.vision.to(self.vision_dtype)
        self._dec_token_id = dec_token_id
        self.predict_mode = predict_mode
        self.loss_weights = {**dict(itc=1.0, itm=1.0, itg=1.0), **(loss_weights or {})}
        self.set_grad_checkpointing(grad_checkpointing)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_vision:
            self.vision.eval()  # no dropout / drop-path in the frozen encoder
        return self

    dec_token_id = token_id_property('[DEC]')

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

    def _image(self, images: torch.Tensor):
        """``(image_embeds [B, N, C_v], image_feat [B, Q, D])``: the query features."""
        image_embeds = self.image_tokens(images)
        queries = self.qformer(image_embeds)['query_embeds']  # (B, Q, C)
        return image_embeds, F.normalize(self.vision_proj(queries), dim=-1)

    def _text(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor]):
        """``(text_embeds, text_feat [B, D])``: the Q-Former's text-only pass."""
        out = self.qformer(input_ids=input_ids, attention_mask=attention_mask,
                           use_queries=False)
        return out['text_embeds'], F.normalize(self.text_proj(out['text_pooled']), dim=-1)

    def _itm_queries(self, image_embeds: torch.Tensor, input_ids: torch.Tensor,
                     text_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """The query outputs ``[B, Q, C]`` under the bi-directional (ITM) mask."""
        return self.qformer(image_embeds, input_ids, text_mask, mode='itm')['query_embeds']

    def itm_logits(self, image_embeds: torch.Tensor, input_ids: torch.Tensor,
                   text_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """ITM logits ``[B, 2]``: the head on every query output, averaged over them."""
        if self.itm_head is None:
            raise RuntimeError('this BLIP-2 has no itm_head')
        return self.itm_head(self._itm_queries(image_embeds, input_ids, text_mask)).mean(1)

    def fused_features(self, images: torch.Tensor, input_ids: torch.Tensor,
                       attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The multimodal representation ``[B, C]``: the ITM-mode query outputs averaged
        over the queries (what the ITM head scores: LAVIS's ``multimodal_embeds``,
        pooled)."""
        return self._itm_queries(self.image_tokens(images), input_ids, attention_mask).mean(1)

    def rerank_scores(self, image_embeds, text_embeds, text_mask, itc_scores=None):
        """Re-ranking score ``[B]``: the ITM "match" logit plus the ITC similarity."""
        self.require('rerank_scores')
        score = self.itm_logits(image_embeds, text_embeds, text_mask)[:, 1].float()
        return score if itc_scores is None else score + itc_scores.to(score)

    # -- training -----------------------------------------------------------------------------
    def itg_loss(self, image_embeds: torch.Tensor, input_ids: torch.Tensor,
                 text_mask: torch.Tensor) -> torch.Tensor:
        """Next-token loss of the ``[DEC]``-led text under the multi-modal causal mask."""
        ids = replace_first_token(input_ids, self.dec_token_id)
        hidden = self.qformer(image_embeds, ids, text_mask, mode='itg')['text_embeds']
        logits = self.lm_head(hidden)  # (B, L, V)
        labels = ids.masked_fill(text_mask == 0, -100)
        return self.caption_loss(logits[:, :-1], labels[:, 1:])

    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """ITC + ITM + ITG of ``images``, ``input_ids`` and ``attention_mask``."""
        images, input_ids, text_mask, _ = pair_batch(inputs, data_samples)
        image_embeds, image_feat = self._image(images)  # (B, N, C_v), (B, Q, D)
        text_feat = self._text(input_ids, text_mask)[1]  # (B, D)
        itc = self.itc(image_feat, text_feat)
        losses = dict(loss_itc=self.loss_weights['itc'] * itc['loss_itc'],
                      logit_scale=itc['logit_scale'])
        if self.itm_head is not None:
            itm = self.itm(self.itm_logits, image_embeds, input_ids, text_mask, image_feat,
                           text_feat, itc['logit_scale'])
            losses.update(itm, loss_itm=self.loss_weights['itm'] * itm['loss_itm'])
        if self.lm_head is not None:
            losses['loss_itg'] = self.loss_weights['itg'] * self.itg_loss(
                image_embeds, input_ids, text_mask)
        return losses

    # -- inference ----------------------------------------------------------------------------
    # encode_image: the normalised query features [B, Q, D] (ITC: max over the queries)
    encode_image, encode_text = shared.encode_image, shared.encode_text
    extract_feat = shared.extract_feat

    @torch.no_grad()
    def query_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> the Q-Former's query outputs ``[B, Q, C]`` (no projection: HF's
        ``Blip2Model.get_qformer_features``, LAVIS's ``image_embeds``)."""
        return self.qformer(self.image_tokens(self.preprocess_images(images)))['query_embeds']

    @torch.no_grad()
    def itm_score(self, images: torch.Tensor, texts, attention_mask=None) -> torch.Tensor:
        """Probability that each image matches its text (pairs, ``[B]``)."""
        self.require('itm_score')
        tok = self.tokenize(texts, attention_mask)
        image_embeds = self.image_tokens(self.preprocess_images(images))
        logits = self.itm_logits(image_embeds, tok['input_ids'], tok.get('attention_mask'))
        return logits.softmax(dim=-1)[:, 1]

    def predict(self, inputs: dict, data_samples: Optional[dict] = None) -> List[dict]:
        """``ITMRetrievalMetric``'s inputs: per image the query features ``[Q, D]`` and the
        image tokens, the caption features and ids."""
        return retrieval_predictions(inputs, data_samples, self._image, self._text,
                                     itm_text='ids', family='BLIP2')
