"""Classifier heads of the downstream tasks (VQA, NLVR2, SNLI-VE) on a fused representation.

One :class:`ClassifierHead` covers the heads of the papers:

- ViLT (Kim et al. 2021, code ``vqa_classifier`` / ``nlvr2_classifier``) and VLMo (Bao et al.
  2022, which reuses ViLT's heads): ``Linear(C_in, 2C) -> LayerNorm -> GELU -> Linear(2C, n)``
  on the pooled state (ViLT's pooler lives in the backbone; VLMo's ``Pooler`` is a
  ``dense + tanh``, ``pooler='bert'`` here);
- BEiT-3 (Wang et al. 2022, ``Pooler`` = ``LayerNorm -> Linear -> tanh``, ``pooler='ln_bert'``,
  then the same MLP as ViLT);
- ALBEF (Li et al. 2021, SNLI-VE / NLVR2 ``cls_head``): ``Linear(C, C) -> ReLU -> Linear(C, n)``
  (``norm=False, act='relu'``).

With several inputs per sample (NLVR2's two image-text pairs, ``x [B, K, C]``) the pooler
runs on each and the pooled states are concatenated (``K * C`` into the MLP), as ViLT / VLMo
/ BEiT-3 do for NLVR2.
"""
from typing import Optional

import torch
import torch.nn as nn

from vlp.registry import MODELS
from ..layers.attention import build_activation


@MODELS.register_module()
class ClassifierHead(nn.Module):
    """``[B, C]`` or ``[B, K, C]`` -> logits ``[B, num_classes]``.

    Args:
        in_channels: width ``C`` of one input state.
        num_classes: outputs (VQA: the answer vocabulary; NLVR2: 2; SNLI-VE: 3).
        num_inputs: ``K``, states per sample concatenated after the pooler (NLVR2: 2).
        hidden_channels: MLP width (``None``: ``2 * in_channels * num_inputs`` when
            ``num_inputs == 1`` else ``in_channels * num_inputs``, ViLT's choices; ``0``: a
            single linear layer).
        pooler: ``None``, ``'bert'`` (``dense + tanh``: ViLT / VLMo) or ``'ln_bert'``
            (``LayerNorm + dense + tanh``: BEiT-3).
        norm: LayerNorm after the first MLP layer (ViLT / VLMo / BEiT-3: yes; ALBEF: no).
        act: MLP activation (``'gelu'``; ALBEF: ``'relu'``).
        dropout: dropout on the MLP input.
        init_std: std of the normal init of the linear layers (biases zero; ViLT's
            ``init_weights``: 0.02).
    """

    def __init__(self, in_channels: int, num_classes: int, num_inputs: int = 1,
                 hidden_channels: Optional[int] = None, pooler: Optional[str] = None,
                 norm: bool = True, act: str = 'gelu', dropout: float = 0.0,
                 init_std: float = 0.02):
        super().__init__()
        if pooler not in (None, 'bert', 'ln_bert'):
            raise ValueError(f"pooler must be None, 'bert' or 'ln_bert', got {pooler!r}")
        self.num_inputs = num_inputs
        self.pooler = None
        if pooler == 'bert':
            self.pooler = nn.Sequential(nn.Linear(in_channels, in_channels), nn.Tanh())
        elif pooler == 'ln_bert':
            self.pooler = nn.Sequential(nn.LayerNorm(in_channels),
                                        nn.Linear(in_channels, in_channels), nn.Tanh())
        width = in_channels * num_inputs
        if hidden_channels is None:
            hidden_channels = 2 * width if num_inputs == 1 else width
        self.dropout = nn.Dropout(dropout)
        if hidden_channels:
            layers = [nn.Linear(width, hidden_channels)]
            if norm:
                layers.append(nn.LayerNorm(hidden_channels))
            layers += [build_activation(act), nn.Linear(hidden_channels, num_classes)]
            self.mlp = nn.Sequential(*layers)
        else:
            self.mlp = nn.Linear(width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=init_std)
                nn.init.zeros_(m.bias)

    @property
    def num_classes(self) -> int:
        last = self.mlp if isinstance(self.mlp, nn.Linear) else self.mlp[-1]
        return last.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)  # (B, 1, C)
        if x.shape[1] != self.num_inputs:
            raise ValueError(f'ClassifierHead expects {self.num_inputs} state(s) per sample, '
                             f'got {x.shape[1]}')
        if self.pooler is not None:
            x = self.pooler(x)
        return self.mlp(self.dropout(x.flatten(1)))  # (B, K * C) -> (B, n)
