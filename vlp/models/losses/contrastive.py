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
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import get_rank, get_world_size

from vlp.registry import MODELS
from .distill import mix_soft_targets

Columns = Union[torch.Tensor, Sequence[torch.Tensor]]


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


def dot_similarity(image_feat: torch.Tensor, text_feat: torch.Tensor) -> torch.Tensor:
    """Cosine similarities ``[N_img, N_txt]`` of normalised features ``[N, D]`` (float32)."""
    return image_feat.float() @ text_feat.float().t()


def max_query_similarity(image_feat: torch.Tensor, text_feat: torch.Tensor) -> torch.Tensor:
    """BLIP-2's similarity ``[N_img, N_txt]``: the maximum over the query features
    ``image_feat [N_img, Q, D]`` of their cosine similarity to ``text_feat [N_txt, D]``."""
    return torch.einsum('iqd,jd->ijq', image_feat.float(), text_feat.float()).amax(-1)


#: ALBEF's, BLIP's and BLIP-2's ITC config: T = 0.07, learned, clamped to [0.001, 0.5]
CLAMPED_ITC = dict(type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
                   max_logit_scale=1000.0)

#: image-text similarities by name (``ContrastiveLoss`` / ``ITMLoss`` ``similarity=``)
SIMILARITIES = {'dot': dot_similarity, 'max_query': max_query_similarity}


def positive_mask(row_ids: Optional[torch.Tensor], col_ids: Optional[torch.Tensor],
                  rows: int, cols: int, offset: int, device) -> torch.Tensor:
    """``[rows, cols]`` bool positives: equal ids (same image) when both id vectors are
    given, else column ``offset + i`` for row ``i``."""
    if row_ids is not None and col_ids is not None:
        return row_ids.view(-1, 1) == col_ids.view(1, -1)
    mask = torch.zeros(rows, cols, dtype=torch.bool, device=device)
    r = torch.arange(rows, device=device)
    mask[r, r + offset] = True
    return mask


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
        similarity: ``'dot'`` (cosine of normalised ``[B, D]`` features) or
            ``'max_query'`` (BLIP-2: image features ``[B, Q, D]``, the maximum over the
            queries; gathered columns only).
        loss_name: key of the loss in the returned dict.

    ``forward`` returns ``{loss_name: loss, 'logit_scale': scale (detached)}``.
    """

    def __init__(self, temperature: float = 0.07, learnable_temperature: bool = True,
                 max_logit_scale: Optional[float] = 100.0,
                 min_logit_scale: Optional[float] = None, label_smoothing: float = 0.0,
                 local_loss: bool = False, similarity: str = 'dot',
                 loss_name: str = 'loss_itc'):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        if similarity not in SIMILARITIES:
            raise ValueError(f'similarity must be one of {list(SIMILARITIES)}, got '
                             f'{similarity!r}')
        self._init_scale(math.log(1.0 / temperature), learnable_temperature,
                         min_logit_scale, max_logit_scale)
        self.label_smoothing = label_smoothing
        self.local_loss = local_loss
        self.similarity = similarity
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

    def _gathered_logits(self, img, txt, scale):
        """Logits against the features of every rank: ``(i2t, t2i, labels)``."""
        B = img.shape[0]
        all_img = _upcast(all_gather_features(img))  # (W*B, [Q,] D)
        all_txt = _upcast(all_gather_features(txt))  # (W*B, D)
        if self.similarity == 'max_query':
            if self.local_loss:
                logits_i2t = scale * max_query_similarity(img, all_txt)  # (B, W*B)
                logits_t2i = scale * max_query_similarity(all_img, txt).t()  # (B, W*B)
            else:
                logits_i2t = scale * max_query_similarity(all_img, all_txt)
                logits_t2i = logits_i2t.t()
        elif self.local_loss:
            logits_i2t = (scale * img) @ all_txt.t()  # (B, W*B)
            logits_t2i = (scale * txt) @ all_img.t()  # (B, W*B)
        else:
            logits_i2t = (scale * all_img) @ all_txt.t()  # (W*B, W*B)
            logits_t2i = logits_i2t.t()
        if self.local_loss:
            labels = torch.arange(B, device=img.device) + get_rank() * B
        else:
            labels = torch.arange(all_img.shape[0], device=img.device)
        return logits_i2t, logits_t2i, labels

    def forward(self, image_feat: torch.Tensor, text_feat: torch.Tensor,
                columns: Optional[Tuple[Columns, Columns]] = None,
                targets: Union[None, torch.Tensor, Tuple[torch.Tensor, torch.Tensor]] = None,
                teacher: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                alpha: float = 0.0) -> Dict[str, torch.Tensor]:
        """
        Args:
            image_feat: ``[B, D]`` L2-normalised image features of this rank (``[B, Q,
                D]`` with ``similarity='max_query'``); row ``i`` pairs with
                ``text_feat[i]``.
            text_feat: ``[B, D]`` L2-normalised text features.
            columns: optional ``(image_cols, text_cols)`` replacing the all-gathered
                features: ``text_feat`` is scored against ``image_cols`` and
                ``image_feat`` against ``text_cols`` (``[M, D]`` each, or a sequence of
                column blocks such as ``[feat_m, queue]``, scored block by block without
                concatenating), the positive of row ``i`` at column ``i`` (ALBEF / BLIP:
                the momentum features of this rank, then the queue). No gather then.
            targets: optional soft targets (rows sum to 1) of the shape of the logits
                (``[B, M]``; ``[B, W B]`` with ``local_loss``, else ``[W B, W B]``)
                replacing the one-hot targets: one tensor for both directions, or
                ``(targets_i2t, targets_t2i)``.
            teacher / alpha: momentum distillation (ALBEF Sec. 3.3; needs ``columns``):
                the momentum features ``(image_feat_m, text_feat_m)`` ``[B, D]``, scored
                against the same columns under the current (detached) scale; their
                similarity distribution is mixed into the targets with weight ``alpha``
                (:func:`~vlp.models.losses.distill.mix_soft_targets`).

        Returns:
            ``{loss_name: loss, 'logit_scale': scale}``.
        """
        scale = self.get_logit_scale()
        B = image_feat.shape[0]
        img, txt = _upcast(image_feat), _upcast(text_feat)
        t_i2t, t_t2i = targets if isinstance(targets, (tuple, list)) else (targets, targets)
        distill = alpha > 0 and teacher is not None
        if distill and columns is None:
            raise ValueError('momentum distillation (teacher, alpha) needs columns')
        if columns is not None:
            if self.similarity != 'dot':
                raise ValueError(f'columns need similarity="dot", not {self.similarity!r}')
            image_cols, text_cols = columns
            logits_i2t = _scores(scale * img, text_cols)  # (B, M)
            logits_t2i = _scores(scale * txt, image_cols)  # (B, M)
            labels = torch.arange(B, device=img.device)
            if distill:
                with torch.no_grad():
                    s = scale.detach()
                    onehot = F.one_hot(labels, logits_i2t.shape[1]).to(logits_i2t.dtype)
                    hard_i2t = onehot if t_i2t is None else t_i2t.to(onehot)
                    hard_t2i = onehot if t_t2i is None else t_t2i.to(onehot)
                    t_i2t = mix_soft_targets(
                        hard_i2t, _scores(s * _upcast(teacher[0]), text_cols), alpha)
                    t_t2i = mix_soft_targets(
                        hard_t2i, _scores(s * _upcast(teacher[1]), image_cols), alpha)
        else:
            logits_i2t, logits_t2i, labels = self._gathered_logits(img, txt, scale)
        loss = 0.5 * (self._ce(logits_i2t, labels, t_i2t)
                      + self._ce(logits_t2i, labels, t_t2i))
        return {self.loss_name: loss, 'logit_scale': scale.detach()}


def momentum_contrastive_loss(itc: ContrastiveLoss, image_feat: torch.Tensor,
                              text_feat: torch.Tensor, image_feat_m: torch.Tensor,
                              text_feat_m: torch.Tensor, queue=None,
                              image_ids: Optional[torch.Tensor] = None, alpha: float = 0.0,
                              stage: bool = False) -> Dict[str, torch.Tensor]:
    """ALBEF's / BLIP's ITC (ALBEF Sec. 3.2-3.3) through ``itc``: this rank's features
    against the momentum features ``*_feat_m [B, D]`` of the batch followed by the rows of
    ``queue`` (a :class:`~vlp.models.utils.feature_queue.FeatureQueue`, read in place) or,
    without a queue, against the momentum features of every rank. With ``image_ids [B]``
    the samples of the same image are positives of each other (targets uniform over them;
    the queue then holds ids too). ``alpha``: momentum distillation. ``stage``: hold this
    step's momentum features (and ids) for the queue's commit after the step."""
    B = image_feat.shape[0]
    with torch.no_grad():
        if queue is None:  # negatives: momentum features of every rank
            img_cols = all_gather_features(image_feat_m.detach(), with_grad=False)
            txt_cols = all_gather_features(text_feat_m.detach(), with_grad=False)
            cols_ids = (all_gather_features(image_ids.detach(), with_grad=False)
                        if image_ids is not None else None)
            offset = get_rank() * B
        else:  # this rank's momentum features, then the queue, as two column blocks
            img_cols = [image_feat_m, queue.rows('image').to(image_feat_m)]
            txt_cols = [text_feat_m, queue.rows('text').to(text_feat_m)]
            cols_ids = (torch.cat([image_ids, queue.rows('idx').to(image_ids)])
                        if image_ids is not None else None)
            offset = 0
        n_cols = (img_cols.shape[0] if torch.is_tensor(img_cols)
                  else sum(c.shape[0] for c in img_cols))
        pos = positive_mask(image_ids, cols_ids, B, n_cols, offset, image_feat.device).float()
        targets = pos / pos.sum(dim=1, keepdim=True)  # (B, M)
    out = itc(image_feat, text_feat, columns=(img_cols, txt_cols), targets=targets,
              teacher=(image_feat_m, text_feat_m), alpha=alpha)
    if stage and queue is not None:
        rows = dict(image=image_feat_m, text=text_feat_m)
        if image_ids is not None:
            rows['idx'] = image_ids
        queue.stage(**rows)
    return out


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
