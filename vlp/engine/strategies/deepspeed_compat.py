"""Work-arounds for two incompatibilities of the pinned stack (mmengine 0.10.7,
DeepSpeed 0.19), applied once when :mod:`vlp.engine.strategies` is imported.

1. mmengine's ``register_deepspeed_optimizers`` imports DeepSpeed's 1-bit optimizers,
   which DeepSpeed >= 0.16 no longer ships, so building mmengine's strategy fails; it is
   replaced by :func:`register_deepspeed_optimizers`, which registers what exists.
2. DeepSpeed broadcasts parameters as ``p.data.view(torch.uint8)``, which raises
   ("self.dim() cannot be 0 to view Float as Byte") for 0-dim parameters such as CLIP's
   ``logit_scale``: in the engine's initial broadcast (all stages), in ZeRO-3's parameter
   conversion, and when ``GatheredParameters(..., modifier_rank=r)`` exits; and its
   fp32 gradient clipping (ZeRO stage 0) multiplies every gradient in place by a ``(1,)``
   tensor, which fails for 0-dim gradients. Around those four methods, 0-dim parameters
   (and gradients) get a 1-element shape on the same storage; ZeRO-3 keeps recording
   their true (0-dim) shape, so the model always sees them as scalars.
"""
import importlib
from contextlib import contextmanager
from typing import Iterable, List

import mmengine._strategy.deepspeed as mm_deepspeed
import torch
from deepspeed.runtime.engine import DeepSpeedEngine
from deepspeed.runtime.zero.partition_parameters import GatheredParameters, Init
from mmengine.registry import OPTIMIZERS

_DEEPSPEED_OPTIMIZERS = {
    'DeepSpeedCPUAdam': 'deepspeed.ops.adam',
    'FusedAdam': 'deepspeed.ops.adam',
    'FusedLamb': 'deepspeed.ops.lamb',
    'OnebitAdam': 'deepspeed.runtime.fp16.onebit',  # removed in DeepSpeed 0.16
    'OnebitLamb': 'deepspeed.runtime.fp16.onebit',
    'ZeroOneAdam': 'deepspeed.runtime.fp16.onebit',
}


def register_deepspeed_optimizers() -> List[str]:
    """Register the DeepSpeed optimizers this DeepSpeed has in mmengine's OPTIMIZERS."""
    names = []
    for name, module in _DEEPSPEED_OPTIMIZERS.items():
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if OPTIMIZERS.get(name) is None:
            OPTIMIZERS.register_module(module=cls)
        names.append(name)
    return names


@contextmanager
def scalars_as_vectors(params: Iterable[torch.nn.Parameter]):
    """Give 0-dim parameters (and their gradients) a ``(1,)`` shape, on the same storage,
    inside the block."""
    scalars = [p for p in params if p.dim() == 0]
    for p in scalars:
        p.data = p.data.reshape(1)
        if p.grad is not None:
            p.grad = p.grad.reshape(1)
    try:
        yield scalars
    finally:
        for p in scalars:
            if hasattr(p, 'ds_shape'):
                p.ds_shape = torch.Size([])  # ZeRO-3 gathers into ds_shape
            if p.numel() == 1:  # still materialised (not partitioned away)
                p.data = p.data.reshape(())
            if p.grad is not None and p.grad.numel() == 1:
                p.grad = p.grad.reshape(())


def _wrap(cls, name: str, params_of) -> None:
    original = getattr(cls, name)
    if getattr(original, '_vlp_scalar_safe', False):
        return

    def method(self, *args, **kwargs):
        with scalars_as_vectors(params_of(self, *args)):
            return original(self, *args, **kwargs)

    method._vlp_scalar_safe = True
    method.__doc__ = original.__doc__
    setattr(cls, name, method)


def apply() -> None:
    mm_deepspeed.register_deepspeed_optimizers = register_deepspeed_optimizers
    module_params = lambda self, *args: list(self.module.parameters())  # noqa: E731
    _wrap(DeepSpeedEngine, '_broadcast_model', module_params)
    _wrap(DeepSpeedEngine, 'clip_fp32_gradients', module_params)
    _wrap(Init, '_zero_init_param', lambda self, param: [param])
    _wrap(GatheredParameters, '__exit__',
          lambda self, *exc: list(self.params) if self.enabled else [])


apply()
