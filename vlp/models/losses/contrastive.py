"""Image-text contrastive (ITC) losses: the one contrastive family of vlp.

``ContrastiveLoss``: the symmetric InfoNCE of CLIP (Radford et al. 2021, "Learning
Transferable Visual Models From Natural Language Supervision", Sec. 2.3 and Fig. 3):
cross-entropy over cosine similarities scaled by a learned ``logit_scale = log(1 / T)``
(clamped at 100, Sec. 2.5), averaged over the image->text and text->image directions;
ALIGN's label smoothing (Jia et al. 2021); negatives from every rank through an all-gather
that keeps gradients, and the ``local_loss`` of open_clip's ``loss.py`` (Ilharco et al.
2021). Extra columns (a MoCo-style feature queue: ALBEF, BLIP) and soft targets (ALBEF's
momentum distillation, BLIP's same-image positives) enter through ``forward``'s optional
arguments.

``SigLIPLoss``: the pairwise sigmoid loss of SigLIP (Zhai et al. 2023, "Sigmoid Loss for
Language Image Pre-Training", Algorithm 1) with a learned scale and bias. Simplification:
the paper's chunked neighbour exchange of text features across devices is replaced by one
all-gather (with gradients) of the text features; the loss is the same.

Both losses take L2-normalised features (the algorithm normalises: the same normalised
features serve retrieval, zero-shot classification and the queue) and do not normalise
again. Logits are computed in at least float32. Every rank must pass the same batch size.
"""
import math
from typing import Dict, Optional

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import get_rank, get_world_size

from vlp.registry import MODELS


def all_gather_features(x: torch.Tensor, with_grad: bool = True) -> torch.Tensor:
    """Concatenate ``x [B, ...]`` of every rank, in rank order: ``[W * B, ...]``.

    With ``with_grad`` the gather is differentiable: the backward sums the gradients that
    every rank computes for this rank's rows (``torch.distributed.nn``'s all-gather:
    reduce-scatter on NCCL, all-to-all on gloo). Without, the result carries no gradient
    (the MoCo feature queue's ``concat_all_gather``). One process: ``x`` itself.
    """
    world = get_world_size()
    if world == 1:
        return x
    if with_grad:
        return torch.cat(dist_fn.all_gather(x), dim=0)
    with torch.no_grad():
        out = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Half / bfloat16 -> float32 (float32 and float64 are kept)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _scores(rows: torch.Tensor, cols) -> torch.Tensor:
    """``rows [B, D] @ cols.T``; ``cols`` is one ``[M, D]`` tensor or a sequence of column
    blocks ``[M_k, D]`` (scored one block at a time and the ``[B, M_k]`` logits
    concatenated: a large block such as a 57,600-row feature queue is never copied)."""
    if torch.is_tensor(cols):
        return rows @ _upcast(cols).t()
    return torch.cat([rows @ _upcast(c).t() for c in cols], dim=1)


def _log_bound(value: Optional[float]) -> Optional[float]:
    return None if value is None else math.log(value)


class _ScaleMixin:
    """A scalar ``logit_scale`` (log of the multiplier of the similarities): a 0-dim
    parameter, or a (persistent) buffer when not learned, clamped in ``forward``."""

    def _init_scale(self, log_init: float, learnable: bool, min_scale: Optional[float],
                    max_scale: Optional[float]) -> None:
        value = torch.tensor(float(log_init))
        if learnable:
            self.logit_scale = nn.Parameter(value)
        else:
            self.register_buffer('logit_scale', value)
        self.min_logit_scale, self.max_logit_scale = min_scale, max_scale
        self._log_min, self._log_max = _log_bound(min_scale), _log_bound(max_scale)

    def get_logit_scale(self) -> torch.Tensor:
        """``exp(clamp(logit_scale))`` as a scalar of at least float32. Beyond a bound the
        scale sits at the bound and ``logit_scale`` gets zero gradient (``torch.clamp``);
        the parameter itself is never modified in place (safe under ZeRO partitioning)."""
        s = _upcast(self.logit_scale)
        if self._log_min is not None or self._log_max is not None:
            s = s.clamp(min=self._log_min, max=self._log_max)
        return s.exp()


@MODELS.register_module()
class ContrastiveLoss(_ScaleMixin, nn.Module):
    """Symmetric InfoNCE over image/text features (CLIP, ALIGN, ALBEF, BLIP, BLIP-2...).

    Args:
        temperature: initial temperature ``T``; ``logit_scale`` starts at ``log(1 / T)``
            (CLIP: 0.07).
        learnable_temperature: learn ``logit_scale`` (a 0-dim parameter, open_clip's and
            HF's ``logit_scale``) or keep it fixed (a buffer, still in the state dict).
        max_logit_scale: the scale is clamped to at most this value (CLIP: 100, "to
            prevent scaling the logits by more than 100"). The clamp happens in
            ``forward`` (no in-place update of the parameter, unlike open_clip's post-step
            ``clamp_``): past the bound the scale is the bound and gets no gradient.
        min_logit_scale: optional lower bound (ALBEF/BLIP clamp ``T <= 0.5``: 2.0).
        label_smoothing: of the one-hot targets (ALIGN: 0.1).
        local_loss: open_clip's local loss: this rank's rows against the columns of all
            ranks (labels offset by ``rank * B``), averaged over the local rows; the mean
            over ranks equals the global loss at ``W``-times less compute. Otherwise every
            rank computes the full ``[W B, W B]`` loss (identical on all ranks).
        loss_name: key of the loss in the returned dict.

    ``forward`` returns ``{loss_name: loss, 'logit_scale': scale (detached)}``.
    """

    def __init__(self, temperature: float = 0.07, learnable_temperature: bool = True,
                 max_logit_scale: Optional[float] = 100.0,
                 min_logit_scale: Optional[float] = None, label_smoothing: float = 0.0,
                 local_loss: bool = False, loss_name: str = 'loss_itc'):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        self._init_scale(math.log(1.0 / temperature), learnable_temperature,
                         min_logit_scale, max_logit_scale)
        self.label_smoothing = label_smoothing
        self.local_loss = local_loss
        self.loss_name = loss_name

    def _ce(self, logits: torch.Tensor, labels: torch.Tensor,
            targets: Optional[torch.Tensor]) -> torch.Tensor:
        if targets is None:
            return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        if targets.shape != logits.shape:
            raise ValueError(f'targets {tuple(targets.shape)} do not match the logits '
                             f'{tuple(logits.shape)}')
        return F.cross_entropy(logits, targets.to(logits.dtype),
                               label_smoothing=self.label_smoothing)

    def forward(self, image_feat: torch.Tensor, text_feat: torch.Tensor,
                image_feat_all: Optional[torch.Tensor] = None,
                text_feat_all: Optional[torch.Tensor] = None,
                targets_i2t: Optional[torch.Tensor] = None,
                targets_t2i: Optional[torch.Tensor] = None,
                distill_image_feat: Optional[torch.Tensor] = None,
                distill_text_feat: Optional[torch.Tensor] = None,
                distill_alpha: float = 0.0) -> Dict[str, torch.Tensor]:
        """
        Args:
            image_feat: ``[B, D]`` L2-normalised image features of this rank; row ``i``
                pairs with ``text_feat[i]``.
            text_feat: ``[B, D]`` L2-normalised text features.
            image_feat_all / text_feat_all: optional ``[M, D]`` column sets replacing the
                all-gathered features (give both): ``text_feat`` is scored against
                ``image_feat_all`` and ``image_feat`` against ``text_feat_all``, with the
                positive of row ``i`` at column ``i`` (ALBEF/BLIP: the momentum features
                of this rank followed by the queue). No gather happens then. Each may also
                be a sequence of column blocks (e.g. ``[feat_m, queue]``), scored block by
                block without concatenating the features.
            targets_i2t / targets_t2i: optional soft targets (rows sum to 1) of the shape
                of the logits (``[B, M]``; ``[B, W B]`` with ``local_loss``, else
                ``[W B, W B]``) replacing the one-hot targets.
            distill_image_feat / distill_text_feat / distill_alpha: momentum distillation
                (ALBEF Sec. 3.3; needs ``image_feat_all``/``text_feat_all``): the targets
                become ``alpha * softmax(s_m) + (1 - alpha) * targets`` where ``s_m`` are
                the similarities of the momentum features ``[B, D]`` to the same columns,
                under the current (detached) scale.

        Returns:
            ``{loss_name: loss, 'logit_scale': scale}``.
        """
        if (image_feat_all is None) != (text_feat_all is None):
            raise ValueError('pass both image_feat_all and text_feat_all, or neither')
        scale = self.get_logit_scale()
        B = image_feat.shape[0]
        img, txt = _upcast(image_feat), _upcast(text_feat)
        distill = distill_alpha > 0 and (distill_image_feat is not None
                                         or distill_text_feat is not None)
        if distill and (image_feat_all is None or distill_image_feat is None
                        or distill_text_feat is None):
            raise ValueError('momentum distillation needs image_feat_all, text_feat_all, '
                             'distill_image_feat and distill_text_feat')
        if image_feat_all is not None:
            logits_i2t = _scores(scale * img, text_feat_all)  # (B, M)
            logits_t2i = _scores(scale * txt, image_feat_all)  # (B, M)
            labels = torch.arange(B, device=img.device)
            if distill:
                with torch.no_grad():
                    s = scale.detach()
                    onehot = F.one_hot(labels, logits_i2t.shape[1]).to(logits_i2t.dtype)
                    hard_i2t = onehot if targets_i2t is None else targets_i2t.to(onehot)
                    hard_t2i = onehot if targets_t2i is None else targets_t2i.to(onehot)
                    sim_i2t_m = _scores(s * _upcast(distill_image_feat), text_feat_all)
                    sim_t2i_m = _scores(s * _upcast(distill_text_feat), image_feat_all)
                    targets_i2t = (distill_alpha * sim_i2t_m.softmax(dim=1)
                                   + (1 - distill_alpha) * hard_i2t)
                    targets_t2i = (distill_alpha * sim_t2i_m.softmax(dim=1)
                                   + (1 - distill_alpha) * hard_t2i)
        else:
            all_img = _upcast(all_gather_features(image_feat))  # (W*B, D)
            all_txt = _upcast(all_gather_features(text_feat))  # (W*B, D)
            if self.local_loss:
                logits_i2t = (scale * img) @ all_txt.t()  # (B, W*B)
                logits_t2i = (scale * txt) @ all_img.t()  # (B, W*B)
                labels = torch.arange(B, device=img.device) + get_rank() * B
            else:
                logits_i2t = (scale * all_img) @ all_txt.t()  # (W*B, W*B)
                logits_t2i = logits_i2t.t()
                labels = torch.arange(all_img.shape[0], device=img.device)
        loss = 0.5 * (self._ce(logits_i2t, labels, targets_i2t)
                      + self._ce(logits_t2i, labels, targets_t2i))
        return {self.loss_name: loss, 'logit_scale': scale.detach()}


@MODELS.register_module()
class SigLIPLoss(_ScaleMixin, nn.Module):
    """Sigmoid loss over all image-text pairs (SigLIP, Zhai et al. 2023, Algorithm 1).

    ``loss = -1/B sum_{i in rank} sum_{j in all ranks} log sigmoid(z_ij (t x_i.y_j + b))``
    with ``z_ij = 1`` for matching pairs, else -1, ``t = exp(logit_scale)``, normalised by
    the local batch size ``B`` as in the paper (with DDP's gradient averaging the
    effective loss is the global one, normalised by the global batch).

    Args:
        logit_scale_init: initial ``t`` (paper: ``t' = log 10``, so 10).
        logit_bias_init: initial ``b`` (paper: -10).
        learnable: learn ``t`` and ``b`` (else buffers).
        max_logit_scale: optional upper clamp of ``t`` (none in the paper).
        loss_name: key of the loss in the returned dict.

    ``forward`` returns ``{loss_name: loss, 'logit_scale': t, 'logit_bias': b}``
    (the last two detached).
    """

    def __init__(self, logit_scale_init: float = 10.0, logit_bias_init: float = -10.0,
                 learnable: bool = True, max_logit_scale: Optional[float] = None,
                 loss_name: str = 'loss_itc'):
        super().__init__()
        self._init_scale(math.log(logit_scale_init), learnable, None, max_logit_scale)
        bias = torch.tensor(float(logit_bias_init))
        if learnable:
            self.logit_bias = nn.Parameter(bias)
        else:
            self.register_buffer('logit_bias', bias)
        self.loss_name = loss_name

    def forward(self, image_feat: torch.Tensor,
                text_feat: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            image_feat: ``[B, D]`` L2-normalised image features of this rank.
            text_feat: ``[B, D]`` L2-normalised text features (row ``i`` matches image
                ``i``); gathered from all ranks, with gradients.
        """
        scale = self.get_logit_scale()
        bias = _upcast(self.logit_bias)
        B = image_feat.shape[0]
        all_txt = _upcast(all_gather_features(text_feat))  # (W*B, D)
        logits = (scale * _upcast(image_feat)) @ all_txt.t() + bias  # (B, W*B)
        rows = torch.arange(B, device=logits.device)
        signs = torch.full_like(logits, -1.0)
        signs[rows, rows + get_rank() * B] = 1.0
        loss = -F.logsigmoid(signs * logits).sum() / B
        return {self.loss_name: loss, 'logit_scale': scale.detach(),
                'logit_bias': bias.detach()}
