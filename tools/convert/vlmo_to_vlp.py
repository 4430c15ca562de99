"""Convert a checkpoint of the official VLMo code (Bao et al. 2022; github.com/microsoft/
unilm ``vlmo/vlmo/modules/{vlmo_module,multiway_transformer,heads}.py``) to vlp's VLMo.

Usage::

    python tools/convert/vlmo_to_vlp.py CHECKPOINT OUT_DIR [--img-size 224]
        [--patch-size 16] [--num-heads 12] [--max-text-len 40] [--dtype fp32]

``CHECKPOINT``: a PyTorch Lightning / DeepSpeed file of the official code (the weights
under ``state_dict`` or ``module``, or a bare state dict), read weights-only. Writes
``OUT_DIR/config.py`` (the vlp ``VLMo`` at stage ``image_text``) and ``OUT_DIR/model.pth``.

Mapping (``i`` a block; experts ``imag`` -> ``v``, ``text`` -> ``l``, ``vl`` -> ``vl``)::

    transformer.patch_embed.proj        -> backbone.patch_embed
    transformer.cls_token / pos_embed   -> backbone.cls_token / pos_embed
    transformer.blocks.i.norm1          -> backbone.blocks.i.norm1
    transformer.blocks.i.attn.qkv.weight + q_bias, v_bias
                                        -> backbone.blocks.i.attn.qkv (bias: q, 0, v)
    transformer.blocks.i.attn.proj      -> backbone.blocks.i.attn.proj
    transformer.blocks.i.norm2_<e>      -> backbone.blocks.i.norm2.<e>
    transformer.blocks.i.mlp_<e>.fc1/2  -> backbone.blocks.i.ffn.<e>.fc1/2
    transformer.blocks.i.gamma_1/2      -> backbone.blocks.i.gamma_1/2
    transformer.norm                    -> backbone.norm
    relative_position_bias_table        -> backbone.rel_pos_bias_table
    text_embeddings.word_embeddings     -> backbone.word_embeddings (+ BERT's type-0
                                           embedding, added before the LayerNorm)
    text_embeddings.position_embeddings -> backbone.text_pos_embed (absolute positions only)
    text_embeddings.LayerNorm           -> backbone.text_norm
    token_type_embeddings               -> backbone.type_embed
    pooler.dense + itm_score.fc         -> itm_head.pooler.0 + itm_head.fc
    itc_image_proj.fc / itc_text_proj.fc -> vision_proj.proj / text_proj.proj
    logit_scale                         -> itc.logit_scale
    mlm_score.transform.dense / .LayerNorm, decoder, bias
                                        -> mlm_head.dense / norm, decoder (untied), bias

Not converted (reported): the VL-FFN ITC heads of pre-training (``itc_vl_*``,
``logit_vl_scale``: vlp's VLMo has no VL-FFN contrastive branch), downstream heads
(``vqa_classifier``, ``nlvr2_classifier``), buffers. vlp's ``[MASK]`` patch embedding has
no source (zeros).
"""
import argparse
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Tuple

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import _clip_common as common  # noqa: E402

EXPERTS = {'imag': 'v', 'text': 'l', 'vl': 'vl'}
SKIP = re.compile(r'^(itc_vl_|logit_vl_scale$|vqa_classifier\.|nlvr2_classifier\.|'
                  r'text_embeddings\.position_ids$|.*relative_position_index$)')


def _strip(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in sd.items()}


def convert_state_dict(sd: Dict[str, torch.Tensor]
                       ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """``(vlp state dict, source keys left out)``; raises ``KeyError`` on keys it does not
    know."""
    sd = _strip(sd)
    out: Dict[str, torch.Tensor] = {}
    used, skipped = set(), []
    rel_pos = 'relative_position_bias_table' in sd

    def take(src: str, dst: str) -> None:
        out[dst] = sd[src]
        used.add(src)

    for k in sd:
        m = re.match(r'^transformer\.blocks\.(\d+)\.(.*)$', k)
        if m:
            i, rest = m.groups()
            dst = f'backbone.blocks.{i}.'
            e = re.match(r'^(norm2|mlp)_(imag|text|vl)\.(.*)$', rest)
            if e:
                kind, expert, tail = e.groups()
                take(k, dst + ('norm2.' if kind == 'norm2' else 'ffn.') +
                     f'{EXPERTS[expert]}.{tail}')
            elif rest in ('attn.q_bias', 'attn.v_bias'):
                used.add(k)
            elif rest == 'attn.qkv.weight':
                take(k, dst + rest)
                q, v = sd.get(f'transformer.blocks.{i}.attn.q_bias'), \
                    sd.get(f'transformer.blocks.{i}.attn.v_bias')
                if q is not None:
                    out[dst + 'attn.qkv.bias'] = torch.cat([q, torch.zeros_like(q), v])
            elif re.match(r'^(norm1|attn\.proj)\.|^gamma_[12]$', rest):
                take(k, dst + rest)
            else:
                raise KeyError(f'unknown VLMo block key {k}')
        elif re.match(r'^transformer\.(patch_embed\.proj|norm)\.', k) or \
                k in ('transformer.cls_token', 'transformer.pos_embed'):
            take(k, 'backbone.' + k[len('transformer.'):].replace('patch_embed.proj',
                                                                    'patch_embed'))
        elif k == 'relative_position_bias_table':
            take(k, 'backbone.rel_pos_bias_table')
        elif k == 'text_embeddings.word_embeddings.weight':
            used.add(k)  # + BERT's type-0 row: a constant before the LayerNorm
            tt = sd.get('text_embeddings.token_type_embeddings.weight')
            out['backbone.word_embeddings.weight'] = sd[k] + (tt[0] if tt is not None else 0)
        elif k == 'text_embeddings.token_type_embeddings.weight':
            used.add(k)
        elif k == 'text_embeddings.position_embeddings.weight':
            if rel_pos:  # VLMo's BertEmbeddings adds them only with absolute positions
                skipped.append(k)
                used.add(k)
            else:
                take(k, 'backbone.text_pos_embed.weight')
        elif k.startswith('text_embeddings.LayerNorm.'):
            take(k, 'backbone.text_norm.' + k.rsplit('.', 1)[1])
        elif k == 'token_type_embeddings.weight':
            take(k, 'backbone.type_embed.weight')
        elif k.startswith('pooler.dense.'):
            take(k, 'itm_head.pooler.0.' + k.rsplit('.', 1)[1])
        elif k.startswith('itm_score.fc.'):
            take(k, 'itm_head.fc.' + k.rsplit('.', 1)[1])
        elif k in ('itc_image_proj.fc.weight', 'itc_text_proj.fc.weight'):
            take(k, ('vision_proj' if 'image' in k else 'text_proj') + '.proj.weight')
        elif k == 'logit_scale':
            take(k, 'itc.logit_scale')
        elif k.startswith('mlm_score.'):
            tail = k[len('mlm_score.'):]
            tail = tail.replace('transform.dense.', 'dense.').replace('transform.LayerNorm.',
                                                                       'norm.')
            take(k, 'mlm_head.' + tail)
        elif SKIP.match(k):
            skipped.append(k)
            used.add(k)
        else:
            raise KeyError(f'unknown VLMo key {k}')
    if 'backbone.patch_embed.weight' not in out:
        raise KeyError('not a VLMo checkpoint: no transformer.patch_embed.proj.weight')
    C = out['backbone.patch_embed.weight'].shape[0]
    out['backbone.mask_token'] = torch.zeros(1, 1, C)
    return out, sorted(skipped)


def vlmo_model_cfg(state: Dict[str, torch.Tensor], img_size: int, patch_size: int,
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
    cfg = dict(type='VLMo', data_preprocessor=dict(type='VLPDataPreprocessor'),
               backbone=backbone, stage='image_text')
    if 'vision_proj.proj.weight' in state:
        D = state['vision_proj.proj.weight'].shape[0]
        cfg.update(vision_proj=dict(type='Projection', in_dim=C, out_dim=D, bias=False),
                   text_proj=dict(type='Projection', in_dim=C, out_dim=D, bias=False))
    else:
        raise KeyError('the checkpoint has no ITC projections (itc_image_proj / '
                       'itc_text_proj): vlp VLMo needs them')
    if 'itm_head.fc.weight' in state:
        cfg['itm_head'] = dict(type='ITMHead', hidden_size=C,
                               pooler='itm_head.pooler.0.weight' in state)
    if 'mlm_head.decoder.weight' in state:
        cfg.update(mlm_head=dict(type='MLMHead', hidden_size=C, vocab_size=vocab),
                   tie_mlm_head=False)
    return cfg


def convert(checkpoint: str, out_dir: str, img_size: int = 224, patch_size: int = 16,
            num_heads: int = 12, max_text_len: int = 40,
            dtype: Optional[torch.dtype] = torch.float32) -> dict:
    state, skipped = convert_state_dict(common.load_weights_file(checkpoint))
    model_cfg = vlmo_model_cfg(state, img_size, patch_size, num_heads, max_text_len)
    state = common.cast_state_dict(state, dtype)
    common.check_state_dict(model_cfg, state)
    meta = dict(source='microsoft/unilm vlmo', source_path=osp.abspath(checkpoint),
                converter='tools/convert/vlmo_to_vlp.py', img_size=img_size)
    header = (f'# vlp VLMo converted by tools/convert/vlmo_to_vlp.py from {checkpoint}.\n'
              '# Load with vlp.apis.init_model(<this file>, <dir>/model.pth).\n')
    cfg_path, ckpt_path = common.save_converted(out_dir, model_cfg, state, meta, header)
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model_cfg, skipped=skipped)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='official VLMo checkpoint')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth)')
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--patch-size', type=int, default=16)
    parser.add_argument('--num-heads', type=int, default=12)
    parser.add_argument('--max-text-len', type=int, default=40)
    common.add_dtype_arg(parser)
    args = parser.parse_args(argv)
    out = convert(args.checkpoint, args.out_dir, args.img_size, args.patch_size,
                  args.num_heads, args.max_text_len, common.dtype_arg(args.dtype))
    print(f'wrote {out["config"]} and {out["checkpoint"]}; not converted: '
          f'{out["skipped"] or "nothing"}')
    return out


if __name__ == '__main__':
    main()
