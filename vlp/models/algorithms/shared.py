"""Methods that the ITC/ITM families (ALBEF, BLIP, BLIP-2, VLMo) share word for word, bound
as class attributes (``encode_image = shared.encode_image``): a family lists what it has
without inheriting anything but :class:`~.base.VLPModel`.

The contract they read on the model: ``_image(images) -> (image_embeds, image_feat)`` and
``_text(input_ids, attention_mask) -> (text_embeds, text_feat)``, the two ITC towers
(:func:`~vlp.models.utils.retrieval.encode_images` / ``encode_texts`` for a tower and its
projection). :func:`tower` builds them, with their momentum twins, for the families whose
towers are named ``vision`` / ``vision_proj`` / ``text`` / ``text_proj`` (``*_m``: the
twins).
"""
from typing import Dict, List, Optional, Union

import torch

from ..utils.retrieval import encode_images, encode_texts, pair_features


def image_tower(self, images: torch.Tensor, momentum: bool = False):
    """``(image_embeds [B, N, C], image_feat [B, D])`` of ``vision`` / ``vision_proj`` or
    their momentum twins (videos: :func:`~vlp.models.utils.retrieval.encode_images`)."""
    towers = (self.vision_m, self.vision_proj_m) if momentum else (self.vision, self.vision_proj)
    return encode_images(*towers, images)


def text_tower(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor],
               momentum: bool = False):
    """``(text_embeds [B, L, C], text_feat [B, D])`` of the unimodal text encoder ``text`` /
    ``text_proj`` or their momentum twins."""
    towers = (self.text_m, self.text_proj_m) if momentum else (self.text, self.text_proj)
    return encode_texts(*towers, input_ids, attention_mask)


def image_features(self, images: torch.Tensor) -> torch.Tensor:
    """Normalised ITC features of normalised images: ``[B, D]`` (BLIP-2: ``[B, Q, D]``)."""
    return self._image(images)[1]


def text_features(self, input_ids: torch.Tensor,
                  attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Normalised ITC features ``[B, D]`` of token ids."""
    return self._text(input_ids, attention_mask)[1]


@torch.no_grad()
def encode_image(self, images: torch.Tensor) -> torch.Tensor:
    """Inference API: raw ``uint8`` images (normalised with the data preprocessor's
    statistics) or normalised float ones, ``[B, 3, H, W]`` or ``[3, H, W]`` -> the ITC
    features (:func:`image_features`)."""
    self.require('encode_image')
    return self._image(self.preprocess_images(images))[1]


@torch.no_grad()
def encode_text(self, texts: Union[str, List[str], torch.Tensor],
                attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Inference API: strings (``self.tokenizer``) or token ids ``[B, L]`` -> ``[B, D]``."""
    self.require('encode_text')
    tok = self.tokenize(texts, attention_mask)
    return self._text(tok['input_ids'], tok.get('attention_mask'))[1]


def extract_feat(self, inputs: dict) -> Dict[str, torch.Tensor]:
    """``forward(mode='tensor')``: ``image_embeds`` / ``image_feat`` and ``text_embeds`` /
    ``text_feat`` of what ``inputs`` holds (the ITC towers' outputs)."""
    self.require('extract_feat')
    return pair_features(inputs, self._image, self._text)
