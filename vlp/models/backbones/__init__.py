# parts register themselves in vlp.registry.MODELS on import
from . import bert, text_transformer  # noqa: F401
from . import timm_tower  # noqa: F401
from . import hf_lm  # noqa: F401
from . import multiway, visual_tokenizers  # noqa: F401
from . import beit3  # noqa: F401
