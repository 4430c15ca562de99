"""Image-text matching (ITM) with hard negatives mined from contrastive similarities
(ALBEF, Li et al. 2021, Sec. 3.2; BLIP, Li et al. 2022; VLMo; BLIP-2).

For every image one negative text, and for every text one negative image, is sampled from
the batch (all ranks) with probability ``softmax(s)`` of its ITC similarity ``s`` to the
anchor, so that similar-but-wrong pairs are picked more often. Positives (the anchor's own
pair, and with image ids any other caption of the same image) get probability exactly 0:
a positive is never drawn. ALBEF's reference adds 1e-4 to every weight before zeroing the
positive (so that a row whose softmax underflows can still be sampled); so does this code.
The ITM head then classifies ``B`` positive and ``2B`` negative pairs (label 1 = matched).
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F


def hard_negative_weights(sim: torch.Tensor, positive_mask: torch.Tensor,
                          eps: float = 1e-4) -> torch.Tensor:
    """Sampling weights ``softmax(sim) + eps`` per row with positives set to 0.

    Args:
        sim: ``[R, C]`` similarities (already scaled by the temperature).
        positive_mask: ``[R, C]`` bool, True at each row's positives.
        eps: floor added to every weight before positives are zeroed (ALBEF: 1e-4).

    Raises ``ValueError`` when a row has no candidate negative.
    """
    if sim.shape != positive_mask.shape:
        raise ValueError(f'sim {tuple(sim.shape)} and positive_mask '
                         f'{tuple(positive_mask.shape)} differ')
    weights = F.softmax(sim.float(), dim=1) + eps
    weights = weights.masked_fill(positive_mask, 0.0)
    empty = (~positive_mask).sum(dim=1) == 0
    if bool(empty.any()):
        raise ValueError(f'{int(empty.sum())} ITM anchors have no negative in the batch (every '
                         'candidate is a positive): use a larger batch or distinct images')
    return weights


def sample_hard_negatives(sim: torch.Tensor, positive_mask: torch.Tensor, eps: float = 1e-4,
                          generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One negative column per row, drawn with :func:`hard_negative_weights`: ``[R]`` long."""
    weights = hard_negative_weights(sim, positive_mask, eps)
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def itm_loss(logits: torch.Tensor, num_positive: int,
             loss_name: str = 'loss_itm') -> Dict[str, torch.Tensor]:
    """Cross-entropy of ``logits [P + N, 2]`` whose first ``num_positive`` rows are matched
    pairs (label 1) and the rest unmatched (label 0); also reports the accuracy."""
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    labels[:num_positive] = 1
    loss = F.cross_entropy(logits.float(), labels)
    acc = (logits.detach().argmax(dim=1) == labels).float().mean()
    return {loss_name: loss, 'itm_acc': acc}
