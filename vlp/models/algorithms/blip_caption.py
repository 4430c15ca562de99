"""BLIP's captioning model (Li et al. 2022, "BLIP: Bootstrapping Language-Image
Pre-training", Sec. 5.2; the released ``BLIP_Decoder``, HF's
``BlipForConditionalGeneration``): the ViT and the **image-grounded text decoder** (a causal
BERT led by ``[DEC]`` that cross-attends to the image tokens in every layer) with its LM
head. Objective: the **LM loss** (label smoothing 0.1), the prompt ``'a picture of '`` put
before every caption and kept out of the loss. Decoding (beam 3, lengths 5 to 20 in BLIP's
COCO recipe) caches keys/values (``use_cache=False``: the uncached reference).

The decoder's methods below are written once and bound by :class:`~.blip.BLIP` too (its LM
objective and captioning), so both keep one state-dict layout: ``vision.*``, ``decoder.*``
and ``lm_head.*`` of a BLIP pre-training checkpoint load key for key (its encoder, ITC and
ITM parts are unused keys). Their contract on the model: ``vision``, ``decoder``,
``lm_head``, ``caption_loss``, ``prompt`` / ``prompt_in_loss``, ``dec_token_id``,
``generation_cfg`` and ``tokenizer``.
"""
from typing import Dict, List, Optional, Sequence

import torch

from vlp.registry import MODELS
from ..layers.attention import DecodingCache
from ..utils.generation import decode_texts, eos_pad_ids, generate_ids as _generate_ids
from ..utils.pretrained import load_pretrained_weights
from .base import (VLPModel, build_part, pair_batch, replace_first_token, split_meta,
                   token_id_property)

#: BLIP decoding when the config sets none: 3 beams, lengths 10 to 30 (``[DEC]`` and the
#: prompt included; BLIP's ``generate``)
BLIP_DECODING = dict(num_beams=3, max_length=30, min_length=10)


# -- the image-grounded decoder (BLIP and BLIPCaption) ------------------------------------------
def decoder_logits(self, input_ids: torch.Tensor, text_mask: Optional[torch.Tensor],
                   image_embeds: torch.Tensor, image_mask: Optional[torch.Tensor] = None,
                   cache: Optional[DecodingCache] = None) -> torch.Tensor:
    """The causal ``decoder``: ``[DEC]``-led ids ``[B, T]`` cross-attending to
    ``image_embeds [B, N, C]`` (BLIPVQA's answer decoder: the question states, with their
    ``image_mask``) -> next-token logits ``[B, T, V]``. With a ``cache`` (incremental
    decoding): the new ids only, and the logits of the last one, ``[B, 1, V]``."""
    if self.decoder is None:
        raise RuntimeError(f'this {type(self).__name__} has no decoder (lm_head=None)')
    hidden = self.decoder(input_ids, text_mask, image_embeds=image_embeds,
                          image_mask=image_mask, is_causal=True, cache=cache)['text_embeds']
    return self.lm_head(hidden if cache is None else hidden[:, -1:])


def lm_loss(self, input_ids: torch.Tensor, text_mask: torch.Tensor,
            image_embeds: torch.Tensor) -> torch.Tensor:
    """The decoder's next-token loss of ``[CLS]``-led caption ids (``[DEC]`` put first;
    padding and, unless ``prompt_in_loss``, the prompt excluded)."""
    ids = replace_first_token(input_ids, self.dec_token_id)
    labels = ids.masked_fill(text_mask == 0, -100)
    if self.prompt and not self.prompt_in_loss:
        labels[:, :self.prompt_length()] = -100
    logits = self.decoder_logits(ids, text_mask, image_embeds)  # (B, L, V)
    return self.caption_loss(logits[:, :-1], labels[:, 1:])


def prompt_length(self) -> int:
    """Tokens of ``[DEC] + prompt`` (the prompt's trailing ``[SEP]`` not counted)."""
    return len(self.tokenizer.encode(self.prompt)) - 1 if self.prompt else 1


@torch.no_grad()
def generate(self, images: torch.Tensor, prompt: Optional[str] = None,
             **decoding) -> List[str]:
    """Captions of normalised ``images [B, 3, H, W]`` without the ``prompt`` (default: the
    model's); ``decoding`` (:func:`~vlp.models.utils.generation.generate`;
    ``use_cache=False``: the uncached reference) over ``generation_cfg`` over
    :data:`BLIP_DECODING`."""
    self.require('generate')
    tok = self.tokenizer
    if tok is None:
        raise RuntimeError(f'{type(self).__name__}.generate needs a tokenizer')
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
    eos, pad = eos_pad_ids(self.tokenizer, eos_token_id, pad_token_id, type(self).__name__,
                           'sep_token_id')
    return _generate_ids(lambda ids, ctx, _, cache: self.decoder_logits(ids, None, ctx,
                                                                        cache=cache),
                         self.vision(images)['image_embeds'], prompt_ids, eos, pad,
                         BLIP_DECODING, self.generation_cfg, decoding)


def caption_predictions(self, inputs: dict, data_samples) -> List[dict]:
    """``pred_caption`` per image with the sample's metadata (``CaptionMetric``'s inputs)."""
    if inputs.get('images') is None:
        raise ValueError(f'{type(self).__name__}.predict needs images')
    captions = self.generate(inputs['images'])
    return [dict(meta, pred_caption=c)
            for meta, c in zip(split_meta(data_samples, len(captions)), captions)]


#: BLIP pre-training keys a BLIPCaption accepts and does not use (a BLIP config re-typed)
UNUSED_BLIP_KEYS = frozenset((
    'vision_proj', 'text_proj', 'itm_head', 'itc', 'itm', 'share_decoder', 'queue_size',
    'queue_ids', 'queue_init', 'momentum_distill', 'alpha', 'itm_negatives', 'loss_weights',
    'enc_token_id', 'use_enc_token'))


@MODELS.register_module()
class BLIPCaption(VLPModel):
    """BLIP's captioning model: ViT + image-grounded decoder, LM loss only.

    Args:
        vision: image encoder config; text: the decoder's :class:`BertEncoder` config
            (cross-attention in every layer); decoder: overrides of it.
        lm_head: the LM head; tie_lm_head: tie it to the decoder's word embeddings.
        caption_loss: LM loss config (``CaptionLoss``, label smoothing 0.1).
        dec_token_id: id of ``[DEC]`` (default: the tokenizer's).
        prompt / prompt_in_loss: what captions start with (the training captions too:
            ``CleanCaption(prefix=...)``) and whether the LM loss scores it (BLIP: no).
        generation_cfg: decoding options of :meth:`predict` over :data:`BLIP_DECODING`.
        predict_mode: ``'caption'`` (the only one: accepted for configs that name it).
        pretrained: a BLIP checkpoint (file or work directory) loaded non-strictly and
            loudly when built (its encoder, ITC and ITM parts reported unused).
        **blip_keys: the keys of :data:`UNUSED_BLIP_KEYS`, so that a BLIP config can be
            re-typed; ignored.
        data_preprocessor, tokenizer, grad_checkpointing, init_cfg: see :class:`VLPModel`.
    """
    capabilities = frozenset({'loss', 'predict', 'generate'})
    unsupported_reasons = {
        n: 'the captioning BLIP has no unimodal encoders, ITC or ITM: use BLIP'
        for n in ('extract_feat', 'encode_image', 'encode_text', 'itm_score',
                  'rerank_scores', 'fused_features')}

    def __init__(self, vision: dict, text: dict, lm_head: dict, decoder: Optional[dict] = None,
                 tie_lm_head: bool = True, caption_loss: Optional[dict] = None,
                 dec_token_id: Optional[int] = None, prompt: str = '',
                 prompt_in_loss: bool = False, generation_cfg: Optional[dict] = None,
                 predict_mode: str = 'caption', data_preprocessor: Optional[dict] = None,
                 tokenizer: Optional[dict] = None, grad_checkpointing: bool = False,
                 init_cfg: Optional[dict] = None, pretrained: Optional[str] = None,
                 **blip_keys):
        unknown = set(blip_keys) - UNUSED_BLIP_KEYS
        if unknown:
            raise TypeError(f'BLIPCaption got unexpected arguments {sorted(unknown)}')
        if predict_mode != 'caption':
            raise ValueError(f"BLIPCaption predicts captions: predict_mode='caption', got "
                             f'{predict_mode!r} (retrieval needs BLIP)')
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        # built in BLIP's order (the same initial weights under a seed)
        self.vision, self.lm_head = build_part(vision), build_part(lm_head)
        self.decoder = build_part(dict(text, **(decoder or {})))
        if not self.decoder.cross_layers:
            raise ValueError('BLIPCaption: the decoder needs cross-attention layers '
                             "(cross_attention_layers='all')")
        if tie_lm_head:
            self.lm_head.tie_weights(self.decoder.word_embeddings)
        self.caption_loss = build_part(caption_loss if caption_loss is not None else dict(
            type='CaptionLoss', label_smoothing=0.1))
        self._dec_token_id = dec_token_id
        self.prompt, self.prompt_in_loss = prompt, prompt_in_loss
        self.generation_cfg = dict(generation_cfg or {})
        self.predict_mode = predict_mode
        self.set_grad_checkpointing(grad_checkpointing)
        if pretrained:
            load_pretrained_weights(self, pretrained)

    dec_token_id = token_id_property('[DEC]')
    decoder_logits, lm_loss, prompt_length = decoder_logits, lm_loss, prompt_length
    generate, generate_ids = generate, generate_ids

    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """LM loss of ``images`` and their captions ``input_ids`` / ``attention_mask``
        (``[CLS]``-led, starting with the ``prompt``)."""
        images, input_ids, text_mask, _ = pair_batch(inputs, data_samples)
        return dict(loss_lm=self.lm_loss(input_ids, text_mask,
                                         self.vision(images)['image_embeds']))

    def predict(self, inputs: dict, data_samples: Optional[dict] = None) -> List[dict]:
        """``pred_caption`` per image, decoded with ``generation_cfg``."""
        return caption_predictions(self, inputs, data_samples)
