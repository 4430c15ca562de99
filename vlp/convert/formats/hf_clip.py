"""HF transformers ``CLIPModel`` <-> vlp ``CLIP``: the table is
:data:`~vlp.convert.formats.clip.HF_CLIP`.

Import: a ``save_pretrained`` folder -> ``config.py`` + ``model.pth``; tokenizer files of
the folder (``tokenizer.json`` or ``vocab.json`` + ``merges.txt``) are copied and named.
Text pooling: HF pools at ``argmax(input_ids)`` when the config's ``eos_token_id`` is the
legacy 2, otherwise at the first ``eos_token_id``; vlp's ``eot_token_id`` is ``None`` or
that id accordingly (and the other way round on export).

Export: a vlp CLIP (a CLIP-style ViT, the causal text transformer, bias-free projections)
-> a folder with ``config.json`` + ``model.safetensors`` (+ ``preprocessor_config.json``)
that ``transformers.CLIPModel.from_pretrained`` loads.
"""
import dataclasses
import os.path as osp
from typing import Dict, List, Mapping, Optional

import torch

from ..arch import hf_activation, map_activation, mlp_ratio_of
from ..eval_configs import image_pipeline, pipeline_vars
from ..io import (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, build_tokenizer, cast_state_dict,
                  check_token_ids, check_tokenizer_vocab, config_header, hf_expected,
                  hf_image_stats, read_hf_weights, read_json, save_vlp, vlp_expected,
                  write_hf_folder, written_eval_configs)
from ..rules import convert_state_dict
from .clip import (HF_CLIP, ClipArch, TowerArch, build_model_cfg, tokenizer_cfg,
                   vlp_clip_arch)


def convert_hf_clip_state_dict(state_dict: Mapping[str, torch.Tensor],
                               expected: Optional[Mapping] = None) -> Dict[str, torch.Tensor]:
    """HF ``CLIPModel`` state dict -> vlp ``CLIP`` state dict (``KeyError`` for a key no
    rule maps or an incomplete q/k/v triple)."""
    return convert_state_dict(state_dict, HF_CLIP, expected=expected)[0]


def _as_hf_config(config):
    if isinstance(config, dict):
        from transformers import CLIPConfig
        return CLIPConfig.from_dict(config)
    return config


def hf_clip_arch(config, mean=None, std=None) -> ClipArch:
    """:class:`ClipArch` of a HF ``CLIPConfig`` (or its dict)."""
    config = _as_hf_config(config)
    vc, tc = config.vision_config, config.text_config
    if vc.num_channels != 3:
        raise NotImplementedError(f'{vc.num_channels} image channels')
    eos = tc.eos_token_id
    if isinstance(eos, (list, tuple)):
        raise NotImplementedError(f'several eos_token_id {eos}')

    def tower(c):
        return TowerArch(width=c.hidden_size, layers=c.num_hidden_layers,
                         heads=c.num_attention_heads,
                         mlp_ratio=mlp_ratio_of(c.hidden_size, c.intermediate_size),
                         act_layer=map_activation(c.hidden_act), ln_eps=c.layer_norm_eps)
    return ClipArch(
        embed_dim=config.projection_dim, image_size=vc.image_size, patch_size=vc.patch_size,
        vision=tower(vc), vocab_size=tc.vocab_size, context_length=tc.max_position_embeddings,
        text=tower(tc),
        # HF: legacy eos_token_id 2 pools at argmax (EOT is the largest id), else first eos
        eot_token_id=None if eos == 2 else int(eos),
        mean=tuple(mean) if mean is not None else OPENAI_CLIP_MEAN,
        std=tuple(std) if std is not None else OPENAI_CLIP_STD)


def hf_clip_config_to_vlp(config, tokenizer: Optional[dict] = None, mean=None,
                          std=None) -> dict:
    """vlp model config dict for a HF ``CLIPConfig`` (or its dict)."""
    return build_model_cfg(hf_clip_arch(config, mean, std), tokenizer)


def _tokenizer_files(src_dir: str) -> List[str]:
    """``tokenizer.json`` (fast), else the BPE pair ``vocab.json`` + ``merges.txt``."""
    for names in (['tokenizer.json'], ['vocab.json', 'merges.txt']):
        paths = [osp.join(src_dir, n) for n in names]
        if all(osp.exists(p) for p in paths):
            return paths
    return []


def clip_image_pipeline(src_dir: str, image_size: int) -> list:
    """The test transforms of a HF CLIP folder (``preprocessor_config.json``: resize the
    shorter side, centre crop; CLIP's ``preprocess``)."""
    pre = read_json(osp.join(src_dir, 'preprocessor_config.json')) or {}
    size = pre.get('size') or {}
    short = size.get('shortest_edge', image_size) if isinstance(size, dict) else size
    crop = pre.get('crop_size') or {}
    crop = crop.get('height', image_size) if isinstance(crop, dict) else (crop or image_size)
    if short != image_size or crop != image_size:
        return [dict(type='LoadImage'), dict(type='Resize', size=int(short),
                                             interpolation='bicubic'),
                dict(type='CenterCrop', size=int(crop)), dict(type='ToTensor')]
    return image_pipeline(image_size, 'shorter')


def finish_clip_cfg(model_cfg: dict, files: List[str], source: str,
                    images: Optional[list] = None) -> dict:
    """Check the tokenizer against the weights' vocabulary and the pooled token id; return
    the config's pipelines (CLIP's test transforms, the tokenizer)."""
    text = model_cfg['text']
    check_token_ids(text['vocab_size'], source, eot_token_id=text.get('eot_token_id'))
    if model_cfg.get('tokenizer') is not None:
        tok = build_tokenizer(model_cfg['tokenizer'], files)
        check_tokenizer_vocab(tok, text['vocab_size'], ', '.join(files), 'the text tower')
    if images is None:  # open_clip's preprocess: shorter side, centre crop, bicubic
        images = image_pipeline(model_cfg['vision']['img_size'], 'shorter')
    return pipeline_vars(model_cfg, images)


def convert(src_dir: str, out_dir: str, tokenizer: bool = True,
            dtype: Optional[torch.dtype] = torch.float32,
            eot_token_id: Optional[int] = None) -> dict:
    """Convert a HF ``save_pretrained`` folder; returns the written paths and config.
    ``eot_token_id``: the id whose state the text tower pools (default: from the HF
    config: its ``eos_token_id``, or argmax pooling for the legacy 2)."""
    arch = hf_clip_arch(read_json(osp.join(src_dir, 'config.json')), *hf_image_stats(src_dir))
    if eot_token_id is not None:
        arch = dataclasses.replace(arch, eot_token_id=int(eot_token_id))
    files = _tokenizer_files(src_dir) if tokenizer else []
    tok_cfg = tokenizer_cfg(files, arch.context_length) if files else None
    model_cfg = build_model_cfg(arch, tok_cfg)
    pipelines = finish_clip_cfg(model_cfg, files, src_dir,
                                clip_image_pipeline(src_dir, arch.image_size))
    state, report = convert_state_dict(read_hf_weights(src_dir), HF_CLIP,
                                       expected=vlp_expected(model_cfg), what='the vlp model')
    meta = dict(source='transformers.CLIPModel', source_path=osp.abspath(src_dir),
                converter='tools/convert/hf_clip_to_vlp.py')
    cfg_path, ckpt_path = save_vlp(out_dir, model_cfg, cast_state_dict(state, dtype), meta,
                                   config_header('hf_clip_to_vlp.py', src_dir),
                                   copy_files=files, pipelines=pipelines)
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model_cfg, report=report,
                eval_configs=written_eval_configs(out_dir))


# -- export ---------------------------------------------------------------------------------
def arch_to_hf_config(arch: ClipArch):
    """``transformers.CLIPConfig`` of ``arch``."""
    from transformers import CLIPConfig
    if arch.eot_token_id == 2:
        raise NotImplementedError('eot_token_id 2: HF reads eos_token_id 2 as "pool at '
                                  'argmax(input_ids)"')

    def tower(t: TowerArch) -> dict:
        return dict(hidden_size=t.width, intermediate_size=int(t.width * t.mlp_ratio),
                    num_hidden_layers=t.layers, num_attention_heads=t.heads,
                    hidden_act=hf_activation(t.act_layer), layer_norm_eps=t.ln_eps)
    vocab = arch.vocab_size
    ids = {k: (v if v < vocab else None) for k, v in
           dict(bos_token_id=49406, pad_token_id=1).items()}  # HF's defaults, if they fit
    text = dict(tower(arch.text), vocab_size=vocab,
                max_position_embeddings=arch.context_length,
                eos_token_id=2 if arch.eot_token_id is None else arch.eot_token_id, **ids)
    vision = dict(tower(arch.vision), image_size=arch.image_size, patch_size=arch.patch_size,
                  num_channels=3)
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=arch.embed_dim)
    cfg.architectures = ['CLIPModel']
    return cfg


def preprocessor_config(arch: ClipArch) -> dict:
    """``CLIPImageProcessor`` settings: resize + center crop to the model's size."""
    return dict(image_processor_type='CLIPImageProcessor', do_resize=True,
                size=dict(shortest_edge=arch.image_size), do_center_crop=True,
                crop_size=dict(height=arch.image_size, width=arch.image_size),
                do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                image_mean=list(arch.mean), image_std=list(arch.std), resample=3)


def export(model_cfg: Mapping, state_dict: Mapping[str, torch.Tensor], out_dir: str,
           dtype: Optional[torch.dtype] = None) -> dict:
    """vlp ``CLIP`` weights -> ``out_dir`` (``CLIPModel.from_pretrained(out_dir)``)."""
    arch = vlp_clip_arch(model_cfg)
    hf_cfg = arch_to_hf_config(arch)
    state, report = convert_state_dict(state_dict, HF_CLIP, reverse=True,
                                       expected=hf_expected(hf_cfg), what='HF CLIPModel')
    write_hf_folder(out_dir, hf_cfg, cast_state_dict(state, dtype),
                    {'preprocessor_config.json': preprocessor_config(arch)})
    return dict(out_dir=out_dir, reference='transformers.CLIPModel', config=hf_cfg,
                report=report)
