"""The shared steps of the task models (:mod:`vlp.models.algorithms.downstream`): build the
family model they carry, fall back to its tokenizer, load its checkpoint, read its fused
representation. Functions the task models bind as methods; not a parent class."""
from typing import Dict, List, Optional, Sequence, Union

import torch

from ..utils.pretrained import load_pretrained_weights
from .base import VLPModel, build_part, supports


def build_family(model: Union[dict, torch.nn.Module], drop_parts: Sequence[str] = ()):
    """The family model a task model carries: built, checked to expose its fused
    representation (``fused_features``, or ``fused_features_pair`` for a two-image
    fusion), its pre-training-only parts (``drop_parts``: projections, momentum twins,
    queues, MLM / ITM heads) set to ``None`` so they are neither trained, saved, nor reported
    as unused parameters by DDP."""
    model = build_part(model)
    if not (supports(model, 'fused_features') or supports(model, 'fused_features_pair')):
        raise TypeError(f'{type(model).__name__} has no fused_features(images, input_ids, '
                        'attention_mask): it cannot carry a task head')
    for name in drop_parts:
        if not hasattr(model, name):
            raise AttributeError(f'drop_parts: {type(model).__name__} has no {name!r}')
        setattr(model, name, None)
    return model


def _tokenizer(self):
    """The task model's tokenizer, else its family model's."""
    tok = VLPModel.tokenizer.fget(self)
    return tok if tok is not None else self.model.tokenizer


#: ``tokenizer`` of the task models: their own, else the family model's
FAMILY_TOKENIZER = property(_tokenizer, VLPModel.tokenizer.fset)


def keep_initialisation(self) -> None:
    """``init_weights`` of the task models: nothing (the head is initialised when built; the
    family model holds its constructor initialisation or the loaded checkpoint, and its own
    ``init_weights``, e.g. ALBEF's copy into momentum twins, is not re-run)."""


def load_family_checkpoint(self, path: str) -> Dict[str, List[str]]:
    """``load_pretrained`` of the task models: a family checkpoint (file or work directory)
    into ``model.*`` after ``revise_keys``, adapted by the family model
    (``adapt_pretrained_state_dict``, e.g. ALBEF's NLVR2 expansion); see
    :func:`~vlp.models.utils.pretrained.load_pretrained_weights`."""
    return load_pretrained_weights(
        self, path, prefix='model.', revise_keys=self.revise_keys,
        adapt=getattr(self.model, 'adapt_pretrained_state_dict', None))


def family_fused_features(self, images: torch.Tensor, input_ids: torch.Tensor,
                          attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``fused_features`` of the task models: the family model's (mask all ones if absent)."""
    self.require('fused_features')
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    return self.model.fused_features(images, input_ids, attention_mask)
