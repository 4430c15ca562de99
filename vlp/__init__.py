"""vlp: vision-language pretraining in the OpenMMLab style."""
from .version import __version__

__all__ = ['__version__']
