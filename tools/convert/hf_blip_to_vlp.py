"""Convert a HuggingFace transformers BLIP checkpoint (Li et al. 2022, "BLIP: Bootstrapping
Language-Image Pre-training"; ``BlipForImageTextRetrieval`` or
``BlipForConditionalGeneration``, transformers ``models/blip/modeling_blip.py`` and
``modeling_blip_text.py``) to vlp's BLIP.

Usage::

    python tools/convert/hf_blip_to_vlp.py HF_DIR OUT_DIR
        [--vocab-file vocab.txt | --tokenizer-file tokenizer.json | --no-tokenizer]
        [--enc-token-id 30523] [--queue-size 57600] [--prompt 'a picture of ']
        [--drop-keys REGEX ...] [--dtype fp32]

``HF_DIR``: a ``save_pretrained`` directory (``config.json`` and ``model.safetensors`` /
``pytorch_model.bin``, possibly sharded). Writes ``OUT_DIR/config.py`` and
``OUT_DIR/model.pth`` (``{'state_dict', 'meta'}``, loadable weights-only). The model kind
comes from the keys: ``text_encoder.*`` is the retrieval model (``itm``/``coco``/``flickr``
checkpoints), ``text_decoder.*`` the captioning model.

Mapping (``i`` = layer index)::

    vision_model.embeddings.class_embedding [1, 1, C]      -> vision.model.cls_token
    vision_model.embeddings.position_embedding [1, N+1, C] -> vision.model.pos_embed
    vision_model.embeddings.patch_embedding                -> vision.model.patch_embed.proj
    vision_model.encoder.layers.i.self_attn.qkv            -> vision.model.blocks.i.attn.qkv
    vision_model.encoder.layers.i.self_attn.projection     -> vision.model.blocks.i.attn.proj
    vision_model.encoder.layers.i.layer_norm1/2            -> vision.model.blocks.i.norm1/2
    vision_model.encoder.layers.i.mlp.fc1/fc2              -> vision.model.blocks.i.mlp.fc1/fc2
    vision_model.post_layernorm                            -> vision.model.norm
    text_encoder.<BERT>           (retrieval)              -> text.<BertEncoder>
    text_decoder.bert.<BERT>      (captioning)             -> decoder.<BertEncoder>
      (BERT -> BertEncoder as ``convert_hf_bert_state_dict``: embeddings.{word,position}_
      embeddings, embeddings.LayerNorm -> emb_norm; per layer attention.self.{query,key,
      value} -> attn.qkv, attention.output.dense/LayerNorm -> attn.proj/norm1,
      crossattention.self.query -> cross_attn.q, crossattention.self.{key,value} ->
      cross_attn.kv, crossattention.output.dense/LayerNorm -> cross_attn.proj/norm_cross,
      intermediate.dense -> mlp.fc1, output.dense/LayerNorm -> mlp.fc2/norm2)
    text_decoder.cls.predictions.transform.dense/LayerNorm -> lm_head.dense/norm
    text_decoder.cls.predictions.decoder.weight            -> lm_head.decoder.weight
    text_decoder.cls.predictions.decoder.bias (else .bias) -> lm_head.bias
    vision_proj / text_proj                                -> vision_proj.proj / text_proj.proj
    itm_head                                               -> itm_head.fc

The image encoder is timm's ``VisionTransformer`` (pre-LN blocks with a class token, no
pre-norm, a patch-embedding bias, exact GELU, final norm on every token as HF's
``post_layernorm``): ``vit_base_patch16_clip_224`` with ``pre_norm=False`` for LayerNorm
eps 1e-5 (BLIP), ``vit_base_patch16_224`` for 1e-6, every size passed explicitly. The text
transformer is vlp's ``BertEncoder`` without token-type embeddings
(``type_vocab_size=0``) and with cross-attention in every layer.

The captioning decoder is a separate BERT (``share_decoder=False``). HF ties its output
matrix (and bias) to the decoder's word embeddings (and ``predictions.bias``); saved files
then omit the tied copies. The output matrix, when present, is compared with the word
embeddings: equal (or absent) gives ``tie_lm_head=True``, different gives
``tie_lm_head=False`` with its own weight (transformers >= 5 does not tie differing
tensors either). HF's head adds only ``decoder.bias``, so that bias is used when present.

Special tokens: ``dec_token_id`` is the text config's ``bos_token_id`` ([DEC], 30522 in
BLIP). ``enc_token_id`` ([ENC], which replaces the first token of the image-grounded
encoder's input) is not in HF's config: ``--enc-token-id``, else the id of ``[ENC]`` in
the given vocabulary, else ``bos_token_id + 1`` (30523 in BLIP's vocabulary: BLIP adds
[DEC] then [ENC] to bert-base-uncased's 30,522 tokens). The tokenizer is vlp's
``BertTokenizer`` (lower-cased) with ``additional_special_tokens=['[DEC]', '[ENC]']``
(appended when the vocabulary lacks them); its ``[DEC]``, ``[SEP]`` and ``[PAD]`` ids must
be HF's ``bos``/``sep``/``pad_token_id``. ``HF_DIR/vocab.txt`` is used when no tokenizer
option is given.

Parts a checkpoint does not hold start at vlp's init and are listed in the report: the
retrieval model has no decoder (``lm_head=None``), HF drops BLIP's temperature
(``itc.logit_scale`` = log(1 / 0.07)); the captioning model has no text encoder, ITC
projections (their init) nor ITM head (``itm_head=None``). The momentum twins
(``vision_m``, ``vision_proj_m``, ``text_m``, ``text_proj_m``) are written as copies of the
online weights, the feature queue holds the fresh model's values (built with ``--seed``).
Unknown source keys raise ``KeyError`` (``--drop-keys`` drops keys on purpose); names and
shapes are checked against the vlp model built from the written config.
"""
import argparse
import os.path as osp
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import _clip_common as common  # noqa: E402
import hf_clip_to_vlp as hf_clip  # noqa: E402  (HF directory readers)

BLIP_QUEUE_SIZE = 57600  # BLIP's ITC queue (configs/pretrain.yaml, retrieval_coco.yaml)
BLIP_TEXT_MAX_LENGTH = 35
SPECIAL_TOKENS = ['[DEC]', '[ENC]']
_TEXT_SRC = {'retrieval': 'text_encoder.', 'captioning': 'text_decoder.bert.'}

_V = common.VISION_PREFIX
_RULES: List[common.Rule] = [
    (r'vision_model\.embeddings\.class_embedding', _V + 'cls_token', None),
    (r'vision_model\.embeddings\.position_embedding', _V + 'pos_embed', None),
    (r'vision_model\.embeddings\.patch_embedding\.(weight|bias)',
     _V + r'patch_embed.proj.\1', None),
    (r'vision_model\.post_layernorm\.(weight|bias)', _V + r'norm.\1', None),
    *common.block_rules('vision_model.encoder.layers.', _V + 'blocks.', [
        ('self_attn.qkv.', 'attn.qkv.'), ('self_attn.projection.', 'attn.proj.'),
        ('layer_norm1.', 'norm1.'), ('layer_norm2.', 'norm2.'),
        ('mlp.fc1.', 'mlp.fc1.'), ('mlp.fc2.', 'mlp.fc2.')]),
    (r'(vision|text)_proj\.(weight|bias)', r'\1_proj.proj.\2', None),
    (r'itm_head\.(weight|bias)', r'itm_head.fc.\1', None),
    (r'text_decoder\.cls\.predictions\.transform\.dense\.(weight|bias)',
     r'lm_head.dense.\1', None),
    (r'text_decoder\.cls\.predictions\.transform\.LayerNorm\.(weight|bias)',
     r'lm_head.norm.\1', None),
]
_LM = 'text_decoder.cls.predictions.'
_IGNORE = [r'(text_encoder|text_decoder\.bert)\.embeddings\.position_ids']  # old saves


@dataclass
class ConversionReport:
    """What :func:`convert_hf_blip` did besides renaming."""
    kind: str  # 'retrieval' or 'captioning'
    tie_lm_head: bool = True
    enc_token_id: Optional[int] = None
    dec_token_id: Optional[int] = None
    left_at_init: List[str] = field(default_factory=list)  # vlp keys the source lacks
    momentum_copies: List[str] = field(default_factory=list)  # twins = online copies
    ignored: List[str] = field(default_factory=list)  # buffers, tied duplicates
    dropped: List[str] = field(default_factory=list)  # the caller's drop patterns


def detect_kind(sd: Dict[str, torch.Tensor]) -> str:
    """``'retrieval'`` (``text_encoder.*``) or ``'captioning'`` (``text_decoder.*``)."""
    enc = any(k.startswith('text_encoder.') for k in sd)
    dec = any(k.startswith('text_decoder.') for k in sd)
    if enc == dec:
        raise KeyError('expected text_encoder.* (BlipForImageTextRetrieval) or '
                       'text_decoder.* (BlipForConditionalGeneration) keys, found '
                       + ('both' if enc else 'neither'))
    return 'retrieval' if enc else 'captioning'


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.is_meta or b.is_meta:
        return a.shape == b.shape
    return a.shape == b.shape and torch.equal(a, b)


def _bert(sd: Dict[str, torch.Tensor], src: str, dst: str,
          unexpected: List[str]) -> Dict[str, torch.Tensor]:
    """HF BLIP text keys under ``src`` -> vlp ``BertEncoder`` keys under ``dst``; keys that
    ``convert_hf_bert_state_dict`` does not map go to ``unexpected``."""
    from vlp.models.backbones.bert import convert_hf_bert_state_dict
    sub = {k[len(src):]: v for k, v in sd.items() if k.startswith(src)}
    for k, v in sub.items():
        if k.startswith('bert.') or not convert_hf_bert_state_dict({k: v}):
            unexpected.append(src + k)
    return {dst + k: v for k, v in convert_hf_bert_state_dict(sub).items()}


def convert_hf_blip_state_dict(sd: Dict[str, torch.Tensor], drop: Iterable[str] = ()
                               ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """Rename a HF BLIP state dict to vlp ``BLIP`` keys (no momentum twins, no fill-in).

    Raises:
        KeyError: a key no rule maps.
    """
    drop = list(drop)
    rep = ConversionReport(kind=detect_kind(sd))
    kept = {}
    for k, v in sd.items():
        if any(re.fullmatch(p, k) for p in drop):
            rep.dropped.append(k)
        elif any(re.fullmatch(p, k) for p in _IGNORE):
            rep.ignored.append(k)
        else:
            kept[k] = v
    text_src = _TEXT_SRC[rep.kind]
    unexpected: List[str] = []
    out = _bert(kept, text_src, 'text.' if rep.kind == 'retrieval' else 'decoder.',
                unexpected)
    lm = {k[len(_LM):]: v for k, v in kept.items() if k.startswith(_LM)
          and not k.startswith(_LM + 'transform.')}
    rest = {k: v for k, v in kept.items() if not k.startswith(text_src)
            and not (k.startswith(_LM) and k[len(_LM):] in lm)}
    renamed = {}
    for k, v in rest.items():  # key by key, to list every unknown one
        try:
            renamed.update(common.rename_state_dict({k: v}, _RULES))
        except KeyError:
            unexpected.append(k)
    for k in ('vision.model.cls_token', 'vision.model.pos_embed'):  # [1, (N+1,) C]
        if k in renamed:
            renamed[k] = renamed[k].reshape(1, -1, renamed[k].shape[-1])
    out.update(renamed)
    unexpected += [_LM + k for k in lm if k not in ('decoder.weight', 'decoder.bias', 'bias')]
    if unexpected:
        raise KeyError(f'unexpected keys in the HF BLIP checkpoint ({rep.kind}; no rule maps '
                       f'them, pass drop patterns to discard them on purpose): {unexpected}')

    if rep.kind == 'captioning':  # the LM head's output matrix and bias (HF ties both)
        emb = out.get('decoder.word_embeddings.weight')
        weight = lm.get('decoder.weight')
        if emb is None:
            raise KeyError('text_decoder.bert.embeddings.word_embeddings.weight is missing')
        rep.tie_lm_head = weight is None or _same(weight, emb)
        out['lm_head.decoder.weight'] = emb if rep.tie_lm_head else weight
        if weight is not None and rep.tie_lm_head:
            rep.ignored.append(_LM + 'decoder.weight')
        bias = lm.get('decoder.bias', lm.get('bias'))
        if bias is None:
            raise KeyError(f'{_LM}bias is missing')
        out['lm_head.bias'] = bias
        if 'decoder.bias' in lm and 'bias' in lm:
            # HF's head adds decoder.bias only (tied to predictions.bias unless they differ)
            rep.ignored.append(_LM + 'bias')
    return out, rep


# -- vlp config -------------------------------------------------------------------------------
def _as_hf_config(config):
    if isinstance(config, dict):
        from transformers import BlipConfig
        return BlipConfig.from_dict(config)
    return config


def _square(v, what: str) -> int:
    if isinstance(v, (list, tuple)):
        if len(set(v)) != 1:
            raise NotImplementedError(f'non-square {what} {v}')
        v = v[0]
    return int(v)


def vision_cfg(vc) -> dict:
    """vlp ``TimmTower`` config of a HF ``BlipVisionConfig``."""
    eps = vc.layer_norm_eps
    if eps == 1e-5:  # timm's CLIP ViTs: LayerNorm eps 1e-5; pre_norm=False adds the bias
        name, extra = 'vit_base_patch16_clip_224', dict(pre_norm=False)
    elif eps == 1e-6:  # timm's ImageNet ViTs (and ALBEF's / BLIP's original ViT)
        name, extra = 'vit_base_patch16_224', {}
    else:
        raise NotImplementedError(f'vision LayerNorm eps {eps}: timm ViTs give 1e-5 or 1e-6')
    cfg = dict(type='TimmTower', model_name=name, pretrained=False,
               img_size=_square(vc.image_size, 'image_size'),
               patch_size=_square(vc.patch_size, 'patch_size'),
               embed_dim=vc.hidden_size, depth=vc.num_hidden_layers,
               num_heads=vc.num_attention_heads,
               mlp_ratio=common.mlp_ratio_of(vc.hidden_size, vc.intermediate_size),
               act_layer=common.map_activation(vc.hidden_act), **extra,
               class_token=True, global_pool='token')
    if getattr(vc, 'attention_dropout', 0.0):
        cfg['attn_drop_rate'] = float(vc.attention_dropout)
    return cfg


def text_cfg(tc, cross_dim: int) -> dict:
    """vlp ``BertEncoder`` config of a HF ``BlipTextConfig`` (cross-attention everywhere)."""
    return dict(type='BertEncoder', vocab_size=tc.vocab_size, hidden_size=tc.hidden_size,
                num_layers=tc.num_hidden_layers, num_heads=tc.num_attention_heads,
                intermediate_size=tc.intermediate_size,
                max_position_embeddings=tc.max_position_embeddings, type_vocab_size=0,
                hidden_dropout=float(tc.hidden_dropout_prob),
                attention_dropout=float(tc.attention_probs_dropout_prob),
                pad_token_id=tc.pad_token_id, ln_eps=tc.layer_norm_eps,
                act_layer=common.map_activation(tc.hidden_act),
                cross_attention_layers='all', cross_attention_dim=cross_dim)


def hf_blip_model_cfg(config, kind: str, enc_token_id: int, tie_lm_head: bool = True,
                      tokenizer: Optional[dict] = None, mean=None, std=None,
                      queue_size: int = BLIP_QUEUE_SIZE, prompt: str = '') -> dict:
    """vlp ``BLIP`` config for a HF ``BlipConfig`` (or its dict) and model ``kind``."""
    if kind not in _TEXT_SRC:
        raise ValueError(f"kind must be 'retrieval' or 'captioning', got {kind!r}")
    config = _as_hf_config(config)
    vc, tc = config.vision_config, config.text_config
    hidden, embed = tc.hidden_size, config.image_text_hidden_size
    mean = common.OPENAI_CLIP_MEAN if mean is None else mean  # BLIP's image statistics
    std = common.OPENAI_CLIP_STD if std is None else std
    model = dict(
        type='BLIP',
        data_preprocessor=dict(type='VLPDataPreprocessor',
                               mean=[round(m * 255, 6) for m in mean],
                               std=[round(s * 255, 6) for s in std]),
        vision=vision_cfg(vc),
        text=text_cfg(tc, vc.hidden_size),
        vision_proj=dict(type='Projection', in_dim=vc.hidden_size, out_dim=embed, bias=True,
                         init_std=0.02),
        text_proj=dict(type='Projection', in_dim=hidden, out_dim=embed, bias=True,
                       init_std=0.02))
    if kind == 'retrieval':
        model.update(itm_head=dict(type='ITMHead', hidden_size=hidden), lm_head=None,
                     predict_mode='retrieval')
    else:
        model.update(itm_head=None,
                     lm_head=dict(type='MLMHead', hidden_size=hidden,
                                  vocab_size=tc.vocab_size,
                                  act_layer=common.map_activation(tc.hidden_act),
                                  ln_eps=tc.layer_norm_eps),
                     share_decoder=False, tie_lm_head=tie_lm_head, predict_mode='caption',
                     prompt=prompt,
                     # BLIP's captioning evaluation (configs/caption_coco.yaml)
                     generation_cfg=dict(num_beams=3, max_length=20, min_length=5))
    model.update(
        # BLIP: T = 0.07 at init, clamped to [0.001, 0.5]; HF keeps no temperature
        itc=dict(type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
                 max_logit_scale=1000.0),
        queue_size=queue_size, queue_ids=kind == 'retrieval', alpha=0.4,
        enc_token_id=int(enc_token_id), dec_token_id=int(tc.bos_token_id))
    if tokenizer is not None:
        model['tokenizer'] = tokenizer
    return model


# -- tokenizer and special ids ---------------------------------------------------------------
def tokenizer_cfg(path: str, max_length: int = BLIP_TEXT_MAX_LENGTH) -> dict:
    """vlp ``BertTokenizer`` config naming ``path`` (a ``vocab.txt`` or ``tokenizer.json``)
    copied next to the written config."""
    here = '{{ fileDirname }}/' + osp.basename(path)
    src = dict(tokenizer_file=here) if path.endswith('.json') else dict(vocab_file=here)
    return dict(type='BertTokenizer', **src, lowercase=True, max_length=max_length,
                additional_special_tokens=list(SPECIAL_TOKENS))


def special_token_ids(config, tokenizer: Optional[str] = None,
                      enc_token_id: Optional[int] = None) -> Tuple[int, int]:
    """``(enc_token_id, dec_token_id)`` (see the module docstring).

    Raises:
        ValueError: the tokenizer disagrees with the HF config (vocabulary size, [DEC],
            [SEP], [PAD], [ENC] ids) or an id is outside the vocabulary.
    """
    tc = _as_hf_config(config).text_config
    dec, vocab = int(tc.bos_token_id), int(tc.vocab_size)
    if tokenizer is not None:
        from vlp.datasets.tokenizers import BertTokenizer
        src = (dict(tokenizer_file=tokenizer) if tokenizer.endswith('.json')
               else dict(vocab_file=tokenizer))
        tok = BertTokenizer(**src, additional_special_tokens=SPECIAL_TOKENS)
        found = dict(vocab_size=(tok.vocab_size, vocab),
                     dec=(tok.token_to_id('[DEC]'), dec),
                     sep=(tok.sep_token_id, tc.sep_token_id),
                     pad=(tok.pad_token_id, tc.pad_token_id))
        if enc_token_id is not None:
            found['enc'] = (tok.token_to_id('[ENC]'), enc_token_id)
        bad = {k: v for k, v in found.items() if v[0] != v[1]}
        if bad:
            raise ValueError(f'{tokenizer} (with [DEC], [ENC] added when missing) disagrees '
                             f'with the HF config: ' + ', '.join(
                                 f'{k} {a} != {b}' for k, (a, b) in bad.items()))
        enc_token_id = tok.token_to_id('[ENC]')
    enc = dec + 1 if enc_token_id is None else int(enc_token_id)
    for name, i in (('[DEC]', dec), ('[ENC]', enc)):
        if not 0 <= i < vocab:
            raise ValueError(f'{name} id {i} outside the vocabulary of {vocab} tokens')
    if enc == dec:
        raise ValueError(f'[ENC] and [DEC] share the id {enc}')
    return enc, dec


# -- conversion ---------------------------------------------------------------------------
def convert_hf_blip(sd: Dict[str, torch.Tensor], config, tokenizer: Optional[str] = None,
                    enc_token_id: Optional[int] = None, max_length: int = BLIP_TEXT_MAX_LENGTH,
                    queue_size: int = BLIP_QUEUE_SIZE, prompt: str = '', mean=None, std=None,
                    drop: Iterable[str] = (), seed: int = 0
                    ) -> Tuple[Dict[str, torch.Tensor], dict, ConversionReport]:
    """HF BLIP state dict + ``BlipConfig`` (or dict) -> (complete vlp state dict, vlp model
    config, :class:`ConversionReport`). Parts the source lacks take the values of a vlp
    model built from the config (under ``torch.manual_seed(seed)``, the global RNG state
    restored); the momentum twins copy the online weights.

    Raises:
        KeyError: unknown source keys, or the converted names do not match the vlp model.
        ValueError: shape mismatches, tokenizer / special-id disagreements.
    """
    state, rep = convert_hf_blip_state_dict(sd, drop)
    rep.enc_token_id, rep.dec_token_id = special_token_ids(config, tokenizer, enc_token_id)
    tok_cfg = tokenizer_cfg(tokenizer, max_length) if tokenizer is not None else None
    model_cfg = hf_blip_model_cfg(config, rep.kind, rep.enc_token_id, rep.tie_lm_head,
                                  tok_cfg, mean, std, queue_size, prompt)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = common.build_vlp_model(model_cfg, device='cpu')
    names = {id(m): n for n, m in fresh.named_modules()}
    twins = [(names[id(a)] + '.', names[id(b)] + '.') for a, b in fresh.momentum_pairs()]
    own = fresh.state_dict()
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise KeyError(f'converted keys the vlp BLIP does not have: {unexpected}')
    for key, value in own.items():
        if key in state:
            continue
        twin = next(((on, mom) for on, mom in twins if key.startswith(mom)), None)
        if twin is not None:
            online = twin[0] + key[len(twin[1]):]
            state[key] = state[online] if online in state else own[online]
            rep.momentum_copies.append(key)
        else:
            state[key] = value
            rep.left_at_init.append(key)
    state = OrderedDict((k, state[k]) for k in own)
    common.check_state_dict(model_cfg, state)
    return state, model_cfg, rep


def summarize(keys: Sequence[str]) -> str:
    """``'text.* (41), itc.logit_scale'``: keys grouped by their top-level module."""
    groups: Dict[str, List[str]] = OrderedDict()
    for k in keys:
        groups.setdefault(k.split('.', 1)[0], []).append(k)
    return ', '.join(v[0] if len(v) == 1 else f'{g}.* ({len(v)})' for g, v in groups.items())


def read_hf_source(src: Union[str, Dict[str, torch.Tensor]], config=None):
    """``(state_dict, config, mean, std, source_path)`` of a HF ``save_pretrained``
    directory (its ``config.json`` unless ``config`` is given, its image statistics) or of
    an in-memory state dict with its ``config`` (mean / std ``None``)."""
    if not isinstance(src, str):
        if config is None:
            raise ValueError('a state dict needs its config')
        return src, config, None, None, '<state dict>'
    if config is None:
        import json
        with open(osp.join(src, 'config.json')) as f:
            config = json.load(f)
    mean, std = hf_clip._image_stats(src)
    return hf_clip._load_hf_weights(src), config, mean, std, osp.abspath(src)


def convert(src: Union[str, Dict[str, torch.Tensor]], out_dir: str, config=None,
            tokenizer: Optional[str] = None, enc_token_id: Optional[int] = None,
            max_length: int = BLIP_TEXT_MAX_LENGTH, queue_size: int = BLIP_QUEUE_SIZE,
            prompt: str = '', dtype: Optional[torch.dtype] = torch.float32,
            drop: Sequence[str] = (), seed: int = 0
            ) -> Dict[str, Union[str, dict, ConversionReport]]:
    """Convert a HF ``save_pretrained`` directory (or a state dict with its ``config``);
    returns the written paths, the model config and the report. Nothing is written when a
    check fails."""
    sd, config, mean, std, source_path = read_hf_source(src, config)
    state, model_cfg, rep = convert_hf_blip(sd, config, tokenizer, enc_token_id, max_length,
                                            queue_size, prompt, mean, std, drop, seed)
    state = common.cast_state_dict(state, dtype)
    hf_name = dict(retrieval='BlipForImageTextRetrieval',
                   captioning='BlipForConditionalGeneration')[rep.kind]
    meta = dict(source=f'transformers.{hf_name}', source_path=source_path,
                converter='tools/convert/hf_blip_to_vlp.py', kind=rep.kind)
    header = (f'# vlp BLIP converted by tools/convert/hf_blip_to_vlp.py from {source_path}\n'
              f'# (transformers {hf_name}). Left at init: '
              f'{summarize(rep.left_at_init) or "nothing"}.\n'
              '# Load with vlp.apis.init_model(<this file>, <dir>/model.pth).\n'
              '# Paths containing {{ fileDirname }} resolve to this directory.\n')
    cfg_path, ckpt_path = common.save_converted(
        out_dir, model_cfg, state, meta, header,
        copy_files=[tokenizer] if tokenizer is not None else [])
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model_cfg, report=rep)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src_dir', help='HF save_pretrained directory of a BLIP model')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth)')
    tok = parser.add_mutually_exclusive_group()
    tok.add_argument('--vocab-file', help='BERT vocab.txt to copy and name in the config '
                     '(default: SRC_DIR/vocab.txt when present)')
    tok.add_argument('--tokenizer-file', help='BERT tokenizer.json to copy and name')
    tok.add_argument('--no-tokenizer', action='store_true', help='write no tokenizer')
    parser.add_argument('--enc-token-id', type=int, default=None,
                        help='[ENC] id (default: from the vocabulary, else bos_token_id + 1)')
    parser.add_argument('--max-length', type=int, default=BLIP_TEXT_MAX_LENGTH,
                        help='tokenizer padding length (default 35)')
    parser.add_argument('--queue-size', type=int, default=BLIP_QUEUE_SIZE,
                        help='ITC feature-queue length (default 57600; 0: none)')
    parser.add_argument('--prompt', default='',
                        help="captioning prompt (BLIP's fine-tuning: 'a picture of '; "
                             "default '' as HF's generate)")
    common.add_drop_keys_arg(parser)
    parser.add_argument('--seed', type=int, default=0, help='seed of the parts left at init')
    common.add_dtype_arg(parser)
    args = parser.parse_args(argv)
    tokenizer = args.vocab_file or args.tokenizer_file
    if tokenizer is None and not args.no_tokenizer \
            and osp.exists(osp.join(args.src_dir, 'vocab.txt')):
        tokenizer = osp.join(args.src_dir, 'vocab.txt')
    out = convert(args.src_dir, args.out_dir, tokenizer=tokenizer,
                  enc_token_id=args.enc_token_id, max_length=args.max_length,
                  queue_size=args.queue_size, prompt=args.prompt,
                  dtype=common.dtype_arg(args.dtype), drop=args.drop_keys, seed=args.seed)
    rep = out['report']
    print(f'{rep.kind} model; tie_lm_head={rep.tie_lm_head}; [ENC]={rep.enc_token_id}, '
          f'[DEC]={rep.dec_token_id}')
    print(f'left at init: {summarize(rep.left_at_init) or "nothing"}')
    print(f'momentum twins copied from the online weights: {summarize(rep.momentum_copies)}')
    for what, keys in (('ignored', rep.ignored), ('dropped', rep.dropped)):
        if keys:
            print(f'{what}: {", ".join(keys)}')
    print(f'wrote {out["config"]} and {out["checkpoint"]}')
    return out


if __name__ == '__main__':
    main()
