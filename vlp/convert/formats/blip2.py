"""HF transformers BLIP-2 (Li et al. 2023, "BLIP-2: Bootstrapping Language-Image
Pre-training with Frozen Image Encoders and Large Language Models";
``Blip2ForConditionalGeneration`` / ``Blip2Model``) <-> vlp's stage-2 ``BLIP2LM``.

Table (``i`` = layer; the Q-Former layers through the one HF-BERT table with HF's
``attention`` sub-module name)::

    vision_model.*  (BLIP's ViT layout)                  -> vision.model.*
      (older files: self_attn.q_bias / v_bias -> qkv.bias = [q_bias; 0; v_bias], import only)
    vision_model.post_layernorm                          -> ln_vision (default) or
                                                            vision.model.norm
    query_tokens                                         -> qformer.query_tokens
    qformer.layernorm                                    -> qformer.emb_norm
    qformer.embeddings.{word,position}_embeddings        -> qformer.{...}_embeddings
    qformer.encoder.layer.i.<BERT layer>                 -> qformer.blocks.i.<BertEncoder block>
    qformer.encoder.layer.i.intermediate_query.dense     -> qformer.query_ffn.i.mlp.fc1
    qformer.encoder.layer.i.output_query.dense/LayerNorm -> qformer.query_ffn.i.mlp.fc2 / norm
    language_projection                                  -> projection
    language_model.<name>                                -> llm.model.<name>

HF's vision ``post_layernorm`` is LAVIS's ``ln_vision``: by default it becomes BLIP2LM's
trainable ``ln_vision`` (eps 1e-5) and the timm ViT is built without its final norm;
``post_layernorm='vision_norm'`` loads it into the ViT's final norm (HF's eps) with
``ln_vision=False``. The Q-Former's text-only parameters (word / position embeddings,
text FFNs without ``use_qformer_text_input``) are absent from HF's stage-2 models: they stay
at vlp's init on import (``left_at_init``) and are not exported. A tied LM output matrix
missing from the file is filled from the input embeddings.

Export needs a vlp BLIP2LM in HF's layout: a linear projector on the queries, a HF causal
LM, and exactly one LayerNorm between the ViT and the Q-Former (``ln_vision`` with a ViT
built with ``final_norm=False``, or the ViT's final norm with ``ln_vision=False``); vlp's
``ln_vision`` has eps 1e-5, HF's ``post_layernorm`` the vision eps (the report notes it
when they differ). HF places the visual prompts at ``image_token_index`` placeholders.
"""
import copy
import os
import os.path as osp
import shutil
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..arch import map_activation, part_args, require
from ..eval_configs import image_pipeline
from ..io import (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, cast_state_dict, check_token_ids,
                  check_tokenizer_vocab, hf_expected, mean_std_255, read_hf_source, save_vlp,
                  write_hf_folder, written_eval_configs)
from ..rules import (Add, ConversionReport, Copy, Drop, Merge, Rename, Rule,
                     convert_state_dict, nest, summarize)
from .bert import bert_layer
from .blip import HF_BLIP_VIT, hf_bert_text_config, hf_vision_config, vision_cfg

POST_LAYERNORM = ('ln_vision', 'vision_norm')
V = 'vision.model.'


def _qkv_bias(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.cat([q, torch.zeros_like(q), v])


def table(post_layernorm: str = 'ln_vision',
          tied: Sequence[Tuple[str, str]] = ()) -> List[Rule]:
    """The BLIP-2 table; ``tied``: ``(output matrix, input embeddings)`` vlp keys of the LLM
    (HF's ``save_pretrained`` omits the tied copy)."""
    if post_layernorm not in POST_LAYERNORM:
        raise ValueError(f'post_layernorm must be one of {POST_LAYERNORM}, got '
                         f'{post_layernorm!r}')
    norm = 'ln_vision.' if post_layernorm == 'ln_vision' else V + 'norm.'
    layer = 'qformer.encoder.layer.{i}.'
    return [
        *HF_BLIP_VIT,
        Merge(['vision_model.encoder.layers.{i}.self_attn.q_bias',
               'vision_model.encoder.layers.{i}.self_attn.v_bias'],
              V + 'blocks.{i}.attn.qkv.bias', _qkv_bias, describe='[q; 0; v]'),
        Rename('vision_model.post_layernorm.{p}', norm + '{p}'),
        Rename('query_tokens', 'qformer.query_tokens'),
        Rename('qformer.layernorm.{p}', 'qformer.emb_norm.{p}'),
        Rename('qformer.embeddings.{e:word|position}_embeddings.weight',
               'qformer.{e}_embeddings.weight'),
        *nest(bert_layer('attention'), layer, 'qformer.blocks.{i}.'),
        *nest([Rename('intermediate_query.dense.{p}', 'mlp.fc1.{p}'),
               Rename('output_query.dense.{p}', 'mlp.fc2.{p}'),
               Rename('output_query.LayerNorm.{p}', 'norm.{p}')],
              layer, 'qformer.query_ffn.{i}.'),
        Rename('language_projection.{p}', 'projection.{p}'),
        Rename('language_model.{rest:.+}', 'llm.model.{rest}'),
        Drop('qformer.embeddings.position_ids', 'constant buffer'),
        Drop('language_model.{x:.*}position_ids', 'constant buffer'),
        *[Add(out, Copy(emb), 'tied_lm_head') for out, emb in tied],
        # stage-1 (text) parts of the Q-Former, absent from HF's stage-2 models
        Add('qformer.{e:word|position}_embeddings.weight', 'init', 'left_at_init'),
        Add('qformer.blocks.{i}.{x:mlp|norm2}.{rest:.+}', 'init', 'left_at_init'),
    ]


def convert_hf_blip2_state_dict(sd: Mapping[str, torch.Tensor], drop: Iterable[str] = (),
                                post_layernorm: str = 'ln_vision',
                                expected: Optional[Mapping] = None,
                                tied: Sequence[Tuple[str, str]] = ()
                                ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """Rename a HF BLIP-2 state dict to vlp ``BLIP2LM`` keys (no fill-in without
    ``expected``)."""
    rep = ConversionReport(info=dict(post_layernorm=post_layernorm))
    state, rep = convert_state_dict(sd, table(post_layernorm, tied), drop=drop,
                                    expected=expected, report=rep, what='the vlp BLIP2LM')
    rep.info['tied_lm_head'] = bool(rep.filled.get('tied_lm_head'))
    return state, rep


# -- configs ---------------------------------------------------------------------------------
def _as_hf_config(config):
    if isinstance(config, dict):
        from transformers import Blip2Config
        return Blip2Config.from_dict(config)
    return config


_LM_CFG_SKIP = ('transformers_version', 'architectures', '_name_or_path', 'dtype',
                'torch_dtype')


def llm_cfg(text_config) -> dict:
    """``HFLanguageModel`` arguments: the LM's architecture (random init; the weights come
    from the converted checkpoint)."""
    cfg = {k: v for k, v in text_config.to_diff_dict().items() if k not in _LM_CFG_SKIP}
    cfg['model_type'] = text_config.model_type
    return dict(type='HFLanguageModel', config=cfg)


def qformer_cfg(config) -> dict:
    """vlp ``QFormer`` config of a HF ``Blip2Config``."""
    qc = config.qformer_config
    return dict(type='QFormer', num_query_tokens=config.num_query_tokens,
                encoder_width=qc.encoder_hidden_size,
                cross_attention_freq=qc.cross_attention_frequency,
                vocab_size=qc.vocab_size, hidden_size=qc.hidden_size,
                num_layers=qc.num_hidden_layers, num_heads=qc.num_attention_heads,
                intermediate_size=qc.intermediate_size,
                max_position_embeddings=qc.max_position_embeddings,
                hidden_dropout=float(qc.hidden_dropout_prob),
                attention_dropout=float(qc.attention_probs_dropout_prob),
                ln_eps=qc.layer_norm_eps, act_layer=map_activation(qc.hidden_act),
                pad_token_id=qc.pad_token_id if qc.pad_token_id is not None else 0)


def hf_blip2_model_cfg(config, post_layernorm: str = 'ln_vision', mean=None, std=None,
                       prompt: str = '') -> dict:
    """vlp ``BLIP2LM`` config for a HF ``Blip2Config`` (or its dict)."""
    config = _as_hf_config(config)
    vision = vision_cfg(config.vision_config)
    if post_layernorm == 'ln_vision':
        vision['final_norm'] = False
    return dict(
        type='BLIP2LM',
        data_preprocessor=mean_std_255(OPENAI_CLIP_MEAN if mean is None else mean,
                                       OPENAI_CLIP_STD if std is None else std),
        vision=vision,
        ln_vision=post_layernorm == 'ln_vision',
        qformer=qformer_cfg(config),
        projector='linear',
        llm=llm_cfg(config.text_config),
        freeze_llm=True,
        prompt=prompt,
        # BLIP-2's captioning evaluation (LAVIS caption_coco_opt)
        generation_cfg=dict(num_beams=5, max_length=30, min_length=8),
        predict_mode='caption')


def tied_lm_keys(model: torch.nn.Module) -> List[Tuple[str, str]]:
    """``(output matrix, input embeddings)`` keys of a vlp BLIP2LM whose LLM ties them."""
    lm = model.llm.model
    out_emb, in_emb = lm.get_output_embeddings(), lm.get_input_embeddings()
    if out_emb is None or out_emb.weight is not in_emb.weight:
        return []
    names = {id(m): n for n, m in model.named_modules()}
    return [(names[id(out_emb)] + '.weight', names[id(in_emb)] + '.weight')]


# -- import -----------------------------------------------------------------------------------
def convert_hf_blip2(sd: Mapping[str, torch.Tensor], config, post_layernorm: str = 'ln_vision',
                     prompt: str = '', mean=None, std=None, drop: Iterable[str] = (),
                     seed: int = 0
                     ) -> Tuple[Dict[str, torch.Tensor], dict, ConversionReport]:
    """HF BLIP-2 state dict + ``Blip2Config`` (or dict) -> (complete vlp state dict, vlp
    model config, report). Parts the source lacks take the values of a vlp model built
    under ``torch.manual_seed(seed)``; a missing tied LM output matrix is the input
    embedding matrix."""
    from ..io import build_vlp_model
    model_cfg = hf_blip2_model_cfg(_as_hf_config(config), post_layernorm, mean, std, prompt)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = build_vlp_model(model_cfg, device='cpu')
    state, rep = convert_hf_blip2_state_dict(sd, drop, post_layernorm, fresh.state_dict(),
                                             tied_lm_keys(fresh))
    return state, model_cfg, rep


#: the files of a HF tokenizer folder (``save_pretrained``)
TOKENIZER_FILES = ('tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
                   'vocab.json', 'merges.txt', 'tokenizer.model', 'spiece.model',
                   'sentencepiece.bpe.model', 'added_tokens.json')


def tokenizer_files(folder: str) -> List[str]:
    """The tokenizer files of a HF folder (empty without a ``tokenizer_config.json``)."""
    if not osp.isfile(osp.join(folder, 'tokenizer_config.json')):
        return []
    return [osp.join(folder, n) for n in TOKENIZER_FILES if osp.isfile(osp.join(folder, n))]


def check_lm_tokenizer(folder: str, vocab_size: int) -> None:
    """The LLM tokenizer of ``folder`` fits the LM's embedding rows (its special ids too)."""
    from vlp.datasets.tokenizers import LMTokenizer
    tok = LMTokenizer(pretrained=folder)
    check_tokenizer_vocab(tok, vocab_size, folder, 'the language model')
    check_token_ids(vocab_size, folder, bos_token_id=tok.bos_token_id,
                    eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


def convert(src: Union[str, Mapping[str, torch.Tensor]], out_dir: str, config=None,
            post_layernorm: str = 'ln_vision', prompt: str = '',
            dtype: Optional[torch.dtype] = torch.float32, drop: Iterable[str] = (),
            seed: int = 0, tokenizer: Optional[str] = 'auto') -> dict:
    """Convert a HF ``save_pretrained`` folder (or a state dict with its ``config``).
    ``tokenizer``: a folder holding the LLM's tokenizer files (``'auto'``: the source
    folder's, when it has them; ``None``: none), copied to ``out_dir/tokenizer`` and named
    in the config (``LMTokenizer``) after a check against the LM's vocabulary."""
    sd, config, mean, std, source_path = read_hf_source(src, config)
    state, model_cfg, rep = convert_hf_blip2(sd, config, post_layernorm, prompt, mean, std,
                                             drop, seed)
    if tokenizer == 'auto':
        tokenizer = src if isinstance(src, str) and tokenizer_files(src) else None
    files = tokenizer_files(tokenizer) if tokenizer else []
    if tokenizer and not files:
        raise FileNotFoundError(f'{tokenizer} holds no HF tokenizer (tokenizer_config.json)')
    if files:
        check_lm_tokenizer(tokenizer, _as_hf_config(config).text_config.vocab_size)
        model_cfg['tokenizer'] = dict(type='LMTokenizer',
                                      pretrained='{{ fileDirname }}/tokenizer')
    # HF's Blip2Processor: a square bicubic resize (BlipImageProcessor)
    size = model_cfg['vision']['img_size']
    pipelines = dict(image_pipeline=image_pipeline(size if isinstance(size, int) else size[0]))
    meta = dict(source='transformers.Blip2ForConditionalGeneration', source_path=source_path,
                converter='tools/convert/hf_blip2_to_vlp.py', post_layernorm=post_layernorm)
    header = (f'# vlp BLIP2LM converted by tools/convert/hf_blip2_to_vlp.py from '
              f'{source_path}\n# (transformers Blip2ForConditionalGeneration / Blip2Model). '
              f'Left at init: {summarize(rep.left_at_init) or "nothing"}.\n'
              '# Load with vlp.apis.init_model(<this directory>) (config.py + model.pth).\n'
              '# Paths containing {{ fileDirname }} resolve to this directory.\n')
    if files:
        os.makedirs(osp.join(out_dir, 'tokenizer'), exist_ok=True)
        for f in files:
            shutil.copy(f, osp.join(out_dir, 'tokenizer', osp.basename(f)))
    cfg_path, ckpt_path = save_vlp(out_dir, model_cfg, cast_state_dict(state, dtype), meta,
                                   header, pipelines=pipelines)
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model_cfg, report=rep,
                eval_configs=written_eval_configs(out_dir))


# -- export -----------------------------------------------------------------------------------
def llm_hf_config(llm: Mapping):
    """The HF config of a vlp ``HFLanguageModel`` config (``config=`` or a local
    ``pretrained`` folder; nothing is built)."""
    from transformers import AutoConfig
    llm = dict(llm)
    if llm.get('type', 'HFLanguageModel') != 'HFLanguageModel':
        raise NotImplementedError(f'llm type {llm.get("type")!r} is not a HF language model')
    if llm.get('pretrained') is not None:
        return AutoConfig.from_pretrained(llm['pretrained'], local_files_only=True)
    if llm.get('config') is None:
        raise ValueError('the llm config has neither pretrained nor config')
    return AutoConfig.for_model(**copy.deepcopy(llm['config']))


def vlp_blip2_hf_config(model_cfg: Mapping, image_token_index: Optional[int] = None):
    """``(transformers.Blip2Config, notes)`` of a vlp ``BLIP2LM`` config."""
    from transformers import Blip2Config
    require(model_cfg, 'BLIP2LM', 'the model')
    args = part_args(model_cfg)
    if args['projector'] != 'linear' or not args['use_queries'] or \
            args['drop_vision_prefix']:
        raise NotImplementedError("HF's BLIP-2 has a linear projection of the Q-Former "
                                  'queries only')
    vision, vit = hf_vision_config(model_cfg['vision'])
    notes = []
    if args['ln_vision'] == vit.final_norm:
        raise NotImplementedError(
            'HF has one LayerNorm between the ViT and the Q-Former (post_layernorm): the '
            'model needs either ln_vision with a ViT built with final_norm=False, or '
            'ln_vision=False with the ViT\'s final norm' + (
                '; it has both' if vit.final_norm else '; it has neither'))
    if args['ln_vision'] and vit.eps != 1e-5:
        notes.append(f"vlp's ln_vision has eps 1e-5, HF's post_layernorm the vision eps "
                     f'{vit.eps}: outputs differ slightly')
    q = part_args(require(model_cfg['qformer'], 'QFormer', 'the qformer'))
    if q['encoder_width'] != vit.width:
        raise NotImplementedError(f'qformer encoder_width {q["encoder_width"]} != vision '
                                  f'width {vit.width}')
    qformer = dict(hf_bert_text_config(q, 'qformer'), encoder_hidden_size=vit.width,
                   cross_attention_frequency=q['cross_attention_freq'])
    text = llm_hf_config(model_cfg['llm'])
    if image_token_index is None:
        image_token_index = text.vocab_size - 1
        notes.append(f'image_token_index {image_token_index} (the last LM id; pass '
                     "image_token_index to match your processor's)")
    cfg = Blip2Config(vision_config=dict(vision, qkv_bias=True), qformer_config=qformer,
                      text_config=text.to_dict(), num_query_tokens=q['num_query_tokens'],
                      image_token_index=image_token_index)
    cfg.architectures = ['Blip2ForConditionalGeneration']
    return cfg, notes


def export(model_cfg: Mapping, state_dict, out_dir: str, dtype: Optional[torch.dtype] = None,
           image_token_index: Optional[int] = None) -> dict:
    """vlp ``BLIP2LM`` -> ``out_dir`` (``Blip2ForConditionalGeneration.from_pretrained``)."""
    hf_cfg, notes = vlp_blip2_hf_config(model_cfg, image_token_index)
    post = 'ln_vision' if part_args(model_cfg)['ln_vision'] else 'vision_norm'
    expected = hf_expected(hf_cfg, 'Blip2ForConditionalGeneration')
    rules = table(post)
    state, report = convert_state_dict(state_dict, rules, reverse=True, expected=expected,
                                       what='HF Blip2ForConditionalGeneration')
    report.info.update(post_layernorm=post, notes=notes)
    write_hf_folder(out_dir, hf_cfg, cast_state_dict(state, dtype))
    return dict(out_dir=out_dir, reference='transformers.Blip2ForConditionalGeneration',
                config=hf_cfg, report=report)
