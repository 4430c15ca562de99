"""BEiT-3 image-text retrieval (Wang et al. 2022, "Image as a Foreign Language: BEiT
Pretraining for All Vision and Vision-Language Tasks", Sec. 3.2, Fig. 3(d), Table 3).

The multiway encoder is used as a dual encoder: an image-only pass (vision experts) and a
text-only pass (language experts); the final ``[CLS]`` (first token) state of each is
linearly projected (unilm's ``vision_head`` / ``language_head``, no bias) and
L2-normalised, and the model is fine-tuned with the symmetric image-text contrastive loss
(InfoNCE, learnable temperature) over the batch of every rank (vlp's ``ContrastiveLoss``).
Retrieval ranks by the cosine similarity of the two features (:class:`RetrievalMetric`).
"""
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from vlp.registry import MODELS
from .base import VLPModel, build_part
from .clip import CLIP


@MODELS.register_module()
class BEiT3Retrieval(VLPModel):
    """BEiT-3 dual encoder for retrieval fine-tuning.

    Args:
        backbone: :class:`BEiT3Transformer` config (the same part, and parameter names
            ``backbone.*``, as :class:`~vlp.models.BEiT3`: its pre-training checkpoints load
            here with only the heads differing).
        vision_proj / text_proj: projections of the image / text ``[CLS]`` states (BEiT-3:
            ``Projection(width, width, bias=False)``).
        itc: contrastive loss config (default: ``ContrastiveLoss``, temperature 0.07).
        data_preprocessor, tokenizer, init_cfg: see :class:`VLPModel`.
        grad_checkpointing: activation checkpointing in the backbone.

    Losses: ``loss_itc`` and ``logit_scale``. ``predict`` returns, per sample,
    ``image_feat [D]`` and ``text_feat [K, D]`` (``RetrievalMetric``'s input).
    """
    capabilities = frozenset({'loss', 'predict', 'extract_feat', 'encode_image',
                              'encode_text'})

    def __init__(self, backbone: dict, vision_proj: dict, text_proj: dict,
                 itc: Optional[dict] = None, data_preprocessor: Optional[dict] = None,
                 tokenizer: Optional[dict] = None, grad_checkpointing: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        self.backbone = build_part(backbone)
        self.vision_proj = build_part(vision_proj)
        self.text_proj = build_part(text_proj)
        self.itc = build_part(itc if itc is not None else dict(
            type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0))
        # zero-shot classifier of the CLIP inference API (not in checkpoints)
        self.register_buffer('zero_shot_weights', None, persistent=False)
        if grad_checkpointing:
            self.set_grad_checkpointing(True)

    # -- the two passes of the dual encoder ---------------------------------------------------
    def image_features(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` -> ``[B, D]``: the image-only pass, its ``[CLS]``."""
        feat = self.vision_proj(self.backbone(images=images)['image_pooled'])  # (B, D)
        return F.normalize(feat, dim=-1) if normalize else feat

    def text_features(self, input_ids: torch.Tensor,
                      attention_mask: Optional[torch.Tensor] = None,
                      normalize: bool = True) -> torch.Tensor:
        """Token ids ``[..., L]`` -> ``[..., D]``: the text-only pass, its first token."""
        lead, L = input_ids.shape[:-1], input_ids.shape[-1]
        ids = input_ids.reshape(-1, L)
        mask = None if attention_mask is None else attention_mask.reshape(-1, L)
        out = self.backbone(input_ids=ids, attention_mask=mask)
        feat = self.text_proj(out['text_pooled'])  # (prod(lead), D)
        feat = F.normalize(feat, dim=-1) if normalize else feat
        return feat.reshape(*lead, feat.shape[-1])

    # -- the dual-encoder API, the same as CLIP's (it only calls image_features,
    # text_features, itc and zero_shot_weights, which this class defines) -------------------
    _text_features_list = CLIP._text_features_list
    encode_image = CLIP.encode_image
    encode_text = CLIP.encode_text
    set_zero_shot_classifier = CLIP.set_zero_shot_classifier
    get_logit_scale = CLIP.get_logit_scale
    extract_feat = CLIP.extract_feat
    predict = CLIP.predict
    no_weight_decay = CLIP.no_weight_decay

    # -- mmengine modes -------------------------------------------------------------------------
    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """ITC over the batch of every rank: ``images [B, 3, H, W]``, ``input_ids [B, L]``
        and optionally ``attention_mask [B, L]``."""
        image_feat = self.image_features(inputs['images'])  # (B, D)
        text_feat = self.text_features(inputs['input_ids'], inputs.get('attention_mask'))
        return self.itc(image_feat, text_feat)


__all__: List[str] = ['BEiT3Retrieval']
