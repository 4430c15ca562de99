"""AmpOptimWrapper that also runs on CPU (bfloat16 autocast).

mmengine's ``AmpOptimWrapper`` asserts a GPU/NPU/MLU/MUSA device. On those devices this
class *is* mmengine's (same loss scaling, same ``dtype`` handling). On a CPU it runs the
forward under ``torch.autocast('cpu', dtype=torch.bfloat16)`` with fp32 master weights
and no loss scaling (bfloat16 has fp32's exponent range, so gradients do not underflow);
float16 on CPU is refused with a clear error. Registered in vlp's ``OPTIM_WRAPPERS`` under
mmengine's name, so ``optim_wrapper=dict(type='AmpOptimWrapper', ...)`` with
``default_scope='vlp'`` (what ``tools/train.py --amp`` writes) works on every device.
"""
from typing import Union

import torch
from mmengine.device import (is_cuda_available, is_mlu_available, is_musa_available,
                             is_npu_available)
from mmengine.optim import AmpOptimWrapper as MMAmpOptimWrapper
from mmengine.optim import OptimWrapper

from vlp.registry import OPTIM_WRAPPERS
from .nonfinite import DEFAULT as NONFINITE_DEFAULT
from .nonfinite import GuardedStep


def accelerator_available() -> bool:
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


@OPTIM_WRAPPERS.register_module(name='AmpOptimWrapper')
class AmpOptimWrapper(GuardedStep, MMAmpOptimWrapper):
    """mmengine's AMP wrapper on accelerators; bfloat16 autocast on CPU; the non-finite
    guard of :mod:`vlp.engine.optim.nonfinite` (``nonfinite=None`` turns it off).

    Args:
        loss_scale: as mmengine's (ignored on CPU: bfloat16 needs no loss scaling).
        dtype: autocast dtype; on CPU ``None`` means ``bfloat16`` and anything else but
            ``bfloat16`` raises.
        use_fsdp: as mmengine's.
        kwargs: :class:`~mmengine.optim.OptimWrapper` arguments (``optimizer``,
            ``clip_grad``, ``accumulative_counts``).
    """

    def __init__(self, loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype, None] = None, use_fsdp: bool = False,
                 nonfinite=NONFINITE_DEFAULT, **kwargs):
        self._setup_guard(nonfinite)
        if accelerator_available():
            super().__init__(loss_scale=loss_scale, dtype=dtype, use_fsdp=use_fsdp, **kwargs)
            return
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, dtype)
        if dtype not in (None, torch.bfloat16):
            raise ValueError(
                f'AMP on CPU supports bfloat16 only (torch.autocast("cpu")), got dtype={dtype}; '
                'use dtype="bfloat16" or train on a GPU for float16')
        # mmengine's __init__ asserts an accelerator; its methods (backward, step,
        # state_dict, optim_context) only need the OptimWrapper state plus the three
        # attributes set below, so the CPU branch initialises OptimWrapper directly.
        OptimWrapper.__init__(self, **kwargs)
        self._scale_update_param = None
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)  # identity scaler
        self.cast_dtype = torch.bfloat16
