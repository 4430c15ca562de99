"""An outside package that adds parts to vlp without touching vlp.

Everything registers into vlp's registries; a config loads this package with
``custom_imports = dict(imports=['vlp_example_plugin'], allow_failed_imports=False)``.
"""
from .parts import (ConvTower, CosineMarginLoss, LossSpikeHook, MeanPoolNeck,
                    NoiseImageText, ScaledDotHead)

__all__ = ['ConvTower', 'MeanPoolNeck', 'ScaledDotHead', 'CosineMarginLoss',
           'NoiseImageText', 'LossSpikeHook']
