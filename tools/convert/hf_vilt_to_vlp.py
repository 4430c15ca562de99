"""Convert a HuggingFace transformers ViLT checkpoint (Kim et al. 2021, "ViLT: Vision-and-
Language Transformer Without Convolution or Region Supervision"; ``ViltModel``,
``ViltForMaskedLM`` or ``ViltForImageAndTextRetrieval``, transformers
``models/vilt/modeling_vilt.py``) to vlp's ``ViLT`` (``vlp/models/algorithms/vilt.py``).

Usage::

    python tools/convert/hf_vilt_to_vlp.py SRC OUT_DIR [--config config.json]
        [--vocab-file vocab.txt | --tokenizer-file tokenizer.json | --no-tokenizer]
        [--drop-keys REGEX ...] [--dtype fp32]

``SRC``: a ``save_pretrained`` directory (``config.json`` and ``model.safetensors`` /
``pytorch_model.bin``, possibly sharded) or one weights file (then ``--config``). Nothing
is downloaded. Writes ``OUT_DIR/config.py`` and ``OUT_DIR/model.pth`` (``{'state_dict',
'meta'}``, loadable weights-only).

Mapping (``vilt.`` prefix of the task models dropped; ``i`` = layer index)::

    embeddings.text_embeddings.word_embeddings        -> backbone.word_embeddings
    embeddings.text_embeddings.position_embeddings    -> backbone.text_pos_embed
    embeddings.text_embeddings.token_type_embeddings  -> backbone.token_type_embed
    embeddings.text_embeddings.LayerNorm              -> backbone.text_norm
    embeddings.cls_token / position_embeddings        -> backbone.cls_token / pos_embed
    embeddings.patch_embeddings.projection            -> backbone.patch_embed
    embeddings.token_type_embeddings (modality type)  -> backbone.modality_embed
    encoder.layer.i.layernorm_before / layernorm_after -> backbone.blocks.i.norm1 / norm2
    encoder.layer.i.attention.attention.{query,key,value} -> backbone.blocks.i.attn.qkv (fused)
    encoder.layer.i.attention.output.dense            -> backbone.blocks.i.attn.proj
    encoder.layer.i.intermediate.dense / output.dense -> backbone.blocks.i.mlp.fc1 / fc2
    layernorm / pooler.dense                          -> backbone.norm / backbone.pooler
    mlm_score.transform.dense / transform.LayerNorm   -> mlm_head.dense / mlm_head.norm
    mlm_score.decoder.weight / decoder.bias           -> mlm_head.decoder.weight / mlm_head.bias
    rank_output [1, C] (retrieval)                    -> itm_head.fc: rows [0; w], bias [0; b]

The retrieval model's ``rank_output`` score becomes the matched-class logit of a 2-way ITM
head whose other logit is 0, so ``ViLT.rerank_scores`` returns exactly HF's retrieval
logit. A head the checkpoint lacks is ``None`` in the written config (``ViltModel``: no
heads; ``ViltForMaskedLM``: no ITM head). The MLM decoder is tied to the word embeddings
when its weight is absent or equal to them (HF ties it), untied otherwise.

Not carried over: HF's eval-time patch sampling (``max_image_length > 0`` samples patches
at random even in eval; vlp's ``max_image_len`` samples in training only) and the pixel
mask (vlp takes batches of one image size; HF's ``ViltImageProcessor`` pads). The image
statistics come from ``preprocessor_config.json`` (ViLT: mean = std = 0.5), else 0.5.
"""
import argparse
import json
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import _clip_common as common  # noqa: E402
import hf_clip_to_vlp as hf_clip  # noqa: E402  (HF directory readers)

_B = 'backbone.'
_RULES: List[common.Rule] = [
    (r'embeddings\.text_embeddings\.word_embeddings\.weight', _B + 'word_embeddings.weight',
     None),
    (r'embeddings\.text_embeddings\.position_embeddings\.weight',
     _B + 'text_pos_embed.weight', None),
    (r'embeddings\.text_embeddings\.token_type_embeddings\.weight',
     _B + 'token_type_embed.weight', None),
    (r'embeddings\.text_embeddings\.LayerNorm\.(weight|bias)', _B + r'text_norm.\1', None),
    (r'embeddings\.cls_token', _B + 'cls_token', None),
    (r'embeddings\.position_embeddings', _B + 'pos_embed', None),
    (r'embeddings\.patch_embeddings\.projection\.(weight|bias)', _B + r'patch_embed.\1', None),
    (r'embeddings\.token_type_embeddings\.weight', _B + 'modality_embed.weight', None),
    *common.block_rules('encoder.layer.', _B + 'blocks.', [
        ('layernorm_before.', 'norm1.'), ('layernorm_after.', 'norm2.'),
        ('attention.attention.query.', 'attn.q_proj.'),
        ('attention.attention.key.', 'attn.k_proj.'),
        ('attention.attention.value.', 'attn.v_proj.'),
        ('attention.output.dense.', 'attn.proj.'),
        ('intermediate.dense.', 'mlp.fc1.'), ('output.dense.', 'mlp.fc2.')]),
    (r'layernorm\.(weight|bias)', _B + r'norm.\1', None),
    (r'pooler\.dense\.(weight|bias)', _B + r'pooler.\1', None),
    (r'mlm_score\.transform\.dense\.(weight|bias)', r'mlm_head.dense.\1', None),
    (r'mlm_score\.transform\.LayerNorm\.(weight|bias)', r'mlm_head.norm.\1', None),
    (r'mlm_score\.decoder\.weight', 'mlm_head.decoder.weight', None),
    (r'mlm_score\.decoder\.bias', 'mlm_head.bias', None),
    (r'rank_output\.(weight|bias)', r'rank_output.\1', None),  # expanded below
]
_IGNORE = [r'embeddings\.text_embeddings\.(position_ids|token_type_ids)']  # buffers
_ACT = {'gelu': 'gelu', 'gelu_new': 'gelu_tanh', 'gelu_pytorch_tanh': 'gelu_tanh',
        'relu': 'relu', 'silu': 'silu', 'quick_gelu': 'quick_gelu'}


def convert_hf_vilt_state_dict(sd: Dict[str, torch.Tensor], drop: Sequence[str] = ()
                               ) -> Tuple[Dict[str, torch.Tensor], Dict[str, object]]:
    """Rename a HF ViLT state dict to vlp ``ViLT`` keys. Returns ``(state, info)`` with
    ``info = dict(has_mlm, has_rank, tie_mlm_decoder, ignored, dropped)``.

    Raises:
        KeyError: a key no rule maps (pass ``drop`` regexes to discard keys on purpose).
    """
    info: Dict[str, object] = dict(ignored=[], dropped=[])
    kept = {}
    for k, v in sd.items():
        key = k[len('vilt.'):] if k.startswith('vilt.') else k
        if any(re.fullmatch(p, k) for p in drop):
            info['dropped'].append(k)
        elif any(re.fullmatch(p, key) for p in _IGNORE):
            info['ignored'].append(k)
        else:
            kept[key] = v
    out = common.fuse_qkv(common.rename_state_dict(kept, _RULES))
    w = out.pop('rank_output.weight', None)
    b = out.pop('rank_output.bias', None)
    info['has_rank'] = w is not None
    if w is not None:  # score s = w x + b  ->  ITM logits (0, s)
        out['itm_head.fc.weight'] = torch.cat([torch.zeros_like(w), w])
        out['itm_head.fc.bias'] = torch.cat([torch.zeros_like(b), b]) if b is not None \
            else torch.zeros(2, dtype=w.dtype)
    info['has_mlm'] = 'mlm_head.dense.weight' in out
    emb = out[_B + 'word_embeddings.weight']
    dec = out.get('mlm_head.decoder.weight')
    info['tie_mlm_decoder'] = dec is None or (dec.shape == emb.shape and torch.equal(dec, emb))
    if info['has_mlm'] and info['tie_mlm_decoder']:
        out.pop('mlm_head.decoder.weight', None)
        out['mlm_head.decoder.weight'] = emb  # the tied parameter's entry
    if info['has_mlm'] and 'mlm_head.bias' not in out:
        out['mlm_head.bias'] = torch.zeros(emb.shape[0], dtype=emb.dtype)
    return out, info


def _as_dict(config) -> dict:
    return config if isinstance(config, dict) else config.to_dict()


def _size(v) -> int:
    if isinstance(v, (list, tuple)):
        if len(set(v)) != 1:
            raise ValueError(f'only square sizes are supported, got {v}')
        return int(v[0])
    return int(v)


def hf_vilt_model_cfg(config, has_mlm: bool, has_rank: bool, tie_mlm_decoder: bool = True,
                      mean=None, std=None, tokenizer: Optional[dict] = None) -> dict:
    """vlp ``ViLT`` config of a HF ``ViltConfig`` (or its dict)."""
    c = _as_dict(config)
    width, eps = c['hidden_size'], c.get('layer_norm_eps', 1e-12)
    act = c.get('hidden_act', 'gelu')
    if act not in _ACT:
        raise ValueError(f'unsupported hidden_act {act!r}')
    mean = [0.5] * 3 if mean is None else mean
    std = [0.5] * 3 if std is None else std
    max_len = c.get('max_image_length', -1)
    backbone = dict(type='SingleStreamTransformer', img_size=_size(c['image_size']),
                    patch_size=_size(c['patch_size']), in_chans=c.get('num_channels', 3),
                    vocab_size=c['vocab_size'], max_text_len=c['max_position_embeddings'],
                    type_vocab_size=c.get('type_vocab_size', 2), embed_dim=width,
                    depth=c['num_hidden_layers'], num_heads=c['num_attention_heads'],
                    mlp_dim=c['intermediate_size'], qkv_bias=c.get('qkv_bias', True),
                    num_modality_types=c.get('modality_type_vocab_size', 2), ln_eps=eps,
                    act_layer=_ACT[act], pad_token_id=c.get('pad_token_id'),
                    max_image_len=max_len if isinstance(max_len, int) and max_len > 0
                    else None)
    cfg = dict(
        type='ViLT',
        data_preprocessor=dict(type='VLPDataPreprocessor',
                               mean=[round(m * 255, 6) for m in mean],
                               std=[round(s * 255, 6) for s in std]),
        backbone=backbone,
        itm_head=dict(type='ITMHead', hidden_size=width) if has_rank else None,
        mlm_head=(dict(type='MLMHead', hidden_size=width, vocab_size=c['vocab_size'],
                       act_layer=_ACT[act], ln_eps=eps) if has_mlm else None),
        tie_mlm_decoder=tie_mlm_decoder)
    if tokenizer is not None:
        cfg['tokenizer'] = tokenizer
    return cfg


def read_source(src: Union[str, Dict[str, torch.Tensor]], config=None):
    """``(state_dict, config dict, mean, std, source)`` of a ``save_pretrained`` directory,
    one weights file (with ``config``: a dict, a ``ViltConfig`` or a ``config.json`` path)
    or an in-memory state dict (with ``config``)."""
    if isinstance(config, str):
        with open(config) as f:
            config = json.load(f)
    if not isinstance(src, str):
        if config is None:
            raise ValueError('a state dict needs its config')
        return src, _as_dict(config), None, None, '<state dict>'
    if osp.isdir(src):
        if config is None:
            with open(osp.join(src, 'config.json')) as f:
                config = json.load(f)
        mean, std = hf_clip._image_stats(src)
        return hf_clip._load_hf_weights(src), _as_dict(config), mean, std, osp.abspath(src)
    if not osp.isfile(src):
        raise FileNotFoundError(f'{src}: neither a directory nor a file')
    if config is None:
        raise ValueError(f'{src} is a single weights file: pass its config.json (--config)')
    return common.load_weights_file(src), _as_dict(config), None, None, osp.abspath(src)


def convert(src: Union[str, Dict[str, torch.Tensor]], out_dir: str, config=None,
            tokenizer: Optional[str] = None, max_length: Optional[int] = None,
            dtype: Optional[torch.dtype] = torch.float32, drop: Sequence[str] = ()
            ) -> Dict[str, object]:
    """Convert and write ``out_dir/config.py`` + ``model.pth``; returns the paths, the model
    config and the conversion info. Nothing is written when a check fails."""
    sd, cfg, mean, std, source = read_source(src, config)
    state, info = convert_hf_vilt_state_dict(sd, drop)
    tok_cfg = None
    if tokenizer is not None:
        key = 'tokenizer_file' if tokenizer.endswith('.json') else 'vocab_file'
        tok_cfg = dict(type='BertTokenizer', lowercase=True,
                       max_length=max_length or cfg['max_position_embeddings'])
        tok_cfg[key] = '{{ fileDirname }}/' + osp.basename(tokenizer)
    model_cfg = hf_vilt_model_cfg(cfg, info['has_mlm'], info['has_rank'],
                                  info['tie_mlm_decoder'], mean, std, tok_cfg)
    state = common.cast_state_dict(state, dtype)
    common.check_state_dict(model_cfg, state)
    kind = ('ViltForImageAndTextRetrieval' if info['has_rank'] else
            'ViltForMaskedLM' if info['has_mlm'] else 'ViltModel')
    meta = dict(source=f'transformers.{kind}', source_path=source,
                converter='tools/convert/hf_vilt_to_vlp.py')
    header = (f'# vlp ViLT converted by tools/convert/hf_vilt_to_vlp.py from {source}\n'
              f'# (transformers {kind}).\n'
              '# Load with vlp.apis.init_model(<this file>, <dir>/model.pth).\n'
              '# Paths containing {{ fileDirname }} resolve to this directory.\n')
    cfg_path, ckpt_path = common.save_converted(
        out_dir, model_cfg, state, meta, header,
        copy_files=[tokenizer] if tokenizer is not None else [])
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model_cfg, info=info, kind=kind)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='HF save_pretrained directory, or one weights file')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth)')
    parser.add_argument('--config', help='config.json of a single weights file')
    tok = parser.add_mutually_exclusive_group()
    tok.add_argument('--vocab-file', help='BERT vocab.txt to copy and name in the config '
                     '(default: SRC/vocab.txt when present)')
    tok.add_argument('--tokenizer-file', help='BERT tokenizer.json to copy and name')
    tok.add_argument('--no-tokenizer', action='store_true', help='write no tokenizer')
    parser.add_argument('--max-length', type=int, default=None,
                        help='tokenizer padding length (default: max_position_embeddings)')
    common.add_drop_keys_arg(parser)
    common.add_dtype_arg(parser)
    args = parser.parse_args(argv)
    tokenizer = args.vocab_file or args.tokenizer_file
    if tokenizer is None and not args.no_tokenizer and osp.isdir(args.src):
        for name in ('tokenizer.json', 'vocab.txt'):
            if osp.exists(osp.join(args.src, name)):
                tokenizer = osp.join(args.src, name)
                break
    out = convert(args.src, args.out_dir, config=args.config, tokenizer=tokenizer,
                  max_length=args.max_length, dtype=common.dtype_arg(args.dtype),
                  drop=args.drop_keys)
    info = out['info']
    print(f"{out['kind']}; tie_mlm_decoder={info['tie_mlm_decoder']}")
    for what in ('ignored', 'dropped'):
        if info[what]:
            print(f'{what}: {", ".join(info[what])}')
    print(f'wrote {out["config"]} and {out["checkpoint"]}')
    return out


if __name__ == '__main__':
    main()
