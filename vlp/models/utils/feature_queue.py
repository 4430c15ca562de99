"""A MoCo-style feature queue (He et al. 2020) as used by ALBEF (Li et al. 2021) and BLIP
(Li et al. 2022): a fixed-size ring buffer of the momentum encoders' features from past
steps, gathered from every rank, that supply extra ITC negatives.

The queue lives in module buffers (``<name>_queue [K, D]`` per feature, ``ptr``), so it is
saved in checkpoints, restored on resume and, since every rank enqueues the same
all-gathered rows, identical on every rank. The model *stages* the rows of the current
step (:meth:`FeatureQueue.stage`, no gradients); :class:`~vlp.engine.hooks.FeatureQueueHook`
*commits* them after the optimizer step (:meth:`FeatureQueue.commit`), exactly where
ALBEF's ``_dequeue_and_enqueue`` runs (after the loss of the step). A step staged twice
without a commit (the hook is missing) raises.

Unlike ALBEF's reference code, the queue size need not be a multiple of the global batch:
a write that runs past the end wraps around to the start.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlp.registry import MODELS
from ..losses.contrastive import all_gather_features


def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` of every rank concatenated in rank order, without gradient."""
    return all_gather_features(x.detach(), with_grad=False)


@MODELS.register_module()
class FeatureQueue(nn.Module):
    """Ring buffer of features (and optional integer ids) from past steps.

    Args:
        size: number of rows ``K`` (ALBEF / BLIP: 65,536 for pretraining, 57,600 for COCO
            retrieval fine-tuning).
        dims: ``{name: D}`` of the float features held (``dict(image=256, text=256)``);
            they start as random unit vectors (as ALBEF's ``normalize(randn)``).
        id_names: names of integer rows also held (``('idx',)``: image ids, so that a
            caption of the same image in the queue counts as a positive); they start at
            ``-1`` (matches nothing).
        init: ``'random'`` (ALBEF / BLIP / MoCo): every row starts as a random unit vector
            and is a negative from the first step. ``'empty'``: rows not written yet are not
            negatives (:meth:`rows` returns only the written ones) -- for training from
            scratch, where the random rows carry no information (not in the papers).

    Buffers: ``{name}_queue [K, D]``, ``{id}_queue [K]`` (long), ``ptr`` (long, 0-dim) and
    ``filled`` (long: rows written so far, capped at ``K``).
    """

    def __init__(self, size: int, dims: Dict[str, int], id_names: Sequence[str] = (),
                 init: str = 'random'):
        super().__init__()
        if size <= 0:
            raise ValueError(f'queue size must be positive, got {size}')
        if init not in ('random', 'empty'):
            raise ValueError(f"init must be 'random' or 'empty', got {init!r}")
        self.init = init
        if not dims:
            raise ValueError('a FeatureQueue needs at least one feature name in dims')
        self.size = int(size)
        self.feature_names = tuple(dims)
        self.id_names = tuple(id_names)
        for name, dim in dims.items():
            self.register_buffer(f'{name}_queue', F.normalize(torch.randn(size, dim), dim=1))
        for name in self.id_names:
            self.register_buffer(f'{name}_queue', torch.full((size,), -1, dtype=torch.long))
        self.register_buffer('ptr', torch.zeros((), dtype=torch.long))
        self.register_buffer('filled', torch.zeros((), dtype=torch.long))
        self._staged: Optional[Dict[str, torch.Tensor]] = None

    def get(self, name: str) -> torch.Tensor:
        """The ``[K, D]`` (or ``[K]``) buffer of ``name`` (a copy, detached: the queue is
        written in place after the step)."""
        return getattr(self, f'{name}_queue').clone().detach()

    def rows(self, name: str) -> torch.Tensor:
        """The rows of ``name`` that serve as negatives: all ``K`` with ``init='random'``;
        with ``init='empty'`` only the ``filled`` rows written so far (rows ``[0, filled)``:
        writes start at row 0 and are contiguous until the buffer is full).

        A detached view of the buffer, not a copy: read it within the step (the loss
        and its backward); :meth:`commit` writes the buffer in place after the step."""
        value = getattr(self, f'{name}_queue').detach()
        if self.init == 'empty':
            value = value[:int(self.filled)]
        return value

    @property
    def has_staged(self) -> bool:
        return self._staged is not None

    def stage(self, **rows: torch.Tensor) -> None:
        """Hold this rank's rows of the current step (every name of the queue, ``[B, D]``
        / ``[B]``) until :meth:`commit`."""
        if self._staged is not None:
            raise RuntimeError(
                'FeatureQueue: the previous step staged features that were never enqueued. '
                "Add dict(type='FeatureQueueHook') to custom_hooks (it commits the staged "
                'features after each training step).')
        expected = set(self.feature_names) | set(self.id_names)
        if set(rows) != expected:
            raise KeyError(f'FeatureQueue.stage needs {sorted(expected)}, got {sorted(rows)}')
        sizes = {v.shape[0] for v in rows.values()}
        if len(sizes) != 1:
            raise ValueError(f'staged rows disagree in batch size: {sizes}')
        self._staged = {k: v.detach() for k, v in rows.items()}

    def discard(self) -> None:
        """Drop staged rows (e.g. rows staged outside training)."""
        self._staged = None

    @torch.no_grad()
    def commit(self) -> int:
        """All-gather the staged rows of every rank (in rank order) and write them at
        ``ptr``, wrapping around the end. Every rank must call it. Returns the number of
        rows written (0 when nothing was staged on any rank)."""
        staged = self._staged
        self._staged = None
        if staged is None:
            return 0
        gathered = {k: concat_all_gather(v) for k, v in staged.items()}
        return self.enqueue(**gathered)

    @torch.no_grad()
    def enqueue(self, **rows: torch.Tensor) -> int:
        """Write already-gathered rows at ``ptr`` (ring buffer). More rows than ``K`` keep
        only the last ``K``. Returns the number of rows given."""
        n = next(iter(rows.values())).shape[0]
        keep = min(n, self.size)
        ptr = int(self.ptr)
        first = min(keep, self.size - ptr)  # rows before the wrap
        for name, value in rows.items():
            buf = getattr(self, f'{name}_queue')
            value = value[n - keep:].to(buf.device, buf.dtype)
            buf[ptr:ptr + first] = value[:first]
            if keep > first:
                buf[:keep - first] = value[first:]
        self.ptr.fill_((ptr + keep) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + keep))
        return n

    def extra_repr(self) -> str:
        return (f'size={self.size}, features={self.feature_names}, ids={self.id_names}, '
                f'init={self.init!r}')


def itc_queue(size: int, dim: int, image_ids: bool = False,
              init: str = 'random') -> Optional[FeatureQueue]:
    """The ITC queue of ALBEF / BLIP: ``image`` and ``text`` features of width ``dim`` (and
    image ids ``idx`` with ``image_ids``); ``None`` when ``size`` is 0."""
    if size <= 0:
        return None
    return FeatureQueue(size, dict(image=dim, text=dim), id_names=('idx',) if image_ids else (),
                        init=init)
