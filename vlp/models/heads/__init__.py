# parts register themselves in vlp.registry.MODELS on import
from .task_heads import ClassifierHead
from .vl_heads import ITMHead, MIMHead, MLMHead

__all__ = ['ClassifierHead', 'ITMHead', 'MIMHead', 'MLMHead']
