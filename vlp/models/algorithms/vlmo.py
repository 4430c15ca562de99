"""VLMo (Bao et al. 2022, "VLMo: Unified Vision-Language Pre-Training with
Mixture-of-Modality-Experts", Sec. 3): one multiway transformer
(:class:`~vlp.models.backbones.multiway.MultiwayTransformer`) pre-trained in three stages
(Sec. 3.3), each a ``stage`` of this model:

- ``'image'``: BEiT's masked image modelling on images: about 40% of the patches masked
  block-wise (75 of 196), replaced by a ``[MASK]`` embedding, and their visual tokens
  (a frozen, pluggable tokenizer; BEiT / VLMo use DALL-E's dVAE) predicted; trains the
  patch embedding, the self-attention and the vision experts (V-FFN);
- ``'text'``: MLM on texts alone; the self-attention and the vision experts frozen, trains
  the text embeddings and the language experts (L-FFN);
- ``'image_text'``: everything trains with
  **ITC** (dual-encoder mode: image-only and text-only passes' ``[CLS]`` states, projected,
  InfoNCE against the batch of every rank), **ITM** (fusion mode, VL-FFN in the top
  blocks, a head on the fused text ``[CLS]``, one hard negative per image and per text from
  the ITC similarities of every rank, ALBEF's sampler) and **MLM** (15%, 80/10/10, fusion
  mode).

The objectives are the shared parts (``ContrastiveLoss``, ``ITMLoss``, ``masked_token_loss``,
``mim_loss``); the ITM re-encodes each candidate pair with the fusion mode, so ``ITMLoss``
reads the pixels of the images (VLMo's code gathers the images of every rank likewise).
``set_stage`` applies a stage's freezing (:data:`STAGE_TRAINABLE`); the model applies its
``stage`` argument when built, so a one-stage config freezes before any DDP / DeepSpeed
wrapper exists, and :class:`~vlp.engine.hooks.StagewiseFreezeHook` switches stages inside
one run. Where we decide what the paper leaves open (the shared final norm, layer scale and
type embeddings stay frozen in the text stage; the relative position bias table trains
there, only its text entries receiving gradients), docs/models.md says so.
"""
import re
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from vlp.registry import MODELS
from ..losses.mim import mim_loss
from ..losses.mlm import masked_token_loss
from ..utils.masking import MLMTokenIds, block_wise_mask, mask_tokens
from ..utils.retrieval import retrieval_predictions
from . import shared
from .base import VLPModel, build_part, pair_batch

_BLOCK = r'^backbone\.blocks\.\d+\.'
#: Trainable parameters of each stage (regular expressions over the model's parameter
#: names); everything else is frozen. The visual tokenizer is always frozen.
STAGE_TRAINABLE = {
    'image': [r'^backbone\.(patch_embed|cls_token|mask_token|pos_embed|norm)(\.|$)',
              r'^backbone\.rel_pos_bias_table$',
              _BLOCK + r'(norm1|attn)\.', _BLOCK + r'gamma_[12]$',
              _BLOCK + r'(norm2|ffn)\.v\.', r'^mim_head\.'],
    'text': [r'^backbone\.(word_embeddings|text_pos_embed|text_norm)\.',
             r'^backbone\.rel_pos_bias_table$',
             _BLOCK + r'(norm2|ffn)\.l\.', r'^mlm_head\.'],
    'image_text': [r'^(?!mim_head\.|backbone\.mask_token$)'],  # all but the MIM parts
}
ALWAYS_FROZEN = r'^visual_tokenizer\.'


@MODELS.register_module()
class VLMo(VLPModel):
    """VLMo's stage-wise pre-training on a multiway transformer.

    Args:
        backbone: :class:`MultiwayTransformer` config.
        vision_proj / text_proj: ITC projections of the image / text ``[CLS]``.
        itm_head: ITM head on the fused sequence's first state (``None``: no ITM).
        mlm_head: MLM head (``None``: no MLM).
        tie_mlm_head: tie the MLM decoder to the word embeddings (VLMo's released code
            keeps them separate; converted checkpoints set ``False``).
        mim_head / visual_tokenizer: masked image modelling head and its frozen target
            (``RandomProjectionTokenizer``, ``PixelTarget`` or any registered tokenizer);
            needed by the ``'image'`` stage.
        mim_mask: block-wise masking (:func:`~vlp.models.utils.masking.block_wise_mask`;
            BEiT: ``num_masking_patches=75`` of 196, ``min_num_patches=16``,
            ``min_aspect=0.3``).
        stage: ``'image'``, ``'text'`` or ``'image_text'`` (applied when built).
        itc: contrastive loss config (CLIP's symmetric InfoNCE over all ranks).
        itm: ITM loss config (default ``ITMLoss(negatives=itm_negatives)``).
        mlm_probability, mask_token_id, special_token_ids, vocab_size: MLM masking
            (as :class:`ALBEF`).
        loss_weights: ``dict(itc=1, itm=1, mlm=1, mim=1)``.
        rerank_itc: re-rank by ITM logit + ITC similarity (BLIP's rule) instead of the ITM
            logit alone (VLMo's and ALBEF's evaluation; docs/demos.md measures both).
    """
    capabilities = frozenset({'loss', 'predict', 'extract_feat', 'encode_image',
                              'encode_text', 'itm_score', 'rerank_scores', 'fused_features'})
    stages = tuple(STAGE_TRAINABLE)

    def __init__(self, backbone: dict, vision_proj: dict, text_proj: dict,
                 itm_head: Optional[dict] = None, mlm_head: Optional[dict] = None,
                 tie_mlm_head: bool = True, mim_head: Optional[dict] = None,
                 visual_tokenizer: Optional[dict] = None,
                 mim_mask: Optional[dict] = None, stage: str = 'image_text',
                 itc: Optional[dict] = None, itm: Optional[dict] = None,
                 mlm_probability: float = 0.15,
                 mask_token_id: Optional[int] = None,
                 special_token_ids: Optional[List[int]] = None,
                 vocab_size: Optional[int] = None, itm_negatives: str = 'global',
                 loss_weights: Optional[Dict[str, float]] = None,
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 grad_checkpointing: bool = False, init_cfg: Optional[dict] = None,
                 rerank_itc: bool = False):
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        self.rerank_itc = rerank_itc
        self.backbone = build_part(backbone)
        self.vision_proj = build_part(vision_proj)
        self.text_proj = build_part(text_proj)
        self.itm_head = build_part(itm_head)
        self.mlm_head = build_part(mlm_head)
        if self.itm_head is None:
            self.drop_capabilities('built with itm_head=None', 'itm_score', 'rerank_scores')
        if self.mlm_head is not None and tie_mlm_head:
            self.mlm_head.tie_weights(self.backbone.word_embeddings)
        self.mim_head = build_part(mim_head)
        self.visual_tokenizer = build_part(visual_tokenizer)
        self.mim_mask = dict(num_masking_patches=75, min_num_patches=16, min_aspect=0.3)
        self.mim_mask.update(mim_mask or {})
        self.itc = build_part(itc if itc is not None else dict(
            type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0))
        self.itm = build_part(itm if itm is not None else
                              dict(type='ITMLoss', negatives=itm_negatives))
        self.mlm_probability = mlm_probability
        self.mlm_ids = MLMTokenIds(mask_token_id, special_token_ids, vocab_size)
        self.loss_weights = {**dict(itc=1.0, itm=1.0, mlm=1.0, mim=1.0),
                             **(loss_weights or {})}
        self.set_grad_checkpointing(grad_checkpointing)
        self.stage = None
        self.set_stage(stage)

    # -- stages ------------------------------------------------------------------------------
    def set_stage(self, stage: str) -> None:
        """Select the stage's objectives and freeze every parameter it does not train."""
        if stage not in STAGE_TRAINABLE:
            raise ValueError(f'unknown VLMo stage {stage!r}; expected one of {self.stages}')
        if stage == 'image' and (self.mim_head is None or self.visual_tokenizer is None):
            raise ValueError('the image stage needs mim_head and visual_tokenizer')
        if stage == 'text' and self.mlm_head is None:
            raise ValueError('the text stage needs mlm_head')
        patterns = [re.compile(p) for p in STAGE_TRAINABLE[stage]]
        frozen = re.compile(ALWAYS_FROZEN)
        for name, p in self.named_parameters():
            p.requires_grad_(not frozen.match(name) and any(r.match(name) for r in patterns))
        self.stage = stage

    # -- the three modes of the one backbone -------------------------------------------------
    def _image(self, images: torch.Tensor):
        """Dual-encoder mode, images only: ``(image_embeds [B, N, C], image_feat [B, D])``."""
        out = self.backbone(images=images)
        return out['image_embeds'], F.normalize(self.vision_proj(out['image_pooled']), dim=-1)

    def _text(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor]):
        """Dual-encoder mode, texts only: ``(text_embeds [B, L, C], text_feat [B, D])``."""
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        return out['text_embeds'], F.normalize(self.text_proj(out['text_pooled']), dim=-1)

    image_features, text_features = shared.image_features, shared.text_features

    def fuse(self, input_ids: torch.Tensor, text_mask: Optional[torch.Tensor],
             images: torch.Tensor) -> torch.Tensor:
        """Fusion encoder over ``[text; image]`` -> the fused states ``[B, L + N_img, C]``
        (the text ``[CLS]`` first, which ITM reads, as VLMo's pooler)."""
        out = self.backbone(images=images, input_ids=input_ids, attention_mask=text_mask)
        return torch.cat([out['text_embeds'], out['image_embeds']], dim=1)

    def fused_features(self, images: torch.Tensor, input_ids: torch.Tensor,
                       attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The fused text ``[CLS]`` state ``[B, C]`` of the fusion mode (VL experts in the
        top blocks), which VLMo's pooler and task heads read."""
        out = self.backbone(images=images, input_ids=input_ids, attention_mask=attention_mask)
        return out['text_embeds'][:, 0]

    def itm_logits(self, images: torch.Tensor, input_ids: torch.Tensor,
                   text_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """ITM logits ``[B, 2]`` of image-text pairs (pixels and ids, fused together)."""
        if self.itm_head is None:
            raise RuntimeError('this VLMo has no itm_head')
        return self.itm_head(self.fuse(input_ids, text_mask, images)[:, 0])

    def rerank_scores(self, image_embeds, text_embeds, text_mask, itc_scores=None):
        """Re-ranking score ``[B]`` (the "match" logit; plus ``itc_scores`` with
        ``rerank_itc``) of the images (``image_embeds``: the pixels, see :meth:`predict`)
        and caption ids."""
        self.require('rerank_scores')
        score = self.itm_logits(image_embeds, text_embeds, text_mask)[:, 1].float()
        return score + itc_scores.to(score) if self.rerank_itc and itc_scores is not None \
            else score

    # -- objectives ----------------------------------------------------------------------------
    def _mlm(self, input_ids: torch.Tensor, text_mask: torch.Tensor,
             images: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        mask_id, special, vocab = self.mlm_ids.resolve(self.tokenizer, self.mlm_head, 'VLMo')
        masked, labels = mask_tokens(input_ids, mask_id, vocab, self.mlm_probability,
                                     special_ids=special, attention_mask=text_mask)
        out = self.backbone(images=images, input_ids=masked, attention_mask=text_mask)
        loss, acc = masked_token_loss(self.mlm_head, out['text_embeds'], labels)
        return dict(loss_mlm=self.loss_weights['mlm'] * loss, acc_mlm=acc)

    def _mim(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """BEiT's masked image modelling: predict the masked patches' targets."""
        bb = self.backbone
        mask = block_wise_mask(images.shape[0], (bb.grid, bb.grid), **self.mim_mask)
        mask = mask.to(images.device)
        targets = self.visual_tokenizer(images)  # (B, N) tokens or (B, N, D) pixels
        out = bb(images=images, image_mask=mask)
        logits = self.mim_head(out['image_embeds'][:, 1:][mask])
        loss, acc = mim_loss(logits, targets[mask], self.visual_tokenizer.num_classes)
        losses = dict(loss_mim=self.loss_weights['mim'] * loss)
        if acc is not None:
            losses['acc_mim'] = acc
        return losses

    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        if self.stage == 'image':
            return self._mim(inputs['images'])
        if self.stage == 'text':
            ids = inputs['input_ids']
            mask = inputs.get('attention_mask')
            return self._mlm(ids, torch.ones_like(ids) if mask is None else mask, None)
        images, input_ids, text_mask, _ = pair_batch(inputs, data_samples)
        image_feat = self._image(images)[1]
        text_feat = self._text(input_ids, text_mask)[1]
        itc = self.itc(image_feat, text_feat)
        losses = dict(loss_itc=self.loss_weights['itc'] * itc['loss_itc'],
                      logit_scale=itc['logit_scale'])
        if self.itm_head is not None:
            itm = self.itm(self.itm_logits, images, input_ids, text_mask, image_feat,
                           text_feat, itc['logit_scale'])
            losses.update(itm, loss_itm=self.loss_weights['itm'] * itm['loss_itm'])
        if self.mlm_head is not None:
            losses.update(self._mlm(input_ids, text_mask, images))
        return losses

    # -- inference ------------------------------------------------------------------------------
    # the dual-encoder features of the image-only and text-only passes
    encode_image, encode_text = shared.encode_image, shared.encode_text
    extract_feat = shared.extract_feat

    @torch.no_grad()
    def itm_score(self, images: torch.Tensor, texts, attention_mask=None) -> torch.Tensor:
        """Probability that each image matches its text (pairs, ``[B]``)."""
        self.require('itm_score')
        tok = self.tokenize(texts, attention_mask)
        logits = self.itm_logits(self.preprocess_images(images), tok['input_ids'],
                                 tok.get('attention_mask'))
        return logits.softmax(dim=-1)[:, 1]

    def predict(self, inputs: dict, data_samples: Optional[dict] = None) -> List[dict]:
        """``ITMRetrievalMetric``'s inputs: the ITC features, and for the re-ranking the
        pixels (``image_embeds``, fused anew with each candidate) and the caption ids."""
        return retrieval_predictions(inputs, data_samples,
                                     lambda x: (x, self.image_features(x)), self._text,
                                     itm_text='ids', family='VLMo')
