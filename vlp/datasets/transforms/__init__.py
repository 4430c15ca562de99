"""Data transforms (registered in ``vlp.registry.TRANSFORMS``): callables taking and
returning a results dict, composed by mmengine's ``Compose``."""
from .loading import LoadImage
from .processing import (CenterCrop, RandAugment, RandomHorizontalFlip, RandomResizedCrop,
                         Resize, ToTensor)
from .text import CleanCaption, SetText, Tokenize, pre_caption

__all__ = ['LoadImage', 'Resize', 'CenterCrop', 'RandomResizedCrop', 'RandomHorizontalFlip',
           'RandAugment', 'ToTensor', 'Tokenize', 'CleanCaption', 'SetText', 'pre_caption']
