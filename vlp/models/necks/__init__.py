# parts register themselves in vlp.registry.MODELS on import
from . import projection  # noqa: F401
from . import attentional_pooler  # noqa: F401
from . import qformer  # noqa: F401
