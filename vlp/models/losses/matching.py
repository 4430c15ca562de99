"""Image-text matching (ITM) with hard negatives mined from contrastive similarities
(ALBEF, Li et al. 2021, Sec. 3.2; BLIP, Li et al. 2022; VLMo; BLIP-2).

For every image one negative text, and for every text one negative image, is sampled from
the batch (all ranks) with probability ``softmax(s)`` of its ITC similarity ``s`` to the
anchor, so that similar-but-wrong pairs are picked more often. Positives (the anchor's own
pair, and with image ids any other caption of the same image) get probability exactly 0:
a positive is never drawn. ALBEF's reference adds 1e-4 to every weight before zeroing the
positive (so that a row whose softmax underflows can still be sampled); so does this code.
The ITM head then classifies ``B`` positive and ``2B`` negative pairs (label 1 = matched).

:class:`ITMLoss` is the objective as a part: given the model's scoring function (its ITM
head on its fusion of image-text pairs) and the batch's features it gathers the candidates
of every rank, samples the negatives and returns the loss; it never sees the model.
"""
from typing import Callable, Dict, Optional

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import get_rank, get_world_size

from vlp.registry import MODELS
from .contrastive import SIMILARITIES, all_gather_features, positive_mask


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


def _gather(x: torch.Tensor) -> torch.Tensor:
    """``x`` of every rank, in rank order; float tensors that require grad keep it (the
    negatives' gradient flows back to their rank), others are gathered without."""
    return all_gather_features(x, with_grad=x.is_floating_point() and x.requires_grad)


def _pad_seq(x: torch.Tensor, length: int) -> torch.Tensor:
    """Right-pad ``x [B, L, ...]`` with zeros (the [PAD] id / a masked state) to ``length``
    along dim 1."""
    if x.shape[1] == length:
        return x
    pad = x.new_zeros(x.shape[0], length - x.shape[1], *x.shape[2:])
    return torch.cat([x, pad], dim=1)


@MODELS.register_module()
class ITMLoss(nn.Module):
    """Image-text matching on the positives and one hard negative per image and per text
    (ALBEF Sec. 3.2; BLIP, BLIP-2, VLMo use the same sampler).

    Args:
        negatives: ``'global'`` (candidates from the batch of every rank: BLIP's code) or
            ``'local'`` (this rank's batch: ALBEF's pre-training code).
        similarity: how candidates are weighed: ``'dot'`` (cosine of the ITC features) or
            ``'max_query'`` (BLIP-2: the maximum over the query features).
        hard_negatives: draw negatives by ITC similarity (the papers) or uniformly; switched
            by :meth:`set_hard_negatives` (the protocol of
            :class:`~vlp.engine.hooks.ITMNegativeWarmupHook`).
    """

    def __init__(self, negatives: str = 'global', similarity: str = 'dot',
                 hard_negatives: bool = True):
        super().__init__()
        if negatives not in ('global', 'local'):
            raise ValueError(f"itm negatives must be 'global' or 'local', got {negatives!r}")
        if similarity not in SIMILARITIES:
            raise ValueError(f'similarity must be one of {list(SIMILARITIES)}, got '
                             f'{similarity!r}')
        self.negatives, self.similarity = negatives, similarity
        self.hard_negatives = bool(hard_negatives)

    def set_hard_negatives(self, enabled: bool) -> None:
        """Negatives by similarity (``True``) or uniformly drawn (``False``)."""
        self.hard_negatives = bool(enabled)

    def forward(self, score_fn: Callable[..., torch.Tensor], image: torch.Tensor,
                text: torch.Tensor, text_mask: torch.Tensor, image_feat: torch.Tensor,
                text_feat: torch.Tensor, logit_scale: torch.Tensor,
                image_ids: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """
        Args:
            score_fn: ``score_fn(image, text, text_mask) -> logits [N, 2]`` of ``N``
                image-text pairs (class 1 = matched): the model's ITM head on its fusion.
            image: ``[B, ...]`` what ``score_fn`` reads of an image (ALBEF / BLIP: the image
                tokens; BLIP-2: the frozen encoder's tokens; VLMo: the pixels, re-encoded
                with the text by its multiway fusion, as VLMo's code gathers images).
            text / text_mask: ``[B, L, ...]`` / ``[B, L]`` what it reads of a text (ALBEF:
                the unimodal text states, which keep their gradient when gathered; BLIP,
                BLIP-2, VLMo: the token ids); padded to the longest length over ranks.
            image_feat / text_feat: the ITC features (``[B, D]``; ``[B, Q, D]`` images with
                ``'max_query'``) whose similarities, times ``logit_scale``, weigh the
                candidates.
            image_ids: ``[B]`` ids; captions of the same image are never negatives.

        Returns ``{'loss_itm', 'itm_acc'}`` over the ``B`` positive and ``2B`` negative pairs
        in ALBEF's order (positives, (text, negative image), (negative text, image)).
        """
        B = image.shape[0]
        glob = self.negatives == 'global' and get_world_size() > 1
        sim = SIMILARITIES[self.similarity]
        with torch.no_grad():
            img_world = _gather(image_feat.detach()) if glob else image_feat.detach()
            txt_world = _gather(text_feat.detach()) if glob else text_feat.detach()
            ids_world = (_gather(image_ids) if glob else image_ids) \
                if image_ids is not None else None
            offset = get_rank() * B if glob else 0
            sim_i2t = logit_scale * sim(image_feat, txt_world)  # (B, W*B)
            sim_t2i = logit_scale * sim(img_world, text_feat).t()  # (B, W*B)
            if not self.hard_negatives:  # warm-up: every negative equally likely
                sim_i2t, sim_t2i = torch.zeros_like(sim_i2t), torch.zeros_like(sim_t2i)
            pos = positive_mask(image_ids, ids_world, B, txt_world.shape[0], offset,
                                image.device)
            neg_img = sample_hard_negatives(sim_t2i, pos)  # (B,) an image per text
            neg_txt = sample_hard_negatives(sim_i2t, pos)  # (B,) a text per image
        if glob:  # texts may be padded to different lengths on different ranks
            L_max = torch.tensor(text.shape[1], device=text.device)
            dist.all_reduce(L_max, op=dist.ReduceOp.MAX)
            text, text_mask = _pad_seq(text, int(L_max)), _pad_seq(text_mask, int(L_max))
            image_w, text_w, mask_w = _gather(image), _gather(text), _gather(text_mask)
        else:
            image_w, text_w, mask_w = image, text, text_mask
        # positives, (text, hard negative image), (hard negative text, image): ALBEF's order
        logits = score_fn(torch.cat([image, image_w[neg_img], image]),
                          torch.cat([text, text, text_w[neg_txt]]),
                          torch.cat([text_mask, text_mask, mask_w[neg_txt]]))  # (3B, 2)
        return itm_loss(logits, num_positive=B)
