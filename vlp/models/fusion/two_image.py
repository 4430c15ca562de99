"""Two-image fusion for NLVR2: the layer surgery and the mapping of a pre-training
checkpoint into it, for ALBEF and BLIP (the models call these; the task model
:class:`~vlp.models.algorithms.downstream.VLClassifier` with ``pair_encoding='joint'``
reads their ``fused_features_pair``).

- **ALBEF** (Li et al. 2021, Sec. 5.3, Fig. 3b): the fusion encoder has ``2N`` layers;
  layers ``2k`` and ``2k + 1`` cross-attend to image 0 and image 1, share their
  cross-attention key/value (:func:`tie_pair_layers`) and both start from pre-trained layer
  ``k`` (:func:`expand_fusion_state_dict`, :func:`adapt_two_image_state_dict`).
- **BLIP** (Li et al. 2022, Sec. 5.4, Fig. 6; the released ``nlvr_encoder``): every
  cross-attention layer becomes a :class:`TwinCrossAttention` over the left and the right
  image (:func:`twin_cross_attention`); a pre-training checkpoint's cross-attention starts
  both twins (:func:`split_cross_attention_state_dict`).
"""
import copy
import re
from typing import Dict, Sequence

import torch
import torch.nn as nn

StateDict = Dict[str, torch.Tensor]


# -- ALBEF ------------------------------------------------------------------------------------
def tie_pair_layers(fusion: nn.Module) -> None:
    """Share the cross-attention key/value of fusion layers ``(2k, 2k + 1)``."""
    n = getattr(fusion, 'num_layers', None)
    cross = getattr(fusion, 'cross_layers', None)
    if not hasattr(fusion, 'share_cross_attention_kv') or n is None or n % 2:
        raise ValueError('two_image_fusion needs a BertEncoder fusion with an even '
                         f'num_layers (twice the pre-trained layers), got {n}')
    if set(cross) != set(range(n)):
        raise ValueError('two_image_fusion needs cross-attention in every fusion layer '
                         "(cross_attention_layers='all')")
    fusion.share_cross_attention_kv([(2 * k, 2 * k + 1) for k in range(n // 2)])


def expand_fusion_state_dict(state_dict: StateDict, prefix: str = 'fusion.') -> StateDict:
    """A pre-training state dict (``N`` fusion layers) in the NLVR2 layout (``2N``):
    ``{prefix}blocks.k.*`` is copied to ``blocks.2k.*`` and ``blocks.(2k+1).*`` (ALBEF's
    NLVR2 initialisation), and so are the momentum twin's keys (``fusion_m.`` for
    ``fusion.``) if present. Other keys are kept; a new dict is returned."""
    base = prefix[:-1] if prefix.endswith('.') else prefix
    pattern = re.compile(rf'^({re.escape(base)}|{re.escape(base)}_m)\.blocks\.(\d+)\.(.+)$')
    out = {}
    for key, val in state_dict.items():
        m = pattern.match(key)
        if m is None:
            out[key] = val
            continue
        head, k, rest = m.group(1), int(m.group(2)), m.group(3)
        for new in (2 * k, 2 * k + 1):
            out[f'{head}.blocks.{new}.{rest}'] = val
    return out


def adapt_two_image_state_dict(state_dict: StateDict, num_layers: int) -> StateDict:
    """An ALBEF checkpoint for a two-image model of ``num_layers`` fusion layers: a
    pre-training one (half the layers) is expanded by :func:`expand_fusion_state_dict`;
    one already in the NLVR2 layout (or without fusion keys) is returned as is."""
    layers = {int(m.group(1)) for m in
              (re.match(r'^fusion\.blocks\.(\d+)\.', k) for k in state_dict) if m}
    if not layers:
        return state_dict
    n_ckpt = max(layers) + 1
    if n_ckpt == num_layers:
        return state_dict
    if 2 * n_ckpt != num_layers:
        raise ValueError(f'checkpoint fusion encoder has {n_ckpt} layers; this '
                         f'two_image_fusion model takes {num_layers // 2} (pre-training) or '
                         f'{num_layers}')
    return expand_fusion_state_dict(state_dict)


# -- BLIP -------------------------------------------------------------------------------------
class TwinCrossAttention(nn.Module):
    """BLIP's NLVR2 cross-attention: two cross-attention heads of the same layer, ``a`` over
    the left and ``b`` over the right image (each initialised from the pre-trained
    cross-attention, output projection included), merged by averaging (``merge=False``:
    BLIP's first six layers) or by a linear layer over their concatenation (BLIP's last six
    layers); the block's residual and LayerNorm follow as usual.

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


def twin_cross_attention(text: nn.Module) -> None:
    """Make every cross-attention layer of a :class:`BertEncoder` a
    :class:`TwinCrossAttention` (merge layers in the upper half, as BLIP)."""
    n = len(text.blocks)
    for i, blk in enumerate(text.blocks):
        if getattr(blk, 'has_cross_attn', False):
            blk.cross_attn = TwinCrossAttention(blk.cross_attn, merge=i >= n // 2,
                                                dim=text.hidden_size)


def split_cross_attention_state_dict(state_dict: StateDict) -> StateDict:
    """A BLIP pre-training checkpoint's cross-attention weights start both twins
    (``cross_attn.a`` and ``cross_attn.b``: BLIP copies ``self`` into ``self0`` / ``self1``
    and ``dense`` into ``dense0`` / ``dense1``); merge layers keep their init; keys already
    twinned are kept."""
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
