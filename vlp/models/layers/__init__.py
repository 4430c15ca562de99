from .attention import Attention, Mlp, QuickGELU, build_activation

__all__ = ['Attention', 'Mlp', 'QuickGELU', 'build_activation']
from .transformer import TransformerBlock, add_causal, build_attn_mask, maybe_checkpoint  # noqa: F401,E501
