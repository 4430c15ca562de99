# parts register themselves in vlp.registry.MODELS on import
from .vl_heads import ITMHead, MLMHead

__all__ = ['ITMHead', 'MLMHead']
