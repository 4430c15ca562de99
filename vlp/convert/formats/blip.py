"""HF transformers BLIP (Li et al. 2022, "BLIP: Bootstrapping Language-Image
Pre-training"; ``BlipForImageTextRetrieval`` / ``BlipForConditionalGeneration``) <-> vlp
``BLIP`` / ``BLIPCaption``.

Table (``i`` = layer; the text BERT through the one HF-BERT table,
:mod:`vlp.convert.formats.bert`)::

    vision_model.embeddings.class_embedding            -> vision.model.cls_token
    vision_model.embeddings.position_embedding         -> vision.model.pos_embed
    vision_model.embeddings.patch_embedding            -> vision.model.patch_embed.proj
    vision_model.encoder.layers.i.self_attn.qkv        -> vision.model.blocks.i.attn.qkv
    vision_model.encoder.layers.i.self_attn.projection -> vision.model.blocks.i.attn.proj
    vision_model.encoder.layers.i.layer_norm1/2, mlp   -> vision.model.blocks.i.norm1/2, mlp
    vision_model.post_layernorm                        -> vision.model.norm
    text_encoder.<BERT>            (retrieval)         -> text.<BertEncoder>
    text_decoder.bert.<BERT>       (captioning)        -> decoder.<BertEncoder>
    text_decoder.cls.predictions.transform.dense / LayerNorm -> lm_head.dense / norm
    text_decoder.cls.predictions.decoder.weight        -> lm_head.decoder.weight
    text_decoder.cls.predictions.decoder.bias (else .bias) -> lm_head.bias
    vision_proj / text_proj                            -> vision_proj.proj / text_proj.proj
    itm_head                                           -> itm_head.fc

The image encoder is timm's ViT (pre-LN, class token, no pre-norm, patch-embedding bias,
final norm on every token as HF's ``post_layernorm``), the text transformer vlp's
``BertEncoder`` without token-type embeddings and with cross-attention in every layer. The
retrieval model imports as a ``BLIP`` without decoder, the captioning model as a
``BLIPCaption`` (the ViT and the decoder, nothing else, as HF's). HF ties the LM output
matrix to the decoder's word embeddings: equal or absent gives ``tie_lm_head=True``.

Parts a checkpoint does not hold start at vlp's init (listed in the report under
``left_at_init``): the retrieval model has no temperature (``itc.logit_scale`` =
log(1 / 0.07)); its momentum twins copy the online weights. On export the parts HF's
model has not got are dropped (``not_exported``): a BLIP is exported as a retrieval or a
captioning model (``kind``), a BLIPCaption as a captioning model.

Special tokens: ``dec_token_id`` ([DEC], the caption decoder's first token) is given
(``--dec-token-id``), else the text config's ``bos_token_id``; ``enc_token_id`` ([ENC]) is
not in HF's config: given (``--enc-token-id``), else the id of ``[ENC]`` in the vocabulary,
else ``[DEC] + 1`` (BLIP's vocabulary). Both must lie inside the vocabulary (an error names
the option otherwise).

[ENC] (``--enc-token``): BLIP's code replaces the first token of the image-grounded
encoder's input ([CLS]) with [ENC] (ITM, ``fused_features``); HF's
``BlipForImageTextRetrieval`` encodes the ids it is given. ``'replace'`` (default,
``use_enc_token=True``) is BLIP's behaviour, with which the weights were trained;
``'keep'`` (``use_enc_token=False``) reproduces HF's outputs exactly for the same ids
(tests/tools/test_hf_blip_converter.py checks both).
"""
import os.path as osp
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

import torch

from ..arch import hf_activation, map_activation, mlp_ratio_of, part_args, require, square, vit_arch
from ..eval_configs import image_pipeline, pipeline_vars
from ..io import (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, cast_state_dict, check_token_ids,
                  hf_expected, mean_std_01, mean_std_255, read_hf_source, save_vlp,
                  vlp_expected, write_hf_folder, written_eval_configs)
from ..rules import (Add, ConversionReport, Copy, Rename, Rule, convert_state_dict, nest,
                     summarize)
from .bert import bert

BLIP_QUEUE_SIZE = 57600  # BLIP's ITC queue (configs/pretrain.yaml, retrieval_coco.yaml)
BLIP_TEXT_MAX_LENGTH = 35
SPECIAL_TOKENS = ['[DEC]', '[ENC]']
KINDS = ('retrieval', 'captioning')
HF_CLASSES = dict(retrieval='BlipForImageTextRetrieval',
                  captioning='BlipForConditionalGeneration')
V = 'vision.model.'
_LM = 'text_decoder.cls.predictions.'

HF_BLIP_VIT: List[Rule] = [  # BLIP's ViT in HF (BLIP-2's too), less post_layernorm
    Rename('vision_model.embeddings.class_embedding', V + 'cls_token'),
    Rename('vision_model.embeddings.position_embedding', V + 'pos_embed'),
    Rename('vision_model.embeddings.patch_embedding.{p}', V + 'patch_embed.proj.{p}'),
    *nest([Rename('self_attn.qkv.{p}', 'attn.qkv.{p}'),
           Rename('self_attn.projection.{p}', 'attn.proj.{p}'),
           Rename('layer_norm1.{p}', 'norm1.{p}'), Rename('layer_norm2.{p}', 'norm2.{p}'),
           Rename('mlp.fc1.{p}', 'mlp.fc1.{p}'), Rename('mlp.fc2.{p}', 'mlp.fc2.{p}')],
          'vision_model.encoder.layers.{i}.', V + 'blocks.{i}.'),
]
_MOMENTUM = Add('{x:vision|vision_proj|text|text_proj}_m.{rest:.+}', Copy('{x}.{rest}'),
                'momentum_copies')

HF_BLIP_RETRIEVAL: List[Rule] = [
    *HF_BLIP_VIT,
    Rename('vision_model.post_layernorm.{p}', V + 'norm.{p}'),
    *bert('text_encoder.', 'text.'),
    Rename('{x:vision|text}_proj.{p}', '{x}_proj.proj.{p}'),
    Rename('itm_head.{p}', 'itm_head.fc.{p}'),
    _MOMENTUM,
    Add('{x:itc|queue|decoder|lm_head}.{rest:.+}', 'init', 'left_at_init'),
]
HF_BLIP_CAPTIONING: List[Rule] = [
    *HF_BLIP_VIT,
    Rename('vision_model.post_layernorm.{p}', V + 'norm.{p}'),
    *bert('text_decoder.bert.', 'decoder.'),
    Rename(_LM + 'transform.dense.{p}', 'lm_head.dense.{p}'),
    Rename(_LM + 'transform.LayerNorm.{p}', 'lm_head.norm.{p}'),
    Rename(_LM + 'decoder.weight', 'lm_head.decoder.weight'),
    Add('lm_head.decoder.weight', Copy('decoder.word_embeddings.weight'), 'tied copies'),
    # HF's head adds decoder.bias (tied to predictions.bias unless they differ)
    Rename(_LM + 'decoder.bias', 'lm_head.bias'),
    Rename(_LM + 'bias', 'lm_head.bias', fallback=True),
    _MOMENTUM,
    Add('{x:itc|queue|text|vision_proj|text_proj|itm_head}.{rest:.+}', 'init',
        'left_at_init'),
]
TABLES = dict(retrieval=HF_BLIP_RETRIEVAL, captioning=HF_BLIP_CAPTIONING)


def detect_kind(sd: Mapping[str, torch.Tensor]) -> str:
    """``'retrieval'`` (``text_encoder.*``) or ``'captioning'`` (``text_decoder.*``)."""
    enc = any(k.startswith('text_encoder.') for k in sd)
    dec = any(k.startswith('text_decoder.') for k in sd)
    if enc == dec:
        raise KeyError('expected text_encoder.* (BlipForImageTextRetrieval) or '
                       'text_decoder.* (BlipForConditionalGeneration) keys, found '
                       + ('both' if enc else 'neither'))
    return 'retrieval' if enc else 'captioning'


def _lm_tied(sd: Mapping[str, torch.Tensor]) -> bool:
    weight = sd.get(_LM + 'decoder.weight')
    emb = sd.get('text_decoder.bert.embeddings.word_embeddings.weight')
    if weight is None or emb is None:
        return True
    if weight.is_meta or emb.is_meta:
        return weight.shape == emb.shape
    return weight.shape == emb.shape and torch.equal(weight, emb)


def convert_hf_blip_state_dict(sd: Mapping[str, torch.Tensor], drop: Iterable[str] = (),
                               expected: Optional[Mapping] = None
                               ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """Rename a HF BLIP state dict to vlp ``BLIP`` keys (without ``expected``: no
    momentum twins, no fill-in)."""
    rep = ConversionReport(info=dict(kind=detect_kind(sd)))
    rep.info['tie_lm_head'] = rep.kind == 'retrieval' or _lm_tied(sd)
    state, rep = convert_state_dict(sd, TABLES[rep.kind], drop=drop, expected=expected,
                                    report=rep, what='the vlp BLIP')
    return state, rep


# -- configs ---------------------------------------------------------------------------------
def _as_hf_config(config):
    if isinstance(config, dict):
        from transformers import BlipConfig
        return BlipConfig.from_dict(config)
    return config


def vision_cfg(vc) -> dict:
    """vlp ``TimmTower`` config of a HF ``BlipVisionConfig`` (BLIP-2's too)."""
    eps = vc.layer_norm_eps
    if eps == 1e-5:  # timm's CLIP ViTs: LayerNorm eps 1e-5; pre_norm=False adds the bias
        name, extra = 'vit_base_patch16_clip_224', dict(pre_norm=False)
    elif eps == 1e-6:  # timm's ImageNet ViTs (and ALBEF's / BLIP's original ViT)
        name, extra = 'vit_base_patch16_224', {}
    else:
        raise NotImplementedError(f'vision LayerNorm eps {eps}: timm ViTs give 1e-5 or 1e-6')
    cfg = dict(type='TimmTower', model_name=name, pretrained=False,
               img_size=square(vc.image_size, 'image_size'),
               patch_size=square(vc.patch_size, 'patch_size'),
               embed_dim=vc.hidden_size, depth=vc.num_hidden_layers,
               num_heads=vc.num_attention_heads,
               mlp_ratio=mlp_ratio_of(vc.hidden_size, vc.intermediate_size),
               act_layer=map_activation(vc.hidden_act), **extra,
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
                act_layer=map_activation(tc.hidden_act),
                cross_attention_layers='all', cross_attention_dim=cross_dim)


def hf_blip_model_cfg(config, kind: str, enc_token_id: Optional[int], tie_lm_head: bool = True,
                      tokenizer: Optional[dict] = None, mean=None, std=None,
                      queue_size: int = BLIP_QUEUE_SIZE, prompt: str = '',
                      dec_token_id: Optional[int] = None, use_enc_token: bool = True) -> dict:
    """vlp ``BLIP`` (``'retrieval'``) or ``BLIPCaption`` (``'captioning'``) config for a HF
    ``BlipConfig`` (or its dict)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be 'retrieval' or 'captioning', got {kind!r}")
    config = _as_hf_config(config)
    vc, tc = config.vision_config, config.text_config
    hidden, embed = tc.hidden_size, config.image_text_hidden_size
    model = dict(
        type='BLIP' if kind == 'retrieval' else 'BLIPCaption',
        data_preprocessor=mean_std_255(OPENAI_CLIP_MEAN if mean is None else mean,
                                       OPENAI_CLIP_STD if std is None else std),
        vision=vision_cfg(vc),
        text=text_cfg(tc, vc.hidden_size),
        dec_token_id=int(tc.bos_token_id if dec_token_id is None else dec_token_id))
    if tokenizer is not None:
        model['tokenizer'] = tokenizer
    if kind == 'captioning':
        model.update(lm_head=dict(type='MLMHead', hidden_size=hidden, vocab_size=tc.vocab_size,
                                  act_layer=map_activation(tc.hidden_act),
                                  ln_eps=tc.layer_norm_eps),
                     tie_lm_head=tie_lm_head, predict_mode='caption', prompt=prompt,
                     # BLIP's captioning evaluation (configs/caption_coco.yaml)
                     generation_cfg=dict(num_beams=3, max_length=20, min_length=5))
        return model
    model.update(
        vision_proj=dict(type='Projection', in_dim=vc.hidden_size, out_dim=embed, bias=True,
                         init_std=0.02),
        text_proj=dict(type='Projection', in_dim=hidden, out_dim=embed, bias=True,
                       init_std=0.02),
        itm_head=dict(type='ITMHead', hidden_size=hidden), lm_head=None,
        predict_mode='retrieval',
        # BLIP: T = 0.07 at init, clamped to [0.001, 0.5]; HF keeps no temperature
        itc=dict(type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
                 max_logit_scale=1000.0),
        queue_size=queue_size, queue_ids=True, alpha=0.4,
        enc_token_id=None if enc_token_id is None else int(enc_token_id),
        use_enc_token=bool(use_enc_token))
    return model


def tokenizer_cfg(path: str, max_length: int = BLIP_TEXT_MAX_LENGTH) -> dict:
    """vlp ``BertTokenizer`` config naming ``path`` (a ``vocab.txt`` or ``tokenizer.json``)
    copied next to the written config."""
    here = '{{ fileDirname }}/' + osp.basename(path)
    src = dict(tokenizer_file=here) if path.endswith('.json') else dict(vocab_file=here)
    return dict(type='BertTokenizer', **src, lowercase=True, max_length=max_length,
                additional_special_tokens=list(SPECIAL_TOKENS))


def special_token_ids(config, tokenizer: Optional[str] = None,
                      enc_token_id: Optional[int] = None, dec_token_id: Optional[int] = None,
                      use_enc_token: bool = True) -> Tuple[Optional[int], int]:
    """``(enc_token_id, dec_token_id)`` (see the module docstring); ``enc_token_id`` is
    ``None`` without ``use_enc_token`` when neither given nor in the vocabulary.

    Raises:
        ValueError: the tokenizer disagrees with the HF config (vocabulary size, [DEC],
            [SEP], [PAD], [ENC] ids) or an id is outside the vocabulary (the message names
            ``--dec-token-id`` / ``--enc-token-id``).
    """
    tc = _as_hf_config(config).text_config
    vocab = int(tc.vocab_size)
    dec = int(tc.bos_token_id if dec_token_id is None else dec_token_id)
    if dec_token_id is None and not 0 <= dec < vocab:
        raise ValueError(f'the HF text config\'s bos_token_id {dec} ([DEC]) lies outside the '
                         f'vocabulary of {vocab} tokens: pass --dec-token-id with the id of '
                         '[DEC] the weights were trained with')
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
                                 f'{k} {a} != {b}' for k, (a, b) in bad.items())
                             + ' (--dec-token-id / --enc-token-id set the ids)')
        enc_token_id = tok.token_to_id('[ENC]')
    enc = enc_token_id
    if enc is None and (use_enc_token or dec + 1 < vocab):
        enc = dec + 1
    ids = dict(dec_token_id=dec, enc_token_id=enc if use_enc_token or
               enc_token_id is not None else None)
    check_token_ids(vocab, 'BLIP', **ids)
    if enc == dec:
        raise ValueError(f'[ENC] and [DEC] share the id {enc}: pass --enc-token-id')
    return enc, dec


# -- import -----------------------------------------------------------------------------------
def convert_hf_blip(sd: Mapping[str, torch.Tensor], config, tokenizer: Optional[str] = None,
                    enc_token_id: Optional[int] = None, max_length: int = BLIP_TEXT_MAX_LENGTH,
                    queue_size: int = BLIP_QUEUE_SIZE, prompt: str = '', mean=None, std=None,
                    drop: Iterable[str] = (), seed: int = 0,
                    dec_token_id: Optional[int] = None, use_enc_token: bool = True
                    ) -> Tuple[Dict[str, torch.Tensor], dict, ConversionReport]:
    """HF BLIP state dict + ``BlipConfig`` (or dict) -> (complete vlp state dict, vlp model
    config, report). Parts the source lacks take the values of a vlp model built from the
    config under ``torch.manual_seed(seed)``; the momentum twins copy the online weights."""
    kind = detect_kind(sd)
    enc, dec = special_token_ids(config, tokenizer, enc_token_id, dec_token_id,
                                 use_enc_token)
    tok_cfg = tokenizer_cfg(tokenizer, max_length) if tokenizer is not None else None
    model_cfg = hf_blip_model_cfg(config, kind, enc, kind == 'retrieval' or _lm_tied(sd),
                                  tok_cfg, mean, std, queue_size, prompt, dec, use_enc_token)
    state, rep = convert_hf_blip_state_dict(sd, drop, vlp_expected(model_cfg, seed))
    rep.info.update(enc_token_id=enc, dec_token_id=dec, use_enc_token=use_enc_token)
    return state, model_cfg, rep


def convert(src: Union[str, Mapping[str, torch.Tensor]], out_dir: str, config=None,
            tokenizer: Optional[str] = None, enc_token_id: Optional[int] = None,
            max_length: int = BLIP_TEXT_MAX_LENGTH, queue_size: int = BLIP_QUEUE_SIZE,
            prompt: str = '', dtype: Optional[torch.dtype] = torch.float32,
            drop: Iterable[str] = (), seed: int = 0, dec_token_id: Optional[int] = None,
            use_enc_token: bool = True) -> dict:
    """Convert a HF ``save_pretrained`` folder (or a state dict with its ``config``);
    returns the written paths, the model config and the report."""
    sd, config, mean, std, source_path = read_hf_source(src, config)
    state, model_cfg, rep = convert_hf_blip(sd, config, tokenizer, enc_token_id, max_length,
                                            queue_size, prompt, mean, std, drop, seed,
                                            dec_token_id, use_enc_token)
    # BLIP's test transform (HF's BlipImageProcessor: a square bicubic resize) and caption
    # cleaning (BLIP's pre_caption)
    pipelines = pipeline_vars(model_cfg, image_pipeline(model_cfg['vision']['img_size']),
                              clean=dict(max_words=30, style='blip'))
    hf_name = HF_CLASSES[rep.kind]
    meta = dict(source=f'transformers.{hf_name}', source_path=source_path,
                converter='tools/convert/hf_blip_to_vlp.py', kind=rep.kind)
    header = (f'# vlp {model_cfg["type"]} converted by tools/convert/hf_blip_to_vlp.py from '
              f'{source_path}\n'
              f'# (transformers {hf_name}). Left at init: '
              f'{summarize(rep.left_at_init) or "nothing"}.\n'
              f'# [ENC]: use_enc_token={use_enc_token} ('
              + ('BLIP\'s code' if use_enc_token else 'HF\'s: the ids as given') + ').\n'
              '# Load with vlp.apis.init_model(<this directory>) (config.py + model.pth).\n'
              '# Paths containing {{ fileDirname }} resolve to this directory.\n')
    cfg_path, ckpt_path = save_vlp(out_dir, model_cfg, cast_state_dict(state, dtype), meta,
                                   header, copy_files=[tokenizer] if tokenizer else [],
                                   pipelines=pipelines)
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model_cfg, report=rep,
                eval_configs=written_eval_configs(out_dir))


# -- export -----------------------------------------------------------------------------------
def hf_vision_config(tower_cfg: Mapping, pre_norm_ok: bool = False) -> dict:
    """HF ``BlipVisionConfig`` / ``Blip2VisionConfig`` arguments of a vlp ``TimmTower``."""
    vit = vit_arch(tower_cfg)
    if vit.pre_norm or not vit.patch_bias or vit.in_chans != 3:
        raise NotImplementedError("the ViT is not BLIP's (no pre-norm, a patch-embedding "
                                  'bias, 3 channels)')
    cfg = dict(hidden_size=vit.width, intermediate_size=vit.mlp_hidden,
               num_hidden_layers=vit.depth, num_attention_heads=vit.heads,
               image_size=vit.img_size, patch_size=vit.patch_size,
               hidden_act=hf_activation(vit.act), layer_norm_eps=vit.eps)
    attn_drop = dict(tower_cfg).get('attn_drop_rate')
    if attn_drop:
        cfg['attention_dropout'] = float(attn_drop)
    return cfg, vit


def hf_bert_text_config(t: Mapping, what: str) -> dict:
    """HF BLIP / Q-Former text config arguments of resolved ``BertEncoder`` arguments."""
    return dict(vocab_size=t['vocab_size'], hidden_size=t['hidden_size'],
                intermediate_size=t['intermediate_size'],
                num_hidden_layers=t['num_layers'], num_attention_heads=t['num_heads'],
                max_position_embeddings=t['max_position_embeddings'],
                hidden_act=hf_activation(t['act_layer']), layer_norm_eps=t['ln_eps'],
                hidden_dropout_prob=t['hidden_dropout'],
                attention_probs_dropout_prob=t['attention_dropout'],
                pad_token_id=t['pad_token_id'])


def _special_ids(model_cfg: Mapping, notes: List[str]) -> Dict[str, Optional[int]]:
    """[DEC], [SEP] ids of a vlp BLIP config (from its tokenizer when it can be built)."""
    ids = dict(dec=model_cfg.get('dec_token_id'), sep=None)
    tok_cfg = model_cfg.get('tokenizer')
    if tok_cfg is not None:
        try:
            import vlp.datasets  # noqa: F401  (registers the tokenizers)
            from vlp.registry import TOKENIZERS
            tok = TOKENIZERS.build(dict(tok_cfg))
            ids['sep'] = tok.sep_token_id
            if ids['dec'] is None:
                ids['dec'] = tok.token_to_id('[DEC]')
        except (OSError, ValueError, KeyError, TypeError) as e:  # files elsewhere
            notes.append(f'tokenizer not built ({e}): special ids from the config')
    return ids


def vlp_blip_hf_config(model_cfg: Mapping, kind: str, notes: Optional[List[str]] = None):
    """``transformers.BlipConfig`` of a vlp ``BLIP`` config, exported as ``kind``
    (``notes`` collects what the export could not tell)."""
    notes = [] if notes is None else notes
    from transformers import BlipConfig
    require(model_cfg, ('BLIP', 'BLIPCaption') if kind == 'captioning' else 'BLIP', 'the model')
    if model_cfg.get('two_image_fusion'):
        raise NotImplementedError('BLIP two_image_fusion (NLVR2) has no HF equivalent')
    vision, vit = hf_vision_config(model_cfg['vision'])
    if not vit.final_norm:
        raise NotImplementedError("the ViT needs its final norm (HF's post_layernorm)")
    if kind == 'captioning':
        if model_cfg.get('lm_head') is None:
            raise NotImplementedError('this BLIP has no decoder (lm_head=None): export it '
                                      "as kind='retrieval'")
        text = part_args(dict(model_cfg['text'], **(model_cfg.get('decoder') or {})))
        head = part_args(require(model_cfg['lm_head'], 'MLMHead', 'lm_head'))
        if head['act_layer'] != text['act_layer'] or head['ln_eps'] != text['ln_eps']:
            raise NotImplementedError("the LM head's activation / eps differ from the text "
                                      "config's (HF shares them)")
    else:
        if model_cfg.get('itm_head') is None:
            raise NotImplementedError("this BLIP has no ITM head: export it as "
                                      "kind='captioning'")
        text = part_args(model_cfg['text'])
    if text['type_vocab_size'] or text['cross_attention_layers'] != 'all' or \
            (text['cross_attention_dim'] or text['hidden_size']) != vit.width:
        raise NotImplementedError('the BERT needs type_vocab_size=0 and cross-attention to '
                                  'the image tokens in every layer')
    proj = model_cfg.get('vision_proj')  # a BLIPCaption has none (HF's default then: unused)
    embed = (256 if kind == 'captioning' and proj is None
             else part_args(require(proj, 'Projection', 'vision_proj'))['out_dim'])
    ids = _special_ids(model_cfg, notes)
    if ids['dec'] is None:
        raise ValueError('the BLIP config names no dec_token_id (and its tokenizer cannot '
                         'be built here): set model.dec_token_id')
    sep = ids['sep']
    if sep is None:  # bert-base-uncased's [SEP] when it fits
        sep = 102 if text['vocab_size'] > 102 else None
        notes.append(f'[SEP] id unknown (no tokenizer): {sep} (HF stops generating at it)')
    text_config = dict(hf_bert_text_config(text, 'text'), encoder_hidden_size=vit.width,
                       bos_token_id=ids['dec'], sep_token_id=sep, eos_token_id=sep)
    tie = bool(model_cfg.get('tie_lm_head', True))
    cfg = BlipConfig(text_config=dict(text_config, tie_word_embeddings=tie),
                     vision_config=vision, image_text_hidden_size=embed,
                     tie_word_embeddings=tie)
    cfg.architectures = [HF_CLASSES[kind]]
    return cfg


def export(model_cfg: Mapping, state_dict, out_dir: str, dtype: Optional[torch.dtype] = None,
           kind: Optional[str] = None) -> dict:
    """vlp ``BLIP`` / ``BLIPCaption`` -> ``out_dir`` (``BlipForImageTextRetrieval``
    (``kind='retrieval'``) or ``BlipForConditionalGeneration`` (``'captioning'``)
    ``.from_pretrained``). ``kind`` defaults to retrieval for a BLIP with an ITM head, else
    captioning."""
    if kind is None:
        kind = ('retrieval' if model_cfg.get('type') == 'BLIP'
                and model_cfg.get('itm_head') is not None else 'captioning')
    if kind not in KINDS:
        raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
    notes = []
    hf_cfg = vlp_blip_hf_config(model_cfg, kind, notes)
    state, report = convert_state_dict(state_dict, TABLES[kind], reverse=True,
                                       expected=hf_expected(hf_cfg, HF_CLASSES[kind]),
                                       what=f'HF {HF_CLASSES[kind]}')
    report.info.update(kind=kind, notes=notes)
    mean, std = mean_std_01(model_cfg)
    pre = dict(image_processor_type='BlipImageProcessor', do_resize=True,
               size=dict(height=hf_cfg.vision_config.image_size,
                         width=hf_cfg.vision_config.image_size),
               do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
               image_mean=mean, image_std=std, resample=3)
    write_hf_folder(out_dir, hf_cfg, cast_state_dict(state, dtype),
                    {'preprocessor_config.json': pre})
    return dict(out_dir=out_dir, reference=f'transformers.{HF_CLASSES[kind]}', config=hf_cfg,
                report=report)
