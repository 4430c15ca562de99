"""Original ALBEF checkpoints (Li et al. 2021, "Align before Fuse"; github.com/salesforce/
ALBEF ``models/model_pretrain.py``, ``model_retrieval.py``, ``xbert.py``, ``vit.py``) ->
vlp ``ALBEF`` (import only).

Two layouts (by the ``text_encoder.bert.`` prefix): **pretrain** (``ALBEF.pth``,
``ALBEF_4M.pth``: a ``BertForMaskedLM`` text encoder with its MLM head, the momentum twin
too, image/text queues) and **retrieval** (the COCO / Flickr30k fine-tuned files: a
``BertModel``, no MLM head, ``idx_queue``).

Table (``{m}``: ``''`` or the momentum twin's ``_m``; ``F`` = ``fusion_layer``, the first
BERT layer with cross-attention, 6 in ALBEF; ``T`` = ``text_encoder{m}[.bert]``)::

    visual_encoder{m}.<timm ViT name>           -> vision{m}.model.<same name>
    T.<BERT embeddings>, T.encoder.layer.i      -> text{m}.<BertEncoder> (i < F)
    T.encoder.layer.i                           -> fusion{m}.blocks.(i - F) (i >= F)
      (the one HF-BERT table, vlp.convert.formats.bert)
    text_encoder{m}.cls.predictions.transform.dense / LayerNorm -> mlm_head{m}.dense / norm
    text_encoder{m}.cls.predictions.decoder.weight -> mlm_head{m}.decoder.weight
      (must equal the word embeddings: vlp ties them)
    text_encoder{m}.cls.predictions.bias        -> mlm_head{m}.bias (decoder.bias: the same
                                                   tensor, checked and not written twice)
    {vision,text}_proj{m} / itm_head            -> {vision,text}_proj{m}.proj / itm_head.fc
    temp (0-dim T)                              -> itc.logit_scale = log(1 / T)
    image_queue / text_queue [D, K]             -> queue.image_queue / text_queue [K, D]
    idx_queue [1, K] / queue_ptr [1]            -> queue.idx_queue [K] / queue.ptr []
    (none)                                      -> queue.filled = K (ALBEF's whole queue
                                                   always serves as negatives)

The ViT's image resolution comes from the caller (position embeddings are never
interpolated) and the head counts too (shapes do not tell them).
"""
import math
import os.path as osp
import re
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import torch

from ..arch import mlp_ratio_of
from ..eval_configs import image_pipeline, pipeline_vars
from ..io import (NO_WEIGHTS_ONLY_HINT, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, build_tokenizer,
                  cast_state_dict, check_state_dict, check_tokenizer_vocab, mean_std_255,
                  read_checkpoint, save_vlp, strip_prefix, written_eval_configs)
from ..rules import TRANSPOSE, ConversionReport, Fn, Rename, Rule, Tied, convert_state_dict
from .bert import bert

ALBEF_FUSION_LAYER = 6
ALBEF_HEADS = 12
ALBEF_TEXT_MAX_LENGTH = 30  # ALBEF's retrieval evaluation pads captions to 30 tokens

# the timm ViT modules of ALBEF's models/vit.py (same names)
_VIT_MODULES = (r'norm|patch_embed\.proj|'
                r'blocks\.\d+\.(?:norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc\d)')
TEMP_TO_LOGIT_SCALE = Fn('log(1 / T)', lambda t: torch.log(1.0 / t.reshape(())),
                         lambda s: torch.exp(-s))
TO_LONG_VECTOR = Fn('[1, K] -> [K] long', lambda t: t.reshape(-1).long(),
                    lambda t: t.reshape(1, -1))
TO_LONG_SCALAR = Fn('[1] -> [] long', lambda t: t.reshape(()).long(), lambda t: t.reshape(1))


def table(layout: str, fusion_layer: int, num_layers: int) -> List[Rule]:
    """The ALBEF table of a ``layout`` whose BERT has ``num_layers`` split at
    ``fusion_layer``."""
    enc = 'text_encoder{m}.bert.' if layout == 'pretrain' else 'text_encoder{m}.'
    cls = 'text_encoder{m}.cls.predictions.'
    text = {i: i for i in range(fusion_layer)}
    fusion = {i: i - fusion_layer for i in range(fusion_layer, num_layers)}
    rules = [
        Rename('visual_encoder{m}.{x:cls_token|pos_embed}', 'vision{m}.model.{x}'),
        Rename('visual_encoder{m}.{x:%s}.{p}' % _VIT_MODULES, 'vision{m}.model.{x}.{p}'),
        Rename('{x:vision|text}_proj{m}.{p}', '{x}_proj{m}.proj.{p}'),
        Rename('itm_head.{p}', 'itm_head.fc.{p}'),
        *bert(enc, 'text{m}.', layers=text),
        *bert(enc, 'fusion{m}.', layers=fusion, embeddings=False),
        Rename('temp', 'itc.logit_scale', TEMP_TO_LOGIT_SCALE),
        Rename('{x:image|text}_queue', 'queue.{x}_queue', TRANSPOSE),
        Rename('idx_queue', 'queue.idx_queue', TO_LONG_VECTOR),
        Rename('queue_ptr', 'queue.ptr', TO_LONG_SCALAR),
    ]
    if layout == 'pretrain':
        rules += [
            Rename(cls + 'transform.dense.{p}', 'mlm_head{m}.dense.{p}'),
            Rename(cls + 'transform.LayerNorm.{p}', 'mlm_head{m}.norm.{p}'),
            Rename(cls + 'decoder.weight', 'mlm_head{m}.decoder.weight'),
            Rename(cls + 'bias', 'mlm_head{m}.bias'),
            Tied(cls + 'decoder.bias', cls + 'bias'),
        ]
    return rules


def detect_layout(sd: Mapping[str, torch.Tensor]) -> str:
    """``'pretrain'`` (``text_encoder.bert.*``) or ``'retrieval'`` (``text_encoder.*``)."""
    with_bert = any(re.match(r'text_encoder(_m)?\.bert\.', k) for k in sd)
    without = any(re.match(r'text_encoder(_m)?\.(embeddings|encoder)\.', k) for k in sd)
    if with_bert and without:
        raise KeyError('the checkpoint mixes text_encoder.bert.* and text_encoder.* keys')
    if not (with_bert or without):
        raise KeyError('no text_encoder[.bert].{embeddings,encoder}.* keys: not an ALBEF '
                       'pretrain / retrieval checkpoint')
    return 'pretrain' if with_bert else 'retrieval'


def _split_point(sd: Mapping[str, torch.Tensor], layout: str,
                 fusion_layer: Optional[int]) -> Tuple[int, int]:
    """``(fusion_layer, num_layers)``, checked against where the cross-attention sits."""
    enc = r'text_encoder(?:_m)?' + (r'\.bert' if layout == 'pretrain' else '')
    layer = re.compile(enc + r'\.encoder\.layer\.(\d+)\.(.+)')
    found = [(int(m.group(1)), m.group(2)) for k in sd for m in [layer.fullmatch(k)] if m]
    if not found:
        raise KeyError('no text_encoder BERT layers in the checkpoint')
    num_layers = 1 + max(i for i, _ in found)
    cross = sorted({i for i, rest in found if rest.startswith('crossattention.')})
    if fusion_layer is None:
        if not cross:
            raise KeyError('no crossattention weights: cannot infer fusion_layer')
        fusion_layer = cross[0]
    if not 0 < fusion_layer < num_layers:
        raise ValueError(f'fusion_layer {fusion_layer} outside 1..{num_layers - 1} '
                         f'({num_layers} BERT layers)')
    if cross != list(range(fusion_layer, num_layers)):
        raise KeyError(f'cross-attention weights sit in BERT layers {cross}; fusion_layer='
                       f'{fusion_layer} needs them in exactly {fusion_layer}..{num_layers - 1}')
    return fusion_layer, num_layers


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.is_meta or b.is_meta:
        return a.shape == b.shape
    return a.shape == b.shape and torch.equal(a, b)


def convert_albef(sd: Mapping[str, torch.Tensor], fusion_layer: Optional[int] = ALBEF_FUSION_LAYER,
                  drop: Iterable[str] = ()) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """ALBEF state dict -> (vlp ``ALBEF`` state dict, report with ``layout``,
    ``fusion_layer``, ``num_bert_layers``, ``ignored``, ``dropped``, ``added``).

    Args:
        sd: ``checkpoint['model']`` (a ``module.`` prefix on every key is dropped).
        fusion_layer: first BERT layer of the fusion encoder; ``None`` reads it off the
            cross-attention weights.
        drop: regexes (full match) of source keys to drop on purpose.

    Raises:
        KeyError: a key no rule maps, cross-attention in the wrong layers, an incomplete
            fused group.
        ValueError: the MLM decoder differs from the word embeddings (vlp ties them) or
            ``decoder.bias`` from ``bias``.
    """
    sd = strip_prefix(sd)
    layout = detect_layout(sd)
    fusion_layer, num_layers = _split_point(sd, layout, fusion_layer)
    rep = ConversionReport(info=dict(layout=layout, fusion_layer=fusion_layer,
                                     num_bert_layers=num_layers))
    out, rep = convert_state_dict(sd, table(layout, fusion_layer, num_layers), drop=drop,
                                  report=rep)
    for mom in ('', '_m'):
        dec, emb = f'mlm_head{mom}.decoder.weight', f'text{mom}.word_embeddings.weight'
        if dec in out and emb in out and not _same(out[dec], out[emb]):
            raise ValueError(f'{dec} differs from {emb}: vlp ties the MLM decoder to the '
                             'word embeddings')
    if 'queue.image_queue' in out:
        out['queue.filled'] = torch.tensor(out['queue.image_queue'].shape[0], dtype=torch.long)
        rep.bucket('added').append('queue.filled')
    return out, rep


def convert_albef_state_dict(sd: Mapping[str, torch.Tensor],
                             fusion_layer: Optional[int] = ALBEF_FUSION_LAYER,
                             drop: Iterable[str] = ()) -> Dict[str, torch.Tensor]:
    """:func:`convert_albef`'s state dict only."""
    return convert_albef(sd, fusion_layer, drop)[0]


# -- vlp config ------------------------------------------------------------------------------
def _count(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    idx = {int(m.group(1)) for k in sd for m in [re.match(re.escape(prefix) + r'(\d+)\.', k)]
           if m is not None}
    return 1 + max(idx) if idx else 0


def _heads(width: int, heads: int, what: str) -> int:
    if heads <= 0 or width % heads:
        raise ValueError(f'{what} width {width} is not divisible by {heads} heads')
    return heads


def albef_model_cfg(state: Mapping[str, torch.Tensor], image_res: int,
                    layout: str = 'pretrain', vision_heads: int = ALBEF_HEADS,
                    text_heads: int = ALBEF_HEADS, tokenizer: Optional[dict] = None) -> dict:
    """vlp ``ALBEF`` config for a converted state dict (sizes from the shapes; head counts
    and the image resolution from the arguments).

    Raises:
        KeyError: a tensor the sizes are read from is missing.
        ValueError: ``image_res`` does not give the checkpoint's number of position
            embeddings (nothing is interpolated), or widths do not divide into heads.
    """
    if layout not in ('pretrain', 'retrieval'):
        raise ValueError(f"layout must be 'pretrain' or 'retrieval', got {layout!r}")
    needed = ['vision.model.cls_token', 'vision.model.patch_embed.proj.weight',
              'vision.model.pos_embed', 'vision.model.blocks.0.mlp.fc1.weight',
              'text.word_embeddings.weight', 'text.position_embeddings.weight',
              'text.token_type_embeddings.weight', 'text.blocks.0.mlp.fc1.weight',
              'fusion.blocks.0.cross_attn.kv.weight', 'vision_proj.proj.weight',
              'queue.image_queue']
    absent = [k for k in needed if k not in state]
    if absent:
        raise KeyError(f'the converted state dict lacks {absent}')
    v = 'vision.model.'
    width = state[v + 'cls_token'].shape[-1]
    patch = state[v + 'patch_embed.proj.weight'].shape[-1]
    tokens = state[v + 'pos_embed'].shape[1]
    grid = math.isqrt(tokens - 1)
    if image_res % patch or (image_res // patch) ** 2 + 1 != tokens:
        found = (f'a {grid}x{grid} grid of {patch}-pixel patches, i.e. image_res '
                 f'{grid * patch}' if grid * grid == tokens - 1 else 'not a square grid')
        raise ValueError(
            f'the checkpoint pos_embed holds {tokens} tokens ({found}), but image_res '
            f'{image_res} needs {(image_res // patch) ** 2 + 1}: pass the resolution the '
            'checkpoint was trained at (position embeddings are not interpolated)')
    vision = dict(
        type='TimmTower', model_name='vit_base_patch16_224', pretrained=False,
        img_size=image_res, patch_size=patch, embed_dim=width,
        depth=_count(state, v + 'blocks.'), num_heads=_heads(width, vision_heads, 'vision'),
        mlp_ratio=mlp_ratio_of(width, state[v + 'blocks.0.mlp.fc1.weight'].shape[0]))
    vocab, hidden = state['text.word_embeddings.weight'].shape
    bert_cfg = dict(
        type='BertEncoder', vocab_size=vocab, hidden_size=hidden,
        num_heads=_heads(hidden, text_heads, 'text'),
        intermediate_size=state['text.blocks.0.mlp.fc1.weight'].shape[0],
        max_position_embeddings=state['text.position_embeddings.weight'].shape[0],
        type_vocab_size=state['text.token_type_embeddings.weight'].shape[0])
    embed_dim = state['vision_proj.proj.weight'].shape[0]
    model = dict(
        type='ALBEF',
        data_preprocessor=mean_std_255(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
        vision=vision,
        text=dict(bert_cfg, num_layers=_count(state, 'text.blocks.')),
        fusion=dict(bert_cfg, num_layers=_count(state, 'fusion.blocks.'),
                    with_embeddings=False, cross_attention_layers='all',
                    cross_attention_dim=state['fusion.blocks.0.cross_attn.kv.weight'].shape[1]),
        vision_proj=dict(type='Projection', in_dim=width, out_dim=embed_dim, bias=True,
                         init_std=0.02),
        text_proj=dict(type='Projection', in_dim=hidden, out_dim=embed_dim, bias=True,
                       init_std=0.02))
    model['itm_head'] = dict(type='ITMHead', hidden_size=hidden)
    if layout == 'pretrain':
        model['mlm_head'] = dict(type='MLMHead', hidden_size=hidden, vocab_size=vocab)
    # ALBEF: T = 0.07 at init, clamped to [0.001, 0.5]; the value comes from the weights
    model['itc'] = dict(type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
                        max_logit_scale=1000.0)
    model['queue_size'] = state['queue.image_queue'].shape[0]
    model['queue_ids'] = layout == 'retrieval'
    model['alpha'] = 0.4
    model['mlm_probability'] = 0.15
    if tokenizer is not None:
        model['tokenizer'] = tokenizer
    return model


def bert_tokenizer_cfg(path: str, max_length: int = ALBEF_TEXT_MAX_LENGTH,
                       vocab_size: Optional[int] = None) -> dict:
    """vlp ``BertTokenizer`` config for a ``vocab.txt`` or ``tokenizer.json`` copied next
    to the written config (uncased; ``ValueError`` for a vocabulary of another size)."""
    name = osp.basename(path)
    here = '{{ fileDirname }}/'
    if name.endswith('.json'):
        return dict(type='BertTokenizer', tokenizer_file=here + name, max_length=max_length)
    if vocab_size is not None:
        with open(path, encoding='utf-8') as f:
            n = sum(1 for _ in f)
        if n != vocab_size:
            raise ValueError(f'{path} holds {n} tokens, the checkpoint {vocab_size} word '
                             'embeddings')
    return dict(type='BertTokenizer', vocab_file=here + name, lowercase=True,
                max_length=max_length)


def convert(checkpoint: str, out_dir: str, image_res: int = 256,
            fusion_layer: Optional[int] = ALBEF_FUSION_LAYER,
            vision_heads: int = ALBEF_HEADS, text_heads: int = ALBEF_HEADS,
            tokenizer: Optional[str] = None, max_length: int = ALBEF_TEXT_MAX_LENGTH,
            dtype: Optional[torch.dtype] = torch.float32, drop: Iterable[str] = (),
            weights_only: bool = True) -> dict:
    """Convert an ALBEF checkpoint file (weights under ``'model'``); nothing is written when
    a check fails."""
    sd = read_checkpoint(checkpoint, weights_only, opt_out=NO_WEIGHTS_ONLY_HINT)
    state, report = convert_albef(sd, fusion_layer, drop)
    vocab = state['text.word_embeddings.weight'].shape[0]
    tok_cfg = (bert_tokenizer_cfg(tokenizer, max_length, vocab)
               if tokenizer is not None else None)
    model_cfg = albef_model_cfg(state, image_res, report.layout, vision_heads, text_heads,
                                tok_cfg)
    if tok_cfg is not None:
        check_tokenizer_vocab(build_tokenizer(tok_cfg, [tokenizer]), vocab, tokenizer)
    # ALBEF's test transform (a square bicubic resize) and caption cleaning
    pipelines = pipeline_vars(model_cfg, image_pipeline(image_res),
                              clean=dict(max_words=30, style='albef'))
    state = cast_state_dict(state, dtype)
    check_state_dict(model_cfg, state)
    meta = dict(source=f'salesforce/ALBEF ({report.layout} layout)',
                source_path=osp.abspath(checkpoint),
                converter='tools/convert/albef_to_vlp.py', image_res=image_res,
                fusion_layer=report.fusion_layer)
    header = (f'# vlp ALBEF converted by tools/convert/albef_to_vlp.py from {checkpoint}\n'
              f'# ({report.layout} layout, image_res {image_res}, fusion_layer '
              f'{report.fusion_layer}).\n'
              '# Load with vlp.apis.init_model(<this directory>) (config.py + model.pth).\n'
              '# Paths containing {{ fileDirname }} resolve to this directory.\n')
    cfg_path, ckpt_path = save_vlp(out_dir, model_cfg, state, meta, header,
                                   copy_files=[tokenizer] if tokenizer is not None else [],
                                   pipelines=pipelines)
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model_cfg, report=report,
                eval_configs=written_eval_configs(out_dir))
