"""Convert a HuggingFace transformers ``CLIPModel`` (Radford et al. 2021, CLIP) to vlp's CLIP.

Usage::

    python tools/convert/hf_clip_to_vlp.py SRC_DIR OUT_DIR [--no-tokenizer] [--dtype fp32]

``SRC_DIR`` is a local ``save_pretrained`` directory (``config.json`` and
``model.safetensors`` / ``pytorch_model.bin``, possibly sharded with an ``*.index.json``).
Writes ``OUT_DIR/config.py`` and ``OUT_DIR/model.pth``; tokenizer files found in ``SRC_DIR``
(``tokenizer.json`` or ``vocab.json`` + ``merges.txt``) are copied and named in the config.

Mapping (``i`` = block index; HF's separate ``q_proj/k_proj/v_proj`` are concatenated
into ``attn.qkv``)::

    vision_model.embeddings.class_embedding [C]        -> vision.model.cls_token [1, 1, C]
    vision_model.embeddings.patch_embedding            -> vision.model.patch_embed.proj
    vision_model.embeddings.position_embedding [N, C]  -> vision.model.pos_embed [1, N, C]
    vision_model.pre_layrnorm (sic)                    -> vision.model.norm_pre
    vision_model.encoder.layers.i                      -> vision.model.blocks.i
    vision_model.post_layernorm                        -> vision.model.norm
    text_model.embeddings.token_embedding              -> text.token_embedding
    text_model.embeddings.position_embedding.weight    -> text.positional_embedding
    text_model.encoder.layers.i                        -> text.blocks.i
    text_model.final_layer_norm                        -> text.ln_final
    visual_projection / text_projection [D, C]         -> vision_proj.proj / text_proj.proj
    logit_scale                                        -> itc.logit_scale
    (in a layer) self_attn.{q,k,v}_proj -> attn.qkv, self_attn.out_proj -> attn.proj,
    layer_norm1/2 -> norm1/2, mlp.fc1/fc2 -> mlp.fc1/fc2

HF applies ``post_layernorm`` to the class token only and timm's ``norm`` to every token:
pooled outputs are identical. Text pooling: HF pools at ``argmax(input_ids)`` when the
config's ``eos_token_id`` is the legacy 2, otherwise at the first ``eos_token_id``; vlp's
``eot_token_id`` is set to ``None`` or that id accordingly.
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, List, Optional, Union

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import _clip_common as common  # noqa: E402

_BLOCK_NAMES = [
    ('self_attn.q_proj.', 'attn.q_proj.'),  # fused into attn.qkv by common.fuse_qkv
    ('self_attn.k_proj.', 'attn.k_proj.'),
    ('self_attn.v_proj.', 'attn.v_proj.'),
    ('self_attn.out_proj.', 'attn.proj.'),
    ('layer_norm1.', 'norm1.'),
    ('layer_norm2.', 'norm2.'),
    ('mlp.fc1.', 'mlp.fc1.'),
    ('mlp.fc2.', 'mlp.fc2.'),
]
_V, _T = common.VISION_PREFIX, common.TEXT_PREFIX
_RULES: List[common.Rule] = [
    (r'vision_model\.embeddings\.class_embedding', _V + 'cls_token',
     lambda t: t.reshape(1, 1, -1)),
    (r'vision_model\.embeddings\.patch_embedding\.weight', _V + 'patch_embed.proj.weight', None),
    (r'vision_model\.embeddings\.position_embedding\.weight', _V + 'pos_embed',
     lambda t: t.unsqueeze(0)),
    (r'vision_model\.pre_layrnorm\.(weight|bias)', _V + r'norm_pre.\1', None),
    (r'vision_model\.post_layernorm\.(weight|bias)', _V + r'norm.\1', None),
    *common.block_rules('vision_model.encoder.layers.', _V + 'blocks.', _BLOCK_NAMES),
    (r'text_model\.embeddings\.token_embedding\.weight', _T + 'token_embedding.weight', None),
    (r'text_model\.embeddings\.position_embedding\.weight', _T + 'positional_embedding', None),
    *common.block_rules('text_model.encoder.layers.', _T + 'blocks.', _BLOCK_NAMES),
    (r'text_model\.final_layer_norm\.(weight|bias)', _T + r'ln_final.\1', None),
    (r'visual_projection\.weight', common.VISION_PROJ_KEY, None),
    (r'text_projection\.weight', common.TEXT_PROJ_KEY, None),
    (r'logit_scale', common.LOGIT_SCALE_KEY, common.to_scalar),
]
# non-persistent buffers that older transformers versions saved
_IGNORE = [r'(vision|text)_model\.embeddings\.position_ids']


def convert_hf_clip_state_dict(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """HF ``CLIPModel`` state dict -> vlp ``CLIP`` state dict.

    Raises:
        KeyError: a key no rule maps, or an incomplete q/k/v triple.
    """
    return common.fuse_qkv(common.rename_state_dict(state_dict, _RULES, _IGNORE))


def _as_hf_config(config):
    """A ``CLIPConfig`` from a ``CLIPConfig`` or its ``to_dict()``."""
    if isinstance(config, dict):
        from transformers import CLIPConfig
        return CLIPConfig.from_dict(config)
    return config


def hf_clip_arch(config, mean=None, std=None) -> common.ClipArch:
    """:class:`ClipArch` of a HF ``CLIPConfig`` (or its dict)."""
    config = _as_hf_config(config)
    vc, tc = config.vision_config, config.text_config
    if vc.num_channels != 3:
        raise NotImplementedError(f'{vc.num_channels} image channels')
    eos = tc.eos_token_id
    if isinstance(eos, (list, tuple)):
        raise NotImplementedError(f'several eos_token_id {eos}')
    return common.ClipArch(
        embed_dim=config.projection_dim,
        image_size=vc.image_size,
        patch_size=vc.patch_size,
        vision=common.TowerArch(
            width=vc.hidden_size, layers=vc.num_hidden_layers, heads=vc.num_attention_heads,
            mlp_ratio=common.mlp_ratio_of(vc.hidden_size, vc.intermediate_size),
            act_layer=common.map_activation(vc.hidden_act), ln_eps=vc.layer_norm_eps),
        vocab_size=tc.vocab_size,
        context_length=tc.max_position_embeddings,
        text=common.TowerArch(
            width=tc.hidden_size, layers=tc.num_hidden_layers, heads=tc.num_attention_heads,
            mlp_ratio=common.mlp_ratio_of(tc.hidden_size, tc.intermediate_size),
            act_layer=common.map_activation(tc.hidden_act), ln_eps=tc.layer_norm_eps),
        # HF: legacy eos_token_id 2 pools at argmax (EOT is the largest id), else first eos
        eot_token_id=None if eos == 2 else int(eos),
        mean=tuple(mean) if mean is not None else common.OPENAI_CLIP_MEAN,
        std=tuple(std) if std is not None else common.OPENAI_CLIP_STD)


def hf_clip_config_to_vlp(config, tokenizer: Optional[dict] = None, mean=None,
                          std=None) -> dict:
    """vlp model config dict for a HF ``CLIPConfig`` (or its dict).

    Args:
        config: the reference config.
        tokenizer: optional vlp tokenizer config for ``model.tokenizer``.
        mean, std: image statistics on the 0-1 scale (HF ``image_mean``/``image_std``);
            OpenAI's by default.
    """
    return common.build_model_cfg(hf_clip_arch(config, mean, std), tokenizer)


def _load_hf_weights(src_dir: str) -> Dict[str, torch.Tensor]:
    for index in ('model.safetensors.index.json', 'pytorch_model.bin.index.json'):
        path = osp.join(src_dir, index)
        if osp.exists(path):
            with open(path) as f:
                shards = sorted(set(json.load(f)['weight_map'].values()))
            state = {}
            for shard in shards:
                state.update(common.load_weights_file(osp.join(src_dir, shard)))
            return state
    for name in ('model.safetensors', 'pytorch_model.bin'):
        path = osp.join(src_dir, name)
        if osp.exists(path):
            return common.load_weights_file(path)
    raise FileNotFoundError(f'no model.safetensors or pytorch_model.bin in {src_dir}')


def _tokenizer_files(src_dir: str) -> List[str]:
    """Tokenizer files of ``src_dir``: ``tokenizer.json`` (fast), else the BPE pair
    ``vocab.json`` + ``merges.txt``; none if neither is complete."""
    for names in (['tokenizer.json'], ['vocab.json', 'merges.txt']):
        paths = [osp.join(src_dir, n) for n in names]
        if all(osp.exists(p) for p in paths):
            return paths
    return []


def _image_stats(src_dir: str):
    path = osp.join(src_dir, 'preprocessor_config.json')
    if not osp.exists(path):
        return None, None
    with open(path) as f:
        pre = json.load(f)
    return pre.get('image_mean'), pre.get('image_std')


def convert(src_dir: str, out_dir: str, tokenizer: bool = True,
            dtype: Optional[torch.dtype] = torch.float32) -> Dict[str, Union[str, dict]]:
    """Convert a HF ``save_pretrained`` directory; returns the written paths and config."""
    with open(osp.join(src_dir, 'config.json')) as f:
        config = json.load(f)
    arch = hf_clip_arch(config, *_image_stats(src_dir))
    files = _tokenizer_files(src_dir) if tokenizer else []
    tok_cfg = common.tokenizer_cfg(files, arch.context_length) if files else None
    model_cfg = common.build_model_cfg(arch, tok_cfg)
    state = common.cast_state_dict(convert_hf_clip_state_dict(_load_hf_weights(src_dir)), dtype)
    common.check_state_dict(model_cfg, state)
    meta = dict(source='transformers.CLIPModel', source_path=osp.abspath(src_dir),
                converter='tools/convert/hf_clip_to_vlp.py')
    cfg_path, ckpt_path = common.save_converted(
        out_dir, model_cfg, state, meta, common.config_header('hf_clip_to_vlp.py', src_dir),
        copy_files=files)
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model_cfg)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src_dir', help='HF save_pretrained directory of a CLIPModel')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth)')
    parser.add_argument('--no-tokenizer', action='store_true',
                        help='do not copy tokenizer files or add a tokenizer to the config')
    common.add_dtype_arg(parser)
    args = parser.parse_args(argv)
    out = convert(args.src_dir, args.out_dir, tokenizer=not args.no_tokenizer,
                  dtype=common.dtype_arg(args.dtype))
    print(f'wrote {out["config"]} and {out["checkpoint"]}')


if __name__ == '__main__':
    main()
