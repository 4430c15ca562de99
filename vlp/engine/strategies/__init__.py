"""Training strategies for mmengine's FlexibleRunner; importing registers them."""
from .deepspeed import DeepSpeedStrategy, VLPDeepSpeedEngineWrapper  # noqa: F401
