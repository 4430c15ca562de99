# parts register themselves in vlp.registry.MODELS on import
from . import contrastive  # noqa: F401
from . import captioning  # noqa: F401
from . import wpa  # noqa: F401
from . import matching, mim  # noqa: F401
from .distill import DistillationSchedule, distilled_cross_entropy, mix_soft_targets
from .matching import ITMLoss, hard_negative_weights, itm_loss, sample_hard_negatives
from .mlm import masked_token_loss

__all__ = ['DistillationSchedule', 'ITMLoss', 'distilled_cross_entropy', 'hard_negative_weights',
           'itm_loss', 'masked_token_loss', 'mix_soft_targets', 'sample_hard_negatives']
