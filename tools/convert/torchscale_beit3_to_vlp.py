"""Convert a torchscale BEiT-3 checkpoint (Wang et al. 2022, "Image as a Foreign Language:
BEiT Pretraining for All Vision and Vision-Language Tasks"; torchscale ``model/BEiT3.py``,
as wrapped by the official unilm/beit3 models) to vlp's ``BEiT3Transformer``.

Usage::

    python tools/convert/torchscale_beit3_to_vlp.py CHECKPOINT OUT_DIR
        [--num-heads 12] [--layernorm-eps 1e-5] [--prefix backbone.]
        [--drop-keys REGEX ...] [--dtype fp32] [--no-weights-only]

``CHECKPOINT``: a ``torch.save`` file holding a torchscale ``BEiT3`` state dict, bare or
under ``'model'`` / ``'module'`` / ``'state_dict'`` (unilm/beit3 saves ``{'model': ...}``,
its DeepSpeed runs ``{'module': ...}``), or a ``.safetensors`` file. The keys may carry
the ``beit3.`` prefix of unilm's ``BEiT3Wrapper`` models (``BEiT3ForRetrieval``,
``BEiT3ForVisualQuestionAnswering``, the pretrained ``beit3_*_patch16_224.pth`` files) and
a DDP ``module.`` prefix. Keys outside the backbone (unilm's task heads: ``vision_head``,
``language_head``, ``logit_scale``, ``pooler``, ``head``, ...) are not converted; they are
listed in the report. Writes ``OUT_DIR/config.py`` (``model = dict(type=
'BEiT3Transformer', ...)``, sizes read from the weights) and ``OUT_DIR/model.pth``
(``{'state_dict', 'meta'}``, loadable weights-only); ``--prefix`` puts the backbone under a
parent module's attribute (e.g. ``backbone.``).

Mapping (``i`` = layer, ``E`` = ``A`` -> ``v`` (vision expert) / ``B`` -> ``l`` (language))::

    vision_embed.proj                            -> patch_embed
    vision_embed.cls_token / mask_token          -> cls_token / mask_token
    text_embed.weight                            -> word_embeddings.weight
    encoder.embed_positions.A.weight             -> image_pos_embed.weight
    encoder.embed_positions.B.weight             -> text_pos_embed.weight
    encoder.layers.i.self_attn.{q,k,v}_proj.E    -> blocks.i.attn.qkv.e  (rows q, k, v)
    encoder.layers.i.self_attn.inner_attn_ln.E   -> blocks.i.attn.norm.e
    encoder.layers.i.self_attn.out_proj.E        -> blocks.i.attn.proj.e
    encoder.layers.i.self_attn_layer_norm.E      -> blocks.i.norm1.e
    encoder.layers.i.final_layer_norm.E          -> blocks.i.norm2.e
    encoder.layers.i.ffn.E.fc1 / fc2             -> blocks.i.ffn.e.fc1 / fc2
    encoder.layers.i.ffn.E.ffn_layernorm         -> blocks.i.ffn.e.norm
    encoder.layer_norm.E                         -> norm.e
    encoder.output_projection.weight             -> dropped (unilm builds BEiT-3 with
                                                    no_output_layer=True; an MLM head is
                                                    a separate vlp part), reported

Read from the weights: ``embed_dim``, ``depth``, ``ffn_dim``, ``vocab_size``,
``patch_size``, ``in_chans``, ``img_size`` (image position rows = patches + 1 + 2),
``max_text_len`` (text position rows, torchscale's ``max_source_positions``) and ``subln``
(presence of ``inner_attn_ln``). Not in the weights: ``num_heads`` (default: 64-wide heads
as BEiT-3 base / large / giant, ``embed_dim // 64``) and ``layernorm_eps`` (torchscale's
1e-5). torchscale options BEiT-3 does not use (``layernorm_embedding``, relative position
buckets, xPos, MoE, deepnorm, post-LN) are not supported: their keys raise ``KeyError``.
"""
import argparse
import os.path as osp
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import _clip_common as common  # noqa: E402

_EXPERT = {'A': 'v', 'B': 'l'}
_L = r'encoder\.layers\.(\d+)\.'
# (source regex, target template); ``E`` groups are expert letters mapped through _EXPERT
_RULES: List[Tuple[str, str]] = [
    (r'vision_embed\.proj\.(weight|bias)', r'patch_embed.{0}'),
    (r'vision_embed\.(cls_token|mask_token)', r'{0}'),
    (r'text_embed\.weight', r'word_embeddings.weight'),
    (r'encoder\.embed_positions\.A\.weight', r'image_pos_embed.weight'),
    (r'encoder\.embed_positions\.B\.weight', r'text_pos_embed.weight'),
    (_L + r'self_attn\.inner_attn_ln\.([AB])\.(weight|bias)', r'blocks.{0}.attn.norm.{1}.{2}'),
    (_L + r'self_attn\.out_proj\.([AB])\.(weight|bias)', r'blocks.{0}.attn.proj.{1}.{2}'),
    (_L + r'self_attn_layer_norm\.([AB])\.(weight|bias)', r'blocks.{0}.norm1.{1}.{2}'),
    (_L + r'final_layer_norm\.([AB])\.(weight|bias)', r'blocks.{0}.norm2.{1}.{2}'),
    (_L + r'ffn\.([AB])\.(fc1|fc2)\.(weight|bias)', r'blocks.{0}.ffn.{1}.{2}.{3}'),
    (_L + r'ffn\.([AB])\.ffn_layernorm\.(weight|bias)', r'blocks.{0}.ffn.{1}.norm.{2}'),
    (r'encoder\.layer_norm\.([AB])\.(weight|bias)', r'norm.{0}.{1}'),
]
_QKV = re.compile(_L + r'self_attn\.([qkv])_proj\.([AB])\.(weight|bias)')
_DROPPED = [r'encoder\.output_projection\.weight']
_BACKBONE = re.compile(r'(vision_embed|text_embed|encoder)\.')


@dataclass
class ConversionReport:
    """What :func:`convert_beit3_state_dict` did besides renaming."""
    prefix: str = ''  # the source prefix stripped ('beit3.' for unilm models)
    dropped: List[str] = field(default_factory=list)  # backbone keys without a vlp weight
    skipped: List[str] = field(default_factory=list)  # keys outside the backbone (heads)


def _expert(g: str) -> str:
    return _EXPERT.get(g, g)


def find_prefix(sd: Dict[str, torch.Tensor]) -> str:
    """The prefix in front of ``text_embed.weight`` (``''``, ``'beit3.'``, ``'model.beit3.'``
    ...)."""
    hits = [k[:-len('text_embed.weight')] for k in sd if k.endswith('text_embed.weight')]
    if len(hits) != 1:
        raise KeyError(f'expected one "<prefix>text_embed.weight" key, found {hits}: not a '
                       'torchscale BEiT3 state dict')
    return hits[0]


def convert_beit3_state_dict(sd: Dict[str, torch.Tensor], drop: Sequence[str] = ()
                             ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """torchscale ``BEiT3`` state dict (optionally under a prefix such as ``beit3.``) ->
    ``BEiT3Transformer`` state dict.

    Raises:
        KeyError: a backbone key matches no rule (an unsupported torchscale option), or
            q / k / v projections are incomplete.
    """
    if sd and all(k.startswith('module.') for k in sd):
        sd = {k[len('module.'):]: v for k, v in sd.items()}
    prefix = find_prefix(sd)
    report = ConversionReport(prefix=prefix)
    out: Dict[str, torch.Tensor] = OrderedDict()
    qkv: Dict[Tuple[str, str, str], Dict[str, torch.Tensor]] = {}
    for full, value in sd.items():
        if any(re.fullmatch(p, full) for p in drop):
            report.dropped.append(full)
            continue
        if not full.startswith(prefix) or not _BACKBONE.match(full[len(prefix):]):
            report.skipped.append(full)
            continue
        key = full[len(prefix):]
        if any(re.fullmatch(p, key) for p in _DROPPED):
            report.dropped.append(full)
            continue
        m = _QKV.fullmatch(key)
        if m is not None:
            layer, which, e, param = m.groups()
            qkv.setdefault((layer, _expert(e), param), {})[which] = value
            continue
        for pattern, target in _RULES:
            m = re.fullmatch(pattern, key)
            if m is not None:
                new = target.format(*(_expert(g) for g in m.groups()))
                if new in out:
                    raise KeyError(f'two source keys map to {new!r}')
                out[new] = value
                break
        else:
            raise KeyError(f'unexpected key {full!r} (no rule maps it: a torchscale option '
                           'BEiT-3 does not use?)')
    for (layer, e, param), parts in sorted(qkv.items(), key=lambda t: (int(t[0][0]), t[0][1:])):
        if set(parts) != {'q', 'k', 'v'}:
            raise KeyError(f'layer {layer} expert {e} {param}: only {sorted(parts)} of q/k/v')
        out[f'blocks.{layer}.attn.qkv.{e}.{param}'] = torch.cat(
            [parts['q'], parts['k'], parts['v']], dim=0)
    return out, report


def beit3_model_cfg(state: Dict[str, torch.Tensor], num_heads: Optional[int] = None,
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


def load_checkpoint(path: str, weights_only: bool = True) -> Dict[str, torch.Tensor]:
    """State dict of a file: ``.safetensors``, or a ``torch.save`` dict, unwrapped from
    ``'model'`` / ``'module'`` / ``'state_dict'``."""
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return dict(load_file(path, device='cpu'))
    if weights_only:  # refused (UnsafeCheckpointError) when it holds other objects
        from vlp.engine.checkpoint import safe_load
        ckpt = safe_load(path, map_location='cpu', opt_out=common.NO_WEIGHTS_ONLY_HINT)
    else:  # --no-weights-only: trusted files only
        ckpt = torch.load(path, map_location='cpu', weights_only=False)
    for key in ('model', 'module', 'state_dict'):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    if not isinstance(ckpt, dict):
        raise TypeError(f'{path!r} does not hold a state dict')
    return {k: v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}


def convert(checkpoint: str, out_dir: str, num_heads: Optional[int] = None,
            layernorm_eps: float = 1e-5, prefix: str = '',
            dtype: Optional[torch.dtype] = torch.float32, drop: Sequence[str] = (),
            weights_only: bool = True) -> dict:
    """Convert ``checkpoint`` and write ``out_dir/config.py`` and ``out_dir/model.pth``."""
    sd, report = convert_beit3_state_dict(load_checkpoint(checkpoint, weights_only), drop)
    model_cfg = beit3_model_cfg(sd, num_heads, layernorm_eps)
    common.check_state_dict(model_cfg, sd)
    sd = common.cast_state_dict(OrderedDict((prefix + k, v) for k, v in sd.items()), dtype)
    header = (f'# vlp BEiT3Transformer converted by tools/convert/torchscale_beit3_to_vlp.py '
              f'from {osp.basename(checkpoint)}\n'
              '# Build with vlp.registry.MODELS.build(model) and load model.pth\'s '
              "'state_dict'.\n")
    cfg_path, ckpt_path = common.save_converted(
        out_dir, model_cfg, sd,
        meta={'source': osp.basename(checkpoint), 'converter': 'torchscale_beit3_to_vlp',
              'prefix': prefix},
        header=header)
    return {'config': cfg_path, 'checkpoint': ckpt_path, 'model_cfg': model_cfg,
            'report': report}


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='torchscale / unilm BEiT-3 checkpoint')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth)')
    parser.add_argument('--num-heads', type=int, default=None,
                        help='attention heads (default embed_dim // 64: 12 base, 16 large)')
    parser.add_argument('--layernorm-eps', type=float, default=1e-5,
                        help="LayerNorm eps (torchscale's default 1e-5)")
    parser.add_argument('--prefix', default='',
                        help='prefix of the written keys, e.g. "backbone." (default none)')
    common.add_drop_keys_arg(parser)
    common.add_dtype_arg(parser)
    common.add_weights_only_arg(parser)
    args = parser.parse_args(argv)
    out = convert(args.checkpoint, args.out_dir, num_heads=args.num_heads,
                  layernorm_eps=args.layernorm_eps, prefix=args.prefix,
                  dtype=common.dtype_arg(args.dtype), drop=args.drop_keys,
                  weights_only=not args.no_weights_only)
    rep, cfg = out['report'], out['model_cfg']
    print(f'BEiT-3 backbone (source prefix {rep.prefix!r}): embed_dim {cfg["embed_dim"]}, '
          f'depth {cfg["depth"]}, heads {cfg["num_heads"]}, img_size {cfg["img_size"]}')
    for what, keys in (('dropped', rep.dropped), ('not converted (outside the backbone)',
                                                  rep.skipped)):
        if keys:
            print(f'{what}: {", ".join(keys)}')
    print(f'wrote {out["config"]} and {out["checkpoint"]}')


if __name__ == '__main__':
    main()
