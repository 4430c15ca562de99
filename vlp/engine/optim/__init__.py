"""Optimizer wrappers and constructors; importing registers them in vlp's registries."""
from .amp import AmpOptimWrapper  # noqa: F401
from .nonfinite import DeepSpeedOptimWrapper, NonFiniteError, OptimWrapper  # noqa: F401
from . import optimizers  # noqa: F401,E402
from . import adafactor  # noqa: F401,E402
from . import schedulers  # noqa: F401,E402
