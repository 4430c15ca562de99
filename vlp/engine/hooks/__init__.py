"""Engine hooks; importing this package registers them in ``vlp.registry.HOOKS``."""
from .rng_state import RNGStateHook  # noqa: F401
from .zero_shot import ZeroShotClassifierHook  # noqa: F401
from .momentum import (DistillAlphaHook, FeatureQueueHook, ITMNegativeWarmupHook,  # noqa: F401
                       MomentumUpdateHook)
from .stagewise import StagewiseFreezeHook  # noqa: F401
from .data_skips import DataSkipReportHook  # noqa: F401
from .compile import CompileHook  # noqa: F401
from .logger import LoggerHook  # noqa: F401
from .checkpoint import CheckpointHook  # noqa: F401
from ..summary import RunSummaryHook  # noqa: F401
