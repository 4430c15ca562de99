"""open_clip ``CLIP`` (OpenAI and OpenCLIP weights) <-> vlp ``CLIP``: the table is
:data:`~vlp.convert.formats.clip.OPEN_CLIP` (timm's ``_convert_openai_clip`` plus the
text tower; ``visual.proj`` / ``text_projection`` ``[C, D]`` are the transposed projection
weights).

Supported: the standard CLIP ViT + text transformer (``quick_gelu`` or GELU, any sizes,
text pooling ``argmax`` or ``eos``). Options without an exact vlp equivalent (layer scale,
attentional pooling, average pooling, no ``ln_pre``, timm or HF towers, SigLIP's
``logit_bias``, ...) raise ``NotImplementedError``.

Export writes ``open_clip_config.json`` + ``open_clip_model.safetensors``:
``open_clip.create_model('local-dir:<out_dir>')`` builds and loads it, and the weights file
is also a ``pretrained=`` file for the open_clip model of the same config.
"""
import dataclasses
import json
import os.path as osp
from typing import Dict, Mapping, Optional

import torch

from ..io import (NO_WEIGHTS_ONLY_HINT, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, cast_state_dict,
                  config_header, read_checkpoint, save_vlp, vlp_expected,
                  write_open_clip_folder, written_eval_configs)
from ..rules import convert_state_dict
from .clip import OPEN_CLIP, ClipArch, TowerArch, build_model_cfg, tokenizer_cfg, vlp_clip_arch

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
MODEL_KEYS = {'embed_dim', 'quick_gelu', 'vision_cfg', 'text_cfg', 'init_logit_scale',
              'preprocess_cfg', 'cast_dtype', 'output_dict', 'nonscalar_logit_scale'}


def convert_open_clip_state_dict(state_dict: Mapping[str, torch.Tensor],
                                 expected: Optional[Mapping] = None
                                 ) -> Dict[str, torch.Tensor]:
    """open_clip ``CLIP`` (or OpenAI CLIP) state dict -> vlp ``CLIP`` state dict
    (``KeyError`` for a key no rule maps, e.g. ``logit_bias`` or a timm trunk)."""
    return convert_state_dict(state_dict, OPEN_CLIP, expected=expected)[0]


def _square(value, what: str) -> int:
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


def tower_cfgs(model_cfg: Mapping):
    """``(CLIPVisionCfg, CLIPTextCfg)`` of a model config (dicts or dataclasses)."""
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg
    vc, tc = model_cfg['vision_cfg'], model_cfg['text_cfg']
    vc = CLIPVisionCfg(**vc) if isinstance(vc, dict) else dataclasses.replace(vc)
    tc = CLIPTextCfg(**tc) if isinstance(tc, dict) else dataclasses.replace(tc)
    return vc, tc


def open_clip_arch(model_cfg: Mapping, mean=None, std=None) -> ClipArch:
    """:class:`ClipArch` of an open_clip model config dict."""
    unknown = set(model_cfg) - MODEL_KEYS
    if unknown:  # custom_text, multimodal_cfg (CoCa), init_logit_bias (SigLIP), ...
        raise NotImplementedError(f'open_clip model options {sorted(unknown)} are not '
                                  'supported by the CLIP converter')
    vc, tc = tower_cfgs(model_cfg)
    if isinstance(vc.layers, (list, tuple)):
        raise NotImplementedError('ModifiedResNet image towers (RN50, ...) are not supported')
    _check_fixed(vc, _VISION_FIXED, 'vision')
    _check_fixed(tc, _TEXT_FIXED, 'text')
    if vc.block_type not in (None, 'default') or tc.block_type not in (None, 'default'):
        raise NotImplementedError('custom open_clip attention blocks are not supported')
    if tc.pool_type not in ('argmax', 'eos'):
        raise NotImplementedError(f'text pool_type {tc.pool_type!r} (supported: argmax, eos)')
    act = 'quick_gelu' if model_cfg.get('quick_gelu', False) else 'gelu'  # both towers
    if vc.width % vc.head_width:
        raise NotImplementedError(f'vision width {vc.width} % head_width {vc.head_width}')
    preprocess = model_cfg.get('preprocess_cfg') or {}
    mean = mean if mean is not None else preprocess.get('mean', OPENAI_CLIP_MEAN)
    std = std if std is not None else preprocess.get('std', OPENAI_CLIP_STD)
    return ClipArch(
        embed_dim=int(model_cfg['embed_dim']),
        image_size=_square(vc.image_size, 'image_size'),
        patch_size=_square(vc.patch_size, 'patch_size'),
        vision=TowerArch(width=vc.width, layers=vc.layers, heads=vc.width // vc.head_width,
                         mlp_ratio=vc.mlp_ratio, act_layer=act),
        vocab_size=tc.vocab_size, context_length=tc.context_length,
        text=TowerArch(width=tc.width, layers=tc.layers, heads=tc.heads,
                       mlp_ratio=tc.mlp_ratio, act_layer=act),
        eot_token_id=int(tc.eos_id) if tc.pool_type == 'eos' else None,
        mean=tuple(mean), std=tuple(std))


def open_clip_config_to_vlp(model_cfg: Mapping, tokenizer: Optional[dict] = None, mean=None,
                            std=None) -> dict:
    """vlp model config dict for an open_clip model config dict (``embed_dim``,
    ``vision_cfg``, ``text_cfg``[, ``quick_gelu``] as in ``model_configs/*.json``)."""
    return build_model_cfg(open_clip_arch(model_cfg, mean, std), tokenizer)


def plain(model_cfg: Mapping) -> dict:
    """JSON-able copy (dataclass configs to dicts)."""
    return {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
            for k, v in model_cfg.items()}


def default_tokenizer_file(model_cfg: Mapping) -> Optional[str]:
    """open_clip's bundled OpenAI BPE vocabulary for models that use that tokenizer."""
    tc = model_cfg['text_cfg']
    hf_name = tc.hf_tokenizer_name if not isinstance(tc, dict) else tc.get('hf_tokenizer_name')
    if hf_name:
        return None
    import open_clip.tokenizer
    path = osp.join(osp.dirname(open_clip.tokenizer.__file__), 'bpe_simple_vocab_16e6.txt.gz')
    return path if osp.exists(path) else None


def convert(model_cfg: Mapping, checkpoint: str, out_dir: str,
            tokenizer: Optional[str] = 'auto', dtype: Optional[torch.dtype] = torch.float32,
            mean=None, std=None, model_name: str = '', weights_only: bool = True,
            eot_token_id: Optional[int] = None) -> dict:
    """Convert an open_clip checkpoint (``.safetensors``, a ``torch.save`` state dict or
    training checkpoint, OpenAI's TorchScript release read without running it); returns the
    written paths and config. ``tokenizer``: a vocabulary file to copy, ``'auto'`` (the
    bundled BPE when the model uses it) or ``None``; it must fit the weights' vocabulary.
    ``eot_token_id``: the pooled token (default: open_clip's ``eos_id`` with
    ``pool_type='eos'``, else argmax pooling)."""
    from .hf_clip import finish_clip_cfg
    arch = open_clip_arch(model_cfg, mean, std)
    if eot_token_id is not None:
        arch = dataclasses.replace(arch, eot_token_id=int(eot_token_id))
    if tokenizer == 'auto':
        tokenizer = default_tokenizer_file(model_cfg)
    files = [tokenizer] if tokenizer else []
    model = build_model_cfg(arch, tokenizer_cfg(files, arch.context_length) if files else None)
    pipelines = finish_clip_cfg(model, files, model_name or checkpoint)
    sd = read_checkpoint(checkpoint, weights_only, opt_out=NO_WEIGHTS_ONLY_HINT)
    state, report = convert_state_dict(sd, OPEN_CLIP, expected=vlp_expected(model),
                                       what='the vlp model')
    meta = dict(source='open_clip.CLIP', source_path=osp.abspath(checkpoint),
                converter='tools/convert/open_clip_to_vlp.py', model_name=model_name,
                open_clip_config=json.dumps(plain(model_cfg), sort_keys=True))
    cfg_path, ckpt_path = save_vlp(out_dir, model, cast_state_dict(state, dtype), meta,
                                   config_header('open_clip_to_vlp.py',
                                                 model_name or checkpoint),
                                   copy_files=files, pipelines=pipelines)
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model, report=report,
                eval_configs=written_eval_configs(out_dir))


# -- export ---------------------------------------------------------------------------------
def arch_to_open_clip_cfg(arch: ClipArch) -> dict:
    """open_clip model config (``model_configs/*.json`` form) of ``arch``."""
    v, t = arch.vision, arch.text
    acts = {v.act_layer, t.act_layer}
    if not acts <= {'quick_gelu', 'gelu'} or len(acts) != 1:
        raise NotImplementedError(f'activations {sorted(acts)}: open_clip uses one of '
                                  'quick_gelu / gelu for both towers')
    if v.ln_eps != 1e-5 or t.ln_eps != 1e-5:
        raise NotImplementedError("LayerNorm eps other than open_clip's 1e-5")
    if v.width % v.heads:
        raise NotImplementedError(f'vision width {v.width} % heads {v.heads}')
    text = dict(context_length=arch.context_length, vocab_size=arch.vocab_size, width=t.width,
                heads=t.heads, layers=t.layers, mlp_ratio=t.mlp_ratio)
    if arch.eot_token_id is not None:
        text.update(pool_type='eos', eos_id=arch.eot_token_id)
    return dict(embed_dim=arch.embed_dim, quick_gelu=acts == {'quick_gelu'},
                vision_cfg=dict(image_size=arch.image_size, patch_size=arch.patch_size,
                                width=v.width, layers=v.layers, head_width=v.width // v.heads,
                                mlp_ratio=v.mlp_ratio),
                text_cfg=text)


def preprocess_cfg(arch: ClipArch) -> dict:
    return dict(size=arch.image_size, mean=list(arch.mean), std=list(arch.std))


def open_clip_expected(oc_cfg: Mapping) -> Dict[str, torch.Tensor]:
    """State dict (meta tensors) of the open_clip model of ``oc_cfg`` (CLIP or CoCa)."""
    import open_clip
    kwargs = {k: v for k, v in oc_cfg.items() if k != 'custom_text'}
    cls = open_clip.CoCa if 'multimodal_cfg' in kwargs else open_clip.CLIP
    with torch.device('meta'):
        return cls(**kwargs).state_dict()


def export(model_cfg: Mapping, state_dict: Mapping[str, torch.Tensor], out_dir: str,
           dtype: Optional[torch.dtype] = None) -> dict:
    """vlp ``CLIP`` weights -> ``out_dir`` (``open_clip.create_model('local-dir:out_dir')``)."""
    arch = vlp_clip_arch(model_cfg)
    oc_cfg = arch_to_open_clip_cfg(arch)
    state, report = convert_state_dict(state_dict, OPEN_CLIP, reverse=True,
                                       expected=open_clip_expected(oc_cfg),
                                       what='open_clip.CLIP')
    weights = write_open_clip_folder(out_dir, oc_cfg, cast_state_dict(state, dtype),
                                     preprocess_cfg(arch))
    return dict(out_dir=out_dir, weights=weights, reference='open_clip.CLIP', config=oc_cfg,
                report=report)
