# parts register themselves in vlp.registry.MODELS on import
from . import contrastive  # noqa: F401
