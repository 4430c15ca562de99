# parts register themselves in vlp.registry.MODELS on import
from .vl_heads import ITMHead, MIMHead, MLMHead

__all__ = ['ITMHead', 'MIMHead', 'MLMHead']
