"""CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
Supervision") architecture shared by the HF and open_clip formats.

Both references implement a pre-LN ViT with a class token, a LayerNorm before the blocks
(``ln_pre``) and after them (``ln_post``), and a GPT-2-style causal text transformer pooled
at the end-of-text token; two bias-free projections and a learned ``logit_scale``. In vlp
the image tower is timm's ``VisionTransformer`` in a ``TimmTower`` (``pre_norm=True`` gives
``norm_pre`` and a bias-free patch embedding), the text tower ``TextTransformer``, the
projections ``Projection(bias=False)`` necks and ``logit_scale`` lives in the
``ContrastiveLoss``. A :class:`ClipArch` holds the sizes; it is read from a reference
config on import and from a vlp config (:func:`vlp_clip_arch`) on export.

The timm ViT block and vlp's ``TransformerBlock`` share parameter names (``norm1``,
``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``): one block table per
reference serves both towers (:data:`HF_BLOCK`, :data:`OPEN_CLIP_BLOCK`).
"""
import os.path as osp
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence

from ..arch import part_args, require, vit_arch
from ..io import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, mean_std_01, mean_std_255
from ..rules import (SCALAR, TRANSPOSE, UNSQUEEZE0, Drop, Fuse, Rename, Rule, nest,
                     reshape)

V, T = 'vision.model.', 'text.'  # the timm ViT inside TimmTower; the TextTransformer
CLS_TOKEN = reshape((1, 1, -1), (-1, ))  # [C] <-> [1, 1, C]

HF_BLOCK: List[Rule] = [  # transformers CLIPEncoderLayer
    Fuse('self_attn.{s}_proj.{p}', 'attn.qkv.{p}', s=('q', 'k', 'v')),
    Rename('self_attn.out_proj.{p}', 'attn.proj.{p}'),
    Rename('layer_norm1.{p}', 'norm1.{p}'),
    Rename('layer_norm2.{p}', 'norm2.{p}'),
    Rename('mlp.fc1.{p}', 'mlp.fc1.{p}'),
    Rename('mlp.fc2.{p}', 'mlp.fc2.{p}'),
]
OPEN_CLIP_BLOCK: List[Rule] = [  # open_clip ResidualAttentionBlock (nn.MultiheadAttention)
    Rename('ln_1.{p}', 'norm1.{p}'),
    Rename('attn.in_proj_{p}', 'attn.qkv.{p}'),
    Rename('attn.out_proj.{p}', 'attn.proj.{p}'),
    Rename('ln_2.{p}', 'norm2.{p}'),
    Rename('mlp.c_fc.{p}', 'mlp.fc1.{p}'),
    Rename('mlp.c_proj.{p}', 'mlp.fc2.{p}'),
]
# open_clip's ViT trunk (shared with CoCa, whose ln_post / proj follow its pooler)
OPEN_CLIP_VIT: List[Rule] = [
    Rename('visual.class_embedding', V + 'cls_token', CLS_TOKEN),
    Rename('visual.positional_embedding', V + 'pos_embed', UNSQUEEZE0),
    Rename('visual.conv1.weight', V + 'patch_embed.proj.weight'),
    Rename('visual.ln_pre.{p}', V + 'norm_pre.{p}'),
    *nest(OPEN_CLIP_BLOCK, 'visual.transformer.resblocks.{i}.', V + 'blocks.{i}.'),
]


def open_clip_text(src: str) -> List[Rule]:
    """open_clip's text tower under ``src`` (``''`` in CLIP, ``'text.'`` in CoCa)."""
    return [
        Rename(src + 'token_embedding.weight', T + 'token_embedding.weight'),
        Rename(src + 'positional_embedding', T + 'positional_embedding'),
        *nest(OPEN_CLIP_BLOCK, src + 'transformer.resblocks.{i}.', T + 'blocks.{i}.'),
        Rename(src + 'ln_final.{p}', T + 'ln_final.{p}'),
        Rename(src + 'text_projection', 'text_proj.proj.weight', TRANSPOSE),
    ]


HF_CLIP: List[Rule] = [
    Rename('vision_model.embeddings.class_embedding', V + 'cls_token', CLS_TOKEN),
    Rename('vision_model.embeddings.patch_embedding.weight', V + 'patch_embed.proj.weight'),
    Rename('vision_model.embeddings.position_embedding.weight', V + 'pos_embed', UNSQUEEZE0),
    Rename('vision_model.pre_layrnorm.{p}', V + 'norm_pre.{p}'),  # (sic)
    # HF applies post_layernorm to the class token only, timm's norm to every token: the
    # pooled outputs are identical
    Rename('vision_model.post_layernorm.{p}', V + 'norm.{p}'),
    *nest(HF_BLOCK, 'vision_model.encoder.layers.{i}.', V + 'blocks.{i}.'),
    Rename('text_model.embeddings.token_embedding.weight', T + 'token_embedding.weight'),
    Rename('text_model.embeddings.position_embedding.weight', T + 'positional_embedding'),
    *nest(HF_BLOCK, 'text_model.encoder.layers.{i}.', T + 'blocks.{i}.'),
    Rename('text_model.final_layer_norm.{p}', T + 'ln_final.{p}'),
    Rename('visual_projection.weight', 'vision_proj.proj.weight'),
    Rename('text_projection.weight', 'text_proj.proj.weight'),
    Rename('logit_scale', 'itc.logit_scale', SCALAR),
    Drop('{t:vision|text}_model.embeddings.position_ids', 'buffer older transformers saved'),
]

OPEN_CLIP: List[Rule] = [
    *OPEN_CLIP_VIT,
    Rename('visual.ln_post.{p}', V + 'norm.{p}'),
    Rename('visual.proj', 'vision_proj.proj.weight', TRANSPOSE),
    *open_clip_text(''),
    Rename('logit_scale', 'itc.logit_scale', SCALAR),  # [1] with nonscalar_logit_scale
    Drop('attn_mask', 'causal mask buffer'),
    Drop('{x:input_resolution|context_length|vocab_size}', "OpenAI TorchScript scalars"),
]

# (width, depth) -> size word of timm's registered CLIP ViTs (``vit_<size>_patch<p>_clip_*``).
_TIMM_SIZES = {(768, 12): 'base', (1024, 24): 'large', (1280, 32): 'huge',
               (1408, 40): 'giant', (1664, 48): 'gigantic'}


@dataclass
class TowerArch:
    """Sizes of one transformer tower."""
    width: int
    layers: int
    heads: int
    mlp_ratio: float
    act_layer: str  # vlp / timm activation name
    ln_eps: float = 1e-5


@dataclass
class ClipArch:
    """Everything both sides need to know about a CLIP."""
    embed_dim: int
    image_size: int
    patch_size: int
    vision: TowerArch
    vocab_size: int
    context_length: int
    text: TowerArch
    eot_token_id: Optional[int] = None  # None: pool at argmax(input_ids)
    mean: Sequence[float] = OPENAI_CLIP_MEAN  # 0-1 scale
    std: Sequence[float] = OPENAI_CLIP_STD


# -- import: ClipArch -> vlp config ----------------------------------------------------------
def timm_model_name(arch: ClipArch) -> str:
    """The registered timm CLIP ViT whose name matches ``arch`` (for readability only: every
    size is also passed explicitly); ViT-B/16 when no registered name matches."""
    import timm
    v = arch.vision
    gelu = '_quickgelu' if v.act_layer == 'quick_gelu' else ''
    size = _TIMM_SIZES.get((v.width, v.layers))
    if size is not None:
        name = f'vit_{size}_patch{arch.patch_size}_clip{gelu}_{arch.image_size}'
        if timm.is_model(name):
            return name
    return f'vit_base_patch16_clip{gelu}_224'


def vision_tower_cfg(arch: ClipArch) -> dict:
    """vlp ``TimmTower`` config of CLIP's ViT."""
    v = arch.vision
    if v.ln_eps != 1e-5:
        # timm's CLIP entry points fix LayerNorm eps at 1e-5; another eps needs a
        # norm_layer callable, which a config file cannot hold.
        raise NotImplementedError(f'vision LayerNorm eps {v.ln_eps} != 1e-5')
    return dict(type='TimmTower', model_name=timm_model_name(arch), pretrained=False,
                img_size=arch.image_size, patch_size=arch.patch_size, embed_dim=v.width,
                depth=v.layers, num_heads=v.heads, mlp_ratio=v.mlp_ratio,
                act_layer=v.act_layer,
                pre_norm=True,  # ln_pre; also makes the patch embedding bias-free (conv1)
                class_token=True, global_pool='token')


def build_model_cfg(arch: ClipArch, tokenizer: Optional[dict] = None) -> dict:
    """vlp ``CLIP`` model config for ``arch``."""
    t = arch.text
    text = dict(type='TextTransformer', vocab_size=arch.vocab_size,
                context_length=arch.context_length, width=t.width, layers=t.layers,
                heads=t.heads, mlp_ratio=t.mlp_ratio, act_layer=t.act_layer, ln_eps=t.ln_eps,
                eot_token_id=arch.eot_token_id)
    model = dict(
        type='CLIP',
        data_preprocessor=mean_std_255(arch.mean, arch.std),
        vision=vision_tower_cfg(arch),
        text=text,
        vision_proj=dict(type='Projection', in_dim=arch.vision.width, out_dim=arch.embed_dim,
                         bias=False),
        text_proj=dict(type='Projection', in_dim=t.width, out_dim=arch.embed_dim, bias=False),
        # CLIP: T initialised at 0.07, scale clamped at 100 (the value comes from the weights)
        itc=dict(type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0))
    if tokenizer is not None:
        model['tokenizer'] = tokenizer
    return model


def tokenizer_cfg(files: Sequence[str], max_length: int) -> dict:
    """vlp ``CLIPTokenizer`` config for tokenizer files copied next to the written config
    (paths relative to it through mmengine's ``{{ fileDirname }}``): a ``tokenizer.json``,
    a ``vocab.json`` + ``merges.txt`` pair or OpenAI's ``bpe_simple_vocab_16e6.txt.gz``."""
    names = {osp.basename(f) for f in files}
    here = '{{ fileDirname }}/'
    cfg = dict(type='CLIPTokenizer', max_length=max_length)
    if names == {'tokenizer.json'}:
        cfg['tokenizer_file'] = here + 'tokenizer.json'
    elif names == {'vocab.json', 'merges.txt'}:
        cfg.update(vocab_file=here + 'vocab.json', merges_file=here + 'merges.txt')
    elif len(names) == 1 and next(iter(names)).endswith('.txt.gz'):
        cfg['bpe_path'] = here + next(iter(names))
    else:
        raise ValueError(f'cannot make a CLIPTokenizer from {sorted(names)}')
    return cfg


# -- export: vlp config -> ClipArch -----------------------------------------------------------
def clip_vision_arch(tower_cfg: Mapping) -> tuple:
    """``(TowerArch, image_size, patch_size)`` of a CLIP-style ``TimmTower`` (pre-norm,
    bias-free patch embedding, class token, final norm)."""
    vit = vit_arch(tower_cfg)
    if not (vit.pre_norm and not vit.patch_bias):
        raise NotImplementedError("the ViT is not CLIP's (it needs pre_norm=True: ln_pre and "
                                  'a bias-free patch embedding)')
    if vit.in_chans != 3:
        raise NotImplementedError(f'{vit.in_chans} image channels')
    tower = TowerArch(vit.width, vit.depth, vit.heads, vit.mlp_ratio, vit.act, vit.eps)
    return tower, vit.img_size, vit.patch_size


def clip_text_arch(text_cfg: Mapping, embed_cls: bool = False) -> dict:
    """``TextTransformer`` arguments, checked for what the references have."""
    t = part_args(require(text_cfg, 'TextTransformer', 'the text tower'))
    if not t['causal'] or bool(t['embed_cls']) != embed_cls:
        raise NotImplementedError(f'text tower causal={t["causal"]}, embed_cls='
                                  f'{t["embed_cls"]}: not the reference text tower')
    return t


def projection_dims(cfg: Optional[Mapping], what: str, bias: bool = False) -> tuple:
    """``(in_dim, out_dim)`` of a ``Projection`` neck with / without a bias."""
    p = part_args(require(cfg, 'Projection', what))
    if bool(p['bias']) != bias:
        raise NotImplementedError(f'{what} has bias={p["bias"]}; the reference '
                                  f'{"has" if bias else "has no"} bias')
    return p['in_dim'], p['out_dim']


def vlp_clip_arch(model_cfg: Mapping) -> ClipArch:
    """:class:`ClipArch` of a vlp ``CLIP`` config (``NotImplementedError`` for an
    architecture the references do not have: ALIGN's towers, projection biases ...)."""
    require(model_cfg, 'CLIP', 'the model')
    vision, image_size, patch = clip_vision_arch(model_cfg['vision'])
    t = clip_text_arch(model_cfg['text'])
    _, dv = projection_dims(model_cfg.get('vision_proj'), 'vision_proj')
    _, dt = projection_dims(model_cfg.get('text_proj'), 'text_proj')
    if dv != dt:
        raise NotImplementedError(f'projection widths differ ({dv}, {dt})')
    mean, std = mean_std_01(model_cfg)
    return ClipArch(
        embed_dim=dv, image_size=image_size, patch_size=patch, vision=vision,
        vocab_size=t['vocab_size'], context_length=t['context_length'],
        text=TowerArch(t['width'], t['layers'], t['heads'], t['mlp_ratio'], t['act_layer'],
                       t['ln_eps']),
        eot_token_id=t['eot_token_id'], mean=mean, std=std)
