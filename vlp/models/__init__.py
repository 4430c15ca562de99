"""Importing this package registers every model part in ``vlp.registry.MODELS``."""
from . import algorithms, backbones, fusion, heads, layers, losses, necks, utils  # noqa: F401
