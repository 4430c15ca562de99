"""Convert an open_clip ``CLIP`` (Radford et al. 2021, CLIP; OpenAI and OpenCLIP weights)
to vlp's CLIP.

Usage::

    python tools/convert/open_clip_to_vlp.py --model-name ViT-B-16 --checkpoint FILE OUT_DIR
    python tools/convert/open_clip_to_vlp.py --model-config cfg.json --checkpoint FILE OUT_DIR

``--model-name`` reads the model config that ships with open_clip (no download);
``--model-config`` a JSON file of the same form (``embed_dim``, ``quick_gelu``,
``vision_cfg``, ``text_cfg``). ``FILE``: a ``.safetensors`` file, a ``torch.save`` state
dict (also an open_clip training checkpoint: ``state_dict`` with ``module.`` prefixes) or
OpenAI's TorchScript release (its weights are read without running its code;
``--no-weights-only`` loads a trusted file with ``torch.jit.load`` / a full unpickle
instead). Writes ``OUT_DIR/config.py`` and ``OUT_DIR/model.pth``; the
tokenizer vocabulary (``--tokenizer FILE``, by default open_clip's bundled
``bpe_simple_vocab_16e6.txt.gz`` for models with the OpenAI tokenizer) is copied and named
in the config.

Mapping (``i`` = block index; the timm/open_clip conversion of
``timm.models.vision_transformer._convert_openai_clip`` plus the text tower)::

    visual.class_embedding [C]             -> vision.model.cls_token [1, 1, C]
    visual.positional_embedding [N, C]     -> vision.model.pos_embed [1, N, C]
    visual.conv1 (no bias)                 -> vision.model.patch_embed.proj
    visual.ln_pre / visual.ln_post         -> vision.model.norm_pre / vision.model.norm
    visual.transformer.resblocks.i         -> vision.model.blocks.i
    visual.proj [C, D]                     -> vision_proj.proj.weight [D, C] (transposed)
    token_embedding, positional_embedding  -> text.token_embedding, text.positional_embedding
    transformer.resblocks.i                -> text.blocks.i
    ln_final                               -> text.ln_final
    text_projection [C, D]                 -> text_proj.proj.weight [D, C] (transposed)
    logit_scale                            -> itc.logit_scale
    (in a block) ln_1/ln_2 -> norm1/norm2, attn.in_proj_* -> attn.qkv.*,
    attn.out_proj -> attn.proj, mlp.c_fc/c_proj -> mlp.fc1/fc2

Supported: the standard CLIP ViT + text transformer (``quick_gelu`` or GELU, any sizes,
text pooling ``argmax`` or ``eos``). Options without an exact vlp equivalent (layer scale,
attentional pooling, average pooling, no ``ln_pre``, timm or HF towers, SigLIP's
``logit_bias``, ...) raise ``NotImplementedError``.
"""
import argparse
import dataclasses
import json
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Union

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import _clip_common as common  # noqa: E402

_BLOCK_NAMES = [
    ('ln_1.', 'norm1.'),
    ('attn.in_proj_weight', 'attn.qkv.weight'),
    ('attn.in_proj_bias', 'attn.qkv.bias'),
    ('attn.out_proj.', 'attn.proj.'),
    ('ln_2.', 'norm2.'),
    ('mlp.c_fc.', 'mlp.fc1.'),
    ('mlp.c_proj.', 'mlp.fc2.'),
]
_V, _T = common.VISION_PREFIX, common.TEXT_PREFIX
_RULES: List[common.Rule] = [
    (r'visual\.class_embedding', _V + 'cls_token', lambda t: t.reshape(1, 1, -1)),
    (r'visual\.positional_embedding', _V + 'pos_embed', lambda t: t.unsqueeze(0)),
    (r'visual\.conv1\.weight', _V + 'patch_embed.proj.weight', None),
    (r'visual\.ln_pre\.(weight|bias)', _V + r'norm_pre.\1', None),
    (r'visual\.ln_post\.(weight|bias)', _V + r'norm.\1', None),
    *common.block_rules('visual.transformer.resblocks.', _V + 'blocks.', _BLOCK_NAMES),
    (r'visual\.proj', common.VISION_PROJ_KEY, lambda t: t.t()),
    (r'token_embedding\.weight', _T + 'token_embedding.weight', None),
    (r'positional_embedding', _T + 'positional_embedding', None),
    *common.block_rules('transformer.resblocks.', _T + 'blocks.', _BLOCK_NAMES),
    (r'ln_final\.(weight|bias)', _T + r'ln_final.\1', None),
    (r'text_projection', common.TEXT_PROJ_KEY, lambda t: t.t()),
    (r'logit_scale', common.LOGIT_SCALE_KEY, common.to_scalar),
]
# the causal mask buffer and the scalars of OpenAI's TorchScript state dict
_IGNORE = [r'attn_mask', r'input_resolution', r'context_length', r'vocab_size']

# options of open_clip's CLIPVisionCfg / CLIPTextCfg that change the architecture, with the
# only value vlp's CLIP reproduces exactly
_VISION_FIXED = dict(ls_init_value=None, attentional_pool=False, no_ln_pre=False,
                     pos_embed_type='learnable', final_ln_after_pool=False, pool_type='tok',
                     act_kwargs=None, norm_kwargs=None, qk_norm=False,
                     scaled_cosine_attn=False, scale_heads=False, scale_attn_inner=False,
                     scale_attn=False, scale_fc=False, timm_model_name=None)
_TEXT_FIXED = dict(ls_init_value=None, embed_cls=False, no_causal_mask=False,
                   final_ln_after_pool=False, proj_bias=False, proj_type='linear',
                   act_kwargs=None, norm_kwargs=None, qk_norm=False, scaled_cosine_attn=False,
                   scale_heads=False, scale_attn_inner=False, scale_attn=False,
                   scale_fc=False, hf_model_name=None)
_MODEL_KEYS = {'embed_dim', 'quick_gelu', 'vision_cfg', 'text_cfg', 'init_logit_scale',
               'preprocess_cfg', 'cast_dtype', 'output_dict', 'nonscalar_logit_scale'}


def convert_open_clip_state_dict(
        state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """open_clip ``CLIP`` (or OpenAI CLIP) state dict -> vlp ``CLIP`` state dict.

    Raises:
        KeyError: a key no rule maps (e.g. ``logit_bias`` or a timm trunk).
    """
    return common.rename_state_dict(state_dict, _RULES, _IGNORE)


def _square(value: Union[int, Sequence[int]], what: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise NotImplementedError(f'non-square {what} {tuple(value)}')
        value = value[0]
    return int(value)


def _check_fixed(cfg, fixed: dict, tower: str) -> None:
    for name, value in fixed.items():
        got = getattr(cfg, name)
        if got != value:
            raise NotImplementedError(
                f'open_clip {tower}_cfg.{name}={got!r} has no exact vlp equivalent '
                f'(supported: {value!r})')


def open_clip_arch(model_cfg: dict, mean=None, std=None) -> common.ClipArch:
    """:class:`ClipArch` of an open_clip model config dict (``vision_cfg``/``text_cfg`` as
    dicts or ``CLIPVisionCfg``/``CLIPTextCfg``)."""
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg
    unknown = set(model_cfg) - _MODEL_KEYS
    if unknown:  # custom_text, multimodal_cfg (CoCa), init_logit_bias (SigLIP), ...
        raise NotImplementedError(f'open_clip model options {sorted(unknown)} are not '
                                  'supported by the CLIP converter')
    vc, tc = model_cfg['vision_cfg'], model_cfg['text_cfg']
    vc = CLIPVisionCfg(**vc) if isinstance(vc, dict) else vc
    tc = CLIPTextCfg(**tc) if isinstance(tc, dict) else tc
    if isinstance(vc.layers, (list, tuple)):
        raise NotImplementedError('ModifiedResNet image towers (RN50, ...) are not supported')
    _check_fixed(vc, _VISION_FIXED, 'vision')
    _check_fixed(tc, _TEXT_FIXED, 'text')
    if vc.block_type not in (None, 'default') or tc.block_type not in (None, 'default'):
        raise NotImplementedError('custom open_clip attention blocks are not supported')
    if tc.pool_type not in ('argmax', 'eos'):
        raise NotImplementedError(f'text pool_type {tc.pool_type!r} (supported: argmax, eos)')
    # open_clip's CLIP default: nn.GELU unless quick_gelu=True (both towers)
    act = 'quick_gelu' if model_cfg.get('quick_gelu', False) else 'gelu'
    if vc.width % vc.head_width:
        raise NotImplementedError(f'vision width {vc.width} % head_width {vc.head_width}')
    preprocess = model_cfg.get('preprocess_cfg') or {}
    mean = mean if mean is not None else preprocess.get('mean', common.OPENAI_CLIP_MEAN)
    std = std if std is not None else preprocess.get('std', common.OPENAI_CLIP_STD)
    return common.ClipArch(
        embed_dim=int(model_cfg['embed_dim']),
        image_size=_square(vc.image_size, 'image_size'),
        patch_size=_square(vc.patch_size, 'patch_size'),
        vision=common.TowerArch(width=vc.width, layers=vc.layers,
                                heads=vc.width // vc.head_width, mlp_ratio=vc.mlp_ratio,
                                act_layer=act),
        vocab_size=tc.vocab_size,
        context_length=tc.context_length,
        text=common.TowerArch(width=tc.width, layers=tc.layers, heads=tc.heads,
                              mlp_ratio=tc.mlp_ratio, act_layer=act),
        eot_token_id=int(tc.eos_id) if tc.pool_type == 'eos' else None,
        mean=tuple(mean), std=tuple(std))


def open_clip_config_to_vlp(model_cfg: dict, tokenizer: Optional[dict] = None, mean=None,
                            std=None) -> dict:
    """vlp model config dict for an open_clip model config dict.

    Args:
        model_cfg: ``dict(embed_dim, vision_cfg, text_cfg[, quick_gelu])`` as in open_clip's
            ``model_configs/*.json``.
        tokenizer: optional vlp tokenizer config for ``model.tokenizer``.
        mean, std: image statistics on the 0-1 scale; the config's ``preprocess_cfg`` or
            OpenAI's by default.
    """
    return common.build_model_cfg(open_clip_arch(model_cfg, mean, std), tokenizer)


def _plain(model_cfg: dict) -> dict:
    """JSON-able copy (dataclass configs to dicts)."""
    return {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
            for k, v in model_cfg.items()}


def _default_tokenizer_file(model_cfg: dict) -> Optional[str]:
    """open_clip's bundled OpenAI BPE vocabulary for models that use that tokenizer."""
    tc = model_cfg['text_cfg']
    hf_name = tc.hf_tokenizer_name if not isinstance(tc, dict) else tc.get('hf_tokenizer_name')
    if hf_name:
        return None
    import open_clip.tokenizer
    path = osp.join(osp.dirname(open_clip.tokenizer.__file__), 'bpe_simple_vocab_16e6.txt.gz')
    return path if osp.exists(path) else None


def convert(model_cfg: dict, checkpoint: str, out_dir: str, tokenizer: Optional[str] = 'auto',
            dtype: Optional[torch.dtype] = torch.float32, mean=None, std=None,
            model_name: str = '', weights_only: bool = True) -> Dict[str, Union[str, dict]]:
    """Convert an open_clip checkpoint; returns the written paths and config.

    Args:
        model_cfg: open_clip model config dict.
        checkpoint: weights file.
        out_dir: output directory.
        tokenizer: a tokenizer vocabulary file to copy; ``'auto'``: open_clip's bundled BPE
            vocabulary when the model uses it; ``None``: no tokenizer.
        dtype: dtype of the floating tensors written (``None`` keeps them).
        mean, std: image statistics on the 0-1 scale.
        model_name: open_clip model name, recorded in the checkpoint meta.
        weights_only: read ``checkpoint`` without running code from it (``False``: a
            trusted file, through ``torch.jit.load`` / ``torch.load(weights_only=False)``).
    """
    arch = open_clip_arch(model_cfg, mean, std)
    if tokenizer == 'auto':
        tokenizer = _default_tokenizer_file(model_cfg)
    files = [tokenizer] if tokenizer else []
    tok_cfg = common.tokenizer_cfg(files, arch.context_length) if files else None
    model = common.build_model_cfg(arch, tok_cfg)
    state = common.cast_state_dict(
        convert_open_clip_state_dict(common.load_weights_file(
            checkpoint, weights_only, opt_out=common.NO_WEIGHTS_ONLY_HINT)), dtype)
    common.check_state_dict(model, state)
    meta = dict(source='open_clip.CLIP', source_path=osp.abspath(checkpoint),
                converter='tools/convert/open_clip_to_vlp.py', model_name=model_name,
                open_clip_config=json.dumps(_plain(model_cfg), sort_keys=True))
    cfg_path, ckpt_path = common.save_converted(
        out_dir, model, state, meta,
        common.config_header('open_clip_to_vlp.py', model_name or checkpoint),
        copy_files=files)
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model)


def main(argv: Optional[List[str]] = None, convert_fn=None, description: Optional[str] = None,
         example_model: str = 'ViT-B-16',
         weights_help: str = 'open_clip / OpenAI weights file') -> None:
    """The command line of this converter; ``tools/convert/open_clip_coca_to_vlp.py`` runs
    the same one with its own ``convert_fn``."""
    convert_fn = convert if convert_fn is None else convert_fn
    parser = argparse.ArgumentParser(description=description or __doc__.split('\n')[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument('--model-name', help=f"open_clip model name, e.g. '{example_model}'")
    src.add_argument('--model-config', help='open_clip model config JSON file')
    parser.add_argument('--checkpoint', required=True, help=weights_help)
    parser.add_argument('out_dir', help='output directory (config.py, model.pth)')
    tok = parser.add_mutually_exclusive_group()
    tok.add_argument('--tokenizer', default='auto',
                     help='tokenizer vocabulary file to copy (default: open_clip\'s bundled '
                          'BPE vocabulary when the model uses it)')
    tok.add_argument('--no-tokenizer', action='store_true', help='no tokenizer in the config')
    parser.add_argument('--mean', type=float, nargs=3, help='image mean, 0-1 scale')
    parser.add_argument('--std', type=float, nargs=3, help='image std, 0-1 scale')
    common.add_dtype_arg(parser)
    common.add_weights_only_arg(parser)
    args = parser.parse_args(argv)
    if args.model_name:
        import open_clip
        model_cfg = open_clip.get_model_config(args.model_name)
        if model_cfg is None:
            parser.error(f'unknown open_clip model {args.model_name!r}')
    else:
        with open(args.model_config) as f:
            model_cfg = json.load(f)
    out = convert_fn(model_cfg, args.checkpoint, args.out_dir,
                     tokenizer=None if args.no_tokenizer else args.tokenizer,
                     dtype=common.dtype_arg(args.dtype), mean=args.mean, std=args.std,
                     model_name=args.model_name or '', weights_only=not args.no_weights_only)
    print(f'wrote {out["config"]} and {out["checkpoint"]}')


if __name__ == '__main__':
    main()
