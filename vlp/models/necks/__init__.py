# parts register themselves in vlp.registry.MODELS on import
from . import projection  # noqa: F401
