from .attention import Attention, Mlp, QuickGELU, build_activation

__all__ = ['Attention', 'Mlp', 'QuickGELU', 'build_activation']
