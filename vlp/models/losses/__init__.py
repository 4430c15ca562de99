# parts register themselves in vlp.registry.MODELS on import
from . import contrastive  # noqa: F401
from . import captioning  # noqa: F401
from . import wpa  # noqa: F401
from .matching import hard_negative_weights, itm_loss, sample_hard_negatives
from .mlm import masked_token_loss

__all__ = ['hard_negative_weights', 'itm_loss', 'sample_hard_negatives', 'masked_token_loss']
