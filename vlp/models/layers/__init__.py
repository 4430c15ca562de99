from .attention import Attention, DecodingCache, Mlp, QuickGELU, build_activation

__all__ = ['Attention', 'DecodingCache', 'Mlp', 'QuickGELU', 'build_activation']
from .transformer import TransformerBlock, add_causal, build_attn_mask, maybe_checkpoint  # noqa: F401,E501
