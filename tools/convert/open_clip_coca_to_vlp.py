"""Convert an open_clip ``CoCa`` (Yu et al. 2022, "CoCa: Contrastive Captioners are
Image-Text Foundation Models"; open_clip's ``coca_ViT-B-32`` / ``coca_ViT-L-14`` weights)
to vlp's CoCa.

Usage::

    python tools/convert/open_clip_coca_to_vlp.py --model-name coca_ViT-B-32 \
        --checkpoint FILE OUT_DIR
    python tools/convert/open_clip_coca_to_vlp.py --model-config cfg.json \
        --checkpoint FILE OUT_DIR

As ``open_clip_to_vlp.py`` (whose vision rules and helpers this reuses): ``--model-name``
reads the config bundled with open_clip (no download), ``FILE`` is a ``.safetensors`` or
``torch.save`` state dict; writes ``OUT_DIR/config.py`` and ``OUT_DIR/model.pth`` and copies
the tokenizer vocabulary (open_clip's bundled BPE by default).

open_clip's CoCa is vlp's ``CoCa(pooler_layout='shared')``: one attentional pooler of N
queries on the ViT tokens (taken *before* ``ln_post``: the timm ViT is built with
``final_norm=False``), ``ln_post`` on its output (the pooler's ``norm_out``), token 0
projected by ``visual.proj`` as the image embedding, tokens 1..N-1 the captioning tokens.
The text tower is ``TextTransformer(embed_cls=True, legacy_cls_mask=True)`` (open_clip's
``correct_cls_mask=False`` mask, with which its weights were trained); the multimodal
decoder is ``MultimodalDecoder(cross_ffn=True)`` (a cross-attention block with its own FFN
after each self-attention block).

Mapping beyond the CLIP converter's (``i`` = layer index)::

    visual.attn_pool.query                   -> cap_pooler.query
    visual.attn_pool.ln_q / ln_k             -> cap_pooler.norm_query / norm_context
    visual.attn_pool.attn.{q,k,v}_proj_weight, in_proj_bias
                                             -> cap_pooler.attn.q (q), .kv (k, v stacked)
    visual.attn_pool.attn.out_proj           -> cap_pooler.attn.proj
    visual.ln_post                           -> cap_pooler.norm_out
    text.cls_emb                             -> text.cls_emb
    text.text_projection [C, D]              -> text_proj.proj.weight [D, C]
    text_decoder.resblocks.i                 -> decoder.blocks.i
    text_decoder.cross_attn.i.ln_1 / ln_1_kv -> decoder.cross_blocks.i.norm_cross / norm_context
    text_decoder.cross_attn.i.attn.in_proj_* -> decoder.cross_blocks.i.cross_attn.q (rows [:C]),
                                                .kv (rows [C:])
    text_decoder.cross_attn.i.attn.out_proj  -> decoder.cross_blocks.i.cross_attn.proj
    text_decoder.cross_attn.i.{ln_2, mlp}    -> decoder.cross_blocks.i.{norm2, mlp}
    text_decoder.ln_final                    -> decoder.ln_final
    text_decoder.text_projection [C, V]      -> decoder.head.weight [V, C]

Not supported (``NotImplementedError``): open_clip's WIP ``attentional_pool='parallel'`` /
``'cascade'``, HF text towers (``coca_roberta-ViT-B-32``), layer scale, SigLIP's
``logit_bias``, and the other options the CLIP converter rejects. Known difference: when
no ``attention_mask`` is given, vlp derives the ``[CLS]``'s padding mask from the EOT
position, open_clip from ``text != pad_id`` (they differ only for a text containing token
0, "!" in the OpenAI vocabulary); the tokenizer's mask is what vlp's data pipeline uses.
"""
import copy
import json
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Union

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import _clip_common as common  # noqa: E402
import open_clip_to_vlp as oc  # noqa: E402

_V, _T = common.VISION_PREFIX, common.TEXT_PREFIX
_CROSS_NAMES = [
    ('ln_1.', 'norm_cross.'),
    ('ln_1_kv.', 'norm_context.'),
    ('attn.q.', 'cross_attn.q.'),
    ('attn.kv.', 'cross_attn.kv.'),
    ('attn.out_proj.', 'cross_attn.proj.'),
    ('ln_2.', 'norm2.'),
    ('mlp.c_fc.', 'mlp.fc1.'),
    ('mlp.c_proj.', 'mlp.fc2.'),
]
# vision tower rules of the CLIP converter, less ln_post and proj (they follow the pooler)
_VISION_RULES = [r for r in oc._RULES if r[0].startswith(r'visual\.')
                 and 'ln_post' not in r[0] and r[0] != r'visual\.proj']
_RULES: List[common.Rule] = [
    (r'visual\.attn_pool\.query', 'cap_pooler.query', None),
    (r'visual\.attn_pool\.ln_q\.(weight|bias)', r'cap_pooler.norm_query.\1', None),
    (r'visual\.attn_pool\.ln_k\.(weight|bias)', r'cap_pooler.norm_context.\1', None),
    (r'visual\.attn_pool\.attn\.(q|kv)\.(weight|bias)', r'cap_pooler.attn.\1.\2', None),
    (r'visual\.attn_pool\.attn\.out_proj\.(weight|bias)', r'cap_pooler.attn.proj.\1', None),
    (r'visual\.ln_post\.(weight|bias)', r'cap_pooler.norm_out.\1', None),
    (r'visual\.proj', common.VISION_PROJ_KEY, lambda t: t.t()),
    *_VISION_RULES,
    (r'text\.cls_emb', _T + 'cls_emb', None),
    (r'text\.token_embedding\.weight', _T + 'token_embedding.weight', None),
    (r'text\.positional_embedding', _T + 'positional_embedding', None),
    *common.block_rules('text.transformer.resblocks.', _T + 'blocks.', oc._BLOCK_NAMES),
    (r'text\.ln_final\.(weight|bias)', _T + r'ln_final.\1', None),
    (r'text\.text_projection', common.TEXT_PROJ_KEY, lambda t: t.t()),
    *common.block_rules('text_decoder.resblocks.', 'decoder.blocks.', oc._BLOCK_NAMES),
    *common.block_rules('text_decoder.cross_attn.', 'decoder.cross_blocks.', _CROSS_NAMES),
    (r'text_decoder\.ln_final\.(weight|bias)', r'decoder.ln_final.\1', None),
    (r'text_decoder\.text_projection', 'decoder.head.weight', lambda t: t.t()),
    (r'logit_scale', common.LOGIT_SCALE_KEY, common.to_scalar),
]
_IGNORE = [r'.*attn_mask']
_MODEL_KEYS = oc._MODEL_KEYS | {'multimodal_cfg', 'custom_text', 'pad_id'}


def split_cross_attention(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rewrite the ``nn.MultiheadAttention`` tensors of the cross-attentions (the pooler's
    ``visual.attn_pool.attn`` and the decoder's ``text_decoder.cross_attn.i.attn``) as
    ``attn.q.{weight,bias}`` and ``attn.kv.{weight,bias}`` (k and v rows stacked): a fused
    ``in_proj_weight [3C, C]`` splits at row C; separate ``{q,k,v}_proj_weight`` (the key
    width differs from the query width) are taken as they are."""
    out = dict(state_dict)
    prefixes = {m.group(1) for k in state_dict
                for m in [re.fullmatch(r'(visual\.attn_pool\.attn\.|text_decoder\.cross_attn\.'
                                       r'\d+\.attn\.)in_proj_bias', k)] if m}
    for p in prefixes:
        bias = out.pop(p + 'in_proj_bias')
        C = bias.shape[0] // 3
        if p + 'in_proj_weight' in out:
            w = out.pop(p + 'in_proj_weight')
            q_w, kv_w = w[:C], w[C:]
        else:
            q_w = out.pop(p + 'q_proj_weight')
            kv_w = torch.cat([out.pop(p + 'k_proj_weight'), out.pop(p + 'v_proj_weight')])
        out.update({p + 'q.weight': q_w, p + 'q.bias': bias[:C],
                    p + 'kv.weight': kv_w, p + 'kv.bias': bias[C:]})
    return out


def convert_open_clip_coca_state_dict(
        state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """open_clip ``CoCa`` state dict -> vlp ``CoCa(pooler_layout='shared')`` state dict."""
    return common.rename_state_dict(split_cross_attention(state_dict), _RULES, _IGNORE)


def open_clip_coca_config_to_vlp(model_cfg: dict, tokenizer: Optional[dict] = None,
                                 mean=None, std=None) -> dict:
    """vlp ``CoCa`` model config for an open_clip CoCa model config dict
    (``embed_dim``, ``vision_cfg``, ``text_cfg``, ``multimodal_cfg``[, ``quick_gelu``])."""
    from open_clip.coca_model import MultimodalCfg
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg
    unknown = set(model_cfg) - _MODEL_KEYS
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
    clip_cfg = {k: v for k, v in model_cfg.items() if k in oc._MODEL_KEYS}
    clip_cfg.update(vision_cfg=vc, text_cfg=tc)
    arch = oc.open_clip_arch(clip_cfg, mean, std)
    clip = common.build_model_cfg(arch)
    D, act = arch.embed_dim, arch.text.act_layer
    vision = dict(clip['vision'], final_norm=False)  # ln_post follows the pooler
    text = dict(clip['text'], embed_cls=True, legacy_cls_mask=True)
    model = dict(
        type='CoCa',
        data_preprocessor=clip['data_preprocessor'],
        vision=vision,
        text=text,
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


def convert(model_cfg: dict, checkpoint: str, out_dir: str, tokenizer: Optional[str] = 'auto',
            dtype: Optional[torch.dtype] = torch.float32, mean=None, std=None,
            model_name: str = '', weights_only: bool = True) -> Dict[str, Union[str, dict]]:
    """Convert an open_clip CoCa checkpoint; returns the written paths and config
    (arguments as :func:`open_clip_to_vlp.convert`)."""
    model = open_clip_coca_config_to_vlp(model_cfg, None, mean, std)
    if tokenizer == 'auto':
        tokenizer = oc._default_tokenizer_file(model_cfg)
    files = [tokenizer] if tokenizer else []
    if files:
        model['tokenizer'] = common.tokenizer_cfg(files, model['text']['context_length'])
    state = common.cast_state_dict(
        convert_open_clip_coca_state_dict(common.load_weights_file(
            checkpoint, weights_only, opt_out=common.NO_WEIGHTS_ONLY_HINT)), dtype)
    common.check_state_dict(model, state)
    meta = dict(source='open_clip.CoCa', source_path=osp.abspath(checkpoint),
                converter='tools/convert/open_clip_coca_to_vlp.py', model_name=model_name,
                open_clip_config=json.dumps(oc._plain(model_cfg), sort_keys=True))
    header = common.config_header('open_clip_coca_to_vlp.py', model_name or checkpoint)
    cfg_path, ckpt_path = common.save_converted(
        out_dir, model, state, meta, header.replace('vlp CLIP', 'vlp CoCa'), copy_files=files)
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model)


def main(argv: Optional[List[str]] = None) -> None:
    oc.main(argv, convert_fn=convert, description=__doc__.split('\n')[0],
            example_model='coca_ViT-B-32', weights_help='open_clip CoCa weights file')


if __name__ == '__main__':
    main()
