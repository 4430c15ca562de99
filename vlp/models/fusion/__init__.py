# parts register themselves in vlp.registry.MODELS on import
from . import decoder  # noqa: F401
