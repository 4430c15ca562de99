"""ALBEF (Li et al. 2021, "Align before Fuse: Vision and Language Representation Learning
with Momentum Distillation").

An image encoder (ViT), a text encoder (the first 6 BERT layers) and a fusion encoder (the
last 6, with cross-attention to the image), trained with **ITC** (Sec. 3.2: the 256-d
``[CLS]`` projections against the momentum features of the batch and a queue of 65,536),
**ITM** (Sec. 3.2: hard negatives from the ITC similarities), **MLM** (Sec. 3.2: 15%) and
**momentum distillation** (Sec. 3.3: EMA twins give soft ITC / MLM targets, ``alpha`` 0.4).
The objectives are parts (``momentum_contrastive_loss``, ``ITMLoss``, ``losses/distill.py``);
EMA, queue and ``alpha`` ramp run in hooks; NLVR2's two-image fusion (Sec. 5.3) is in
``fusion/two_image.py``. Differences from the reference code (docs/models.md): a learned
``logit_scale = log(1 / T)`` (same bounds); ITM negatives from every rank
(``itm_negatives='local'``: ALBEF's); ``queue_ids=True``: same-image samples are positives.
"""
from typing import Dict, List, Optional, Sequence, Union

import torch

from vlp.registry import MODELS
from ..fusion.two_image import (adapt_two_image_state_dict, expand_fusion_state_dict,
                                tie_pair_layers)
from ..losses.contrastive import CLAMPED_ITC, momentum_contrastive_loss
from ..losses.distill import DistillationSchedule, distilled_cross_entropy
from ..utils.feature_queue import itc_queue
from ..utils.masking import MLMTokenIds, mask_tokens
from ..utils.momentum import copy_params, make_momentum_twins
from ..utils.retrieval import retrieval_predictions
from . import shared
from .base import VLPModel, build_part, pair_batch


@MODELS.register_module()
class ALBEF(VLPModel):
    """ALBEF pretraining / retrieval model.

    Args:
        vision / text / fusion: image encoder (``image_embeds``, ``image_pooled``), text
            encoder (a :class:`BertEncoder`) and fusion encoder (a :class:`BertEncoder`
            with ``with_embeddings=False`` and cross-attention in every layer).
        vision_proj / text_proj: projections to the ITC space (256-d, with bias).
        itm_head / mlm_head: ITM classifier / MLM head (``None``: no such objective); the
            MLM decoder is tied to the word embeddings when ``tie_mlm_decoder``.
        itc: contrastive loss config (ALBEF's temperature and bounds by default).
        itm: ITM loss config (default ``ITMLoss(negatives=itm_negatives)``).
        queue_size / queue_ids / queue_init: the :class:`FeatureQueue` (0: none, the
            negatives are then the momentum features of every rank), image ids kept in it
            (``data_samples['image_id']`` needed), ``'random'`` or ``'empty'`` start.
        momentum_distill / alpha: momentum distillation and its final weight (0.4).
        mlm_probability, mask_token_id, special_token_ids, vocab_size: MLM masking
            (``None``: from the tokenizer and the MLM head).
        itm_negatives: ``'global'`` or ``'local'``.
        loss_weights: ``dict(itc=1, itm=1, mlm=1)``.
        two_image_fusion: ALBEF's NLVR2 model: ``fusion`` has twice the pre-trained layers,
            layers ``2k`` / ``2k + 1`` cross-attend to image 0 / 1 with a shared key/value
            (:func:`~vlp.models.fusion.two_image.tie_pair_layers`).
        data_preprocessor, tokenizer, grad_checkpointing, init_cfg: see :class:`VLPModel`.
    """
    capabilities = frozenset({'loss', 'predict', 'extract_feat', 'encode_image',
                              'encode_text', 'itm_score', 'rerank_scores', 'fused_features',
                              'fused_features_pair'})

    def __init__(self, vision: dict, text: dict, fusion: dict, vision_proj: dict,
                 text_proj: dict, itm_head: Optional[dict] = None,
                 mlm_head: Optional[dict] = None, itc: Optional[dict] = None,
                 itm: Optional[dict] = None, queue_size: int = 65536, queue_ids: bool = False,
                 queue_init: str = 'random', momentum_distill: bool = True, alpha: float = 0.4,
                 mlm_probability: float = 0.15, mask_token_id: Optional[int] = None,
                 special_token_ids: Optional[Sequence[int]] = None,
                 vocab_size: Optional[int] = None, tie_mlm_decoder: bool = True,
                 itm_negatives: str = 'global',
                 loss_weights: Optional[Dict[str, float]] = None,
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 grad_checkpointing: bool = False, init_cfg: Optional[dict] = None,
                 two_image_fusion: bool = False):
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        self.vision, self.text, self.fusion = (build_part(c) for c in (vision, text, fusion))
        self.two_image_fusion = two_image_fusion
        if two_image_fusion:
            tie_pair_layers(self.fusion)
        else:
            self.drop_capabilities('needs two_image_fusion=True (a fusion encoder of 2 x '
                                   'the pre-trained layers)', 'fused_features_pair')
        self.vision_proj, self.text_proj = build_part(vision_proj), build_part(text_proj)
        self.itm_head, self.mlm_head = build_part(itm_head), build_part(mlm_head)
        if self.itm_head is None:
            self.drop_capabilities('built with itm_head=None', 'itm_score', 'rerank_scores')
        if self.mlm_head is not None and tie_mlm_decoder:
            self.mlm_head.tie_weights(self.text.word_embeddings)
        self.itc = build_part(itc if itc is not None else CLAMPED_ITC)
        self.itm = build_part(itm if itm is not None else
                              dict(type='ITMLoss', negatives=itm_negatives))
        self.distill = DistillationSchedule(alpha, enabled=momentum_distill)
        # momentum twins: one deep copy, so the MLM decoder stays tied in the copy
        (self.vision_m, self.vision_proj_m, self.text_m, self.text_proj_m, self.fusion_m,
         self.mlm_head_m) = make_momentum_twins(self.vision, self.vision_proj, self.text,
                                                self.text_proj, self.fusion, self.mlm_head)
        self.queue = itc_queue(queue_size, self.vision_proj.out_dim, queue_ids, queue_init)
        self.queue_ids = queue_ids
        self.mlm_probability = mlm_probability
        self.mlm_ids = MLMTokenIds(mask_token_id, special_token_ids, vocab_size)
        self.loss_weights = {**dict(itc=1.0, itm=1.0, mlm=1.0), **(loss_weights or {})}
        self.set_grad_checkpointing(grad_checkpointing)

    def momentum_pairs(self) -> List[tuple]:
        pairs = [(self.vision, self.vision_m), (self.vision_proj, self.vision_proj_m),
                 (self.text, self.text_m), (self.text_proj, self.text_proj_m),
                 (self.fusion, self.fusion_m)]
        if self.mlm_head is not None:
            pairs.append((self.mlm_head, self.mlm_head_m))
        return pairs

    def init_weights(self) -> None:
        """mmengine's weight init, then the twins start equal to the online modules."""
        super().init_weights()
        copy_params(self.momentum_pairs())

    # -- encoders (the ITC towers and their twins: vision(_proj)(_m), text(_proj)(_m)) -------
    _image, _text = shared.image_tower, shared.text_tower
    image_features, text_features = shared.image_features, shared.text_features

    def fuse(self, text_embeds: torch.Tensor, text_mask: Optional[torch.Tensor],
             image_embeds, momentum: bool = False,
             image_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Fusion encoder: text states ``[B, L, C]`` attending to ``image_embeds`` (a list
        of two with ``two_image_fusion``) -> ``[B, L, C]``. ``image_index [B]``:
        ``image_embeds`` holds distinct images, row ``b`` reads ``image_index[b]``."""
        fusion = self.fusion_m if momentum else self.fusion
        return fusion(hidden_states=text_embeds, attention_mask=text_mask,
                      image_embeds=image_embeds, image_index=image_index)['text_embeds']

    def fused_features(self, images: torch.Tensor, input_ids: torch.Tensor,
                       attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The fusion encoder's ``[CLS]`` state ``[B, C]`` (the downstream heads' input)."""
        image_embeds = self.vision(images)['image_embeds']
        text_embeds = self.text(input_ids, attention_mask)['text_embeds']
        return self.fuse(text_embeds, attention_mask, image_embeds)[:, 0]

    def fused_features_pair(self, images: torch.Tensor, input_ids: torch.Tensor,
                            attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """NLVR2 (``two_image_fusion``): ``images [B, 2, 3, H, W]`` and one statement ->
        the last fusion layer's ``[CLS]`` ``[B, C]`` (layer ``2k`` reads image 0, ``2k + 1``
        image 1)."""
        self.require('fused_features_pair')
        if images.dim() != 5 or images.shape[1] != 2:
            raise ValueError(f'expected image pairs [B, 2, 3, H, W], got {tuple(images.shape)}')
        B = images.shape[0]
        # image 0 of every sample, then image 1: (2B, 3, H, W)
        tokens = self.vision(images.transpose(0, 1).reshape(2 * B, *images.shape[2:]))
        tokens = tokens['image_embeds']  # (2B, N, C)
        text_embeds = self.text(input_ids, attention_mask)['text_embeds']
        return self.fuse(text_embeds, attention_mask, [tokens[:B], tokens[B:]])[:, 0]

    expand_fusion_state_dict = staticmethod(expand_fusion_state_dict)

    def adapt_pretrained_state_dict(self, state_dict: Dict[str, torch.Tensor]):
        """A family checkpoint for this model: with ``two_image_fusion`` a pre-training one
        is expanded to the NLVR2 layout; otherwise unchanged."""
        if not self.two_image_fusion:
            return state_dict
        return adapt_two_image_state_dict(state_dict, self.fusion.num_layers)

    # -- ITM --------------------------------------------------------------------------------
    def itm_logits(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                   text_mask: Optional[torch.Tensor],
                   image_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """ITM logits ``[B, 2]`` of paired image tokens and unimodal text states
        (``image_index``: shared images, see :meth:`fuse`)."""
        if self.itm_head is None:
            raise RuntimeError('this ALBEF has no itm_head')
        return self.itm_head(self.fuse(text_embeds, text_mask, image_embeds,
                                       image_index=image_index)[:, 0])

    def rerank_scores(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                      text_mask: Optional[torch.Tensor], itc_scores=None,
                      image_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Re-ranking score ``[B]`` of ``ITMRetrievalMetric``: the matched-class ITM logit
        (``image_index [B]``: ``image_embeds`` holds the batch's distinct images)."""
        self.require('rerank_scores')
        return self.itm_logits(image_embeds, text_embeds, text_mask, image_index)[:, 1].float()

    # -- training ---------------------------------------------------------------------------
    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """ITC + ITM + MLM of ``images [B, 3, H, W]``, ``input_ids`` / ``attention_mask
        [B, L]`` (``data_samples['image_id']`` with ``queue_ids``)."""
        images, input_ids, text_mask, idx = pair_batch(inputs, data_samples, self.queue_ids)
        alpha = self.distill.value
        image_embeds, image_feat = self._image(images)  # (B, N, C), (B, D)
        text_embeds, text_feat = self._text(input_ids, text_mask)  # (B, L, C), (B, D)
        with torch.no_grad():
            image_embeds_m, image_feat_m = self._image(images, momentum=True)
            text_feat_m = self._text(input_ids, text_mask, momentum=True)[1]
        itc = momentum_contrastive_loss(self.itc, image_feat, text_feat, image_feat_m,
                                        text_feat_m, self.queue, idx, alpha, self.training)
        losses = dict(loss_itc=self.loss_weights['itc'] * itc['loss_itc'],
                      logit_scale=itc['logit_scale'])
        if self.itm_head is not None:
            itm = self.itm(self.itm_logits, image_embeds, text_embeds, text_mask, image_feat,
                           text_feat, itc['logit_scale'], idx)
            losses.update(itm, loss_itm=self.loss_weights['itm'] * itm['loss_itm'])
        if self.mlm_head is not None:
            losses['loss_mlm'] = self.loss_weights['mlm'] * self._mlm_loss(
                input_ids, text_mask, image_embeds, image_embeds_m, alpha)
        losses['alpha'] = torch.tensor(float(alpha), device=images.device)
        return losses

    def _mlm_loss(self, input_ids, text_mask, image_embeds, image_embeds_m, alpha: float):
        """MLM of the fusion encoder, distilled from the momentum twins' predictions."""
        mask_id, special, vocab = self.mlm_ids.resolve(self.tokenizer, self.mlm_head, 'ALBEF')
        masked_ids, labels = mask_tokens(input_ids, mask_id, vocab, self.mlm_probability,
                                         special_ids=special, attention_mask=text_mask)
        sel = labels != -100  # (B, L)
        hidden = self.fuse(self.text(masked_ids, text_mask)['text_embeds'], text_mask,
                           image_embeds)
        if not bool(sel.any()):  # nothing masked in this batch: a zero that keeps the graph
            return hidden.sum() * 0.0
        logits, teacher = self.mlm_head(hidden[sel]).float(), None  # (M, V)
        if alpha > 0:
            with torch.no_grad():
                hidden_m = self.fuse(self.text_m(masked_ids, text_mask)['text_embeds'],
                                     text_mask, image_embeds_m, momentum=True)
                teacher = self.mlm_head_m(hidden_m[sel])
        return distilled_cross_entropy(logits, labels[sel], teacher, alpha)

    # -- inference --------------------------------------------------------------------------
    encode_image, encode_text = shared.encode_image, shared.encode_text
    extract_feat = shared.extract_feat

    @torch.no_grad()
    def itm_score(self, images: torch.Tensor, texts: Union[str, List[str], torch.Tensor],
                  attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Probability that each image matches its text (pairs, ``[B]``)."""
        self.require('itm_score')
        tok = self.tokenize(texts, attention_mask)
        mask = tok.get('attention_mask')
        image_embeds = self._image(self.preprocess_images(images))[0]
        text_embeds = self._text(tok['input_ids'], mask)[0]
        return self.itm_logits(image_embeds, text_embeds, mask).softmax(dim=-1)[:, 1]

    def predict(self, inputs: dict, data_samples: Optional[dict] = None) -> List[dict]:
        """Per image, for ``ITMRetrievalMetric``: ``image_feat [D]``, ``image_embeds
        [N, C]``, and for its ``K`` captions ``text_feat [K, D]``, the text states
        ``text_embeds [K, L, C]`` and ``text_mask``, plus the sample's metadata."""
        return retrieval_predictions(inputs, data_samples, self._image, self._text,
                                     itm_text='states', family='ALBEF')
