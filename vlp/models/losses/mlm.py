"""Masked-token prediction loss (BERT's MLM; ALBEF, VLMo, BEiT-3, ViLT): cross-entropy of
a head's logits at the chosen positions (labels != -100), and its accuracy."""
from typing import Callable, Tuple

import torch
import torch.nn.functional as F


def masked_token_loss(head: Callable, states: torch.Tensor, labels: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(loss, accuracy)`` of ``head(states[chosen])`` against ``labels[chosen]``; only the
    chosen positions go through the head. With nothing chosen: a zero loss that keeps the
    graph and a zero accuracy."""
    sel = labels != -100
    if not bool(sel.any()):
        zero = states.sum() * 0.0
        return zero, zero.detach()
    logits = head(states[sel]).float()  # (M, V)
    target = labels[sel]
    acc = (logits.detach().argmax(-1) == target).float().mean()
    return F.cross_entropy(logits, target), acc
