"""torchscale BEiT-3 checkpoints (Wang et al. 2022, "Image as a Foreign Language: BEiT
Pretraining for All Vision and Vision-Language Tasks"; torchscale ``model/BEiT3.py`` as
wrapped by unilm/beit3) -> vlp ``BEiT3Transformer`` (import only).

Table (``i`` = layer, ``E`` = expert ``A`` -> ``v`` (vision) / ``B`` -> ``l`` (language)),
below the source prefix (``beit3.`` in unilm's task models)::

    vision_embed.proj                            -> patch_embed
    vision_embed.cls_token / mask_token          -> cls_token / mask_token
    text_embed.weight                            -> word_embeddings.weight
    encoder.embed_positions.A / B.weight         -> image_pos_embed / text_pos_embed.weight
    encoder.layers.i.self_attn.{q,k,v}_proj.E    -> blocks.i.attn.qkv.e  (rows q, k, v)
    encoder.layers.i.self_attn.inner_attn_ln.E   -> blocks.i.attn.norm.e
    encoder.layers.i.self_attn.out_proj.E        -> blocks.i.attn.proj.e
    encoder.layers.i.self_attn_layer_norm.E      -> blocks.i.norm1.e
    encoder.layers.i.final_layer_norm.E          -> blocks.i.norm2.e
    encoder.layers.i.ffn.E.fc1 / fc2 / ffn_layernorm -> blocks.i.ffn.e.fc1 / fc2 / norm
    encoder.layer_norm.E                         -> norm.e
    encoder.output_projection.weight             -> output_projection.weight (kept when
                                                    present: BEiT3Transformer(
                                                    output_projection=True), output_logits)

The written model: unilm's retrieval heads (``vision_head`` / ``language_head`` /
``logit_scale``, ``BEiT3ForRetrieval``) present -> ``BEiT3Retrieval`` (``vision_proj`` /
``text_proj`` / ``itc.logit_scale``: ``vlp.apis`` encodes, matches and classifies
zero-shot); otherwise the ``BEiT3`` pre-training model around the backbone, its MLM / MIM
heads at vlp's init (reported): the ``pretrained=`` of the fine-tuning configs. Other keys
outside the backbone (unilm's VQA / NLVR2 heads) are skipped and reported. Read from the
weights: the sizes, ``img_size``, ``max_text_len`` and ``subln``; not in the weights:
``num_heads`` (default ``embed_dim // 64``) and ``layernorm_eps`` (torchscale's 1e-5).
Not written: a tokenizer (BEiT-3 reads XLM-R SentencePiece ids, which vlp has no tokenizer
class for; texts go in as token ids).
torchscale options BEiT-3 does not use (``layernorm_embedding``, relative position
buckets, xPos, MoE, deepnorm, post-LN) have no rule: their keys raise ``KeyError``.
"""
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch

from ..eval_configs import image_pipeline
from ..io import (NO_WEIGHTS_ONLY_HINT, cast_state_dict, check_state_dict, read_checkpoint,
                  save_vlp, strip_prefix, written_eval_configs)
from ..rules import ConversionReport, Fuse, Rename, Rule, convert_state_dict, nest

_E = dict(e=dict(A='v', B='l'))
_L, _B = 'encoder.layers.{i}.', 'blocks.{i}.'
BEIT3: List[Rule] = [
    Rename('vision_embed.proj.{p}', 'patch_embed.{p}'),
    Rename('vision_embed.{x:cls_token|mask_token}', '{x}'),
    Rename('text_embed.weight', 'word_embeddings.weight'),
    Rename('encoder.embed_positions.{e}.weight', '{e}_pos_embed.weight',
           maps=dict(e=dict(A='image', B='text'))),
    Fuse(_L + 'self_attn.{s}_proj.{e}.{p}', _B + 'attn.qkv.{e}.{p}', maps=_E,
         s=('q', 'k', 'v')),
    Rename(_L + 'self_attn.inner_attn_ln.{e}.{p}', _B + 'attn.norm.{e}.{p}', maps=_E),
    Rename(_L + 'self_attn.out_proj.{e}.{p}', _B + 'attn.proj.{e}.{p}', maps=_E),
    Rename(_L + 'self_attn_layer_norm.{e}.{p}', _B + 'norm1.{e}.{p}', maps=_E),
    Rename(_L + 'final_layer_norm.{e}.{p}', _B + 'norm2.{e}.{p}', maps=_E),
    Rename(_L + 'ffn.{e}.{fc:fc1|fc2}.{p}', _B + 'ffn.{e}.{fc}.{p}', maps=_E),
    Rename(_L + 'ffn.{e}.ffn_layernorm.{p}', _B + 'ffn.{e}.norm.{p}', maps=_E),
    Rename('encoder.layer_norm.{e}.{p}', 'norm.{e}.{p}', maps=_E),
    Rename('encoder.output_projection.weight', 'output_projection.weight'),
]
_BACKBONE = re.compile(r'(vision_embed|text_embed|encoder)\.')


def find_prefix(sd: Mapping[str, torch.Tensor]) -> str:
    """The prefix in front of ``text_embed.weight`` (``''``, ``'beit3.'`` ...)."""
    hits = [k[:-len('text_embed.weight')] for k in sd if k.endswith('text_embed.weight')]
    if len(hits) != 1:
        raise KeyError(f'expected one "<prefix>text_embed.weight" key, found {hits}: not a '
                       'torchscale BEiT3 state dict')
    return hits[0]


def convert_beit3_state_dict(sd: Mapping[str, torch.Tensor], drop: Iterable[str] = ()
                             ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """torchscale ``BEiT3`` state dict (optionally under a prefix) -> ``BEiT3Transformer``
    state dict; the report holds ``prefix``, ``dropped`` and ``skipped`` (outside the
    backbone)."""
    sd = strip_prefix(sd)
    prefix = find_prefix(sd)
    rep = ConversionReport(info=dict(prefix=prefix))
    backbone = OrderedDict()
    for k, v in sd.items():
        if k.startswith(prefix) and _BACKBONE.match(k[len(prefix):]):
            backbone[k] = v
        else:
            rep.skipped.append(k)
    state, rep = convert_state_dict(backbone, nest(BEIT3, prefix, ''), drop=drop, report=rep)
    return state, rep


def beit3_model_cfg(state: Mapping[str, torch.Tensor], num_heads: Optional[int] = None,
                    layernorm_eps: float = 1e-5) -> dict:
    """``BEiT3Transformer`` config read from a converted state dict."""
    from vlp.models.backbones.beit3 import POS_OFFSET
    patch = state['patch_embed.weight']  # (C, in_chans, p, p)
    embed_dim, in_chans, patch_size = patch.shape[0], patch.shape[1], patch.shape[2]
    num_patches = state['image_pos_embed.weight'].shape[0] - 1 - POS_OFFSET
    grid = int(round(num_patches ** 0.5))
    if grid * grid != num_patches:
        raise ValueError(f'{num_patches} image positions do not form a square grid')
    depth = 1 + max(int(k.split('.')[1]) for k in state if k.startswith('blocks.'))
    if num_heads is None:
        if embed_dim % 64:
            raise ValueError(f'embed_dim {embed_dim}: pass --num-heads')
        num_heads = embed_dim // 64
    return dict(type='BEiT3Transformer', img_size=grid * patch_size, patch_size=patch_size,
                in_chans=in_chans, vocab_size=state['word_embeddings.weight'].shape[0],
                max_text_len=state['text_pos_embed.weight'].shape[0], embed_dim=embed_dim,
                depth=depth, num_heads=num_heads,
                ffn_dim=state['blocks.0.ffn.v.fc1.weight'].shape[0],
                layernorm_eps=layernorm_eps, subln='blocks.0.attn.norm.v.weight' in state,
                output_projection='output_projection.weight' in state)


#: unilm's ``BEiT3ForRetrieval`` keys -> ``BEiT3Retrieval``
RETRIEVAL_HEADS = {'vision_head.weight': 'vision_proj.proj.weight',
                   'language_head.weight': 'text_proj.proj.weight',
                   'logit_scale': 'itc.logit_scale'}
KINDS = ('auto', 'retrieval', 'pretrain')


def full_model(sd: Mapping[str, torch.Tensor], state: Dict[str, torch.Tensor],
               backbone: dict, report: ConversionReport, kind: str = 'auto',
               seed: int = 0) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """The vlp model config and complete state dict around the converted ``backbone``
    (see the module docstring); ``report.skipped`` loses the keys consumed here."""
    from ..io import build_vlp_model
    if kind not in KINDS:
        raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
    heads = {k: v for k, v in strip_prefix(sd).items() if k in RETRIEVAL_HEADS}
    if kind == 'auto':
        kind = 'retrieval' if {'vision_head.weight', 'language_head.weight'} <= set(heads) \
            else 'pretrain'
    C = backbone['embed_dim']
    common = dict(data_preprocessor=dict(type='VLPDataPreprocessor', mean=[127.5] * 3,
                                         std=[127.5] * 3),  # unilm: mean 0.5, std 0.5
                  backbone=backbone)
    if kind == 'retrieval':
        missing = [k for k in ('vision_head.weight', 'language_head.weight') if k not in heads]
        if missing:
            raise KeyError(f'retrieval model: the checkpoint lacks {missing}')
        D = heads['vision_head.weight'].shape[0]
        model = dict(type='BEiT3Retrieval', **common,
                     vision_proj=dict(type='Projection', in_dim=C, out_dim=D, bias=False),
                     text_proj=dict(type='Projection', in_dim=C, out_dim=D, bias=False),
                     itc=dict(type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0))
        extra = {RETRIEVAL_HEADS[k]: v.reshape(()) if k == 'logit_scale' else v
                 for k, v in heads.items()}
        report.skipped = [k for k in report.skipped if k not in heads]
    else:
        V, P = backbone['vocab_size'], backbone['patch_size']
        model = dict(type='BEiT3', **common,
                     mlm_head=dict(type='MLMHead', hidden_size=C, vocab_size=V),
                     mim_head=dict(type='MIMHead', hidden_size=C, out_dim=P * P * 3),
                     visual_tokenizer=dict(type='PixelTarget', patch_size=P))
        extra = {}
    full = {'backbone.' + k: v for k, v in state.items()}
    full.update(extra)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh_model = build_vlp_model(model)
    fresh = fresh_model.state_dict()
    # tied parameters (the MLM decoder and the word embeddings) take the converted value
    alias = {}
    for name, p in fresh_model.named_parameters(remove_duplicate=False):
        alias.setdefault(id(p), []).append(name)
    for names in alias.values():
        known = [n for n in names if n in full]
        for n in names:
            if known and n not in full:
                full[n] = full[known[0]]
    left = sorted(k for k in fresh if k not in full)
    for k in left:
        full[k] = fresh[k]
    report.bucket('left_at_init').extend(left)
    report.info['kind'] = kind
    return model, full


def convert(checkpoint: str, out_dir: str, num_heads: Optional[int] = None,
            layernorm_eps: float = 1e-5, kind: str = 'auto',
            dtype: Optional[torch.dtype] = torch.float32, drop: Iterable[str] = (),
            weights_only: bool = True, seed: int = 0) -> dict:
    """Convert ``checkpoint`` and write ``out_dir/config.py`` (a ``BEiT3Retrieval`` or
    ``BEiT3`` model, BEiT-3's test transforms) and ``out_dir/model.pth``; ``kind``:
    ``'auto'`` (retrieval when unilm's retrieval heads are present), ``'retrieval'`` or
    ``'pretrain'``."""
    sd = read_checkpoint(checkpoint, weights_only, opt_out=NO_WEIGHTS_ONLY_HINT)
    state, report = convert_beit3_state_dict(sd, drop)
    backbone = beit3_model_cfg(state, num_heads, layernorm_eps)
    check_state_dict(backbone, state)
    model_cfg, full = full_model(sd, state, backbone, report, kind, seed)
    check_state_dict(model_cfg, full)
    # unilm/beit3's test transform: a square bicubic resize
    pipelines = dict(image_pipeline=image_pipeline(backbone['img_size']))
    header = (f'# vlp {model_cfg["type"]} converted by tools/convert/torchscale_beit3_to_vlp.py '
              f'from {osp.basename(checkpoint)}\n'
              f'# Left at init: {", ".join(report.left_at_init) or "nothing"}. No tokenizer '
              '(BEiT-3 reads XLM-R SentencePiece ids: give token ids).\n'
              '# Load with vlp.apis.init_model(<this directory>) (config.py + model.pth).\n')
    cfg_path, ckpt_path = save_vlp(
        out_dir, model_cfg, cast_state_dict(full, dtype),
        meta={'source': osp.basename(checkpoint), 'converter': 'torchscale_beit3_to_vlp',
              'kind': report.kind}, header=header, pipelines=pipelines)
    return {'config': cfg_path, 'checkpoint': ckpt_path, 'model_cfg': model_cfg,
            'backbone_cfg': backbone, 'report': report,
            'eval_configs': written_eval_configs(out_dir)}
