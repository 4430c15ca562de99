"""BLIP (Li et al. 2022, "BLIP: Bootstrapping Language-Image Pre-training for Unified
Vision-Language Understanding and Generation").

The multimodal mixture of encoder-decoder (MED, Sec. 3.1): a ViT and one BERT run as the
**unimodal text encoder** (``[CLS]``), the **image-grounded text encoder** (cross-attention,
``[ENC]``) and the **image-grounded decoder** (causal, ``[DEC]``), which shares all but its
self-attention with the encoder (Sec. 3.2). Objectives: **ITC** (momentum encoders, queue,
distillation: ALBEF's parts), **ITM** (``[ENC]``, hard negatives) and **LM** (label smoothing
0.1, prompt excluded). :meth:`BLIP.generate` captions (``'a picture of '``);
``tools/capfilt.py`` runs CapFilt (Sec. 3.3). The fine-tuned captioning model (ViT +
decoder only) is :class:`~.blip_caption.BLIPCaption`, whose decoder methods BLIP binds. NLVR2
(Sec. 5.4): ``two_image_fusion``. Differences (docs/models.md): the LM head is tied to the
word embeddings (``tie_lm_head=False``: the released layout). Decoding caches keys/values
(``use_cache=False``: the uncached reference).
"""
from typing import Dict, List, Optional

import torch

from vlp.registry import MODELS
from ..fusion.two_image import (TwinCrossAttention, split_cross_attention_state_dict,
                                twin_cross_attention)
from ..losses.contrastive import CLAMPED_ITC, momentum_contrastive_loss
from ..losses.distill import DistillationSchedule
from ..utils.feature_queue import itc_queue
from ..utils.momentum import copy_params, make_momentum_twins
from ..utils.retrieval import retrieval_predictions
from . import blip_caption, shared
from .base import VLPModel, build_part, pair_batch, replace_first_token, token_id_property

__all__ = ['BLIP', 'TwinCrossAttention']


@MODELS.register_module()
class BLIP(VLPModel):
    """BLIP pretraining / retrieval / captioning model.

    Args:
        vision: image encoder config; text: a :class:`BertEncoder` with cross-attention in
            every layer (skipped in unimodal mode).
        vision_proj, text_proj, itm_head, itc, itm, queue_size, queue_ids, queue_init,
            momentum_distill, alpha, itm_negatives: as :class:`ALBEF` (BLIP: queue 57,600).
        lm_head: the decoder's LM head (``None``: no decoder); decoder: overrides of the
            decoder's config (default: ``text``'s); share_decoder / tie_lm_head: share all
            but the self-attention with the encoder / tie the head to the embeddings.
        caption_loss: LM loss config (``CaptionLoss``, label smoothing 0.1).
        enc_token_id / dec_token_id: ids of ``[ENC]`` / ``[DEC]`` (default: the tokenizer's).
        use_enc_token: the image-grounded encoder (ITM, ``fused_features``) reads the ids
            with their first token replaced by ``[ENC]``, as BLIP's code (default); ``False``
            encodes the ids as given, as HF transformers' ``BlipForImageTextRetrieval`` does
            (``[CLS]`` first; no ``enc_token_id`` needed).
        prompt / prompt_in_loss: what captions start with (training captions too) and
            whether the LM loss scores it (BLIP: no).
        generation_cfg: decoding options of :meth:`predict`; predict_mode: ``'caption'`` or
            ``'retrieval'``; loss_weights: ``dict(itc=1, itm=1, lm=1)``.
        two_image_fusion: the NLVR2 model (no decoder): each cross-attention a
            :class:`TwinCrossAttention` over the left and the right image.
    """
    capabilities = frozenset({'loss', 'predict', 'extract_feat', 'encode_image',
                              'encode_text', 'itm_score', 'rerank_scores', 'fused_features',
                              'fused_features_pair', 'generate'})

    def __init__(self, vision: dict, text: dict, vision_proj: dict, text_proj: dict,
                 itm_head: Optional[dict] = None, lm_head: Optional[dict] = None,
                 decoder: Optional[dict] = None, share_decoder: bool = True,
                 tie_lm_head: bool = True, itc: Optional[dict] = None,
                 itm: Optional[dict] = None, caption_loss: Optional[dict] = None,
                 queue_size: int = 57600, queue_ids: bool = False,
                 queue_init: str = 'random', momentum_distill: bool = True,
                 alpha: float = 0.4, itm_negatives: str = 'global',
                 enc_token_id: Optional[int] = None, dec_token_id: Optional[int] = None,
                 prompt: str = '', prompt_in_loss: bool = False,
                 generation_cfg: Optional[dict] = None, predict_mode: str = 'caption',
                 loss_weights: Optional[Dict[str, float]] = None,
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 grad_checkpointing: bool = False, init_cfg: Optional[dict] = None,
                 two_image_fusion: bool = False, use_enc_token: bool = True):
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        if predict_mode not in ('caption', 'retrieval'):
            raise ValueError(f"predict_mode must be 'caption' or 'retrieval', got "
                             f'{predict_mode!r}')
        if two_image_fusion and lm_head is not None:
            raise ValueError('BLIP two_image_fusion (NLVR2) takes no decoder: lm_head=None')
        if vision_proj is None or text_proj is None:
            raise ValueError("BLIP needs vision_proj and text_proj (ITC); the captioning model "
                             "without them is type='BLIPCaption'")
        self.vision, self.text = build_part(vision), build_part(text)
        self.two_image_fusion = two_image_fusion
        if two_image_fusion:
            twin_cross_attention(self.text)
        self.vision_proj, self.text_proj = build_part(vision_proj), build_part(text_proj)
        self.itm_head, self.lm_head = build_part(itm_head), build_part(lm_head)
        self.decoder, self.share_decoder = None, share_decoder
        if self.lm_head is not None:
            self.decoder = build_part(dict(text, **(decoder or {})))
            if share_decoder:
                self.decoder.share_all_but_self_attention(self.text)
            if tie_lm_head:
                self.lm_head.tie_weights(self.decoder.word_embeddings)
        if not self.text.cross_layers:
            raise ValueError('BLIP: the text transformer needs cross-attention layers '
                             "(cross_attention_layers='all')")
        self._drop_unbuilt(predict_mode)
        self.itc = build_part(itc if itc is not None else CLAMPED_ITC)
        self.caption_loss = build_part(caption_loss if caption_loss is not None else dict(
            type='CaptionLoss', label_smoothing=0.1))
        self.itm = build_part(itm if itm is not None else
                              dict(type='ITMLoss', negatives=itm_negatives))
        self.distill = DistillationSchedule(alpha, enabled=momentum_distill)
        # momentum twins of the image and text encoders with their projections (no decoder
        # twin: the LM loss is not distilled)
        (self.vision_m, self.vision_proj_m, self.text_m,
         self.text_proj_m) = make_momentum_twins(self.vision, self.vision_proj, self.text,
                                                 self.text_proj)
        self.queue = itc_queue(queue_size, self.vision_proj.out_dim, queue_ids, queue_init)
        self.queue_ids = queue_ids
        self._enc_token_id, self._dec_token_id = enc_token_id, dec_token_id
        self.use_enc_token = use_enc_token
        self.prompt, self.prompt_in_loss = prompt, prompt_in_loss
        self.generation_cfg = dict(generation_cfg or {})
        self.predict_mode = predict_mode
        self.loss_weights = {**dict(itc=1.0, itm=1.0, lm=1.0), **(loss_weights or {})}
        self.set_grad_checkpointing(grad_checkpointing)

    def _drop_unbuilt(self, predict_mode: str) -> None:
        """The capabilities this instance lacks for a part it was built without."""
        if self.two_image_fusion:  # the text encoder cross-attends to two images at once
            self.drop_capabilities('a two_image_fusion BLIP (NLVR2) reads image pairs: use '
                                   'fused_features_pair', 'loss', 'fused_features',
                                   'itm_score', 'rerank_scores')
        else:
            self.drop_capabilities('needs two_image_fusion=True', 'fused_features_pair')
        if self.itm_head is None:
            self.drop_capabilities('built with itm_head=None', 'itm_score', 'rerank_scores')
        if self.decoder is None:
            self.drop_capabilities('built with lm_head=None (no decoder)', 'generate',
                                   *(['predict'] if predict_mode == 'caption' else []))

    def momentum_pairs(self) -> List[tuple]:
        return [(self.vision, self.vision_m), (self.vision_proj, self.vision_proj_m),
                (self.text, self.text_m), (self.text_proj, self.text_proj_m)]

    def init_weights(self) -> None:
        super().init_weights()
        copy_params(self.momentum_pairs())

    alpha = property(lambda self: self.distill.alpha, doc='current distillation weight')
    momentum_distill = property(lambda self: self.distill.enabled)

    enc_token_id, dec_token_id = token_id_property('[ENC]'), token_id_property('[DEC]')

    # -- the three text modes: unimodal (the ITC towers and their twins), [ENC], [DEC] ---------
    _image, _text = shared.image_tower, shared.text_tower
    image_features, text_features = shared.image_features, shared.text_features

    def fuse(self, input_ids: torch.Tensor, text_mask: Optional[torch.Tensor],
             image_embeds, image_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Image-grounded text encoder: ``input_ids [B, L]`` (the first token replaced by
        ``[ENC]`` unless ``use_enc_token=False``) attending to ``image_embeds`` (two with
        NLVR2) -> ``[B, L, C]``. ``image_index [B]``: ``image_embeds`` holds distinct
        images, row ``b`` reads ``image_embeds[image_index[b]]`` (their cross-attention
        keys/values computed once per image)."""
        ids = (replace_first_token(input_ids, self.enc_token_id) if self.use_enc_token
               else input_ids)
        return self.text(ids, text_mask, image_embeds=image_embeds,
                         image_index=image_index)['text_embeds']

    def fused_features(self, images: torch.Tensor, input_ids: torch.Tensor,
                       attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The image-grounded encoder's ``[ENC]`` state ``[B, C]`` (the ITM head's input)."""
        self.require('fused_features')
        return self.fuse(input_ids, attention_mask, self.vision(images)['image_embeds'])[:, 0]

    def fused_features_pair(self, images: torch.Tensor, input_ids: torch.Tensor,
                            attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """NLVR2: images ``[B, 2, 3, H, W]`` and one statement -> ``[ENC]`` ``[B, C]``."""
        self.require('fused_features_pair')
        B = images.shape[0]
        tokens = self.vision(images.flatten(0, 1))['image_embeds']  # (2B, N, C)
        tokens = tokens.view(B, 2, *tokens.shape[1:])
        return self.fuse(input_ids, attention_mask, [(tokens[:, 0], tokens[:, 1])])[:, 0]

    def adapt_pretrained_state_dict(self, state_dict: Dict[str, torch.Tensor]):
        """With ``two_image_fusion``: the pre-trained cross-attention starts both twins."""
        if not self.two_image_fusion:
            return state_dict
        return split_cross_attention_state_dict(state_dict)

    def itm_logits(self, image_embeds: torch.Tensor, input_ids: torch.Tensor,
                   text_mask: Optional[torch.Tensor],
                   image_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """ITM logits ``[B, 2]`` of image tokens and caption ids (re-encoded with ``[ENC]``;
        ``image_index``: shared images, see :meth:`fuse`)."""
        if self.itm_head is None:
            raise RuntimeError('this BLIP has no itm_head')
        return self.itm_head(self.fuse(input_ids, text_mask, image_embeds, image_index)[:, 0])

    def rerank_scores(self, image_embeds, text_embeds, text_mask, itc_scores=None,
                      image_index=None):
        """Re-ranking score ``[B]`` of image tokens and caption ids: the ITM "match" logit
        plus the ITC similarity (BLIP's evaluation). ``image_index [B]``: ``image_embeds``
        holds the distinct images of the batch, pair ``b`` reads ``image_index[b]``."""
        self.require('rerank_scores')
        score = self.itm_logits(image_embeds, text_embeds, text_mask, image_index)[:, 1].float()
        return score if itc_scores is None else score + itc_scores.to(score)

    # -- training ---------------------------------------------------------------------------
    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """ITC + ITM + LM of ``images``, ``input_ids`` (``[CLS]``-led; with a ``prompt``,
        the captions start with it) and ``attention_mask``."""
        self.require('loss')
        images, input_ids, text_mask, idx = pair_batch(inputs, data_samples, self.queue_ids)
        alpha = self.distill.value
        image_embeds, image_feat = self._image(images)  # (B, N, C), (B, D)
        text_feat = self._text(input_ids, text_mask)[1]  # unimodal [CLS] -> (B, D)
        with torch.no_grad():
            image_feat_m = self._image(images, momentum=True)[1]
            text_feat_m = self._text(input_ids, text_mask, momentum=True)[1]
        itc = momentum_contrastive_loss(self.itc, image_feat, text_feat, image_feat_m,
                                        text_feat_m, self.queue, idx, alpha, self.training)
        losses = dict(loss_itc=self.loss_weights['itc'] * itc['loss_itc'],
                      logit_scale=itc['logit_scale'])
        if self.itm_head is not None:
            itm = self.itm(self.itm_logits, image_embeds, input_ids, text_mask, image_feat,
                           text_feat, itc['logit_scale'], idx)
            losses.update(itm, loss_itm=self.loss_weights['itm'] * itm['loss_itm'])
        if self.decoder is not None:
            losses['loss_lm'] = self.loss_weights['lm'] * self.lm_loss(input_ids, text_mask,
                                                                       image_embeds)
        losses['alpha'] = torch.tensor(float(alpha), device=images.device)
        return losses

    # -- the image-grounded decoder: BLIPCaption's methods ---------------------------------------
    decoder_logits, lm_loss = blip_caption.decoder_logits, blip_caption.lm_loss
    prompt_length = blip_caption.prompt_length
    generate, generate_ids = blip_caption.generate, blip_caption.generate_ids

    # -- inference -----------------------------------------------------------------------------
    encode_image, encode_text = shared.encode_image, shared.encode_text
    extract_feat = shared.extract_feat

    @torch.no_grad()
    def itm_score(self, images: torch.Tensor, texts, attention_mask=None) -> torch.Tensor:
        """Probability that each image matches its text (pairs, ``[B]``)."""
        self.require('itm_score')
        tok = self.tokenize(texts, attention_mask)
        image_embeds = self.vision(self.preprocess_images(images))['image_embeds']
        logits = self.itm_logits(image_embeds, tok['input_ids'], tok.get('attention_mask'))
        return logits.softmax(dim=-1)[:, 1]

    def predict(self, inputs: dict, data_samples: Optional[dict] = None) -> List[dict]:
        """``'caption'``: ``pred_caption`` per image; ``'retrieval'``: the inputs of
        ``ITMRetrievalMetric`` (caption ids as ``text_embeds``)."""
        self.require('predict')
        if self.predict_mode == 'retrieval':
            return retrieval_predictions(inputs, data_samples, self._image, self._text,
                                         itm_text='ids', family='BLIP')
        return blip_caption.caption_predictions(self, inputs, data_samples)
