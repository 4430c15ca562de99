"""BLIP (Li et al. 2022, "BLIP: Bootstrapping Language-Image Pre-training for Unified
Vision-Language Understanding and Generation").

The multimodal mixture of encoder-decoder (MED, Sec. 3.1): a ViT image encoder and one
BERT text transformer run in three modes,

- **unimodal text encoder**: the text alone (cross-attention skipped), ``[CLS]`` first;
- **image-grounded text encoder**: cross-attention to the image tokens in every layer,
  ``[ENC]`` in place of ``[CLS]``;
- **image-grounded text decoder**: causal self-attention, cross-attention to the image,
  ``[DEC]`` in place of ``[CLS]``, a language-model head.

The decoder shares every parameter with the encoder except the self-attention layers
(Sec. 3.2: embeddings, cross-attention and feed-forward layers are the same tensors);
``share_decoder=False`` gives a separate decoder (BLIP's fine-tuned captioning
checkpoints, HF ``BlipForConditionalGeneration``). One image-encoder pass and three text
passes per step train

- **ITC** with momentum encoders, a feature queue and momentum distillation (as ALBEF:
  :class:`~vlp.models.ALBEF`'s machinery and hooks),
- **ITM** on the ``[ENC]`` state with one hard negative per image and per text drawn from
  the ITC similarities of the whole batch (all ranks),
- **LM**: autoregressive cross-entropy with label smoothing 0.1 (prompt tokens, if any,
  excluded from the loss as in BLIP's captioning fine-tuning).

:meth:`BLIP.generate` decodes captions (greedy, beam search, nucleus sampling; prompt
``'a picture of '`` as the paper); ``tools/capfilt.py`` runs CapFilt (Sec. 3.3) with a
captioner and a filter.

Differences from the reference code (also in docs/models.md): the LM head's output matrix is
tied to the (shared) word embeddings; in BLIP's code the ``tie_encoder_decoder_weights``
call re-points the decoder's input embeddings to the encoder's after HF had tied the LM
head to the decoder's own, so the released checkpoints carry a separate output matrix
(``tie_lm_head=False`` reproduces that layout, which the checkpoint converter uses).
Generation recomputes the prefix each step (no key/value cache).
"""
import copy
import re
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn

from vlp.registry import MODELS
from ..utils.generation import generate as generate_ids
from ..utils.momentum import make_momentum_twins
from .albef import ALBEF
from .base import VLPModel, build_part
from .clip import _split_meta

# decoder sub-modules shared with the encoder (everything but the self-attention)
_SHARED_BLOCK_PARTS = ('cross_attn', 'norm_cross', 'norm_context', 'mlp', 'mlp_drop',
                       'norm2')
_SHARED_EMBEDDINGS = ('word_embeddings', 'position_embeddings', 'token_type_embeddings',
                      'emb_norm', 'emb_drop')


class TwinCrossAttention(nn.Module):
    """BLIP's NLVR2 cross-attention (Li et al. 2022, Sec. 5.4 / Fig. 6; the released
    ``nlvr_encoder``): two cross-attention heads of the same layer, ``a`` over the left and
    ``b`` over the right image (each initialised from the pre-trained cross-attention,
    output projection included), merged by averaging (``merge=None``: BLIP's first six
    layers) or by a linear layer over their concatenation (BLIP's last six layers); the
    block's residual and LayerNorm follow as usual.

    ``forward(x, context=(left, right), attn_mask=None | (mask_left, mask_right))``.
    """

    def __init__(self, attn: nn.Module, merge: bool, dim: int):
        super().__init__()
        self.a = attn
        self.b = copy.deepcopy(attn)
        self.merge = nn.Linear(2 * dim, dim) if merge else None

    def forward(self, x: torch.Tensor, context: Sequence[torch.Tensor] = None,
                attn_mask=None) -> torch.Tensor:
        if isinstance(context, torch.Tensor) or context is None or len(context) != 2:
            raise ValueError('TwinCrossAttention (BLIP two_image_fusion) needs the two '
                             'images as context=(left, right)')
        masks = attn_mask if isinstance(attn_mask, (list, tuple)) else (attn_mask,) * 2
        h0 = self.a(x, context=context[0], attn_mask=masks[0])
        h1 = self.b(x, context=context[1], attn_mask=masks[1])
        if self.merge is None:
            return (h0 + h1) / 2
        return self.merge(torch.cat([h0, h1], dim=-1))


@MODELS.register_module()
class BLIP(ALBEF):
    """BLIP pretraining / retrieval / captioning model.

    Args:
        vision: image encoder config (``image_embeds [B, N, C]``, ``image_pooled [B, C]``).
        text: the text transformer: a :class:`BertEncoder` with cross-attention in every
            layer (``cross_attention_layers='all'``); unimodal mode skips it.
        vision_proj / text_proj: ITC projections (256-d in the paper).
        itm_head: ITM classifier config (``None``: no ITM).
        lm_head: the decoder's LM head (an ``MLMHead``: BERT's prediction head; ``None``:
            no decoder, no LM loss, no generation).
        decoder: overrides of the decoder's :class:`BertEncoder` config (default: the
            ``text`` config).
        share_decoder: share all but the self-attention layers with the encoder (paper).
        tie_lm_head: tie the LM head's output matrix to the decoder's word embeddings.
        itc: contrastive loss config (ALBEF's temperature bounds by default).
        caption_loss: LM loss config (``CaptionLoss``, label smoothing 0.1).
        queue_size, queue_ids, queue_init, momentum_distill, alpha, itm_negatives: as
            :class:`ALBEF` (BLIP: queue 57,600, alpha 0.4, momentum 0.995).
        enc_token_id / dec_token_id: ids of ``[ENC]`` / ``[DEC]`` (``None``: looked up in
            the tokenizer, which must then hold them: BLIP adds both to BERT's vocabulary).
        prompt: text every generated caption starts with (BLIP: ``'a picture of '``).
            In training, captions are expected to start with it (BLIP's captioning
            fine-tuning prepends it to every caption); pretraining uses none.
        prompt_in_loss: score the prompt tokens in the LM loss (BLIP: no).
        generation_cfg: decoding options of :meth:`predict` (see :meth:`generate`).
        predict_mode: ``'caption'`` (generate a caption per image, for caption metrics) or
            ``'retrieval'`` (features and ITM inputs for ``ITMRetrievalMetric``).
        loss_weights: ``dict(itc=1, itm=1, lm=1)`` (BLIP sums them unweighted).
        two_image_fusion: BLIP's NLVR2 model: every cross-attention layer of the text
            encoder becomes a :class:`TwinCrossAttention` over the left and the right image
            (:meth:`fused_features_pair`; no decoder); a pre-training checkpoint starts both
            twins (:meth:`adapt_pretrained_state_dict`).
    """

    itm_text_ids = True  # the ITM re-encodes the caption ids with the image ([ENC])
    rerank_add_itc = True  # BLIP's retrieval score: ITM logit + ITC similarity

    def __init__(self, vision: dict, text: dict, vision_proj: dict, text_proj: dict,
                 itm_head: Optional[dict] = None, lm_head: Optional[dict] = None,
                 decoder: Optional[dict] = None, share_decoder: bool = True,
                 tie_lm_head: bool = True, itc: Optional[dict] = None,
                 caption_loss: Optional[dict] = None,
                 queue_size: int = 57600, queue_ids: bool = False,
                 queue_init: str = 'random', momentum_distill: bool = True,
                 alpha: float = 0.4, itm_negatives: str = 'global',
                 enc_token_id: Optional[int] = None, dec_token_id: Optional[int] = None,
                 prompt: str = '', prompt_in_loss: bool = False,
                 generation_cfg: Optional[dict] = None, predict_mode: str = 'caption',
                 loss_weights: Optional[Dict[str, float]] = None,
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 grad_checkpointing: bool = False, init_cfg: Optional[dict] = None,
                 two_image_fusion: bool = False):
        VLPModel.__init__(self, data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                          init_cfg=init_cfg)
        if predict_mode not in ('caption', 'retrieval'):
            raise ValueError(f"predict_mode must be 'caption' or 'retrieval', got "
                             f'{predict_mode!r}')
        self.vision = build_part(vision)
        self.text = build_part(text)
        if not self.text.cross_layers:
            raise ValueError('BLIP: the text transformer needs cross-attention layers '
                             "(cross_attention_layers='all')")
        self.two_image_fusion = two_image_fusion
        if two_image_fusion:
            if lm_head is not None:
                raise ValueError('BLIP two_image_fusion (NLVR2) takes no decoder: lm_head=None')
            n = len(self.text.blocks)
            for i, blk in enumerate(self.text.blocks):
                if getattr(blk, 'has_cross_attn', False):  # merge layer in the upper half
                    blk.cross_attn = TwinCrossAttention(blk.cross_attn, merge=i >= n // 2,
                                                        dim=self.text.hidden_size)
        self.vision_proj = build_part(vision_proj)
        self.text_proj = build_part(text_proj)
        self.itm_head = build_part(itm_head)
        self.lm_head = build_part(lm_head)
        self.decoder = None
        self.share_decoder = share_decoder
        if self.lm_head is not None:
            self.decoder = build_part(dict(text, **(decoder or {})))
            if share_decoder:
                self._share_decoder()
            if tie_lm_head:
                self.lm_head.tie_weights(self.decoder.word_embeddings)
        self.itc = build_part(itc if itc is not None else dict(
            type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
            max_logit_scale=1000.0))
        self.caption_loss = build_part(caption_loss if caption_loss is not None else dict(
            type='CaptionLoss', label_smoothing=0.1))
        embed_dim = self.vision_proj.out_dim
        # BLIP keeps momentum twins of the image and the text encoder with their
        # projections (no decoder twin: the LM loss is not distilled)
        (self.vision_m, self.vision_proj_m, self.text_m,
         self.text_proj_m) = make_momentum_twins(self.vision, self.vision_proj, self.text,
                                                 self.text_proj)
        self._init_matching(itm_negatives, queue_size, embed_dim, queue_ids, queue_init,
                            momentum_distill, alpha)
        self.mlm_head = None  # ALBEF's MLM objective is not part of BLIP
        self._enc_token_id, self._dec_token_id = enc_token_id, dec_token_id
        self.prompt = prompt
        self.prompt_in_loss = prompt_in_loss
        self.generation_cfg = dict(generation_cfg or {})
        self.predict_mode = predict_mode
        self.loss_weights = {**dict(itc=1.0, itm=1.0, lm=1.0), **(loss_weights or {})}
        self.set_grad_checkpointing(grad_checkpointing)

    def _share_decoder(self) -> None:
        """Point the decoder's embeddings, cross-attention and FFN sub-modules at the
        encoder's (the same tensors; only the self-attention stays separate)."""
        enc, dec = self.text, self.decoder
        if len(enc.blocks) != len(dec.blocks):
            raise ValueError('share_decoder needs as many decoder as encoder layers')
        for name in _SHARED_EMBEDDINGS:
            if hasattr(enc, name):
                setattr(dec, name, getattr(enc, name))
        for be, bd in zip(enc.blocks, dec.blocks):
            for name in _SHARED_BLOCK_PARTS:
                if hasattr(be, name):
                    setattr(bd, name, getattr(be, name))

    def momentum_pairs(self) -> List[tuple]:
        return [(self.vision, self.vision_m), (self.vision_proj, self.vision_proj_m),
                (self.text, self.text_m), (self.text_proj, self.text_proj_m)]

    # -- special tokens ---------------------------------------------------------------------
    def _special_id(self, attr: str, token: str) -> int:
        value = getattr(self, f'_{attr}')
        if value is None:
            tok = self.tokenizer
            value = tok.token_to_id(token) if tok is not None else None
            if value is None:
                raise ValueError(f'BLIP needs {attr} (or a tokenizer holding {token!r}: add it '
                                 f"with additional_special_tokens=['[DEC]', '[ENC]'])")
            setattr(self, f'_{attr}', int(value))
        return value

    @property
    def enc_token_id(self) -> int:
        return self._special_id('enc_token_id', '[ENC]')

    @property
    def dec_token_id(self) -> int:
        return self._special_id('dec_token_id', '[DEC]')

    def _with_first(self, input_ids: torch.Tensor, token_id: int) -> torch.Tensor:
        ids = input_ids.clone()
        ids[..., 0] = token_id
        return ids

    # -- the three text modes -----------------------------------------------------------------
    def fuse(self, input_ids: torch.Tensor, text_mask: Optional[torch.Tensor],
             image_embeds: torch.Tensor) -> torch.Tensor:
        """Image-grounded text encoder: ``[ENC]``-led ``input_ids [B, L]`` (the first token
        is replaced) attending to ``image_embeds`` -> ``[B, L, C]``; the ITM (ALBEF's
        ``itm_logits``) reads its first state."""
        ids = self._with_first(input_ids, self.enc_token_id)
        return self.text(ids, text_mask, image_embeds=image_embeds)['text_embeds']

    def fused_features(self, images: torch.Tensor, input_ids: torch.Tensor,
                       attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The image-grounded text encoder's ``[ENC]`` state ``[B, C]`` (the ITM head's
        input; BLIP's downstream classifiers read it)."""
        return self.fuse(input_ids, attention_mask, self.vision(images)['image_embeds'])[:, 0]

    def fused_features_pair(self, images: torch.Tensor, input_ids: torch.Tensor,
                            attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """BLIP's NLVR2 encoding (``two_image_fusion``): both images ``[B, 2, 3, H, W]``
        through the image encoder in one batch, the ``[ENC]``-led statement attending to
        both in every cross-attention layer (:class:`TwinCrossAttention`) -> ``[B, C]``."""
        if not self.two_image_fusion:
            raise RuntimeError('fused_features_pair needs BLIP(two_image_fusion=True)')
        B = images.shape[0]
        tokens = self.vision(images.flatten(0, 1))['image_embeds']  # (2B, N, C)
        tokens = tokens.view(B, 2, *tokens.shape[1:])
        ids = self._with_first(input_ids, self.enc_token_id)
        out = self.text(ids, attention_mask,
                        image_embeds=[(tokens[:, 0], tokens[:, 1])])['text_embeds']
        return out[:, 0]

    def adapt_pretrained_state_dict(
            self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """With ``two_image_fusion``, a pre-training checkpoint's cross-attention weights
        start both twins (``cross_attn.a`` and ``cross_attn.b``: BLIP copies ``self`` into
        ``self0`` / ``self1`` and ``dense`` into ``dense0`` / ``dense1``); the merge layers
        keep their init. Otherwise (or already twinned) unchanged."""
        if not getattr(self, 'two_image_fusion', False):
            return state_dict
        pattern = re.compile(r'^(text(?:_m)?\.blocks\.\d+\.cross_attn\.)(?!a\.|b\.|merge\.)(.+)$')
        out = {}
        for k, v in state_dict.items():
            m = pattern.match(k)
            if m:
                out[f'{m.group(1)}a.{m.group(2)}'] = v
                out[f'{m.group(1)}b.{m.group(2)}'] = v.clone()
            else:
                out[k] = v
        return out

    def decoder_logits(self, input_ids: torch.Tensor, text_mask: Optional[torch.Tensor],
                       image_embeds: torch.Tensor) -> torch.Tensor:
        """Image-grounded text decoder: ``[DEC]``-led ids ``[B, T]`` (used as given) ->
        next-token logits ``[B, T, V]`` (position ``t`` predicts token ``t + 1``)."""
        if self.decoder is None:
            raise RuntimeError('this BLIP has no decoder (lm_head=None)')
        hidden = self.decoder(input_ids, text_mask, image_embeds=image_embeds,
                              is_causal=True)['text_embeds']
        return self.lm_head(hidden)

    # -- training ---------------------------------------------------------------------------
    def _prompt_length(self) -> int:
        """Tokens of ``[DEC] + prompt`` (without the trailing [SEP])."""
        if not self.prompt:
            return 1
        return len(self.tokenizer.encode(self.prompt)) - 1

    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """ITC + ITM + LM of a batch (``images``, ``input_ids`` led by ``[CLS]``,
        ``attention_mask``). With a ``prompt``, the captions are expected to start with
        it (``Tokenize`` after a ``prompt``-adding transform, as BLIP's caption data)."""
        images, input_ids, text_mask, idx = self._unpack(inputs, data_samples)
        alpha = self.alpha if self.momentum_distill else 0.0
        image_embeds, image_feat = self._image(images)  # (B, N, C), (B, D)
        _, text_feat = self._text(input_ids, text_mask)  # unimodal [CLS] -> (B, D)
        losses, _ = self._itc_loss(images, input_ids, text_mask, image_feat, text_feat, idx,
                                   alpha)
        if self.itm_head is not None:
            losses.update(self._itm_loss(image_embeds, image_feat, input_ids, text_feat,
                                         text_mask, idx, losses['logit_scale']))
        if self.decoder is not None:
            losses['loss_lm'] = self.loss_weights['lm'] * self.lm_loss(
                input_ids, text_mask, image_embeds)
        losses['alpha'] = torch.tensor(float(alpha), device=images.device)
        return losses

    def lm_loss(self, input_ids: torch.Tensor, text_mask: torch.Tensor,
                image_embeds: torch.Tensor) -> torch.Tensor:
        """Label-smoothed next-token cross-entropy of the decoder (padding and, unless
        ``prompt_in_loss``, the prompt excluded)."""
        ids = self._with_first(input_ids, self.dec_token_id)
        labels = ids.masked_fill(text_mask == 0, -100)
        if self.prompt and not self.prompt_in_loss:
            labels[:, :self._prompt_length()] = -100
        logits = self.decoder_logits(ids, text_mask, image_embeds)  # (B, L, V)
        return self.caption_loss(logits[:, :-1], labels[:, 1:])

    # -- generation ---------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, images: torch.Tensor, prompt: Optional[str] = None,
                 **decoding) -> List[str]:
        """Captions of ``images [B, 3, H, W]`` (normalised as the data preprocessor does).

        Args:
            prompt: text every caption starts with (default: the model's ``prompt``); it is
                not part of the returned strings.
            decoding: options of :func:`vlp.models.utils.generation.generate`
                (``num_beams``, ``do_sample``, ``top_p``, ``top_k``, ``temperature``,
                ``max_length``, ``min_length``, ``repetition_penalty``, ...), over the
                model's ``generation_cfg``. BLIP's defaults: beam search with 3 beams,
                ``max_length=30``, ``min_length=10`` (lengths count ``[DEC]`` and the
                prompt), or nucleus sampling with ``top_p=0.9``.
        """
        if self.decoder is None:
            raise RuntimeError('this BLIP has no decoder (lm_head=None)')
        tok = self.tokenizer
        if tok is None:
            raise RuntimeError('BLIP.generate needs a tokenizer')
        prompt = self.prompt if prompt is None else prompt
        prompt_ids = [self.dec_token_id] + (tok.encode(prompt)[1:-1] if prompt else [])
        B = images.shape[0]
        image_embeds = self.vision(images)['image_embeds']
        ids = torch.tensor(prompt_ids, device=images.device).repeat(B, 1)

        def next_token_logits(seq: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            return self.decoder_logits(seq, None, image_embeds[rows])[:, -1].float()

        opts = dict(num_beams=3, max_length=30, min_length=10)
        opts.update(self.generation_cfg)
        opts.update(decoding)
        out = generate_ids(next_token_logits, ids, eos_token_id=tok.sep_token_id,
                           pad_token_id=tok.pad_token_id, **opts)
        return [tok.decode(row[len(prompt_ids):].tolist()).strip() for row in out]

    # -- inference ------------------------------------------------------------------------------
    def predict(self, inputs: dict, data_samples: Optional[dict] = None) -> List[dict]:
        """``predict_mode='caption'``: one dict per image with ``pred_caption`` and the
        sample's metadata (``image_id``, the reference captions in ``text``).
        ``'retrieval'``: the features and ITM inputs :class:`ITMRetrievalMetric` needs,
        with the caption token ids in ``text_embeds``."""
        if self.predict_mode == 'retrieval':
            return super().predict(inputs, data_samples)
        images = inputs.get('images')
        if images is None:
            raise ValueError('BLIP.predict needs images')
        captions = self.generate(images)
        metas = _split_meta(data_samples, images.shape[0])
        return [dict(metas[i], pred_caption=captions[i]) for i in range(images.shape[0])]
