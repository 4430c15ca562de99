"""Shared steps of the models that retrieve with ITC and re-rank with ITM (ALBEF, BLIP,
BLIP-2, VLMo): the video-aware encoding of a tower and its projection, the features of
``forward(mode='tensor')``, and the per-image predictions
:class:`~vlp.evaluation.ITMRetrievalMetric` consumes. Functions of parts and callables; no
model is passed in.
"""
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .batch import caption_lists, split_meta

Encoded = Tuple[torch.Tensor, torch.Tensor]


def encode_images(vision: nn.Module, proj: nn.Module, images: torch.Tensor) -> Encoded:
    """``(image_embeds [B, N, C], image_feat [B, D])`` of an image tower and its ITC
    projection (the normalised projection of the pooled state). Videos ``[B, T, 3, H, W]``:
    each frame through the tower, the frames' tokens concatenated ``[B, T * N, C]`` for the
    fusion encoder / decoder, and the normalised frame features averaged and normalised
    again for ITC (CLIP4Clip's mean pooling)."""
    if images.dim() == 5:
        B, T = images.shape[:2]
        out = vision(images.flatten(0, 1))
        tokens = out['image_embeds']  # (B*T, N, C)
        frames = F.normalize(proj(out['image_pooled']), dim=-1).view(B, T, -1)
        return (tokens.reshape(B, T * tokens.shape[1], tokens.shape[2]),
                F.normalize(frames.mean(1), dim=-1))
    out = vision(images)
    return out['image_embeds'], F.normalize(proj(out['image_pooled']), dim=-1)


def encode_texts(text: nn.Module, proj: nn.Module, input_ids: torch.Tensor,
                 attention_mask: Optional[torch.Tensor]) -> Encoded:
    """``(text_embeds [B, L, C], text_feat [B, D])`` of a text tower and its projection."""
    out = text(input_ids, attention_mask)
    return out['text_embeds'], F.normalize(proj(out['text_pooled']), dim=-1)


def pair_features(inputs: dict, encode_image: Callable[[torch.Tensor], Encoded],
                  encode_text: Callable[..., Encoded]) -> Dict[str, torch.Tensor]:
    """``image_embeds`` / ``image_feat`` and ``text_embeds`` / ``text_feat`` of what
    ``inputs`` holds (``forward(mode='tensor')``)."""
    out = {}
    if inputs.get('images') is not None:
        out['image_embeds'], out['image_feat'] = encode_image(inputs['images'])
    if inputs.get('input_ids') is not None:
        out['text_embeds'], out['text_feat'] = encode_text(inputs['input_ids'],
                                                           inputs.get('attention_mask'))
    return out


def retrieval_predictions(inputs: dict, data_samples, encode_image: Callable[..., Encoded],
                          encode_text: Callable[..., Encoded], itm_text: str = 'states',
                          family: str = 'model') -> List[dict]:
    """One dict per image: ``image_feat`` and ``image_embeds`` from ``encode_image(images)
    -> (what the ITM re-ranking reads of the image, ITC feature)``, and for its ``K``
    captions (``input_ids [B, K, L]``, ``[B, L]`` or a list of ``[K_i, L]``) ``text_feat
    [K, D]``, ``text_mask [K, L]`` and ``text_embeds``: the states ``[K, L, C]`` of
    ``encode_text`` (``itm_text='states'``: ALBEF) or the ids ``[K, L]`` (``'ids'``: the
    re-ranking re-encodes them with the image), plus the sample's metadata."""
    images, ids = inputs.get('images'), inputs.get('input_ids')
    if images is None or ids is None:
        raise ValueError(f'{family}.predict needs images and input_ids')
    image_embeds, image_feat = encode_image(images)
    ids_list, masks = caption_lists(ids, inputs.get('attention_mask'))
    counts = [t.shape[0] for t in ids_list]
    if all(t.shape[1] == ids_list[0].shape[1] for t in ids_list):  # one batched pass
        cat_mask = torch.cat(masks)
        t_embeds, t_feat = encode_text(torch.cat(ids_list), cat_mask)
        t_embeds, t_feat = t_embeds.split(counts), t_feat.split(counts)
        t_masks = cat_mask.split(counts)
    else:
        pairs = [encode_text(t, m) for t, m in zip(ids_list, masks)]
        t_embeds, t_feat, t_masks = [p[0] for p in pairs], [p[1] for p in pairs], masks
    results = []
    for i, meta in enumerate(split_meta(data_samples, images.shape[0])):
        meta.update(image_feat=image_feat[i], image_embeds=image_embeds[i],
                    text_feat=t_feat[i], text_mask=t_masks[i],
                    text_embeds=ids_list[i] if itm_text == 'ids' else t_embeds[i])
        results.append(meta)
    return results
