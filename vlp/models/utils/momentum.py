"""Momentum ("teacher") twins of modules, updated as an exponential moving average.

ALBEF (Li et al. 2021, Sec. 3.3) and BLIP (Li et al. 2022) keep a momentum copy of each
unimodal encoder (and of ALBEF's fusion encoder) whose parameters follow
``theta_m <- m * theta_m + (1 - m) * theta`` (m = 0.995) after every optimizer step; the
copy computes the features of the queue and the soft targets of momentum distillation.

An algorithm lists its twins through ``momentum_pairs()`` -> ``[(online, momentum), ...]``;
:class:`~vlp.engine.hooks.MomentumUpdateHook` calls :func:`ema_update` on them. Parameters
shared between modules (ALBEF's MLM decoder tied to the word embeddings) are updated once.

Under DeepSpeed ZeRO-3 every parameter, the twins' included, is partitioned across ranks:
each rank then updates its own partition in place (an online parameter and its twin have
the same number of elements, hence the same partition layout), with no communication.
"""
import copy
from typing import Iterable, List, Sequence, Tuple

import torch
import torch.nn as nn

ModulePair = Tuple[nn.Module, nn.Module]


def make_momentum_twins(*modules: nn.Module) -> List[nn.Module]:
    """Deep copies of ``modules`` made together (so parameters tied across them stay
    tied in the copies), with ``requires_grad=False``. ``None`` entries stay ``None``."""
    present = [m for m in modules if m is not None]
    twins = iter(copy.deepcopy(nn.ModuleList(present)))
    out = []
    for m in modules:
        if m is None:
            out.append(None)
            continue
        twin = next(twins)
        for p in twin.parameters():
            p.requires_grad_(False)
        out.append(twin)
    return out


def _param_pairs(pairs: Sequence[ModulePair]) -> List[Tuple[nn.Parameter, nn.Parameter]]:
    out, seen = [], set()
    for online, momentum in pairs:
        p_online = list(online.parameters())
        p_mom = list(momentum.parameters())
        if len(p_online) != len(p_mom):
            raise ValueError(f'momentum twin of {type(online).__name__} has {len(p_mom)} '
                             f'parameters, the online module {len(p_online)}')
        for p, q in zip(p_online, p_mom):
            if id(q) in seen:
                continue  # a parameter tied across modules: update it once
            seen.add(id(q))
            out.append((p, q))
    return out


def _zero3_partitions(p: torch.Tensor, q: torch.Tensor):
    """The local ZeRO-3 partitions of ``p`` and ``q`` (None when not partitioned)."""
    if hasattr(p, 'ds_tensor') and hasattr(q, 'ds_tensor'):
        if p.ds_numel != q.ds_numel:
            raise ValueError('ZeRO-3 partitions of a parameter and its momentum twin differ')
        return p.ds_tensor, q.ds_tensor
    return None


@torch.no_grad()
def copy_params(pairs: Sequence[ModulePair]) -> None:
    """``theta_m <- theta`` for every pair (the twins' initialisation)."""
    for p, q in _param_pairs(pairs):
        parts = _zero3_partitions(p, q)
        if parts is not None:
            parts[1].copy_(parts[0])
        else:
            q.copy_(p)


@torch.no_grad()
def ema_update(pairs: Sequence[ModulePair], momentum: float) -> None:
    """``theta_m <- momentum * theta_m + (1 - momentum) * theta`` for every pair.

    Computed in float32 and written back in the twin's dtype. A twin held in bfloat16
    (DeepSpeed ``bf16`` casts the whole module) loses updates smaller than its precision
    (``1 - m = 0.005`` of a small difference often rounds away): keep momentum models
    in float32 (torch AMP keeps fp32 weights) where this matters.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f'momentum must be in [0, 1], got {momentum}')
    for p, q in _param_pairs(pairs):
        parts = _zero3_partitions(p, q)
        src, dst = parts if parts is not None else (p, q)
        if dst.dtype == torch.float32 and src.dtype == torch.float32:
            dst.mul_(momentum).add_(src, alpha=1.0 - momentum)
        else:
            new = dst.float().mul_(momentum).add_(src.float(), alpha=1.0 - momentum)
            dst.copy_(new.to(dst.dtype))


def iter_momentum_params(pairs: Iterable[ModulePair]):
    """``(online, twin)`` parameter pairs, tied parameters once (for tests and tools)."""
    return _param_pairs(list(pairs))
