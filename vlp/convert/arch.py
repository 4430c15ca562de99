"""Architecture facts both ways: a reference config's sizes <-> vlp part configs.

The import direction reads a reference config (HF / open_clip) into vlp part configs; the
export direction reads a vlp model config back into the sizes a reference config needs:
:func:`part_args` (a part's constructor arguments, defaults filled in) and
:func:`vit_arch` (a ``TimmTower`` ViT, built on the meta device and read off its modules,
since timm's entry points hold defaults a config leaves out).
"""
import copy
import inspect
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Tuple, Union

import torch

# reference activation names -> vlp / timm names (exact equivalents only)
ACTIVATIONS = {
    'quick_gelu': 'quick_gelu',
    'gelu': 'gelu',  # exact (erf) GELU: HF 'gelu', torch nn.GELU()
    'gelu_pytorch_tanh': 'gelu_tanh',
    'gelu_new': 'gelu_tanh',  # HF's tanh approximation, same formula as nn.GELU('tanh')
    'relu': 'relu',
    'silu': 'silu',
}
# vlp / timm activation names -> HF ``hidden_act``
HF_ACTIVATIONS = {'quick_gelu': 'quick_gelu', 'gelu': 'gelu', 'gelu_tanh': 'gelu_pytorch_tanh',
                  'relu': 'relu', 'silu': 'silu'}


def map_activation(name: str, allowed: Sequence[str] = ('quick_gelu', 'gelu', 'gelu_new',
                                                        'gelu_pytorch_tanh')) -> str:
    """Reference activation name -> vlp/timm name; ``NotImplementedError`` otherwise."""
    if name not in allowed or name not in ACTIVATIONS:
        raise NotImplementedError(f'activation {name!r} has no exact vlp equivalent '
                                  f'(supported: {sorted(allowed)})')
    return ACTIVATIONS[name]


def hf_activation(name: str) -> str:
    """vlp activation name -> HF ``hidden_act``."""
    if name not in HF_ACTIVATIONS:
        raise NotImplementedError(f'activation {name!r} has no HF equivalent')
    return HF_ACTIVATIONS[name]


def mlp_ratio_of(width: int, hidden: int) -> float:
    """The ``mlp_ratio`` giving exactly ``hidden`` (timm and vlp use ``int(width * r)``)."""
    ratio = hidden / width
    if int(width * ratio) != hidden:
        raise NotImplementedError(f'MLP width {hidden} is not int({width} * r) for r = {ratio}')
    return ratio


def square(value: Union[int, Sequence[int]], what: str) -> int:
    """One side of a square size (``NotImplementedError`` for a non-square one)."""
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise NotImplementedError(f'non-square {what} {tuple(value)}')
        value = value[0]
    return int(value)


def require(cfg: Optional[Mapping], type_: Union[str, Tuple[str, ...]], what: str) -> dict:
    """``cfg`` if its ``type`` is one of ``type_`` (``NotImplementedError`` otherwise)."""
    types = (type_, ) if isinstance(type_, str) else type_
    if cfg is None or cfg.get('type') not in types:
        got = None if cfg is None else cfg.get('type')
        raise NotImplementedError(f'{what} must be {" or ".join(types)} to be exported, '
                                  f'got {got!r}')
    return dict(cfg)


def part_args(cfg: Mapping) -> dict:
    """A vlp part config with its class's defaults filled in (``type`` dropped)."""
    import vlp.models  # noqa: F401  (registers the parts)
    from vlp.registry import MODELS
    cls = MODELS.get(cfg['type'])
    if cls is None:
        raise KeyError(f'{cfg["type"]} is not a registered vlp part')
    out = {}
    for klass in reversed(cls.__mro__):  # subclasses' defaults win
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        for name, p in inspect.signature(init).parameters.items():
            if p.default is not inspect.Parameter.empty:
                out[name] = p.default
    out.update({k: v for k, v in cfg.items() if k != 'type'})
    return out


@dataclass
class ViTArch:
    """Sizes of a timm ``VisionTransformer`` with a class token, read off the model."""
    width: int
    depth: int
    heads: int
    mlp_hidden: int
    act: str  # vlp / timm name
    eps: float
    img_size: int
    patch_size: int
    pre_norm: bool  # norm_pre (CLIP's ln_pre; implies a bias-free patch embedding)
    patch_bias: bool
    final_norm: bool
    in_chans: int = 3

    @property
    def mlp_ratio(self) -> float:
        return mlp_ratio_of(self.width, self.mlp_hidden)


def _act_name(act: torch.nn.Module) -> str:
    name = type(act).__name__
    approx = getattr(act, 'approximate', 'none')
    if name == 'QuickGELU':
        return 'quick_gelu'
    if name == 'GELUTanh' or (name == 'GELU' and approx == 'tanh'):
        return 'gelu_tanh'
    if name == 'GELU':
        return 'gelu'
    raise NotImplementedError(f'ViT activation {name} has no reference equivalent')


def vit_arch(tower_cfg: Mapping) -> ViTArch:
    """:class:`ViTArch` of a ``TimmTower`` config (built on the meta device, no weights
    loaded). ``NotImplementedError`` for what the reference ViTs (CLIP, BLIP, ViLT) do not
    have: layer scale, register tokens, no class token, pooling other than the class
    token, fc_norm, q/k norms, attention pooling, a position embedding without the class
    token's row, a bias-free qkv, LayerNorms of different eps."""
    from timm.models.vision_transformer import VisionTransformer

    from .io import build_vlp_model
    cfg = require(tower_cfg, 'TimmTower', 'the vision tower')
    for key in ('checkpoint', 'pretrained'):  # sizes only: nothing is read
        cfg.pop(key, None)
    vit = build_vlp_model(copy.deepcopy(cfg), device='meta').model
    if not isinstance(vit, VisionTransformer):
        raise NotImplementedError(f'{type(vit).__name__} is not a timm VisionTransformer')
    blk = vit.blocks[0]
    problems = []
    if vit.cls_token is None or vit.global_pool != 'token':
        problems.append(f'class-token pooling (global_pool={vit.global_pool!r})')
    for name, bad in (('register tokens', getattr(vit, 'num_reg_tokens', 0)),
                      ('no_embed_class', getattr(vit, 'no_embed_class', False)),
                      ('attention pooling', getattr(vit, 'attn_pool', None) is not None),
                      ('fc_norm', not isinstance(vit.fc_norm, torch.nn.Identity)),
                      ('layer scale', not isinstance(blk.ls1, torch.nn.Identity)),
                      ('q/k norm', not isinstance(getattr(blk.attn, 'q_norm', None)
                                                  or torch.nn.Identity(), torch.nn.Identity)),
                      ('bias-free qkv', blk.attn.qkv.bias is None)):
        if bad:
            problems.append(name)
    norms = {m.eps for m in vit.modules() if isinstance(m, torch.nn.LayerNorm)}
    if len(norms) != 1:
        problems.append(f'LayerNorms with different eps {sorted(norms)}')
    if problems:
        raise NotImplementedError(f'the timm ViT ({cfg.get("model_name")}) has '
                                  f'{", ".join(problems)}: no reference equivalent')
    pre = not isinstance(vit.norm_pre, torch.nn.Identity)
    return ViTArch(width=vit.embed_dim, depth=len(vit.blocks), heads=blk.attn.num_heads,
                   mlp_hidden=blk.mlp.fc1.out_features, act=_act_name(blk.mlp.act),
                   eps=norms.pop(), img_size=square(vit.patch_embed.img_size, 'image size'),
                   patch_size=square(vit.patch_embed.patch_size, 'patch size'),
                   pre_norm=pre, patch_bias=vit.patch_embed.proj.bias is not None,
                   final_norm=not isinstance(vit.norm, torch.nn.Identity),
                   in_chans=vit.patch_embed.proj.in_channels)
