"""CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision") and ALIGN (Jia et al. 2021, "Scaling Up Visual and Vision-Language
Representation Learning With Noisy Text Supervision").

Dual encoder: an image tower and a text tower, each followed by a projection into a joint
space, trained with one objective, the symmetric image-text contrastive loss (``itc``,
CLIP Sec. 2.3 / Fig. 3). ALIGN is a CLIP config: EfficientNet image tower (no image
projection), BERT text tower with a linear projection of ``[CLS]``, label smoothing 0.1.
Zero-shot classification (CLIP Sec. 3.1.2) scores images against class text embeddings.
Video-text retrieval (CLIP4Clip, Luo et al. 2022, "meanP"): video clips ``[B, T, 3, H, W]``
are encoded frame by frame and their normalised frame features averaged.
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlp.registry import MODELS
from .base import VLPModel, build_part, split_meta

Tensors = Union[torch.Tensor, Sequence[torch.Tensor]]


@MODELS.register_module()
class CLIP(VLPModel):
    """Contrastive dual encoder.

    Args:
        vision: image tower config (``forward(images) -> dict(image_pooled, ...)``).
        text: text tower config (``forward(input_ids, attention_mask) ->
            dict(text_pooled, ...)``).
        vision_proj / text_proj: projection configs ``[B, C] -> [B, D]``; ``None`` is the
            identity (ALIGN's image side).
        itc: contrastive loss config (``ContrastiveLoss``, ``SigLIPLoss``...), called as
            ``itc(image_feat, text_feat)`` with L2-normalised features.
        data_preprocessor, tokenizer, init_cfg: see :class:`VLPModel`.
        grad_checkpointing: activation checkpointing in both towers.
    """
    capabilities = frozenset({'loss', 'predict', 'extract_feat', 'encode_image',
                              'encode_text'})

    def __init__(self, vision: dict, text: dict, vision_proj: Optional[dict] = None,
                 text_proj: Optional[dict] = None, itc: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 grad_checkpointing: bool = False, init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        self.vision = build_part(vision)
        self.text = build_part(text)
        self.vision_proj = nn.Identity() if vision_proj is None else build_part(vision_proj)
        self.text_proj = nn.Identity() if text_proj is None else build_part(text_proj)
        self.itc = build_part(itc if itc is not None else dict(type='ContrastiveLoss'))
        # [num_classes, D] normalised class embeddings for zero-shot classification
        self.register_buffer('zero_shot_weights', None, persistent=False)
        self.set_grad_checkpointing(grad_checkpointing)

    # -- features -------------------------------------------------------------------------
    def image_features(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Normalised float images ``[B, 3, H, W]`` -> ``image_feat [B, D]``. Videos
        ``[B, T, 3, H, W]``: every frame encoded by the image tower, the normalised frame
        features averaged over time (CLIP4Clip's parameter-free "meanP", Luo et al. 2022,
        Sec. 3.3) and normalised again."""
        if images.dim() == 5:
            B, T = images.shape[:2]
            frames = self.image_features(images.flatten(0, 1), normalize=True)  # (B*T, D)
            feat = frames.view(B, T, -1).mean(1)
            return F.normalize(feat, dim=-1) if normalize else feat
        feat = self.vision_proj(self.vision(images)['image_pooled'])  # (B, D)
        return F.normalize(feat, dim=-1) if normalize else feat

    def text_features(self, input_ids: torch.Tensor,
                      attention_mask: Optional[torch.Tensor] = None,
                      normalize: bool = True) -> torch.Tensor:
        """Token ids ``[..., L]`` -> ``text_feat [..., D]`` (leading dims kept)."""
        lead, L = input_ids.shape[:-1], input_ids.shape[-1]
        ids = input_ids.reshape(-1, L)
        mask = None if attention_mask is None else attention_mask.reshape(-1, L)
        feat = self.text_proj(self.text(ids, mask)['text_pooled'])  # (prod(lead), D)
        feat = F.normalize(feat, dim=-1) if normalize else feat
        return feat.reshape(*lead, feat.shape[-1])

    def _text_features_list(self, input_ids: Tensors,
                            attention_mask: Optional[Tensors]) -> List[torch.Tensor]:
        """Per-sample ``[K_i, D]`` features of ``[B, K, L]``/``[B, L]`` ids or a list of
        ``[K_i, L]`` / ``[L]`` tensors (the collate keeps a list when shapes differ)."""
        if isinstance(input_ids, torch.Tensor):
            feat = self.text_features(input_ids, attention_mask)  # (B, [K,] D)
            return list(feat if feat.dim() == 3 else feat.unsqueeze(1))
        ids = [t if t.dim() == 2 else t.unsqueeze(0) for t in input_ids]
        masks = ([None] * len(ids) if attention_mask is None else
                 [m if m.dim() == 2 else m.unsqueeze(0) for m in attention_mask])
        if all(t.shape[1] == ids[0].shape[1] for t in ids):  # one batched pass
            cat_mask = None if attention_mask is None else torch.cat(masks)
            feat = self.text_features(torch.cat(ids), cat_mask)
            return list(feat.split([t.shape[0] for t in ids]))
        return [self.text_features(t, m) for t, m in zip(ids, masks)]

    # -- inference API ----------------------------------------------------------------------
    @torch.no_grad()
    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """``uint8`` (raw) or normalised float images ``[B, 3, H, W]`` -> ``[B, D]``."""
        return self.image_features(self.preprocess_images(images), normalize)

    @torch.no_grad()
    def encode_text(self, texts: Union[str, List[str], torch.Tensor],
                    attention_mask: Optional[torch.Tensor] = None,
                    normalize: bool = True) -> torch.Tensor:
        """Strings (tokenised with ``self.tokenizer``) or token ids ``[B, L]`` -> ``[B, D]``."""
        tok = self.tokenize(texts, attention_mask)
        return self.text_features(tok['input_ids'], tok.get('attention_mask'), normalize)

    def set_zero_shot_classifier(self, class_embeds: Optional[torch.Tensor]) -> None:
        """Set (or clear with ``None``) the ``[num_classes, D]`` class text embeddings
        (e.g. prompt-ensembled ``encode_text`` outputs, CLIP Sec. 3.1.4); rows are
        L2-normalised here. Kept as a non-persistent buffer (not in checkpoints)."""
        if class_embeds is not None:
            class_embeds = F.normalize(class_embeds.detach().float(), dim=-1).to(self.device)
        self.zero_shot_weights = class_embeds

    def get_logit_scale(self) -> torch.Tensor:
        """The loss's (clamped) logit scale; 1 when the loss has none."""
        get = getattr(self.itc, 'get_logit_scale', None)
        if get is None:
            return torch.ones((), device=self.device)
        return get().detach()

    # -- mmengine modes -------------------------------------------------------------------
    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """ITC over the batch: ``inputs`` holds ``images [B, 3, H, W]``,
        ``input_ids [B, L]`` and optionally ``attention_mask [B, L]``."""
        image_feat = self.image_features(inputs['images'])  # (B, D)
        text_feat = self.text_features(inputs['input_ids'], inputs.get('attention_mask'))
        return self.itc(image_feat, text_feat)

    def extract_feat(self, inputs: dict) -> Dict[str, torch.Tensor]:
        """``image_feat [B, D]`` and/or ``text_feat [B, (K,) D]`` of what ``inputs`` holds."""
        out = {}
        if inputs.get('images') is not None:
            out['image_feat'] = self.image_features(inputs['images'])
        if inputs.get('input_ids') is not None:
            out['text_feat'] = self.text_features(inputs['input_ids'],
                                                  inputs.get('attention_mask'))
        return out

    def predict(self, inputs: dict, data_samples: Optional[dict] = None) -> List[dict]:
        """One dict per sample: ``image_feat [D]`` (with images), ``text_feat [K, D]``
        (with ``input_ids``: ``[B, K, L]``, ``[B, L]`` as K = 1, or a list of
        ``[K_i, L]``), ``logits [num_classes]`` (with images and a zero-shot classifier),
        plus the sample's metadata from ``data_samples``."""
        images, ids = inputs.get('images'), inputs.get('input_ids')
        if images is None and ids is None:
            raise ValueError('predict needs images and/or input_ids')
        image_feat = self.image_features(images) if images is not None else None  # (B, D)
        text_feats = (self._text_features_list(ids, inputs.get('attention_mask'))
                      if ids is not None else None)
        logits = None
        if image_feat is not None and self.zero_shot_weights is not None:
            w = self.zero_shot_weights.to(image_feat.dtype)
            logits = self.get_logit_scale().to(image_feat.dtype) * image_feat @ w.t()  # (B, cls)
        B = image_feat.shape[0] if image_feat is not None else len(text_feats)
        metas = split_meta(data_samples, B)
        results = []
        for i in range(B):
            res = dict(metas[i])
            if image_feat is not None:
                res['image_feat'] = image_feat[i]
            if text_feats is not None:
                res['text_feat'] = text_feats[i]
            if logits is not None:
                res['logits'] = logits[i]
            results.append(res)
        return results

    # -- optimizer conventions ------------------------------------------------------------
    def no_weight_decay(self) -> set:
        """Parameter names to exclude from weight decay: every parameter with fewer than
        two dims (biases, norm weights, ``itc.logit_scale``) and the names each part
        declares in its own ``no_weight_decay()`` (position embeddings, class tokens)."""
        names = {n for n, p in self.named_parameters() if p.dim() < 2}
        own = {n for n, _ in self.named_parameters()}
        for prefix, module in self.named_modules():
            fn = getattr(module, 'no_weight_decay', None)
            if module is self or not callable(fn):
                continue
            names |= {f'{prefix}.{n}' for n in fn() if f'{prefix}.{n}' in own}
        return names


_split_meta = split_meta  # moved to vlp.models.utils.batch
