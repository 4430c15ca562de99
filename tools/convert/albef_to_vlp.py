"""Convert an original ALBEF checkpoint (Li et al. 2021, "Align before Fuse";
github.com/salesforce/ALBEF: ``models/model_pretrain.py``, ``models/model_retrieval.py``,
``models/xbert.py``, ``models/vit.py``) to vlp's ALBEF.

Usage::

    python tools/convert/albef_to_vlp.py CHECKPOINT OUT_DIR [--image-res 256]
        [--fusion-layer 6] [--vision-heads 12] [--text-heads 12]
        [--vocab-file vocab.txt | --tokenizer-file tokenizer.json] [--dtype fp32]

``CHECKPOINT``: a file saved by ALBEF's training scripts (the weights under ``'model'``,
next to ``optimizer``/``config``/``epoch``) or a bare state dict; read weights-only unless
``--no-weights-only``. ``--image-res``: the resolution the checkpoint was trained at (ALBEF:
256 for pretraining, 384 for fine-tuning); position embeddings are never interpolated, a
checkpoint at another resolution is refused. Writes ``OUT_DIR/config.py`` and
``OUT_DIR/model.pth`` (``{'state_dict', 'meta'}``, loadable weights-only). A BERT
``vocab.txt`` (bert-base-uncased for the released models) given with ``--vocab-file`` is
copied and named in the config.

Two layouts are recognised (by the ``text_encoder.bert.`` prefix):

- **pretrain** (``model_pretrain.py``; ``ALBEF.pth``, ``ALBEF_4M.pth``): the text encoder is
  a ``BertForMaskedLM`` (``text_encoder.bert.*`` and the MLM head ``text_encoder.cls.*``),
  its momentum twin too; image/text queues and ``queue_ptr``.
- **retrieval** (``model_retrieval.py``; the COCO / Flickr30k fine-tuned checkpoints): the
  text encoder is a ``BertModel`` (``text_encoder.*``, no MLM head), plus ``idx_queue``
  (image ids of the queued features); the vlp config gets ``queue_ids=True``, no MLM head.

Mapping (``_m``: the momentum twin, same rules; ``F`` = ``fusion_layer``, the first BERT
layer with cross-attention, 6 in ALBEF; ``T`` = ``text_encoder[.bert]``)::

    visual_encoder.<timm ViT name>                 -> vision.model.<same name>
    T.embeddings.{word,position,token_type}_embeddings -> text.{...}_embeddings
    T.embeddings.LayerNorm                         -> text.emb_norm
    T.encoder.layer.i   (i <  F)                   -> text.blocks.i
    T.encoder.layer.i   (i >= F)                   -> fusion.blocks.(i - F)
      (in a layer) attention.self.{query,key,value} -> attn.qkv (rows q, k, v),
      attention.output.dense -> attn.proj, attention.output.LayerNorm -> norm1,
      crossattention.self.query -> cross_attn.q, crossattention.self.{key,value}
      -> cross_attn.kv (rows k, v), crossattention.output.dense -> cross_attn.proj,
      crossattention.output.LayerNorm -> norm_cross, intermediate.dense -> mlp.fc1,
      output.dense -> mlp.fc2, output.LayerNorm -> norm2
    text_encoder.cls.predictions.transform.dense   -> mlm_head.dense
    text_encoder.cls.predictions.transform.LayerNorm -> mlm_head.norm
    text_encoder.cls.predictions.decoder.weight    -> mlm_head.decoder.weight
      (must equal the word embeddings: vlp ties them)
    text_encoder.cls.predictions.bias              -> mlm_head.bias
      (``decoder.bias`` is the same tensor in ALBEF: checked equal, not written twice)
    vision_proj / text_proj                        -> vision_proj.proj / text_proj.proj
    itm_head                                       -> itm_head.fc
    temp (0-dim T)                                 -> itc.logit_scale = log(1 / T)
    image_queue / text_queue [D, K]                -> queue.image_queue / queue.text_queue [K, D]
    idx_queue [1, K]                               -> queue.idx_queue [K] (values kept:
                                                      ALBEF's -100 matches no id, as vlp's -1)
    queue_ptr [1]                                  -> queue.ptr (0-dim)
    (none)                                         -> queue.filled = K (ALBEF's whole queue
                                                      always serves as negatives)

Ignored: ``*.embeddings.position_ids`` (a constant buffer) and ``decoder.bias`` (see above).
Any other key raises ``KeyError`` (``--drop-keys REGEX`` drops keys on purpose), and so do
vlp keys left missing; shapes are checked against the vlp model built from the written
config. The ALBEF ViT (LayerNorm eps 1e-6, exact GELU, class token, final norm) is timm's
``VisionTransformer`` with the same parameter names; BERT's post-LN layers are vlp's
``BertEncoder`` blocks. Image statistics: CLIP's mean/std, as ALBEF's ``create_dataset``.
"""
import argparse
import math
import os.path as osp
import re
import sys
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import _clip_common as common  # noqa: E402

# ALBEF-base (configs/config_bert.json, models/model_pretrain.py)
ALBEF_FUSION_LAYER = 6
ALBEF_HEADS = 12
ALBEF_TEXT_MAX_LENGTH = 30  # ALBEF's retrieval evaluation pads captions to 30 tokens

_VIT_PARAM = (r'(cls_token|pos_embed|patch_embed\.proj\.(?:weight|bias)|'
              r'blocks\.\d+\.(?:norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.'
              r'(?:weight|bias)|norm\.(?:weight|bias))')
# BERT layer sub-module -> (vlp block sub-module, row slot in a fused tensor)
_BERT_LAYER = {
    'attention.self.query': ('attn.qkv', 0),
    'attention.self.key': ('attn.qkv', 1),
    'attention.self.value': ('attn.qkv', 2),
    'attention.output.dense': ('attn.proj', None),
    'attention.output.LayerNorm': ('norm1', None),
    'crossattention.self.query': ('cross_attn.q', None),
    'crossattention.self.key': ('cross_attn.kv', 0),
    'crossattention.self.value': ('cross_attn.kv', 1),
    'crossattention.output.dense': ('cross_attn.proj', None),
    'crossattention.output.LayerNorm': ('norm_cross', None),
    'intermediate.dense': ('mlp.fc1', None),
    'output.dense': ('mlp.fc2', None),
    'output.LayerNorm': ('norm2', None),
}
_FUSED_PARTS = {'attn.qkv': 3, 'cross_attn.kv': 2}


@dataclass
class ConversionReport:
    """What :func:`convert_albef` did besides renaming."""
    layout: str  # 'pretrain' or 'retrieval'
    fusion_layer: int
    num_bert_layers: int
    ignored: List[str]  # constant buffers and duplicates, not written
    dropped: List[str]  # keys matching the caller's ``drop`` patterns
    added: List[str]  # vlp keys with no ALBEF counterpart (set by the converter)


def _strip_module(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    if sd and all(k.startswith('module.') for k in sd):
        return {k[len('module.'):]: v for k, v in sd.items()}
    return dict(sd)


def detect_layout(sd: Dict[str, torch.Tensor]) -> str:
    """``'pretrain'`` (``text_encoder.bert.*``, a ``BertForMaskedLM``) or ``'retrieval'``
    (``text_encoder.*``, a ``BertModel``).

    Raises:
        KeyError: no text encoder, or both prefixes present.
    """
    with_bert = any(re.match(r'text_encoder(_m)?\.bert\.', k) for k in sd)
    without = any(re.match(r'text_encoder(_m)?\.(embeddings|encoder)\.', k) for k in sd)
    if with_bert and without:
        raise KeyError('the checkpoint mixes text_encoder.bert.* and text_encoder.* keys')
    if not (with_bert or without):
        raise KeyError('no text_encoder[.bert].{embeddings,encoder}.* keys: not an ALBEF '
                       'pretrain / retrieval checkpoint')
    return 'pretrain' if with_bert else 'retrieval'


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal tensors (meta tensors, which hold no values, count as equal)."""
    if a.is_meta or b.is_meta:
        return a.shape == b.shape
    return a.shape == b.shape and torch.equal(a, b)


def convert_albef(sd: Dict[str, torch.Tensor], fusion_layer: Optional[int] = ALBEF_FUSION_LAYER,
                  drop: Iterable[str] = ()
                  ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """ALBEF state dict -> (vlp ``ALBEF`` state dict, :class:`ConversionReport`).

    Args:
        sd: the ALBEF state dict (``checkpoint['model']``; a ``module.`` prefix on every key
            is dropped).
        fusion_layer: BERT layers ``< fusion_layer`` form the text encoder, the others the
            fusion encoder; the checkpoint's cross-attention weights must sit exactly in
            the latter. ``None`` takes it from the first layer with cross-attention.
        drop: regexes (full match) of source keys to drop on purpose.

    Raises:
        KeyError: a key no rule maps, cross-attention weights in the wrong layers, an
            incomplete fused group.
        ValueError: the MLM decoder differs from the word embeddings (vlp ties them) or
            ``decoder.bias`` from ``bias``.
    """
    sd = _strip_module(sd)
    drop = list(drop)
    layout = detect_layout(sd)
    bert = r'\.bert' if layout == 'pretrain' else ''
    enc = r'text_encoder(_m)?' + bert + r'\.'
    layer_re = re.compile(enc + r'encoder\.layer\.(\d+)\.(.+)\.(weight|bias)')
    renames: List[Tuple[str, str]] = [
        (r'visual_encoder(_m)?\.' + _VIT_PARAM, r'vision\1.model.\2'),
        (r'(vision|text)_proj(_m)?\.(weight|bias)', r'\1_proj\2.proj.\3'),
        (r'itm_head\.(weight|bias)', r'itm_head.fc.\1'),
        (enc + r'embeddings\.(word|position|token_type)_embeddings\.weight',
         r'text\1.\2_embeddings.weight'),
        (enc + r'embeddings\.LayerNorm\.(weight|bias)', r'text\1.emb_norm.\2'),
    ]
    if layout == 'pretrain':
        cls = r'text_encoder(_m)?\.cls\.predictions\.'
        renames += [
            (cls + r'transform\.dense\.(weight|bias)', r'mlm_head\1.dense.\2'),
            (cls + r'transform\.LayerNorm\.(weight|bias)', r'mlm_head\1.norm.\2'),
            (cls + r'decoder\.weight', r'mlm_head\1.decoder.weight'),
            (cls + r'bias', r'mlm_head\1.bias'),
        ]
    ignore = [enc + r'embeddings\.position_ids']
    dup_bias = r'text_encoder(_m)?\.cls\.predictions\.decoder\.bias'

    layer_keys = {}  # source key -> (momentum suffix, layer index, sub-module, param)
    out: Dict[str, torch.Tensor] = {}
    ignored, dropped, unexpected = [], [], []

    def put(key: str, value: torch.Tensor) -> None:
        if key in out:
            raise KeyError(f'two source keys map to {key!r}')
        out[key] = value

    for key, value in sd.items():
        if any(re.fullmatch(p, key) for p in drop):
            dropped.append(key)
            continue
        if any(re.fullmatch(p, key) for p in ignore):
            ignored.append(key)
            continue
        if layout == 'pretrain' and re.fullmatch(dup_bias, key):
            bias_key = key[:-len('decoder.bias')] + 'bias'
            if bias_key not in sd or not _same(value, sd[bias_key]):
                raise ValueError(f'{key} differs from {bias_key} (ALBEF shares them; vlp '
                                 'has one output bias)')
            ignored.append(key)
            continue
        m = layer_re.fullmatch(key)
        if m is not None and m.group(3) in _BERT_LAYER:
            layer_keys[key] = (m.group(1) or '', int(m.group(2)), m.group(3), m.group(4))
            continue
        if key == 'temp':
            put('itc.logit_scale', torch.log(1.0 / value.reshape(())))
        elif key in ('image_queue', 'text_queue'):
            put(f'queue.{key}', value.t().contiguous())  # [D, K] -> [K, D]
        elif key == 'idx_queue':
            put('queue.idx_queue', value.reshape(-1).long())
        elif key == 'queue_ptr':
            put('queue.ptr', value.reshape(()).long())
        else:
            for pattern, target in renames:
                rm = re.fullmatch(pattern, key)
                if rm is not None:
                    put(rm.expand(target), value)  # unmatched groups expand to ''
                    break
            else:
                unexpected.append(key)
    if unexpected:
        raise KeyError(f'unexpected keys in the ALBEF checkpoint ({layout} layout; no rule '
                       f'maps them, pass drop patterns to discard them on purpose): '
                       f'{unexpected}')

    # -- BERT layers: split at fusion_layer, fuse q/k/v and cross-attention k/v ------------
    if not layer_keys:
        raise KeyError('no text_encoder BERT layers in the checkpoint')
    num_layers = 1 + max(i for _, i, _, _ in layer_keys.values())
    cross = sorted({i for _, i, sub, _ in layer_keys.values()
                    if sub.startswith('crossattention.')})
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
    fused: Dict[str, Tuple[int, Dict[int, torch.Tensor]]] = {}
    for key, (mom, i, sub, param) in layer_keys.items():
        name, slot = _BERT_LAYER[sub]
        part, idx = ('text', i) if i < fusion_layer else ('fusion', i - fusion_layer)
        target = f'{part}{mom}.blocks.{idx}.{name}.{param}'
        if slot is None:
            put(target, sd[key])
        else:
            fused.setdefault(target, (_FUSED_PARTS[name], {}))[1][slot] = sd[key]
    for target, (n, parts) in fused.items():
        if sorted(parts) != list(range(n)):
            raise KeyError(f'{target}: only parts {sorted(parts)} of {n} present')
        put(target, torch.cat([parts[s] for s in range(n)], dim=0))

    # -- ties and additions -----------------------------------------------------------------
    for mom in ('', '_m'):
        dec, emb = f'mlm_head{mom}.decoder.weight', f'text{mom}.word_embeddings.weight'
        if dec in out and emb in out and not _same(out[dec], out[emb]):
            raise ValueError(f'{dec} differs from {emb}: vlp ties the MLM decoder to the '
                             'word embeddings')
    added = []
    if 'queue.image_queue' in out:
        out['queue.filled'] = torch.tensor(out['queue.image_queue'].shape[0], dtype=torch.long)
        added.append('queue.filled')
    report = ConversionReport(layout=layout, fusion_layer=fusion_layer,
                              num_bert_layers=num_layers, ignored=ignored, dropped=dropped,
                              added=added)
    return out, report


def convert_albef_state_dict(sd: Dict[str, torch.Tensor],
                             fusion_layer: Optional[int] = ALBEF_FUSION_LAYER,
                             drop: Iterable[str] = ()) -> Dict[str, torch.Tensor]:
    """ALBEF state dict (pretrain or retrieval layout) -> vlp ``ALBEF`` state dict; see
    :func:`convert_albef` (this returns the state dict only)."""
    return convert_albef(sd, fusion_layer, drop)[0]


# -- vlp config ------------------------------------------------------------------------------
def _count(sd: Dict[str, torch.Tensor], prefix: str) -> int:
    idx = {int(m.group(1)) for k in sd for m in [re.match(re.escape(prefix) + r'(\d+)\.', k)]
           if m is not None}
    return 1 + max(idx) if idx else 0


def _heads(width: int, heads: int, what: str) -> int:
    if heads <= 0 or width % heads:
        raise ValueError(f'{what} width {width} is not divisible by {heads} heads')
    return heads


def albef_model_cfg(state: Dict[str, torch.Tensor], image_res: int,
                    layout: str = 'pretrain', vision_heads: int = ALBEF_HEADS,
                    text_heads: int = ALBEF_HEADS, tokenizer: Optional[dict] = None) -> dict:
    """vlp ``ALBEF`` config for a converted state dict. Sizes come from the tensor shapes
    (ALBEF-base: ViT-B/16, BERT-base split 6 + 6, 256-d ITC space, a 65,536-row queue);
    the head counts, which shapes do not tell, from the arguments (ALBEF-base: 12). Every
    ALBEF has an ITM head and a feature queue; the ``pretrain`` layout also an MLM head,
    the ``retrieval`` layout image ids in the queue (``queue_ids=True``). Their weights
    missing from ``state`` then show as missing keys in :func:`common.check_state_dict`.

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
        type='TimmTower',
        model_name='vit_base_patch16_224',  # ALBEF's ViT-B/16; every size below is explicit
        pretrained=False,
        img_size=image_res,
        patch_size=patch,
        embed_dim=width,
        depth=_count(state, v + 'blocks.'),
        num_heads=_heads(width, vision_heads, 'vision'),
        mlp_ratio=common.mlp_ratio_of(width, state[v + 'blocks.0.mlp.fc1.weight'].shape[0]))
    vocab, hidden = state['text.word_embeddings.weight'].shape
    bert = dict(
        type='BertEncoder',
        vocab_size=vocab,
        hidden_size=hidden,
        num_heads=_heads(hidden, text_heads, 'text'),
        intermediate_size=state['text.blocks.0.mlp.fc1.weight'].shape[0],
        max_position_embeddings=state['text.position_embeddings.weight'].shape[0],
        type_vocab_size=state['text.token_type_embeddings.weight'].shape[0])
    embed_dim = state['vision_proj.proj.weight'].shape[0]
    model = dict(
        type='ALBEF',
        data_preprocessor=dict(
            type='VLPDataPreprocessor',
            mean=[round(m * 255, 6) for m in common.OPENAI_CLIP_MEAN],
            std=[round(s * 255, 6) for s in common.OPENAI_CLIP_STD]),
        vision=vision,
        text=dict(bert, num_layers=_count(state, 'text.blocks.')),
        fusion=dict(bert, num_layers=_count(state, 'fusion.blocks.'), with_embeddings=False,
                    cross_attention_layers='all',
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
    to the written config (uncased, as bert-base-uncased).

    Raises:
        ValueError: a ``vocab.txt`` whose size differs from ``vocab_size``.
    """
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


# -- files -------------------------------------------------------------------------------------
def load_albef_checkpoint(path: str, weights_only: bool = True) -> Dict[str, torch.Tensor]:
    """The state dict of an ALBEF checkpoint file (under ``'model'`` in ALBEF's files),
    read weights-only unless ``weights_only=False`` (``--no-weights-only``: trusted files
    only, it unpickles the file fully)."""
    return _strip_module(common.load_weights_file(path, weights_only,
                                                  opt_out=common.NO_WEIGHTS_ONLY_HINT))


def convert(checkpoint: str, out_dir: str, image_res: int = 256,
            fusion_layer: Optional[int] = ALBEF_FUSION_LAYER,
            vision_heads: int = ALBEF_HEADS, text_heads: int = ALBEF_HEADS,
            tokenizer: Optional[str] = None, max_length: int = ALBEF_TEXT_MAX_LENGTH,
            dtype: Optional[torch.dtype] = torch.float32, drop: Sequence[str] = (),
            weights_only: bool = True) -> Dict[str, Union[str, dict, ConversionReport]]:
    """Convert an ALBEF checkpoint file; returns the written paths, the config and the
    :class:`ConversionReport`. Nothing is written when a check fails."""
    state, report = convert_albef(load_albef_checkpoint(checkpoint, weights_only),
                                  fusion_layer, drop)
    vocab = state['text.word_embeddings.weight'].shape[0]
    tok_cfg = (bert_tokenizer_cfg(tokenizer, max_length, vocab)
               if tokenizer is not None else None)
    model_cfg = albef_model_cfg(state, image_res, report.layout, vision_heads, text_heads,
                                tok_cfg)
    state = common.cast_state_dict(state, dtype)
    common.check_state_dict(model_cfg, state)
    meta = dict(source=f'salesforce/ALBEF ({report.layout} layout)',
                source_path=osp.abspath(checkpoint),
                converter='tools/convert/albef_to_vlp.py', image_res=image_res,
                fusion_layer=report.fusion_layer)
    header = (f'# vlp ALBEF converted by tools/convert/albef_to_vlp.py from {checkpoint}\n'
              f'# ({report.layout} layout, image_res {image_res}, fusion_layer '
              f'{report.fusion_layer}).\n'
              '# Load with vlp.apis.init_model(<this file>, <dir>/model.pth).\n'
              '# Paths containing {{ fileDirname }} resolve to this directory.\n')
    cfg_path, ckpt_path = common.save_converted(
        out_dir, model_cfg, state, meta, header,
        copy_files=[tokenizer] if tokenizer is not None else [])
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model_cfg, report=report)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='ALBEF checkpoint (weights under "model")')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth)')
    parser.add_argument('--image-res', type=int, default=256,
                        help='training resolution of the checkpoint (ALBEF: 256 pretrain, '
                             '384 fine-tuned; default 256)')
    parser.add_argument('--fusion-layer', type=int, default=ALBEF_FUSION_LAYER,
                        help='first BERT layer of the fusion encoder (default 6)')
    parser.add_argument('--vision-heads', type=int, default=ALBEF_HEADS,
                        help='ViT attention heads (default 12)')
    parser.add_argument('--text-heads', type=int, default=ALBEF_HEADS,
                        help='BERT attention heads (default 12)')
    tok = parser.add_mutually_exclusive_group()
    tok.add_argument('--vocab-file', help='BERT vocab.txt to copy and name in the config')
    tok.add_argument('--tokenizer-file', help='BERT tokenizer.json to copy and name')
    parser.add_argument('--max-length', type=int, default=ALBEF_TEXT_MAX_LENGTH,
                        help='tokenizer padding length (default 30)')
    common.add_drop_keys_arg(parser)
    common.add_dtype_arg(parser)
    common.add_weights_only_arg(parser)
    args = parser.parse_args(argv)
    out = convert(args.checkpoint, args.out_dir, image_res=args.image_res,
                  fusion_layer=args.fusion_layer, vision_heads=args.vision_heads,
                  text_heads=args.text_heads, tokenizer=args.vocab_file or args.tokenizer_file,
                  max_length=args.max_length, dtype=common.dtype_arg(args.dtype),
                  drop=args.drop_keys, weights_only=not args.no_weights_only)
    rep = out['report']
    print(f'{rep.layout} layout, {rep.num_bert_layers} BERT layers split at fusion_layer '
          f'{rep.fusion_layer}')
    for what, keys in (('ignored', rep.ignored), ('dropped', rep.dropped),
                       ('added', rep.added)):
        if keys:
            print(f'{what}: {", ".join(keys)}')
    print(f'wrote {out["config"]} and {out["checkpoint"]}')


if __name__ == '__main__':
    main()
