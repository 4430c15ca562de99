"""CoCa (Yu et al. 2022, "CoCa: Contrastive Captioners are Image-Text Foundation Models").

An image encoder and a text decoder split in two (Sec. 3.2, Fig. 2): the lower,
**unimodal** layers are a causal text transformer whose appended ``[CLS]`` token gives the
text embedding; the upper, **multimodal** layers continue its hidden states with
cross-attention to the image. Attentional poolers turn the image tokens into 1 contrastive
embedding and N (256) captioning tokens. Objectives (Sec. 3.1, Eq. 3):
``contrastive_weight * ITC + caption_weight * captioning`` (1 and 2, as the paper and
open_clip), ITC the symmetric InfoNCE with all-rank negatives, captioning the next-token
cross-entropy (Eq. 2). ``pooler_layout='shared'`` is open_clip's CoCa (one pooler of N
queries whose first token is the contrastive one). Decoding caches keys/values
(``use_cache=False``: the uncached reference, which recomputes the prefix). Choices the
paper leaves open (the multimodal layer, pooler heads) are documented in
``fusion/decoder.py`` and docs/models.md.
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlp.registry import MODELS
from ..utils.generation import decode_texts, eos_pad_ids, generate_ids
from .base import VLPModel, build_part
from .base import split_meta
from .clip import CLIP


@MODELS.register_module()
class CoCa(VLPModel):
    """Contrastive captioner.

    Args:
        vision: image tower config (``forward(images) -> dict(image_embeds [B, N, C_v])``).
        text: unimodal text decoder config (``TextTransformer`` with ``embed_cls=True``:
            ``text_pooled`` is the ``[CLS]`` state, ``text_hidden`` the tokens' states).
        decoder: multimodal decoder config (``MultimodalDecoder``: ``(text_hidden,
            caption_tokens) -> logits``).
        cap_pooler: ``AttentionalPooler`` config giving the captioning tokens (N queries).
        con_pooler: ``AttentionalPooler`` config with 1 query giving the contrastive image
            embedding (``pooler_layout='parallel'``); ``None`` with ``'shared'``.
        pooler_layout: ``'parallel'`` (the paper: both poolers read the image tokens) or
            ``'shared'`` (open_clip's original CoCa: ``cap_pooler`` alone; its first output
            token is the contrastive embedding, the other N - 1 the captioning tokens).
        vision_proj / text_proj: ``Projection`` configs into the joint space; ``None`` is
            the identity (the paper's pseudo-code compares the pooled states directly).
        itc: contrastive loss config (default ``ContrastiveLoss``: T = 0.07, learned).
        caption_loss: captioning loss config (default ``CaptionLoss``, no smoothing).
        contrastive_weight / caption_weight: the loss weights (paper: 1 and 2).
        generation_cfg: decoding options of :meth:`predict` / :meth:`generate`.
        predict_mode: ``'caption'`` (a caption per image for ``CaptionMetric``) or
            ``'retrieval'`` (features for ``RetrievalMetric``, as CLIP).
        data_preprocessor, tokenizer, init_cfg: see :class:`VLPModel`; the tokenizer
            (CLIP style: ``bos``/``eos`` = SOT/EOT) is needed to generate.
        grad_checkpointing: activation checkpointing in every part supporting it.
    """
    capabilities = frozenset({'loss', 'predict', 'extract_feat', 'encode_image',
                              'encode_text', 'generate'})

    def __init__(self, vision: dict, text: dict, decoder: dict, cap_pooler: dict,
                 con_pooler: Optional[dict] = None, pooler_layout: str = 'parallel',
                 vision_proj: Optional[dict] = None, text_proj: Optional[dict] = None,
                 itc: Optional[dict] = None, caption_loss: Optional[dict] = None,
                 contrastive_weight: float = 1.0, caption_weight: float = 2.0,
                 generation_cfg: Optional[dict] = None, predict_mode: str = 'caption',
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 grad_checkpointing: bool = False, init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        if pooler_layout not in ('parallel', 'shared'):
            raise ValueError(f"pooler_layout must be 'parallel' or 'shared', got "
                             f'{pooler_layout!r}')
        if (con_pooler is None) != (pooler_layout == 'shared'):
            raise ValueError("con_pooler is required with pooler_layout='parallel' and must "
                             "be None with 'shared'")
        if predict_mode not in ('caption', 'retrieval'):
            raise ValueError(f"predict_mode must be 'caption' or 'retrieval', got "
                             f'{predict_mode!r}')
        self.pooler_layout, self.predict_mode = pooler_layout, predict_mode
        self.vision = build_part(vision)
        self.text = build_part(text)
        self.decoder = build_part(decoder)
        self.cap_pooler = build_part(cap_pooler)
        self.con_pooler = build_part(con_pooler)
        self.vision_proj = nn.Identity() if vision_proj is None else build_part(vision_proj)
        self.text_proj = nn.Identity() if text_proj is None else build_part(text_proj)
        self.itc = build_part(itc if itc is not None else dict(type='ContrastiveLoss'))
        self.caption_loss = build_part(
            caption_loss if caption_loss is not None else dict(type='CaptionLoss'))
        self.contrastive_weight, self.caption_weight = contrastive_weight, caption_weight
        self.generation_cfg = dict(generation_cfg or {})
        self.zero_shot_weights = None  # [num_classes, D] class embeddings (zero-shot)
        self.set_grad_checkpointing(grad_checkpointing)

    # -- features -------------------------------------------------------------------------
    def image_features(self, images: torch.Tensor, normalize: bool = True
                       ) -> Dict[str, torch.Tensor]:
        """Normalised images -> ``image_feat [B, D]`` and ``caption_tokens [B, N, C]``."""
        tokens = self.vision(images)['image_embeds']  # (B, N_img, C_v)
        if self.pooler_layout == 'parallel':
            con = self.con_pooler(tokens)[:, 0]  # (B, C)
            cap = self.cap_pooler(tokens)  # (B, N, C)
        else:
            pooled = self.cap_pooler(tokens)  # (B, N, C)
            con, cap = pooled[:, 0], pooled[:, 1:]
        feat = self.vision_proj(con)  # (B, D)
        return dict(image_feat=F.normalize(feat, dim=-1) if normalize else feat,
                    caption_tokens=cap)

    def text_features(self, input_ids: torch.Tensor,
                      attention_mask: Optional[torch.Tensor] = None,
                      normalize: bool = True) -> Dict[str, torch.Tensor]:
        """Token ids ``[..., L]`` -> ``text_feat [..., D]`` (the ``[CLS]`` embedding),
        ``text_hidden [..., L, C]`` and ``text_mask [..., L]``."""
        lead, L = input_ids.shape[:-1], input_ids.shape[-1]
        mask = None if attention_mask is None else attention_mask.reshape(-1, L)
        out = self.text(input_ids.reshape(-1, L), mask)
        feat = self.text_proj(out['text_pooled'])
        feat = F.normalize(feat, dim=-1) if normalize else feat
        return dict(text_feat=feat.reshape(*lead, feat.shape[-1]),
                    text_hidden=out['text_hidden'].reshape(*lead, L, -1),
                    text_mask=out['text_mask'].reshape(*lead, L))

    def caption_logits(self, text_hidden: torch.Tensor,
                       caption_tokens: torch.Tensor) -> torch.Tensor:
        """Multimodal decoder: ``[B, T, C]`` unimodal states -> ``[B, T, V]`` logits."""
        return self.decoder(text_hidden, caption_tokens)

    # -- mmengine modes -------------------------------------------------------------------
    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """ITC + captioning over a batch of ``images``, ``input_ids [B, L]`` (SOT ... EOT,
        right padded) and ``attention_mask``: one image pass, one unimodal text pass (its
        ``[CLS]`` for ITC, its states for the decoder), one multimodal pass."""
        img = self.image_features(inputs['images'])
        ids = inputs['input_ids']
        txt = self.text_features(ids, inputs.get('attention_mask'))
        itc = self.itc(img['image_feat'], txt['text_feat'])
        losses = {k: self.contrastive_weight * v if k.startswith('loss') else v
                  for k, v in itc.items()}
        # teacher forcing: the state at t predicts token t + 1; padding is ignored
        ignore = getattr(self.caption_loss, 'ignore_index', -100)
        labels = ids[:, 1:].masked_fill(txt['text_mask'][:, 1:] == 0, ignore)
        logits = self.caption_logits(txt['text_hidden'][:, :-1], img['caption_tokens'])
        losses['loss_caption'] = self.caption_weight * self.caption_loss(logits, labels)
        return losses

    def extract_feat(self, inputs: dict) -> Dict[str, torch.Tensor]:
        """``image_feat [B, D]`` and/or ``text_feat [B, (K,) D]`` of what ``inputs`` holds."""
        out = {}
        if inputs.get('images') is not None:
            out['image_feat'] = self.image_features(inputs['images'])['image_feat']
        if inputs.get('input_ids') is not None:
            out['text_feat'] = self.text_features(inputs['input_ids'],
                                                  inputs.get('attention_mask'))['text_feat']
        return out

    def predict(self, inputs: dict, data_samples: Optional[dict] = None) -> List[dict]:
        """``'caption'``: one dict per image with ``pred_caption`` (decoded with
        ``generation_cfg``) and the sample's metadata (``image_id``, the references in
        ``text``). ``'retrieval'``: ``image_feat [D]`` / ``text_feat [K, D]`` per sample, and
        ``logits [num_classes]`` with images once a zero-shot classifier is set."""
        images = inputs.get('images')
        if self.predict_mode == 'caption':
            if images is None:
                raise ValueError('CoCa.predict (caption mode) needs images')
            captions = self.generate(images)
            metas = split_meta(data_samples, images.shape[0])
            return [dict(metas[i], pred_caption=captions[i]) for i in range(len(captions))]
        feats = self.extract_feat(inputs)
        if not feats:
            raise ValueError('predict needs images and/or input_ids')
        if 'image_feat' in feats and self.zero_shot_weights is not None:
            image_feat = feats['image_feat']
            w = self.zero_shot_weights.to(image_feat.dtype)
            feats['logits'] = self.get_logit_scale().to(image_feat.dtype) * image_feat @ w.t()
        B = next(iter(feats.values())).shape[0]
        metas = split_meta(data_samples, B)
        for key, value in feats.items():
            if key == 'text_feat' and value.dim() == 2:
                value = value.unsqueeze(1)  # (B, 1, D): one caption per sample
            for i in range(B):
                metas[i][key] = value[i]
        return metas

    # zero-shot classification as CLIP (Sec. 3.1; CoCa Sec. 4.2.1): the prompt-ensembled
    # class embeddings set by ZeroShotClassifierHook; predict ('retrieval' mode) then adds
    # ``logits [num_classes]`` per image
    set_zero_shot_classifier = CLIP.set_zero_shot_classifier
    get_logit_scale = CLIP.get_logit_scale

    # -- inference API ----------------------------------------------------------------------
    @torch.no_grad()
    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``uint8`` (raw) or normalised float images ``[B, 3, H, W]`` -> ``[B, D]``."""
        return self.image_features(self.preprocess_images(images), normalize)['image_feat']

    @torch.no_grad()
    def encode_text(self, texts: Union[str, List[str], torch.Tensor],
                    attention_mask: Optional[torch.Tensor] = None,
                    normalize: bool = True) -> torch.Tensor:
        """Strings (tokenised with ``self.tokenizer``) or token ids ``[B, L]`` -> ``[B, D]``."""
        tok = self.tokenize(texts, attention_mask)
        return self.text_features(tok['input_ids'], tok.get('attention_mask'),
                                  normalize)['text_feat']

    @torch.no_grad()
    def generate(self, images: torch.Tensor, prompt: Optional[str] = None,
                 **decoding) -> List[str]:
        """Captions of ``images [B, 3, H, W]`` (``uint8``, or normalised as the data
        preprocessor does).

        Args:
            prompt: text every caption starts with (after SOT); not part of the returned
                strings.
            decoding: options of :func:`vlp.models.utils.generation.generate`
                (``num_beams``, ``do_sample``, ``top_k``, ``top_p``, ``temperature``,
                ``max_length``, ``min_length``, ``repetition_penalty``, ``use_cache``, ...),
                over the model's ``generation_cfg``, over the default ``max_length=30``
                (lengths count SOT and the prompt) with greedy decoding.
        """
        tok = self.tokenizer
        if tok is None:
            raise RuntimeError('CoCa.generate needs a tokenizer (model.tokenizer)')
        prompt_ids = [tok.bos_token_id] + (tok.encode(prompt)[1:-1] if prompt else [])
        ids = self.generate_ids(self.preprocess_images(images), prompt_ids, **decoding)
        return decode_texts(tok, ids, len(prompt_ids))

    @torch.no_grad()
    def generate_ids(self, images: torch.Tensor, prompt_ids: Sequence[int],
                     eos_token_id: Optional[int] = None, pad_token_id: Optional[int] = None,
                     **decoding) -> torch.Tensor:
        """Token ids ``[B * num_return_sequences, L]`` (``prompt_ids``, SOT first,
        included) of the captions of normalised ``images``. Both text decoders cache their
        keys and values (the captioning tokens' computed once per caption) unless
        ``use_cache=False``. EOS / padding: the tokenizer's EOT / pad ids unless given."""
        eos, pad = eos_pad_ids(self.tokenizer, eos_token_id, pad_token_id, 'CoCa')
        cap = self.image_features(images)['caption_tokens']  # (B, N, C)
        opts = dict(max_length=30)
        opts.update(self.generation_cfg)
        opts.update(decoding)
        limit = self.text.context_length + 1  # the last token is never fed back
        max_len = (len(prompt_ids) + opts['max_new_tokens']
                   if opts.get('max_new_tokens') is not None else opts['max_length'])
        if max_len > limit:
            raise ValueError(f'generation length {max_len} exceeds the text decoder context '
                             f'({limit - 1} tokens, plus the last one generated)')
        return generate_ids(self._decode_logits, cap, prompt_ids, eos, pad, opts)

    def _decode_logits(self, ids: torch.Tensor, cap: torch.Tensor, _mask, cache=None):
        """Next-token logits ``[N, T, V]`` of ids over captioning tokens ``cap``; with a
        ``cache``, of the new ids only (both text stacks cache their keys/values)."""
        if cache is None:
            return self.caption_logits(self.text(ids, torch.ones_like(ids))['text_hidden'], cap)
        return self.decoder(self.text.decode_step(ids, cache), cap, cache=cache)
