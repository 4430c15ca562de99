"""Batch helpers shared by the algorithms: per-sample metadata, image-text batches,
caption lists of retrieval batches, special first tokens."""
from typing import List, Optional, Sequence, Union

import torch


def split_meta(data_samples: Optional[Union[dict, Sequence[dict]]], batch_size: int
               ) -> List[dict]:
    """Per-sample metadata from the preprocessor's ``data_samples`` (a dict of batched
    values) or a list of per-sample dicts; 0-dim tensors become Python numbers."""
    if data_samples is None:
        return [{} for _ in range(batch_size)]
    if isinstance(data_samples, (list, tuple)):
        return [dict(d) for d in data_samples]
    metas = [{} for _ in range(batch_size)]
    for key, value in data_samples.items():
        if not isinstance(value, (torch.Tensor, list, tuple)) or len(value) != batch_size:
            raise ValueError(f'data_samples[{key!r}] is not a batch of {batch_size} values')
        for i in range(batch_size):
            v = value[i]
            metas[i][key] = v.item() if isinstance(v, torch.Tensor) and v.dim() == 0 else v
    return metas


def pair_batch(inputs: dict, data_samples: Optional[dict], image_ids: bool = False):
    """``(images, input_ids, attention_mask, ids)`` of an image-text batch: the mask all
    ones when absent; ``ids [B]`` the samples' ``data_samples['image_id']`` when
    ``image_ids`` (else ``None``)."""
    images, input_ids = inputs['images'], inputs['input_ids']
    text_mask = inputs.get('attention_mask')
    if text_mask is None:
        text_mask = torch.ones_like(input_ids)
    idx = None
    if image_ids:
        if data_samples is None or 'image_id' not in data_samples:
            raise KeyError('queue_ids=True needs data_samples["image_id"]')
        idx = torch.as_tensor(data_samples['image_id'], device=images.device).long().view(-1)
    return images, input_ids, text_mask, idx


def replace_first_token(input_ids: torch.Tensor, token_id: int) -> torch.Tensor:
    """A copy of ``input_ids [..., L]`` led by ``token_id`` (BLIP's ``[ENC]`` / ``[DEC]``
    in place of ``[CLS]``)."""
    ids = input_ids.clone()
    ids[..., 0] = token_id
    return ids


def caption_lists(input_ids, attention_mask=None):
    """Per-image caption tensors of a retrieval batch: ``input_ids`` ``[B, K, L]`` /
    ``[B, L]`` or a list of ``[K_i, L]`` / ``[L]`` tensors (images with different numbers
    of captions) -> ``(ids, masks)``, two lists of ``[K_i, L]`` tensors (masks all ones
    when ``attention_mask`` is ``None``)."""
    if isinstance(input_ids, torch.Tensor):
        ids = list(input_ids if input_ids.dim() == 3 else input_ids.unsqueeze(1))
        if attention_mask is not None:
            masks = list(attention_mask if attention_mask.dim() == 3
                         else attention_mask.unsqueeze(1))
    else:
        ids = [t if t.dim() == 2 else t.unsqueeze(0) for t in input_ids]
        if attention_mask is not None:
            masks = [m if m.dim() == 2 else m.unsqueeze(0) for m in attention_mask]
    if attention_mask is None:
        masks = [torch.ones_like(t) for t in ids]
    return ids, masks
