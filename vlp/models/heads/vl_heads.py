"""Heads of the fusion models.

``MLMHead``: BERT's masked-language-model head (Devlin et al. 2019; HF
``BertLMPredictionHead``): ``dense -> act -> LayerNorm`` then a decoder to the vocabulary
whose weight is usually tied to the word embeddings, plus an output bias. ALBEF and BLIP
predict masked / next tokens with it (BLIP's decoder is the same head).

``ITMHead``: the image-text matching classifier of ALBEF / BLIP / VLMo (a linear layer on
the fused ``[CLS]`` state, 2 classes: unmatched / matched).

``MIMHead``: the masked-image-modelling head of BEiT / VLMo / BEiT-3 (a linear layer from
a patch state to the visual-token logits, or to the pixel target of MAE).
"""
from typing import Optional

import torch
import torch.nn as nn

from vlp.registry import MODELS
from ..layers.attention import build_activation


@MODELS.register_module()
class MLMHead(nn.Module):
    """``logits = LN(act(x W1 + b1)) W_emb^T + b``.

    Args:
        hidden_size: width ``C``.
        vocab_size: number of output tokens ``V``.
        act_layer: activation of the transform (BERT: ``'gelu'``).
        ln_eps: LayerNorm epsilon (BERT: 1e-12).
        initializer_range: std of the normal init of the linear weights.

    Parameters: ``dense``, ``norm``, ``decoder.weight [V, C]`` (tie it with
    ``head.decoder.weight = embeddings.weight``), ``bias [V]``.
    """

    def __init__(self, hidden_size: int, vocab_size: int, act_layer: str = 'gelu',
                 ln_eps: float = 1e-12, initializer_range: float = 0.02):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.act = build_activation(act_layer)
        self.norm = nn.LayerNorm(hidden_size, eps=ln_eps)
        self.decoder = nn.Linear(hidden_size, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        for lin in (self.dense, self.decoder):
            nn.init.normal_(lin.weight, std=initializer_range)
        nn.init.zeros_(self.dense.bias)

    def tie_weights(self, embedding: nn.Embedding) -> None:
        """Share the decoder weight with ``embedding`` (the word embeddings)."""
        if embedding.weight.shape != self.decoder.weight.shape:
            raise ValueError(f'cannot tie a decoder of shape {tuple(self.decoder.weight.shape)}'
                             f' to embeddings of shape {tuple(embedding.weight.shape)}')
        self.decoder.weight = embedding.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., C] -> [..., V]`` logits."""
        return self.decoder(self.norm(self.act(self.dense(x)))) + self.bias


@MODELS.register_module()
class ITMHead(nn.Module):
    """Linear classifier of the fused ``[CLS]`` state: ``[B, C] -> [B, num_classes]``
    (class 1 = matched).

    Args:
        hidden_size: width ``C``.
        num_classes: 2 for ITM.
        init_std: std of the normal weight init (``None``: PyTorch's default).
        pooler: a BERT pooler (``dense`` + tanh) before the classifier, as VLMo and ViLT
            (ALBEF / BLIP: none).
    """

    def __init__(self, hidden_size: int, num_classes: int = 2,
                 init_std: Optional[float] = 0.02, pooler: bool = False):
        super().__init__()
        self.pooler = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Tanh()) \
            if pooler else None
        self.fc = nn.Linear(hidden_size, num_classes)
        for lin in ([self.pooler[0]] if pooler else []) + [self.fc]:
            if init_std is not None:
                nn.init.normal_(lin.weight, std=init_std)
                nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x if self.pooler is None else self.pooler(x))


@MODELS.register_module()
class MIMHead(nn.Module):
    """``[..., C] -> [..., out_dim]``: visual-token logits (``out_dim`` = the tokenizer's
    codebook size) or a regression of the pixel target (BEiT's ``lm_head``).

    Args:
        hidden_size: width ``C``.
        out_dim: codebook size or target width.
        initializer_range: std of the truncated-normal init of the weight (bias zero).
    """

    def __init__(self, hidden_size: int, out_dim: int, initializer_range: float = 0.02):
        super().__init__()
        self.fc = nn.Linear(hidden_size, out_dim)
        nn.init.trunc_normal_(self.fc.weight, std=initializer_range)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)
