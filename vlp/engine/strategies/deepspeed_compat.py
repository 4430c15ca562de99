"""Work-arounds for two incompatibilities of the pinned stack (mmengine 0.10.7,
DeepSpeed 0.19.8), applied once when :mod:`vlp.engine.strategies` is imported, after
:func:`check_versions`: a patched method that is gone or takes other arguments is an error
naming it; other installed versions than the checked ones give a warning.

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
    method.__wrapped_original__ = original
    method.__doc__ = original.__doc__
    setattr(cls, name, method)


# the versions these patches were written against and tested with (requirements/constraints.txt)
CHECKED = {'deepspeed': '0.19.8', 'mmengine': '0.10.7'}
# the private methods patched, with the arguments the wrappers read
_PATCHED = [(DeepSpeedEngine, '_broadcast_model', ['self']),
            (DeepSpeedEngine, 'clip_fp32_gradients', ['self']),
            (Init, '_zero_init_param', ['self', 'param']),
            (GatheredParameters, '__exit__', ['self'])]


def check_versions() -> List[str]:
    """Problems that make a patch unsafe (a patched method is gone or takes other
    arguments: raised by :func:`apply`), and a warning when the installed versions are not
    the ones checked (the patches may be unnecessary or insufficient there)."""
    import inspect
    import warnings

    import deepspeed
    import mmengine
    problems = []
    for cls, name, args in _PATCHED:
        fn = getattr(cls, name, None)
        fn = getattr(fn, '__wrapped_original__', fn)
        if fn is None:
            problems.append(f'{cls.__module__}.{cls.__name__}.{name} no longer exists')
            continue
        params = list(inspect.signature(fn).parameters)
        if params[:len(args)] != args:
            problems.append(f'{cls.__name__}.{name} takes {params}, the patch expects {args}')
    if not hasattr(mm_deepspeed, 'register_deepspeed_optimizers'):
        problems.append('mmengine._strategy.deepspeed.register_deepspeed_optimizers is gone')
    installed = {'deepspeed': deepspeed.__version__, 'mmengine': mmengine.__version__}
    moved = {k: v for k, v in installed.items() if v != CHECKED[k]}
    if moved and not problems:
        warnings.warn(
            f'vlp/engine/strategies/deepspeed_compat.py patches private methods checked with '
            f'{CHECKED}; installed {moved}: the patches still apply (the methods exist with '
            'the expected arguments) but may be unneeded or insufficient there; the lock '
            '(requirements/constraints.txt) pins the checked versions', stacklevel=2)
    return problems


def apply() -> None:
    problems = check_versions()
    if problems:
        raise RuntimeError('vlp cannot patch this DeepSpeed / mmengine (checked: '
                           f'{CHECKED}): ' + '; '.join(problems) + '. Install the locked '
                           'versions (README install command) or update deepspeed_compat.py.')
    mm_deepspeed.register_deepspeed_optimizers = register_deepspeed_optimizers
    module_params = lambda self, *args: list(self.module.parameters())  # noqa: E731
    for cls, name, _ in _PATCHED[:2]:
        _wrap(cls, name, module_params)
    _wrap(Init, '_zero_init_param', lambda self, param: [param])
    _wrap(GatheredParameters, '__exit__',
          lambda self, *exc: list(self.params) if self.enabled else [])


apply()
