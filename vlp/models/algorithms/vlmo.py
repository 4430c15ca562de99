"""VLMo (Bao et al. 2022, "VLMo: Unified Vision-Language Pre-Training with
Mixture-of-Modality-Experts", Sec. 3.2): one multiway transformer
(:class:`~vlp.models.backbones.multiway.MultiwayTransformer`) trained as

- a **dual encoder** for ITC: the image-only and the text-only passes' ``[CLS]`` states,
  projected and normalised, InfoNCE against the batch of every rank (no momentum encoder,
  no queue);
- a **fusion encoder** for ITM: image and text tokens in one sequence (VL-FFN in the top
  blocks), a head on the fused text ``[CLS]`` state (VLMo's pooler reads the first token of
  its ``[text; image]`` sequence); one hard negative per image and per text drawn from the
  ITC similarities of every rank (ALBEF's sampler, VLMo Sec. 3.2);
- a fusion encoder for **MLM**: 15% of the text tokens masked (80/10/10), predicted from
  the fused sequence.

Stage-wise pre-training (image-only, text-only, then image-text) is driven by configs and a
freezing hook (issue 6, not yet here); this module is the image-text stage.
"""
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from vlp.registry import MODELS
from ..utils.masking import mask_tokens
from .albef import ALBEF
from .base import VLPModel, build_part


@MODELS.register_module()
class VLMo(ALBEF):
    """VLMo's image-text pre-training on a multiway transformer.

    Args:
        backbone: :class:`MultiwayTransformer` config.
        vision_proj / text_proj: ITC projections of the image / text ``[CLS]``.
        itm_head: ITM head on the fused sequence's first state (``None``: no ITM).
        mlm_head: MLM head (its decoder tied to the word embeddings; ``None``: no MLM).
        itc: contrastive loss config (CLIP's symmetric InfoNCE over all ranks).
        mlm_probability, mask_token_id, special_token_ids, vocab_size: MLM masking
            (as :class:`ALBEF`).
        loss_weights: ``dict(itc=1, itm=1, mlm=1)``.
    """
    itm_text_ids = True  # the fusion encoder re-encodes the caption ids with the image
    rerank_add_itc = False

    def __init__(self, backbone: dict, vision_proj: dict, text_proj: dict,
                 itm_head: Optional[dict] = None, mlm_head: Optional[dict] = None,
                 itc: Optional[dict] = None, mlm_probability: float = 0.15,
                 mask_token_id: Optional[int] = None,
                 special_token_ids: Optional[List[int]] = None,
                 vocab_size: Optional[int] = None, itm_negatives: str = 'global',
                 loss_weights: Optional[Dict[str, float]] = None,
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 grad_checkpointing: bool = False, init_cfg: Optional[dict] = None):
        VLPModel.__init__(self, data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                          init_cfg=init_cfg)
        self.backbone = build_part(backbone)
        self.vision_proj = build_part(vision_proj)
        self.text_proj = build_part(text_proj)
        self.itm_head = build_part(itm_head)
        self.mlm_head = build_part(mlm_head)
        if self.mlm_head is not None:
            self.mlm_head.tie_weights(self.backbone.word_embeddings)
        self.itc = build_part(itc if itc is not None else dict(
            type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0))
        self._init_matching(itm_negatives)  # no queue, no momentum distillation
        self.mlm_probability = mlm_probability
        self._mask_token_id = mask_token_id
        self._special_token_ids = special_token_ids
        self._vocab_size = vocab_size
        self.loss_weights = {**dict(itc=1.0, itm=1.0, mlm=1.0), **(loss_weights or {})}
        self.set_grad_checkpointing(grad_checkpointing)

    def momentum_pairs(self) -> List[tuple]:
        return []

    # -- the three modes of the one backbone -------------------------------------------------
    def _image(self, images: torch.Tensor, momentum: bool = False):
        """``(images, image_feat [B, D])``: the fusion encoder re-reads the pixels, so the
        "image embeds" handed to ITM and re-ranking are the images themselves."""
        out = self.backbone(images=images)
        return images, F.normalize(self.vision_proj(out['image_pooled']), dim=-1)

    def _text(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor],
              momentum: bool = False):
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        return out['text_embeds'], F.normalize(self.text_proj(out['text_pooled']), dim=-1)

    def fuse(self, input_ids: torch.Tensor, text_mask: Optional[torch.Tensor],
             images: torch.Tensor) -> torch.Tensor:
        """Fusion encoder over image and text tokens -> the fused states ``[text; image]``
        ``[B, L + N_img, C]`` (attention is order-free; the text ``[CLS]`` first, which ITM
        reads, as VLMo)."""
        out = self.backbone(images=images, input_ids=input_ids, attention_mask=text_mask)
        return torch.cat([out['text_embeds'], out['image_embeds']], dim=1)

    # -- training ------------------------------------------------------------------------------
    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        images, input_ids, text_mask, idx = self._unpack(inputs, data_samples)
        _, image_feat = self._image(images)
        _, text_feat = self._text(input_ids, text_mask)
        itc = self.itc(image_feat, text_feat)
        losses = dict(loss_itc=self.loss_weights['itc'] * itc['loss_itc'],
                      logit_scale=itc['logit_scale'])
        if self.itm_head is not None:
            losses.update(self._itm_loss(images, image_feat, input_ids, text_feat, text_mask,
                                         idx, itc['logit_scale']))
        if self.mlm_head is not None:
            mask_id, special, vocab = self._mlm_ids()
            masked, labels = mask_tokens(input_ids, mask_id, vocab, self.mlm_probability,
                                         special_ids=special, attention_mask=text_mask)
            out = self.backbone(images=images, input_ids=masked, attention_mask=text_mask)
            sel = labels != -100
            if bool(sel.any()):
                logits = self.mlm_head(out['text_embeds'][sel]).float()
                loss_mlm = F.cross_entropy(logits, labels[sel])
            else:
                loss_mlm = out['text_embeds'].sum() * 0.0
            losses['loss_mlm'] = self.loss_weights['mlm'] * loss_mlm
        return losses
