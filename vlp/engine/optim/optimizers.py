"""Optimizers the papers use that torch lacks, registered from timm (not re-implemented).

- ``Lamb`` (You et al. 2020): ALIGN's optimizer (``timm.optim.Lamb``).
- ``LARS``: timm's ``Lars``, for large-batch vision recipes.
"""
from timm.optim import Lamb, Lars

from vlp.registry import OPTIMIZERS

OPTIMIZERS.register_module(name='Lamb', module=Lamb)
OPTIMIZERS.register_module(name='LARS', module=Lars)
