"""open_clip ``CoCa`` (Yu et al. 2022, "CoCa: Contrastive Captioners are Image-Text
Foundation Models"; ``coca_ViT-B-32`` / ``coca_ViT-L-14`` weights) <-> vlp ``CoCa``.

open_clip's CoCa is vlp's ``CoCa(pooler_layout='shared')``: one attentional pooler of N
queries on the ViT tokens (taken *before* ``ln_post``: the timm ViT is built with
``final_norm=False``), ``ln_post`` on its output (the pooler's ``norm_out``), token 0
projected by ``visual.proj`` as the image embedding, tokens 1..N-1 the captioning tokens.
The text tower is ``TextTransformer(embed_cls=True, legacy_cls_mask=True)`` (open_clip's
``correct_cls_mask=False`` mask, with which its weights were trained); the multimodal
decoder is ``MultimodalDecoder(cross_ffn=True)``.

Table beyond the CLIP one (``i`` = layer)::

    visual.attn_pool.query / ln_q / ln_k     -> cap_pooler.query / norm_query / norm_context
    visual.attn_pool.attn.in_proj_weight     -> cap_pooler.attn.q (rows [:C]), .kv (rows [C:])
      (or q_proj_weight / k_proj_weight + v_proj_weight when the key width differs)
    visual.attn_pool.attn.out_proj           -> cap_pooler.attn.proj
    visual.ln_post                           -> cap_pooler.norm_out
    text.cls_emb, text.*                     -> text.cls_emb, text.* (the CLIP text rules)
    text_decoder.resblocks.i                 -> decoder.blocks.i
    text_decoder.cross_attn.i.ln_1 / ln_1_kv -> decoder.cross_blocks.i.norm_cross / norm_context
    text_decoder.cross_attn.i.attn           -> decoder.cross_blocks.i.cross_attn (q / kv split)
    text_decoder.cross_attn.i.{ln_2, mlp}    -> decoder.cross_blocks.i.{norm2, mlp}
    text_decoder.ln_final                    -> decoder.ln_final
    text_decoder.text_projection [C, V]      -> decoder.head.weight [V, C]

Not supported (``NotImplementedError``): open_clip's WIP ``attentional_pool='parallel'`` /
``'cascade'``, HF text towers, layer scale, and what the CLIP converter rejects. On export,
vlp's own CoCa layout (``pooler_layout='parallel'``, standard decoder layers) has no open_clip
equivalent and is refused; so is ``legacy_cls_mask=False`` (open_clip's CoCa cannot select
the corrected mask). Known difference: without ``attention_mask`` vlp derives the
``[CLS]``'s padding mask from the EOT position, open_clip from ``text != pad_id``.
"""
import copy
import json
import os.path as osp
from typing import List, Mapping, Optional

import torch

from ..arch import part_args, require
from ..io import (NO_WEIGHTS_ONLY_HINT, cast_state_dict, config_header, mean_std_01,
                  read_checkpoint, save_vlp, vlp_expected, write_open_clip_folder,
                  written_eval_configs)
from ..rules import (SCALAR, TRANSPOSE, Drop, Fuse, Rename, Rule, Split, convert_state_dict,
                     nest)
from .clip import (OPEN_CLIP_BLOCK, OPEN_CLIP_VIT, ClipArch, TowerArch, build_model_cfg,
                   clip_text_arch, clip_vision_arch, open_clip_text, projection_dims,
                   tokenizer_cfg)
from .open_clip import MODEL_KEYS as CLIP_MODEL_KEYS
from .open_clip import (arch_to_open_clip_cfg, default_tokenizer_file, open_clip_arch,
                        open_clip_expected, plain, preprocess_cfg)

# nn.MultiheadAttention used as cross-attention -> vlp Attention(q, kv, proj)
MHA_CROSS: List[Rule] = [
    Split('in_proj_weight', '{s}.weight', parts=(1, 2), s=('q', 'kv')),
    Split('in_proj_bias', '{s}.bias', parts=(1, 2), s=('q', 'kv')),
    Rename('q_proj_weight', 'q.weight'),  # separate projections: kdim != embed_dim
    Fuse('{s}_proj_weight', 'kv.weight', s=('k', 'v')),
    Rename('out_proj.{p}', 'proj.{p}'),
]
CROSS_BLOCK: List[Rule] = [
    Rename('ln_1.{p}', 'norm_cross.{p}'),
    Rename('ln_1_kv.{p}', 'norm_context.{p}'),
    *nest(MHA_CROSS, 'attn.', 'cross_attn.'),
    Rename('ln_2.{p}', 'norm2.{p}'),
    Rename('mlp.c_fc.{p}', 'mlp.fc1.{p}'),
    Rename('mlp.c_proj.{p}', 'mlp.fc2.{p}'),
]
OPEN_CLIP_COCA: List[Rule] = [
    *OPEN_CLIP_VIT,
    Rename('visual.attn_pool.query', 'cap_pooler.query'),
    Rename('visual.attn_pool.ln_q.{p}', 'cap_pooler.norm_query.{p}'),
    Rename('visual.attn_pool.ln_k.{p}', 'cap_pooler.norm_context.{p}'),
    *nest(MHA_CROSS, 'visual.attn_pool.attn.', 'cap_pooler.attn.'),
    Rename('visual.ln_post.{p}', 'cap_pooler.norm_out.{p}'),
    Rename('visual.proj', 'vision_proj.proj.weight', TRANSPOSE),
    Rename('text.cls_emb', 'text.cls_emb'),
    *open_clip_text('text.'),
    *nest(OPEN_CLIP_BLOCK, 'text_decoder.resblocks.{i}.', 'decoder.blocks.{i}.'),
    *nest(CROSS_BLOCK, 'text_decoder.cross_attn.{i}.', 'decoder.cross_blocks.{i}.'),
    Rename('text_decoder.ln_final.{p}', 'decoder.ln_final.{p}'),
    Rename('text_decoder.text_projection', 'decoder.head.weight', TRANSPOSE),
    Rename('logit_scale', 'itc.logit_scale', SCALAR),
    Drop('{x:.*}attn_mask', 'causal mask buffer'),
]
MODEL_KEYS = CLIP_MODEL_KEYS | {'multimodal_cfg', 'custom_text', 'pad_id'}


def convert_open_clip_coca_state_dict(state_dict, expected=None):
    """open_clip ``CoCa`` state dict -> vlp ``CoCa(pooler_layout='shared')`` state dict."""
    return convert_state_dict(state_dict, OPEN_CLIP_COCA, expected=expected)[0]


def open_clip_coca_config_to_vlp(model_cfg: Mapping, tokenizer: Optional[dict] = None,
                                 mean=None, std=None) -> dict:
    """vlp ``CoCa`` model config for an open_clip CoCa model config dict
    (``embed_dim``, ``vision_cfg``, ``text_cfg``, ``multimodal_cfg``[, ``quick_gelu``])."""
    from open_clip.coca_model import MultimodalCfg
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg
    unknown = set(model_cfg) - MODEL_KEYS
    if unknown:
        raise NotImplementedError(f'open_clip model options {sorted(unknown)} are not '
                                  'supported by the CoCa converter')
    vc, tc, mc = (model_cfg['vision_cfg'], model_cfg['text_cfg'],
                  model_cfg['multimodal_cfg'])
    vc = CLIPVisionCfg(**vc) if isinstance(vc, dict) else copy.deepcopy(vc)
    tc = CLIPTextCfg(**tc) if isinstance(tc, dict) else copy.deepcopy(tc)
    mc = MultimodalCfg(**mc) if isinstance(mc, dict) else mc
    if vc.attentional_pool is not True:
        raise NotImplementedError(f'vision_cfg.attentional_pool={vc.attentional_pool!r}: only '
                                  "open_clip's original CoCa pooler (True) is supported")
    if not tc.embed_cls:
        raise NotImplementedError('text_cfg.embed_cls=False is not a CoCa text tower')
    if mc.ls_init_value is not None:
        raise NotImplementedError('multimodal_cfg.ls_init_value (layer scale) is not supported')
    # the CLIP converter checks every other tower option
    vc.attentional_pool, tc.embed_cls, tc.pool_type = False, False, 'argmax'
    clip_cfg = {k: v for k, v in model_cfg.items() if k in CLIP_MODEL_KEYS}
    clip_cfg.update(vision_cfg=vc, text_cfg=tc)
    arch = open_clip_arch(clip_cfg, mean, std)
    clip = build_model_cfg(arch)
    D, act = arch.embed_dim, arch.text.act_layer
    model = dict(
        type='CoCa',
        data_preprocessor=clip['data_preprocessor'],
        vision=dict(clip['vision'], final_norm=False),  # ln_post follows the pooler
        text=dict(clip['text'], embed_cls=True, legacy_cls_mask=True),
        decoder=dict(type='MultimodalDecoder', vocab_size=arch.vocab_size, width=mc.width,
                     layers=mc.layers, heads=mc.heads, context_dim=D,
                     mlp_ratio=mc.mlp_ratio, act_layer=act, cross_ffn=True),
        cap_pooler=dict(type='AttentionalPooler', dim=D, context_dim=arch.vision.width,
                        num_heads=vc.attn_pooler_heads, n_queries=vc.attn_pooler_queries),
        con_pooler=None,
        pooler_layout='shared',
        vision_proj=dict(type='Projection', in_dim=D, out_dim=D, bias=False),
        text_proj=clip['text_proj'],
        itc=clip['itc'],
        caption_loss=dict(type='CaptionLoss'),
        contrastive_weight=1.0,
        caption_weight=2.0,
        # open_clip's default decoding is group beam search (6 beams in 3 groups), which
        # vlp's generate does not have: plain beam search with 6 beams instead
        generation_cfg=dict(num_beams=6, max_length=30, min_length=5))
    if tokenizer is not None:
        model['tokenizer'] = tokenizer
    return model


def convert(model_cfg: Mapping, checkpoint: str, out_dir: str,
            tokenizer: Optional[str] = 'auto', dtype: Optional[torch.dtype] = torch.float32,
            mean=None, std=None, model_name: str = '', weights_only: bool = True,
            eot_token_id: Optional[int] = None) -> dict:
    """Convert an open_clip CoCa checkpoint (arguments as
    :func:`vlp.convert.formats.open_clip.convert`). The vocabulary written is the weights'
    (the text embedding's rows; open_clip's config must agree); a tokenizer with more
    tokens than that is refused (``ValueError``: ``--tokenizer`` / ``--no-tokenizer``)."""
    from .hf_clip import finish_clip_cfg
    model = open_clip_coca_config_to_vlp(model_cfg, None, mean, std)
    if eot_token_id is not None:
        model['text']['eot_token_id'] = int(eot_token_id)
    sd = read_checkpoint(checkpoint, weights_only, opt_out=NO_WEIGHTS_ONLY_HINT)
    emb = sd.get('text.token_embedding.weight')
    vocab = model['text']['vocab_size']
    if emb is not None and emb.shape[0] != vocab:
        raise ValueError(f'{checkpoint}: the text embedding has {emb.shape[0]:,} rows but the '
                         f'open_clip config says vocab_size={vocab:,}: convert with the '
                         'config the weights were trained with (--model-config)')
    if tokenizer == 'auto':
        tokenizer = default_tokenizer_file(model_cfg)
    files = [tokenizer] if tokenizer else []
    if files:
        model['tokenizer'] = tokenizer_cfg(files, model['text']['context_length'])
    pipelines = finish_clip_cfg(model, files, model_name or checkpoint)
    state, report = convert_state_dict(sd, OPEN_CLIP_COCA, expected=vlp_expected(model),
                                       what='the vlp model')
    meta = dict(source='open_clip.CoCa', source_path=osp.abspath(checkpoint),
                converter='tools/convert/open_clip_coca_to_vlp.py', model_name=model_name,
                open_clip_config=json.dumps(plain(model_cfg), sort_keys=True))
    header = config_header('open_clip_coca_to_vlp.py', model_name or checkpoint, 'CoCa')
    cfg_path, ckpt_path = save_vlp(out_dir, model, cast_state_dict(state, dtype), meta,
                                   header, copy_files=files, pipelines=pipelines)
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model, report=report,
                eval_configs=written_eval_configs(out_dir))


# -- export ---------------------------------------------------------------------------------
def vlp_coca_open_clip_cfg(model_cfg: Mapping) -> tuple:
    """``(open_clip CoCa config, ClipArch)`` of a vlp ``CoCa`` in open_clip's layout."""
    require(model_cfg, 'CoCa', 'the model')
    if model_cfg.get('pooler_layout') != 'shared' or model_cfg.get('con_pooler') is not None:
        raise NotImplementedError("only CoCa(pooler_layout='shared') (open_clip's one pooler) "
                                  'has an open_clip equivalent')
    vision, image_size, patch = clip_vision_arch(model_cfg['vision'])
    if dict(model_cfg['vision']).get('final_norm', True) is not False:
        raise NotImplementedError('the ViT must be built with final_norm=False (open_clip '
                                  'applies ln_post after the pooler)')
    t = clip_text_arch(model_cfg['text'], embed_cls=True)
    if not t['legacy_cls_mask']:
        raise NotImplementedError("text legacy_cls_mask=False: open_clip's CoCa builds its "
                                  'text tower with the legacy [CLS] mask only')
    d = part_args(require(model_cfg['decoder'], 'MultimodalDecoder', 'the decoder'))
    pool = part_args(require(model_cfg['cap_pooler'], 'AttentionalPooler', 'cap_pooler'))
    _, D = projection_dims(model_cfg.get('vision_proj'), 'vision_proj')
    _, Dt = projection_dims(model_cfg.get('text_proj'), 'text_proj')
    problems = []
    if not d['cross_ffn']:
        problems.append('decoder cross_ffn=False')
    if not pool['out_norm'] or pool['dim'] != D or pool['ln_eps'] != 1e-5:
        problems.append('a pooler other than open_clip\'s (out_norm, dim = embed_dim, eps 1e-5)')
    if (d['context_dim'] or d['width']) != D or d['ln_eps'] != 1e-5 or D != Dt:
        problems.append('decoder / projection widths or eps')
    if d['act_layer'] != t['act_layer'] or d['vocab_size'] != t['vocab_size']:
        problems.append('decoder activation / vocabulary differ from the text tower\'s')
    if problems:
        raise NotImplementedError('no open_clip CoCa equivalent: ' + '; '.join(problems))
    mean, std = mean_std_01(model_cfg)
    arch = ClipArch(embed_dim=D, image_size=image_size, patch_size=patch, vision=vision,
                    vocab_size=t['vocab_size'], context_length=t['context_length'],
                    text=TowerArch(t['width'], t['layers'], t['heads'], t['mlp_ratio'],
                                   t['act_layer'], t['ln_eps']),
                    eot_token_id=t['eot_token_id'], mean=mean, std=std)
    oc = arch_to_open_clip_cfg(arch)
    oc['vision_cfg'].update(attentional_pool=True, attn_pooler_heads=pool['num_heads'],
                            attn_pooler_queries=pool['n_queries'], output_tokens=True)
    oc['text_cfg'].update(embed_cls=True, output_tokens=True)
    oc['text_cfg'].pop('pool_type', None)
    oc['text_cfg'].pop('eos_id', None)
    oc['multimodal_cfg'] = dict(context_length=t['context_length'], vocab_size=d['vocab_size'],
                                width=d['width'], heads=d['heads'], layers=d['layers'],
                                mlp_ratio=d['mlp_ratio'])
    oc['custom_text'] = True  # open_clip's factory builds CoCa only with it
    return oc, arch


def export(model_cfg: Mapping, state_dict, out_dir: str,
           dtype: Optional[torch.dtype] = None) -> dict:
    """vlp ``CoCa`` (open_clip layout) -> ``out_dir``
    (``open_clip.create_model('local-dir:' + out_dir)``)."""
    oc_cfg, arch = vlp_coca_open_clip_cfg(model_cfg)
    state, report = convert_state_dict(state_dict, OPEN_CLIP_COCA, reverse=True,
                                       expected=open_clip_expected(oc_cfg),
                                       what='open_clip.CoCa')
    weights = write_open_clip_folder(out_dir, oc_cfg, cast_state_dict(state, dtype),
                                     preprocess_cfg(arch))
    return dict(out_dir=out_dir, weights=weights, reference='open_clip.CoCa', config=oc_cfg,
                report=report)
