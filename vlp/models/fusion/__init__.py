# parts register themselves in vlp.registry.MODELS on import
from . import decoder  # noqa: F401
from . import single_stream  # noqa: F401
