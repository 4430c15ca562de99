"""BLIP (Li et al. 2022, "BLIP: Bootstrapping Language-Image Pre-training for Unified
Vision-Language Understanding and Generation").

The multimodal mixture of encoder-decoder (MED, Sec. 3.1): a ViT and one BERT run as the
**unimodal text encoder** (``[CLS]``), the **image-grounded text encoder** (cross-attention,
``[ENC]``) and the **image-grounded decoder** (causal, ``[DEC]``), which shares all but its
self-attention with the encoder (Sec. 3.2). Objectives: **ITC** (momentum encoders, queue,
distillation: ALBEF's parts), **ITM** (``[ENC]``, hard negatives) and **LM** (label smoothing
0.1, prompt excluded). :meth:`BLIP.generate` captions (``'a picture of '``);
``tools/capfilt.py`` runs CapFilt (Sec. 3.3). Differences (docs/models.md): the LM head is
tied to the word embeddings (``tie_lm_head=False``: the released layout). Decoding caches
keys/values (``use_cache=False``: the uncached reference).
"""
from typing import Dict, List, Optional, Sequence

import torch

from vlp.registry import MODELS
from ..fusion.two_image import (TwinCrossAttention, split_cross_attention_state_dict,
                                twin_cross_attention)
from ..layers.attention import DecodingCache
from ..losses.contrastive import CLAMPED_ITC, momentum_contrastive_loss
from ..losses.distill import DistillationSchedule
from ..utils.feature_queue import itc_queue
from ..utils.generation import decode_texts, generate_ids
from ..utils.momentum import copy_params, make_momentum_twins
from ..utils.retrieval import (encode_images, encode_texts, pair_features,
                               retrieval_predictions)
from .base import VLPModel, build_part, pair_batch, replace_first_token, split_meta

__all__ = ['BLIP', 'TwinCrossAttention']


@MODELS.register_module()
class BLIP(VLPModel):
    """BLIP pretraining / retrieval / captioning model.

    Args:
        vision: image encoder config; text: a :class:`BertEncoder` with cross-attention in
            every layer (skipped in unimodal mode).
        vision_proj, text_proj, itm_head, itc, itm, queue_size, queue_ids, queue_init,
            momentum_distill, alpha, itm_negatives: as :class:`ALBEF` (BLIP: queue 57,600).
            ``vision_proj=text_proj=itm_head=None`` with an ``lm_head``: the captioning
            model of BLIP's fine-tuning (Sec. 5.2; the released ``BLIP_Decoder``): the ViT
            and the image-grounded decoder (built from ``text``) only, LM loss only; no
            unimodal text encoder, momentum twins or queue.
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

    def __init__(self, vision: dict, text: dict, vision_proj: Optional[dict],
                 text_proj: Optional[dict],
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
        contrastive = vision_proj is not None or text_proj is not None
        if contrastive and (vision_proj is None or text_proj is None):
            raise ValueError('BLIP: vision_proj and text_proj go together (both None: the '
                             'captioning model without ITC)')
        if not contrastive and (itm_head is not None or lm_head is None or two_image_fusion):
            raise ValueError('BLIP without vision_proj / text_proj is the captioning model: '
                             'it needs an lm_head and takes no itm_head (ITM mines its hard '
                             'negatives from ITC) and no two_image_fusion')
        self.contrastive = contrastive
        self.vision = build_part(vision)
        self.text = build_part(text) if contrastive else None
        self.two_image_fusion = two_image_fusion
        if two_image_fusion:
            twin_cross_attention(self.text)
        self.vision_proj, self.text_proj = build_part(vision_proj), build_part(text_proj)
        self.itm_head, self.lm_head = build_part(itm_head), build_part(lm_head)
        self.decoder, self.share_decoder = None, share_decoder
        if self.lm_head is not None:
            self.decoder = build_part(dict(text, **(decoder or {})))
            if share_decoder and self.text is not None:
                self.decoder.share_all_but_self_attention(self.text)
            if tie_lm_head:
                self.lm_head.tie_weights(self.decoder.word_embeddings)
        if not (self.text if contrastive else self.decoder).cross_layers:
            raise ValueError('BLIP: the text transformer needs cross-attention layers '
                             "(cross_attention_layers='all')")
        self._drop_unbuilt(predict_mode)
        self.itc = build_part(itc if itc is not None else CLAMPED_ITC) if contrastive else None
        self.caption_loss = build_part(caption_loss if caption_loss is not None else dict(
            type='CaptionLoss', label_smoothing=0.1))
        self.itm = build_part(itm if itm is not None else
                              dict(type='ITMLoss', negatives=itm_negatives))
        self.distill = DistillationSchedule(alpha, enabled=momentum_distill)
        # momentum twins of the image and text encoders with their projections (no decoder
        # twin: the LM loss is not distilled)
        (self.vision_m, self.vision_proj_m, self.text_m,
         self.text_proj_m) = (make_momentum_twins(self.vision, self.vision_proj, self.text,
                                                  self.text_proj) if contrastive
                              else (None,) * 4)
        self.queue = (itc_queue(queue_size, self.vision_proj.out_dim, queue_ids, queue_init)
                      if contrastive else None)
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
        if not self.contrastive:
            if predict_mode == 'retrieval':
                raise ValueError("a BLIP without vision_proj / text_proj (the captioning "
                                 "model) predicts captions: predict_mode='caption'")
            self.drop_capabilities('the captioning BLIP (vision_proj=None) has no unimodal '
                                   'encoders, ITC or ITM', 'extract_feat', 'encode_image',
                                   'encode_text', 'fused_features')
        if self.decoder is None:
            self.drop_capabilities('built with lm_head=None (no decoder)', 'generate',
                                   *(['predict'] if predict_mode == 'caption' else []))

    def momentum_pairs(self) -> List[tuple]:
        if not self.contrastive:
            return []
        return [(self.vision, self.vision_m), (self.vision_proj, self.vision_proj_m),
                (self.text, self.text_m), (self.text_proj, self.text_proj_m)]

    def init_weights(self) -> None:
        super().init_weights()
        copy_params(self.momentum_pairs())

    alpha = property(lambda self: self.distill.alpha, doc='current distillation weight')
    momentum_distill = property(lambda self: self.distill.enabled)

    @property
    def enc_token_id(self) -> int:
        self._enc_token_id = self.special_token_id('[ENC]', self._enc_token_id)
        return self._enc_token_id

    @property
    def dec_token_id(self) -> int:
        self._dec_token_id = self.special_token_id('[DEC]', self._dec_token_id)
        return self._dec_token_id

    # -- the three text modes -----------------------------------------------------------------
    def _image(self, images: torch.Tensor, momentum: bool = False):
        """``(image_embeds [B, N, C], image_feat [B, D])`` of the online or momentum
        encoder (videos: :func:`~vlp.models.utils.retrieval.encode_images`)."""
        towers = ((self.vision_m, self.vision_proj_m) if momentum
                  else (self.vision, self.vision_proj))
        return encode_images(*towers, images)

    def _text(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor],
              momentum: bool = False):
        """``(text_embeds [B, L, C], text_feat [B, D])`` of the (unimodal) text encoder."""
        towers = (self.text_m, self.text_proj_m) if momentum else (self.text, self.text_proj)
        return encode_texts(*towers, input_ids, attention_mask)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return self._image(images)[1]

    def text_features(self, input_ids: torch.Tensor,
                      attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self._text(input_ids, attention_mask)[1]

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

    def decoder_logits(self, input_ids: torch.Tensor, text_mask: Optional[torch.Tensor],
                       image_embeds: torch.Tensor,
                       cache: Optional[DecodingCache] = None) -> torch.Tensor:
        """Image-grounded decoder: ``[DEC]``-led ids ``[B, T]`` -> next-token logits
        ``[B, T, V]``. With a ``cache`` (incremental decoding): the new ids only, and the
        logits of the last one, ``[B, 1, V]``."""
        if self.decoder is None:
            raise RuntimeError('this BLIP has no decoder (lm_head=None)')
        hidden = self.decoder(input_ids, text_mask, image_embeds=image_embeds,
                              is_causal=True, cache=cache)['text_embeds']
        return self.lm_head(hidden if cache is None else hidden[:, -1:])

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
        if not self.contrastive:  # the captioning model: LM only
            image_embeds = self.vision(images)['image_embeds']
            return dict(loss_lm=self.loss_weights['lm'] * self.lm_loss(input_ids, text_mask,
                                                                       image_embeds))
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

    def lm_loss(self, input_ids: torch.Tensor, text_mask: torch.Tensor,
                image_embeds: torch.Tensor) -> torch.Tensor:
        """The decoder's next-token loss (padding and, unless ``prompt_in_loss``, the prompt
        excluded)."""
        ids = replace_first_token(input_ids, self.dec_token_id)
        labels = ids.masked_fill(text_mask == 0, -100)
        if self.prompt and not self.prompt_in_loss:
            labels[:, :self._prompt_length()] = -100
        logits = self.decoder_logits(ids, text_mask, image_embeds)  # (B, L, V)
        return self.caption_loss(logits[:, :-1], labels[:, 1:])

    def _prompt_length(self) -> int:
        """Tokens of ``[DEC] + prompt`` (without the trailing [SEP])."""
        return len(self.tokenizer.encode(self.prompt)) - 1 if self.prompt else 1

    # -- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, images: torch.Tensor, prompt: Optional[str] = None,
                 **decoding) -> List[str]:
        """Captions of normalised ``images [B, 3, H, W]`` without the ``prompt``;
        ``decoding`` (:func:`~vlp.models.utils.generation.generate`; ``use_cache=False``:
        the uncached reference) over ``generation_cfg`` over BLIP's 3 beams, lengths 10 to
        30 (``[DEC]`` and prompt included)."""
        self.require('generate')
        tok = self.tokenizer
        if tok is None:
            raise RuntimeError('BLIP.generate needs a tokenizer')
        prompt = self.prompt if prompt is None else prompt
        prompt_ids = [self.dec_token_id] + (tok.encode(prompt)[1:-1] if prompt else [])
        return decode_texts(tok, self.generate_ids(images, prompt_ids, **decoding),
                            len(prompt_ids))

    @torch.no_grad()
    def generate_ids(self, images: torch.Tensor, prompt_ids: Sequence[int],
                     eos_token_id: Optional[int] = None, pad_token_id: Optional[int] = None,
                     **decoding) -> torch.Tensor:
        """Token ids ``[B * num_return_sequences, L]`` (``prompt_ids``, ``[DEC]`` first,
        included) of the captions of normalised ``images``; the decoder caches its keys and
        values (the image's computed once per caption) unless ``use_cache=False``. EOS /
        padding: ``[SEP]`` / ``[PAD]`` of the tokenizer unless given."""
        self.require('generate')
        if eos_token_id is None or pad_token_id is None:
            if self.tokenizer is None:
                raise RuntimeError('BLIP.generate_ids needs a tokenizer or eos/pad ids')
            eos_token_id = self.tokenizer.sep_token_id if eos_token_id is None else eos_token_id
            pad_token_id = self.tokenizer.pad_token_id if pad_token_id is None else pad_token_id
        image_embeds = self.vision(images)['image_embeds']

        def next_token_logits(seq: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return self.decoder_logits(seq, None, image_embeds[rows])[:, -1].float()

        def cached_step(new: torch.Tensor, rows: torch.Tensor, cache) -> torch.Tensor:
            return self.decoder_logits(new, None, image_embeds, cache)[:, -1].float()

        return generate_ids(next_token_logits, cached_step, prompt_ids, images.shape[0],
                            images.device, eos_token_id, pad_token_id,
                            dict(num_beams=3, max_length=30, min_length=10),
                            self.generation_cfg, decoding)

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        self.require('encode_image')
        return self.image_features(self.preprocess_images(images))

    @torch.no_grad()
    def encode_text(self, texts, attention_mask: Optional[torch.Tensor] = None):
        self.require('encode_text')
        tok = self.tokenize(texts, attention_mask)
        return self.text_features(tok['input_ids'], tok.get('attention_mask'))

    @torch.no_grad()
    def itm_score(self, images: torch.Tensor, texts, attention_mask=None) -> torch.Tensor:
        """Probability that each image matches its text (pairs, ``[B]``)."""
        self.require('itm_score')
        tok = self.tokenize(texts, attention_mask)
        image_embeds = self.vision(self.preprocess_images(images))['image_embeds']
        logits = self.itm_logits(image_embeds, tok['input_ids'], tok.get('attention_mask'))
        return logits.softmax(dim=-1)[:, 1]

    def extract_feat(self, inputs: dict) -> Dict[str, torch.Tensor]:
        self.require('extract_feat')
        return pair_features(inputs, self._image, self._text)

    def predict(self, inputs: dict, data_samples: Optional[dict] = None) -> List[dict]:
        """``'caption'``: ``pred_caption`` per image; ``'retrieval'``: the inputs of
        ``ITMRetrievalMetric`` (caption ids as ``text_embeds``)."""
        self.require('predict')
        if self.predict_mode == 'retrieval':
            return retrieval_predictions(inputs, data_samples, self._image, self._text,
                                         itm_text='ids', family='BLIP')
        if inputs.get('images') is None:
            raise ValueError('BLIP.predict needs images')
        captions = self.generate(inputs['images'])
        metas = split_meta(data_samples, len(captions))
        return [dict(meta, pred_caption=c) for meta, c in zip(metas, captions)]
