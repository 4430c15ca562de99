"""Adafactor with momentum, the optimizer of Google's image-text models (CoCa, Yu et al.
2022, Sec. 4.1: "Adafactor with beta1 = 0.9, beta2 = 0.999 and decoupled weight decay"),
registered from timm (``timm.optim.AdafactorBigVision``, a port of big_vision's
``scale_by_factored_rms`` + momentum; not re-implemented here).

``lr`` is the step size itself (no relative step); ``beta2_cap`` (0.999) bounds the
second-moment decay ``1 - t ** -decay_rate``; ``momentum`` is beta1 (0.9); ``weight_decay``
is decoupled and multiplied by the current lr (``unscaled_wd=True``: not multiplied).
"""
from timm.optim import AdafactorBigVision

from vlp.registry import OPTIMIZERS

OPTIMIZERS.register_module(name='AdafactorBigVision', module=AdafactorBigVision)
