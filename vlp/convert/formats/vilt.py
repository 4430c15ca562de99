"""HF transformers ViLT (Kim et al. 2021, "ViLT: Vision-and-Language Transformer Without
Convolution or Region Supervision"; ``ViltModel``, ``ViltForMaskedLM``,
``ViltForImageAndTextRetrieval``) <-> vlp ``ViLT``.

Table (``vilt.`` prefix of the task models; ``i`` = layer)::

    embeddings.text_embeddings.word_embeddings        -> backbone.word_embeddings
    embeddings.text_embeddings.position_embeddings    -> backbone.text_pos_embed
    embeddings.text_embeddings.token_type_embeddings  -> backbone.token_type_embed
    embeddings.text_embeddings.LayerNorm              -> backbone.text_norm
    embeddings.cls_token / position_embeddings        -> backbone.cls_token / pos_embed
    embeddings.patch_embeddings.projection            -> backbone.patch_embed
    embeddings.token_type_embeddings (modality type)  -> backbone.modality_embed
    encoder.layer.i.layernorm_before / layernorm_after -> backbone.blocks.i.norm1 / norm2
    encoder.layer.i.attention.attention.{query,key,value} -> backbone.blocks.i.attn.qkv
    encoder.layer.i.attention.output.dense            -> backbone.blocks.i.attn.proj
    encoder.layer.i.intermediate.dense / output.dense -> backbone.blocks.i.mlp.fc1 / fc2
    layernorm / pooler.dense                          -> backbone.norm / backbone.pooler
    mlm_score.transform.dense / transform.LayerNorm   -> mlm_head.dense / mlm_head.norm
    mlm_score.decoder.weight / decoder.bias           -> mlm_head.decoder.weight / mlm_head.bias
    rank_output [1, C]                                -> itm_head.fc [2, C]: rows [0; w]

The retrieval score ``s`` becomes the matched-class logit of a 2-way ITM head whose other
logit is 0 (``ViLT.rerank_scores`` returns HF's score); on export the ITM head becomes
``rank_output = w_1 - w_0`` (the log-odds of a match: the same ranking, exactly the
original on a round trip). A head the checkpoint lacks is ``None`` in the written config;
the MLM decoder is tied to the word embeddings when absent or equal to them.

Not carried over: HF's eval-time patch sampling (``max_image_length > 0``) and the pixel
mask. Image statistics from ``preprocessor_config.json`` (ViLT: mean = std = 0.5).
"""
import os.path as osp
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..arch import ACTIVATIONS, hf_activation, part_args, require, square
from ..eval_configs import image_pipeline, pipeline_vars
from ..io import (build_tokenizer, cast_state_dict, check_token_ids, check_tokenizer_vocab,
                  hf_expected, mean_std_01, mean_std_255, read_hf_source, save_vlp,
                  vlp_expected, write_hf_folder, written_eval_configs)
from ..rules import (Add, ConversionReport, Copy, Drop, Fn, Fuse, Rename, Rule,
                     convert_state_dict, nest)

B = 'backbone.'
_WORDS = 'embeddings.text_embeddings.word_embeddings.weight'
KINDS = dict(model='ViltModel', mlm='ViltForMaskedLM', retrieval='ViltForImageAndTextRetrieval')
# score s = w x + b  <->  ITM logits (0, s); back: s = logit_1 - logit_0
RANK_TO_ITM = Fn('rank score -> 2-way logits', lambda t: torch.cat([torch.zeros_like(t), t]),
                 lambda t: t[1:] - t[:1])
BLOCK: List[Rule] = [
    Rename('layernorm_before.{p}', 'norm1.{p}'),
    Rename('layernorm_after.{p}', 'norm2.{p}'),
    Fuse('attention.attention.{s}.{p}', 'attn.qkv.{p}', s=('query', 'key', 'value')),
    Rename('attention.output.dense.{p}', 'attn.proj.{p}'),
    Rename('intermediate.dense.{p}', 'mlp.fc1.{p}'),
    Rename('output.dense.{p}', 'mlp.fc2.{p}'),
]
BACKBONE: List[Rule] = [
    Rename('embeddings.text_embeddings.word_embeddings.weight', B + 'word_embeddings.weight'),
    Rename('embeddings.text_embeddings.position_embeddings.weight',
           B + 'text_pos_embed.weight'),
    Rename('embeddings.text_embeddings.token_type_embeddings.weight',
           B + 'token_type_embed.weight'),
    Rename('embeddings.text_embeddings.LayerNorm.{p}', B + 'text_norm.{p}'),
    Rename('embeddings.cls_token', B + 'cls_token'),
    Rename('embeddings.position_embeddings', B + 'pos_embed'),
    Rename('embeddings.patch_embeddings.projection.{p}', B + 'patch_embed.{p}'),
    Rename('embeddings.token_type_embeddings.weight', B + 'modality_embed.weight'),
    *nest(BLOCK, 'encoder.layer.{i}.', B + 'blocks.{i}.'),
    Rename('layernorm.{p}', B + 'norm.{p}'),
    Rename('pooler.dense.{p}', B + 'pooler.{p}'),
    Drop('embeddings.text_embeddings.{x:position_ids|token_type_ids}', 'buffer'),
]
HEADS: List[Rule] = [
    Rename('mlm_score.transform.dense.{p}', 'mlm_head.dense.{p}'),
    Rename('mlm_score.transform.LayerNorm.{p}', 'mlm_head.norm.{p}'),
    Rename('mlm_score.decoder.weight', 'mlm_head.decoder.weight'),
    Rename('mlm_score.decoder.bias', 'mlm_head.bias'),
    Add('mlm_head.decoder.weight', Copy(B + 'word_embeddings.weight'), 'tied copies'),
    Add('mlm_head.bias', 'zeros'),
    Rename('rank_output.{p}', 'itm_head.fc.{p}', RANK_TO_ITM),
]


def table(prefix: str = '', kind: str = 'model') -> List[Rule]:
    """The ViLT table for HF keys under ``prefix`` (``'vilt.'`` in the task models); heads
    a ``kind`` of HF model lacks are left at init on import, not exported."""
    others = dict(model='{x:itm_head|mlm_head}', mlm='{x:itm_head}',
                  retrieval='{x:mlm_head}')[kind]
    return nest(BACKBONE, prefix, '') + HEADS + [Add(others + '.{rest:.+}', 'init',
                                                     'left_at_init')]


def detect(sd: Mapping[str, torch.Tensor]) -> Dict[str, object]:
    """``prefix``, ``kind``, ``has_mlm``, ``has_rank``, ``tie_mlm_decoder`` of a HF state
    dict."""
    prefix = 'vilt.' if 'vilt.' + _WORDS in sd else ''
    has_rank = 'rank_output.weight' in sd
    has_mlm = any(k.startswith('mlm_score.') for k in sd)
    dec = sd.get('mlm_score.decoder.weight')
    emb = sd.get(prefix + _WORDS)
    tie = dec is None or emb is None or (dec.shape == emb.shape and (
        dec.is_meta or torch.equal(dec, emb)))
    kind = 'retrieval' if has_rank else 'mlm' if has_mlm else 'model'
    return dict(prefix=prefix, kind=kind, has_mlm=has_mlm, has_rank=has_rank,
                tie_mlm_decoder=tie)


def convert_hf_vilt_state_dict(sd: Mapping[str, torch.Tensor], drop: Sequence[str] = (),
                               expected: Optional[Mapping] = None
                               ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """Rename a HF ViLT state dict to vlp ``ViLT`` keys; the report's ``info`` holds
    :func:`detect`'s facts (``report.has_mlm``, ``report['dropped']``...)."""
    info = detect(sd)
    rep = ConversionReport(info=info)
    state, rep = convert_state_dict(sd, table(info['prefix'], info['kind']), drop=drop,
                                    expected=expected, report=rep, what='the vlp ViLT')
    if expected is None and info['has_mlm']:  # the tied / missing head entries
        emb = state[B + 'word_embeddings.weight']
        state.setdefault('mlm_head.decoder.weight', emb)
        state.setdefault('mlm_head.bias', torch.zeros(emb.shape[0], dtype=emb.dtype))
    return state, rep


def hf_vilt_model_cfg(config, has_mlm: bool, has_rank: bool, tie_mlm_decoder: bool = True,
                      mean=None, std=None, tokenizer: Optional[dict] = None) -> dict:
    """vlp ``ViLT`` config of a HF ``ViltConfig`` (or its dict)."""
    c = config if isinstance(config, dict) else config.to_dict()
    width, eps = c['hidden_size'], c.get('layer_norm_eps', 1e-12)
    act = c.get('hidden_act', 'gelu')
    if act not in ACTIVATIONS:
        raise ValueError(f'unsupported hidden_act {act!r}')
    act = ACTIVATIONS[act]
    max_len = c.get('max_image_length', -1)
    backbone = dict(type='SingleStreamTransformer', img_size=square(c['image_size'], 'size'),
                    patch_size=square(c['patch_size'], 'patch'),
                    in_chans=c.get('num_channels', 3),
                    vocab_size=c['vocab_size'], max_text_len=c['max_position_embeddings'],
                    type_vocab_size=c.get('type_vocab_size', 2), embed_dim=width,
                    depth=c['num_hidden_layers'], num_heads=c['num_attention_heads'],
                    mlp_dim=c['intermediate_size'], qkv_bias=c.get('qkv_bias', True),
                    num_modality_types=c.get('modality_type_vocab_size', 2), ln_eps=eps,
                    act_layer=act, pad_token_id=c.get('pad_token_id'),
                    max_image_len=max_len if isinstance(max_len, int) and max_len > 0
                    else None)
    cfg = dict(
        type='ViLT',
        data_preprocessor=mean_std_255([0.5] * 3 if mean is None else mean,
                                       [0.5] * 3 if std is None else std),
        backbone=backbone,
        itm_head=dict(type='ITMHead', hidden_size=width) if has_rank else None,
        mlm_head=(dict(type='MLMHead', hidden_size=width, vocab_size=c['vocab_size'],
                       act_layer=act, ln_eps=eps) if has_mlm else None),
        tie_mlm_decoder=tie_mlm_decoder)
    if tokenizer is not None:
        cfg['tokenizer'] = tokenizer
    return cfg


def convert(src: Union[str, Mapping[str, torch.Tensor]], out_dir: str, config=None,
            tokenizer: Optional[str] = None, max_length: Optional[int] = None,
            dtype: Optional[torch.dtype] = torch.float32, drop: Sequence[str] = ()) -> dict:
    """Convert a ``save_pretrained`` folder, one weights file (with ``config``) or a state
    dict (with ``config``); writes ``out_dir/config.py`` + ``model.pth``."""
    sd, cfg, mean, std, source = read_hf_source(src, config)
    cfg = cfg if isinstance(cfg, dict) else cfg.to_dict()
    info = detect(sd)
    tok_cfg = None
    if tokenizer is not None:
        key = 'tokenizer_file' if tokenizer.endswith('.json') else 'vocab_file'
        tok_cfg = dict(type='BertTokenizer', lowercase=True,
                       max_length=max_length or cfg['max_position_embeddings'])
        tok_cfg[key] = '{{ fileDirname }}/' + osp.basename(tokenizer)
    model_cfg = hf_vilt_model_cfg(cfg, info['has_mlm'], info['has_rank'],
                                  info['tie_mlm_decoder'], mean, std, tok_cfg)
    vocab = model_cfg['backbone']['vocab_size']
    check_token_ids(vocab, source, pad_token_id=model_cfg['backbone']['pad_token_id'])
    if tok_cfg is not None:
        check_tokenizer_vocab(build_tokenizer(tok_cfg, [tokenizer]), vocab, tokenizer)
    # vlp's ViLT test transform: a square resize to the trained size (HF's processor keeps
    # the aspect ratio, shorter side 384, longer at most 640: a batch needs one size)
    pipelines = pipeline_vars(model_cfg, image_pipeline(model_cfg['backbone']['img_size']))
    state, rep = convert_hf_vilt_state_dict(sd, drop, vlp_expected(model_cfg))
    kind = KINDS[info['kind']]
    meta = dict(source=f'transformers.{kind}', source_path=source,
                converter='tools/convert/hf_vilt_to_vlp.py')
    header = (f'# vlp ViLT converted by tools/convert/hf_vilt_to_vlp.py from {source}\n'
              f'# (transformers {kind}).\n'
              '# Load with vlp.apis.init_model(<this directory>) (config.py + model.pth).\n'
              '# Paths containing {{ fileDirname }} resolve to this directory.\n')
    cfg_path, ckpt_path = save_vlp(out_dir, model_cfg, cast_state_dict(state, dtype), meta,
                                   header, copy_files=[tokenizer] if tokenizer else [],
                                   pipelines=pipelines)
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model_cfg, info=rep, kind=kind,
                report=rep, eval_configs=written_eval_configs(out_dir))


# -- export -----------------------------------------------------------------------------------
def vlp_vilt_hf_config(model_cfg: Mapping, kind: str):
    """``transformers.ViltConfig`` of a vlp ``ViLT`` config."""
    from transformers import ViltConfig
    require(model_cfg, 'ViLT', 'the model')
    b = part_args(require(model_cfg['backbone'], 'SingleStreamTransformer', 'the backbone'))
    if not b['with_pooler']:
        raise NotImplementedError("HF's ViltModel has a pooler (with_pooler=True)")
    mlp = b['mlp_dim'] or int(b['embed_dim'] * b['mlp_ratio'])
    head = model_cfg.get('mlm_head')
    if kind == 'mlm' and head is not None:
        h = part_args(head)
        if h['act_layer'] != b['act_layer'] or h['ln_eps'] != b['ln_eps']:
            raise NotImplementedError("the MLM head's activation / eps differ from the "
                                      "backbone's (HF shares them)")
    itm = model_cfg.get('itm_head')
    if kind == 'retrieval' and itm is not None and part_args(itm).get('pooler'):
        raise NotImplementedError("an ITM head with its own pooler (HF's uses the backbone's)")
    cfg = ViltConfig(
        vocab_size=b['vocab_size'], type_vocab_size=b['type_vocab_size'],
        modality_type_vocab_size=b['num_modality_types'], max_position_embeddings=b['max_text_len'],
        hidden_size=b['embed_dim'], num_hidden_layers=b['depth'],
        num_attention_heads=b['num_heads'], intermediate_size=mlp,
        hidden_act=hf_activation(b['act_layer']), hidden_dropout_prob=b['drop'],
        attention_probs_dropout_prob=b['attn_drop'], layer_norm_eps=b['ln_eps'],
        image_size=b['img_size'], patch_size=b['patch_size'], num_channels=b['in_chans'],
        qkv_bias=b['qkv_bias'], max_image_length=b['max_image_len'] or -1,
        pad_token_id=b['pad_token_id'],
        tie_word_embeddings=bool(model_cfg.get('tie_mlm_decoder', True)))
    cfg.architectures = [KINDS[kind]]
    return cfg


def export(model_cfg: Mapping, state_dict, out_dir: str, dtype: Optional[torch.dtype] = None,
           kind: Optional[str] = None) -> dict:
    """vlp ``ViLT`` -> ``out_dir`` (``ViltModel`` / ``ViltForMaskedLM`` /
    ``ViltForImageAndTextRetrieval`` ``.from_pretrained``; ``kind`` ``model`` / ``mlm`` /
    ``retrieval``, by default the one of the model's single head)."""
    has = dict(mlm=model_cfg.get('mlm_head') is not None,
               retrieval=model_cfg.get('itm_head') is not None)
    if kind is None:
        if all(has.values()):
            raise ValueError("the ViLT has an ITM and an MLM head: choose kind='retrieval' "
                             "or 'mlm' (HF has one head per model)")
        kind = next((k for k, v in has.items() if v), 'model')
    if kind not in KINDS:
        raise ValueError(f'kind must be one of {sorted(KINDS)}, got {kind!r}')
    if kind != 'model' and not has[kind]:
        raise NotImplementedError(f'the ViLT has no {kind} head')
    hf_cfg = vlp_vilt_hf_config(model_cfg, kind)
    prefix = '' if kind == 'model' else 'vilt.'
    state, report = convert_state_dict(state_dict, table(prefix, kind), reverse=True,
                                       expected=hf_expected(hf_cfg, KINDS[kind]),
                                       what=f'HF {KINDS[kind]}')
    report.info['kind'] = kind
    mean, std = mean_std_01(model_cfg)
    pre = dict(image_processor_type='ViltImageProcessor', do_resize=True,
               size=dict(shortest_edge=hf_cfg.image_size), size_divisor=hf_cfg.patch_size,
               do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=mean,
               image_std=std, do_pad=True, resample=3)
    write_hf_folder(out_dir, hf_cfg, cast_state_dict(state, dtype),
                    {'preprocessor_config.json': pre})
    return dict(out_dir=out_dir, reference=f'transformers.{KINDS[kind]}', config=hf_cfg,
                report=report)
