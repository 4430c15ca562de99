"""Checkpoints of the official VLMo code (Bao et al. 2022; github.com/microsoft/unilm
``vlmo/vlmo/modules/{vlmo_module,multiway_transformer,heads}.py``) -> vlp ``VLMo``
(import only).

Table (``i`` a block; experts ``imag`` -> ``v``, ``text`` -> ``l``, ``vl`` -> ``vl``)::

    transformer.patch_embed.proj        -> backbone.patch_embed
    transformer.cls_token / pos_embed   -> backbone.cls_token / pos_embed
    transformer.blocks.i.norm1, attn.proj, attn.qkv.weight, gamma_1/2 -> backbone.blocks.i.*
    transformer.blocks.i.attn.q_bias, v_bias -> backbone.blocks.i.attn.qkv.bias (q, 0, v)
    transformer.blocks.i.norm2_<e>      -> backbone.blocks.i.norm2.<e>
    transformer.blocks.i.mlp_<e>.fc1/2  -> backbone.blocks.i.ffn.<e>.fc1/2
    transformer.norm                    -> backbone.norm
    relative_position_bias_table        -> backbone.rel_pos_bias_table
    text_embeddings.word_embeddings + token_type_embeddings[0]
                                        -> backbone.word_embeddings (BERT's type-0 row is a
                                           constant added before the LayerNorm)
    text_embeddings.position_embeddings -> backbone.text_pos_embed (absolute positions only)
    text_embeddings.LayerNorm           -> backbone.text_norm
    token_type_embeddings               -> backbone.type_embed
    pooler.dense + itm_score.fc         -> itm_head.pooler.0 + itm_head.fc
    itc_image_proj.fc / itc_text_proj.fc -> vision_proj.proj / text_proj.proj
    logit_scale                         -> itc.logit_scale
    mlm_score.transform.dense / .LayerNorm, decoder, bias
                                        -> mlm_head.dense / norm, decoder (untied), bias

Not converted (reported as skipped): the VL-FFN ITC heads of pre-training (``itc_vl_*``,
``logit_vl_scale``), downstream heads (``vqa_classifier``, ``nlvr2_classifier``), buffers.
vlp's ``[MASK]`` patch embedding has no source (zeros).
"""
import os.path as osp
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from ..eval_configs import image_pipeline, pipeline_vars
from ..io import (build_tokenizer, cast_state_dict, check_tokenizer_vocab, mean_std_255,
                  read_checkpoint, save_vlp, strip_prefix, vlp_expected, written_eval_configs)
from ..rules import (Add, ConversionReport, Drop, Merge, Rename, Rule, convert_state_dict)

EXPERTS = {'imag': 'v', 'text': 'l', 'vl': 'vl'}
_BLK, _DST = 'transformer.blocks.{i}.', 'backbone.blocks.{i}.'


def table(rel_pos: bool) -> List[Rule]:
    """The VLMo table; with a relative position table (``rel_pos``) the text position
    embeddings are unused by VLMo and skipped."""
    skip = [Drop(p, bucket='skipped') for p in (
        'itc_vl_{rest:.+}', 'logit_vl_scale', 'vqa_classifier.{rest:.+}',
        'nlvr2_classifier.{rest:.+}', 'text_embeddings.position_ids',
        '{x:.*}relative_position_index')]
    text_pos = 'text_embeddings.position_embeddings.weight'
    return [
        Rename('transformer.patch_embed.proj.{p}', 'backbone.patch_embed.{p}'),
        Rename('transformer.{x:cls_token|pos_embed}', 'backbone.{x}'),
        Rename('transformer.norm.{p}', 'backbone.norm.{p}'),
        Rename(_BLK + '{x:norm1|attn\\.proj}.{p}', _DST + '{x}.{p}'),
        Rename(_BLK + 'attn.qkv.weight', _DST + 'attn.qkv.weight'),
        Merge([_BLK + 'attn.q_bias', _BLK + 'attn.v_bias'], _DST + 'attn.qkv.bias',
              lambda q, v: torch.cat([q, torch.zeros_like(q), v]), describe='[q; 0; v]'),
        Rename(_BLK + '{g:gamma_1|gamma_2}', _DST + '{g}'),
        Rename(_BLK + 'norm2_{e}.{p}', _DST + 'norm2.{e}.{p}', maps=dict(e=EXPERTS)),
        Rename(_BLK + 'mlp_{e}.{fc:fc1|fc2}.{p}', _DST + 'ffn.{e}.{fc}.{p}',
               maps=dict(e=EXPERTS)),
        Rename('relative_position_bias_table', 'backbone.rel_pos_bias_table'),
        Merge(['text_embeddings.word_embeddings.weight',
               'text_embeddings.token_type_embeddings.weight'],
              'backbone.word_embeddings.weight', lambda w, tt: w + tt[0],
              describe='word + type-0 embedding'),
        (Drop(text_pos, 'unused with relative positions', 'skipped') if rel_pos else
         Rename(text_pos, 'backbone.text_pos_embed.weight')),
        Rename('text_embeddings.LayerNorm.{p}', 'backbone.text_norm.{p}'),
        Rename('token_type_embeddings.weight', 'backbone.type_embed.weight'),
        Rename('pooler.dense.{p}', 'itm_head.pooler.0.{p}'),
        Rename('itm_score.fc.{p}', 'itm_head.fc.{p}'),
        Rename('itc_{x}_proj.fc.weight', '{x}_proj.proj.weight',
               maps=dict(x=dict(image='vision', text='text'))),
        Rename('logit_scale', 'itc.logit_scale'),
        Rename('mlm_score.transform.dense.{p}', 'mlm_head.dense.{p}'),
        Rename('mlm_score.transform.LayerNorm.{p}', 'mlm_head.norm.{p}'),
        Rename('mlm_score.decoder.{p}', 'mlm_head.decoder.{p}'),
        Rename('mlm_score.bias', 'mlm_head.bias'),
        Add('backbone.mask_token', 'zeros'),
        *skip,
    ]


def convert_vlmo_state_dict(sd: Mapping[str, torch.Tensor], expected: Optional[Mapping] = None
                        ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """``(vlp state dict, report)``; ``KeyError`` on keys no rule knows."""
    sd = strip_prefix(sd)
    state, rep = convert_state_dict(sd, table('relative_position_bias_table' in sd),
                                    expected=expected, what='the vlp VLMo')
    if 'backbone.patch_embed.weight' not in state:
        raise KeyError('not a VLMo checkpoint: no transformer.patch_embed.proj.weight')
    return state, rep


def vlmo_model_cfg(state: Mapping[str, torch.Tensor], img_size: int, patch_size: int,
                   num_heads: int, max_text_len: int) -> dict:
    """The vlp ``VLMo`` config the converted weights load into."""
    C = state['backbone.patch_embed.weight'].shape[0]
    blocks = {int(k.split('.')[2]) for k in state if k.startswith('backbone.blocks.')}
    depth = max(blocks) + 1
    num_vl = sum(f'backbone.blocks.{i}.ffn.vl.fc1.weight' in state for i in range(depth))
    hidden = state['backbone.blocks.0.ffn.v.fc1.weight'].shape[0]
    vocab = state['backbone.word_embeddings.weight'].shape[0]
    backbone = dict(type='MultiwayTransformer', img_size=img_size, patch_size=patch_size,
                    vocab_size=vocab, max_text_len=max_text_len, embed_dim=C, depth=depth,
                    num_heads=num_heads, mlp_ratio=hidden / C, num_vl_layers=num_vl,
                    layer_scale_init=0.1 if 'backbone.blocks.0.gamma_1' in state else None,
                    abs_pos_embed='backbone.pos_embed' in state,
                    rel_pos_bias='backbone.rel_pos_bias_table' in state)
    if backbone['rel_pos_bias']:
        if state['backbone.rel_pos_bias_table'].shape[1] != depth * num_heads:
            raise ValueError('the relative position table does not have depth x num_heads '
                             f'columns ({state["backbone.rel_pos_bias_table"].shape[1]} vs '
                             f'{depth} x {num_heads}): check --num-heads')
        grid = img_size // patch_size
        n_img = (2 * grid - 1) ** 2 + 3
        rows = state['backbone.rel_pos_bias_table'].shape[0]
        backbone['text_rel_pos_len'] = (rows - n_img - 2) // 2
    # VLMo's square_transform ends with inception_normalize (mean 0.5, std 0.5), as ViLT
    cfg = dict(type='VLMo', data_preprocessor=mean_std_255([0.5] * 3, [0.5] * 3),
               backbone=backbone, stage='image_text')
    if 'vision_proj.proj.weight' not in state:
        raise KeyError('the checkpoint has no ITC projections (itc_image_proj / '
                       'itc_text_proj): vlp VLMo needs them')
    D = state['vision_proj.proj.weight'].shape[0]
    cfg.update(vision_proj=dict(type='Projection', in_dim=C, out_dim=D, bias=False),
               text_proj=dict(type='Projection', in_dim=C, out_dim=D, bias=False))
    if 'itm_head.fc.weight' in state:
        cfg['itm_head'] = dict(type='ITMHead', hidden_size=C,
                               pooler='itm_head.pooler.0.weight' in state)
    if 'mlm_head.decoder.weight' in state:
        cfg.update(mlm_head=dict(type='MLMHead', hidden_size=C, vocab_size=vocab),
                   tie_mlm_head=False)
    return cfg


def convert(checkpoint: str, out_dir: str, img_size: int = 224, patch_size: int = 16,
            num_heads: int = 12, max_text_len: int = 40,
            dtype: Optional[torch.dtype] = torch.float32,
            tokenizer: Optional[str] = None) -> dict:
    """Convert an official VLMo checkpoint (weights-only); the config's sizes come from the
    weights (a first, unchecked pass), then the strict pass fills ``mask_token``.
    ``tokenizer``: a BERT ``vocab.txt`` / ``tokenizer.json`` (VLMo: bert-base-uncased),
    copied and named in the config after a check against the weights' vocabulary."""
    from .albef import bert_tokenizer_cfg
    sd = read_checkpoint(checkpoint)
    probe, _ = convert_vlmo_state_dict(sd)
    model_cfg = vlmo_model_cfg(probe, img_size, patch_size, num_heads, max_text_len)
    vocab = model_cfg['backbone']['vocab_size']
    if tokenizer is not None:
        model_cfg['tokenizer'] = bert_tokenizer_cfg(tokenizer, max_text_len)
        check_tokenizer_vocab(build_tokenizer(model_cfg['tokenizer'], [tokenizer]), vocab,
                              tokenizer)
    pipelines = pipeline_vars(model_cfg, image_pipeline(img_size))
    state, report = convert_vlmo_state_dict(sd, vlp_expected(model_cfg))
    meta = dict(source='microsoft/unilm vlmo', source_path=osp.abspath(checkpoint),
                converter='tools/convert/vlmo_to_vlp.py', img_size=img_size)
    header = (f'# vlp VLMo converted by tools/convert/vlmo_to_vlp.py from {checkpoint}.\n'
              '# Load with vlp.apis.init_model(<this directory>) (config.py + model.pth).\n'
              '# Paths containing {{ fileDirname }} resolve to this directory.\n')
    cfg_path, ckpt_path = save_vlp(out_dir, model_cfg, cast_state_dict(state, dtype), meta,
                                   header, copy_files=[tokenizer] if tokenizer else [],
                                   pipelines=pipelines)
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model_cfg,
                skipped=sorted(report.skipped), report=report,
                eval_configs=written_eval_configs(out_dir))
