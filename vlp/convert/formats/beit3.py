"""torchscale BEiT-3 checkpoints (Wang et al. 2022, "Image as a Foreign Language: BEiT
Pretraining for All Vision and Vision-Language Tasks"; torchscale ``model/BEiT3.py`` as
wrapped by unilm/beit3) -> vlp ``BEiT3Transformer`` (import only).

Table (``i`` = layer, ``E`` = expert ``A`` -> ``v`` (vision) / ``B`` -> ``l`` (language)),
below the source prefix (``beit3.`` in unilm's task models)::

    vision_embed.proj                            -> patch_embed
    vision_embed.cls_token / mask_token          -> cls_token / mask_token
    text_embed.weight                            -> word_embeddings.weight
    encoder.embed_positions.A / B.weight         -> image_pos_embed / text_pos_embed.weight
    encoder.layers.i.self_attn.{q,k,v}_proj.E    -> blocks.i.attn.qkv.e  (rows q, k, v)
    encoder.layers.i.self_attn.inner_attn_ln.E   -> blocks.i.attn.norm.e
    encoder.layers.i.self_attn.out_proj.E        -> blocks.i.attn.proj.e
    encoder.layers.i.self_attn_layer_norm.E      -> blocks.i.norm1.e
    encoder.layers.i.final_layer_norm.E          -> blocks.i.norm2.e
    encoder.layers.i.ffn.E.fc1 / fc2 / ffn_layernorm -> blocks.i.ffn.e.fc1 / fc2 / norm
    encoder.layer_norm.E                         -> norm.e
    encoder.output_projection.weight             -> dropped (unilm builds BEiT-3 with
                                                    no_output_layer=True), reported

Keys outside the backbone (unilm's task heads) are skipped and reported. Read from the
weights: the sizes, ``img_size``, ``max_text_len`` and ``subln``; not in the weights:
``num_heads`` (default ``embed_dim // 64``) and ``layernorm_eps`` (torchscale's 1e-5).
torchscale options BEiT-3 does not use (``layernorm_embedding``, relative position
buckets, xPos, MoE, deepnorm, post-LN) have no rule: their keys raise ``KeyError``.
"""
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch

from ..io import (NO_WEIGHTS_ONLY_HINT, cast_state_dict, check_state_dict, read_checkpoint,
                  save_vlp, strip_prefix)
from ..rules import ConversionReport, Drop, Fuse, Rename, Rule, convert_state_dict, nest

_E = dict(e=dict(A='v', B='l'))
_L, _B = 'encoder.layers.{i}.', 'blocks.{i}.'
BEIT3: List[Rule] = [
    Rename('vision_embed.proj.{p}', 'patch_embed.{p}'),
    Rename('vision_embed.{x:cls_token|mask_token}', '{x}'),
    Rename('text_embed.weight', 'word_embeddings.weight'),
    Rename('encoder.embed_positions.{e}.weight', '{e}_pos_embed.weight',
           maps=dict(e=dict(A='image', B='text'))),
    Fuse(_L + 'self_attn.{s}_proj.{e}.{p}', _B + 'attn.qkv.{e}.{p}', maps=_E,
         s=('q', 'k', 'v')),
    Rename(_L + 'self_attn.inner_attn_ln.{e}.{p}', _B + 'attn.norm.{e}.{p}', maps=_E),
    Rename(_L + 'self_attn.out_proj.{e}.{p}', _B + 'attn.proj.{e}.{p}', maps=_E),
    Rename(_L + 'self_attn_layer_norm.{e}.{p}', _B + 'norm1.{e}.{p}', maps=_E),
    Rename(_L + 'final_layer_norm.{e}.{p}', _B + 'norm2.{e}.{p}', maps=_E),
    Rename(_L + 'ffn.{e}.{fc:fc1|fc2}.{p}', _B + 'ffn.{e}.{fc}.{p}', maps=_E),
    Rename(_L + 'ffn.{e}.ffn_layernorm.{p}', _B + 'ffn.{e}.norm.{p}', maps=_E),
    Rename('encoder.layer_norm.{e}.{p}', 'norm.{e}.{p}', maps=_E),
    Drop('encoder.output_projection.weight', 'no_output_layer', 'dropped'),
]
_BACKBONE = re.compile(r'(vision_embed|text_embed|encoder)\.')


def find_prefix(sd: Mapping[str, torch.Tensor]) -> str:
    """The prefix in front of ``text_embed.weight`` (``''``, ``'beit3.'`` ...)."""
    hits = [k[:-len('text_embed.weight')] for k in sd if k.endswith('text_embed.weight')]
    if len(hits) != 1:
        raise KeyError(f'expected one "<prefix>text_embed.weight" key, found {hits}: not a '
                       'torchscale BEiT3 state dict')
    return hits[0]


def convert_beit3_state_dict(sd: Mapping[str, torch.Tensor], drop: Iterable[str] = ()
                             ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """torchscale ``BEiT3`` state dict (optionally under a prefix) -> ``BEiT3Transformer``
    state dict; the report holds ``prefix``, ``dropped`` and ``skipped`` (outside the
    backbone)."""
    sd = strip_prefix(sd)
    prefix = find_prefix(sd)
    rep = ConversionReport(info=dict(prefix=prefix))
    backbone = OrderedDict()
    for k, v in sd.items():
        if k.startswith(prefix) and _BACKBONE.match(k[len(prefix):]):
            backbone[k] = v
        else:
            rep.skipped.append(k)
    state, rep = convert_state_dict(backbone, nest(BEIT3, prefix, ''), drop=drop, report=rep)
    return state, rep


def beit3_model_cfg(state: Mapping[str, torch.Tensor], num_heads: Optional[int] = None,
                    layernorm_eps: float = 1e-5) -> dict:
    """``BEiT3Transformer`` config read from a converted state dict."""
    from vlp.models.backbones.beit3 import POS_OFFSET
    patch = state['patch_embed.weight']  # (C, in_chans, p, p)
    embed_dim, in_chans, patch_size = patch.shape[0], patch.shape[1], patch.shape[2]
    num_patches = state['image_pos_embed.weight'].shape[0] - 1 - POS_OFFSET
    grid = int(round(num_patches ** 0.5))
    if grid * grid != num_patches:
        raise ValueError(f'{num_patches} image positions do not form a square grid')
    depth = 1 + max(int(k.split('.')[1]) for k in state if k.startswith('blocks.'))
    if num_heads is None:
        if embed_dim % 64:
            raise ValueError(f'embed_dim {embed_dim}: pass --num-heads')
        num_heads = embed_dim // 64
    return dict(type='BEiT3Transformer', img_size=grid * patch_size, patch_size=patch_size,
                in_chans=in_chans, vocab_size=state['word_embeddings.weight'].shape[0],
                max_text_len=state['text_pos_embed.weight'].shape[0], embed_dim=embed_dim,
                depth=depth, num_heads=num_heads,
                ffn_dim=state['blocks.0.ffn.v.fc1.weight'].shape[0],
                layernorm_eps=layernorm_eps, subln='blocks.0.attn.norm.v.weight' in state)


def convert(checkpoint: str, out_dir: str, num_heads: Optional[int] = None,
            layernorm_eps: float = 1e-5, prefix: str = '',
            dtype: Optional[torch.dtype] = torch.float32, drop: Iterable[str] = (),
            weights_only: bool = True) -> dict:
    """Convert ``checkpoint`` and write ``out_dir/config.py`` and ``out_dir/model.pth``
    (keys under ``prefix``, e.g. ``backbone.``)."""
    sd = read_checkpoint(checkpoint, weights_only, opt_out=NO_WEIGHTS_ONLY_HINT)
    state, report = convert_beit3_state_dict(sd, drop)
    model_cfg = beit3_model_cfg(state, num_heads, layernorm_eps)
    check_state_dict(model_cfg, state)
    state = cast_state_dict(OrderedDict((prefix + k, v) for k, v in state.items()), dtype)
    header = (f'# vlp BEiT3Transformer converted by tools/convert/torchscale_beit3_to_vlp.py '
              f'from {osp.basename(checkpoint)}\n'
              "# Build with vlp.registry.MODELS.build(model) and load model.pth's "
              "'state_dict'.\n")
    cfg_path, ckpt_path = save_vlp(
        out_dir, model_cfg, state,
        meta={'source': osp.basename(checkpoint), 'converter': 'torchscale_beit3_to_vlp',
              'prefix': prefix}, header=header)
    return {'config': cfg_path, 'checkpoint': ckpt_path, 'model_cfg': model_cfg,
            'report': report}
