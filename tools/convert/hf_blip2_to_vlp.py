"""Convert a HuggingFace transformers BLIP-2 checkpoint (Li et al. 2023, "BLIP-2:
Bootstrapping Language-Image Pre-training with Frozen Image Encoders and Large Language
Models"; ``Blip2ForConditionalGeneration`` or ``Blip2Model``, transformers
``models/blip_2/modeling_blip_2.py``) to vlp's stage-2 ``BLIP2LM``.

Usage::

    python tools/convert/hf_blip2_to_vlp.py HF_DIR OUT_DIR
        [--post-layernorm ln_vision|vision_norm] [--prompt 'a photo of']
        [--drop-keys REGEX ...] [--dtype fp32]

``HF_DIR``: a ``save_pretrained`` directory (``config.json`` and ``model.safetensors`` /
``pytorch_model.bin``, possibly sharded). Writes ``OUT_DIR/config.py`` and
``OUT_DIR/model.pth`` (``{'state_dict', 'meta'}``, loadable weights-only).

Mapping (``i`` = layer index)::

    vision_model.embeddings.class_embedding [1, 1, C]      -> vision.model.cls_token
    vision_model.embeddings.position_embedding [1, N+1, C] -> vision.model.pos_embed
    vision_model.embeddings.patch_embedding                -> vision.model.patch_embed.proj
    vision_model.encoder.layers.i.self_attn.qkv            -> vision.model.blocks.i.attn.qkv
      (older files: self_attn.q_bias / v_bias -> qkv.bias = [q_bias; 0; v_bias])
    vision_model.encoder.layers.i.self_attn.projection     -> vision.model.blocks.i.attn.proj
    vision_model.encoder.layers.i.layer_norm1/2            -> vision.model.blocks.i.norm1/2
    vision_model.encoder.layers.i.mlp.fc1/fc2              -> vision.model.blocks.i.mlp.fc1/fc2
    vision_model.post_layernorm                            -> ln_vision (default) or
                                                              vision.model.norm
    query_tokens                                           -> qformer.query_tokens
    qformer.layernorm                                      -> qformer.emb_norm
    qformer.encoder.layer.i.attention.attention.{query,key,value} -> qformer.blocks.i.attn.qkv
    qformer.encoder.layer.i.attention.output.dense/LayerNorm      -> ...attn.proj / norm1
    qformer.encoder.layer.i.crossattention.attention.query        -> ...cross_attn.q
    qformer.encoder.layer.i.crossattention.attention.{key,value}  -> ...cross_attn.kv
    qformer.encoder.layer.i.crossattention.output.dense/LayerNorm -> ...cross_attn.proj /
                                                                     norm_cross
    qformer.encoder.layer.i.intermediate_query.dense       -> qformer.query_ffn.i.mlp.fc1
    qformer.encoder.layer.i.output_query.dense/LayerNorm   -> qformer.query_ffn.i.mlp.fc2 / norm
    qformer.encoder.layer.i.intermediate.dense             -> qformer.blocks.i.mlp.fc1
    qformer.encoder.layer.i.output.dense/LayerNorm         -> qformer.blocks.i.mlp.fc2 / norm2
      (the text FFN: only with ``use_qformer_text_input``)
    qformer.embeddings.{word,position}_embeddings          -> qformer.{word,position}_embeddings
      (only in the HF models that have them)
    language_projection                                    -> projection
    language_model.<name>                                  -> llm.model.<name>

HF's vision model applies ``post_layernorm`` to every token and the Q-Former
cross-attends to that ``last_hidden_state``: it is LAVIS's ``ln_vision`` (HF's conversion
renamed it), so by default it becomes BLIP2LM's trainable ``ln_vision`` and the timm ViT is
built without its final norm (``final_norm=False``). vlp's ``ln_vision`` has LayerNorm eps
1e-5 (LAVIS's); HF uses the vision config's ``layer_norm_eps`` (1e-6 in the Salesforce
checkpoints), so outputs then differ by about 1e-6 relative unless that eps is 1e-5.
``--post-layernorm vision_norm`` instead loads it into the timm ViT's final norm (the
vision eps) with ``ln_vision=False``: HF's numbers for any eps, but ``ln_vision`` is then
frozen with the image encoder.

The Q-Former is vlp's ``QFormer`` (text-only parameters it keeps for stage 1 -- word and
position embeddings and, without ``use_qformer_text_input``, the text FFNs -- are absent
from HF's stage-2 models and stay at vlp's init, frozen in ``BLIP2LM``; the report lists
them). The LLM is vlp's ``HFLanguageModel`` built from the text config (random init,
then the converted weights): its HF parameters live under ``llm.model.``. A tied output
matrix missing from the file (``tie_word_embeddings``) is filled from the input
embeddings. HF places the visual prompts where ``image_token_index`` placeholders sit in
``input_ids`` (the processor puts ``num_query_tokens`` of them before BOS); vlp's
``BLIP2LM`` prepends them to the prompt ``BOS ...``: the same sequence.

Unknown source keys raise ``KeyError`` (``--drop-keys`` drops keys on purpose); names and
shapes are checked against the vlp model built from the written config. The tokenizer is
not written (set ``model.tokenizer = dict(type='LMTokenizer', pretrained=<LLM dir>)``).
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
import hf_blip_to_vlp as hf_blip  # noqa: E402  (BLIP ViT layout, vision config)

POST_LAYERNORM = ('ln_vision', 'vision_norm')
_V = common.VISION_PREFIX
_VISION_RULES: List[common.Rule] = [
    (r'vision_model\.embeddings\.class_embedding', _V + 'cls_token', None),
    (r'vision_model\.embeddings\.position_embedding', _V + 'pos_embed', None),
    (r'vision_model\.embeddings\.patch_embedding\.(weight|bias)',
     _V + r'patch_embed.proj.\1', None),
    *common.block_rules('vision_model.encoder.layers.', _V + 'blocks.', [
        ('self_attn.qkv.', 'attn.qkv.'), ('self_attn.projection.', 'attn.proj.'),
        ('layer_norm1.', 'norm1.'), ('layer_norm2.', 'norm2.'),
        ('mlp.fc1.', 'mlp.fc1.'), ('mlp.fc2.', 'mlp.fc2.')]),
    (r'query_tokens', 'qformer.query_tokens', None),
    (r'qformer\.layernorm\.(weight|bias)', r'qformer.emb_norm.\1', None),
    (r'qformer\.embeddings\.(word|position)_embeddings\.weight',
     r'qformer.\1_embeddings.weight', None),
    *common.block_rules('qformer.encoder.layer.', 'qformer.query_ffn.', [
        ('intermediate_query.dense.', 'mlp.fc1.'), ('output_query.dense.', 'mlp.fc2.'),
        ('output_query.LayerNorm.', 'norm.')]),
    *common.block_rules('qformer.encoder.layer.', 'qformer.blocks.', [
        ('attention.output.dense.', 'attn.proj.'), ('attention.output.LayerNorm.', 'norm1.'),
        ('crossattention.attention.query.', 'cross_attn.q.'),
        ('crossattention.output.dense.', 'cross_attn.proj.'),
        ('crossattention.output.LayerNorm.', 'norm_cross.'),
        ('intermediate.dense.', 'mlp.fc1.'), ('output.dense.', 'mlp.fc2.'),
        ('output.LayerNorm.', 'norm2.')]),
    (r'language_projection\.(weight|bias)', r'projection.\1', None),
    (r'language_model\.(.+)', r'llm.model.\1', None),
]
# fused: (regex, vlp key template, slot order)
_FUSED = [
    (r'qformer\.encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)',
     'qformer.blocks.{0}.attn.qkv.{2}', ('query', 'key', 'value')),
    (r'qformer\.encoder\.layer\.(\d+)\.crossattention\.attention\.(key|value)\.(weight|bias)',
     'qformer.blocks.{0}.cross_attn.kv.{2}', ('key', 'value')),
]
_QV_BIAS = r'vision_model\.encoder\.layers\.(\d+)\.self_attn\.(q|v)_bias'
_IGNORE = [r'qformer\.embeddings\.position_ids', r'language_model\..*\.position_ids']


@dataclass
class ConversionReport:
    """What :func:`convert_hf_blip2` did besides renaming."""
    post_layernorm: str = 'ln_vision'
    tied_lm_head: bool = False  # the output matrix was filled from the input embeddings
    left_at_init: List[str] = field(default_factory=list)  # vlp keys the source lacks
    ignored: List[str] = field(default_factory=list)  # buffers
    dropped: List[str] = field(default_factory=list)  # the caller's drop patterns


def convert_hf_blip2_state_dict(sd: Dict[str, torch.Tensor], drop: Iterable[str] = (),
                                post_layernorm: str = 'ln_vision'
                                ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """Rename a HF BLIP-2 state dict to vlp ``BLIP2LM`` keys (no fill-in).

    Raises:
        KeyError: a key no rule maps, or incomplete fused groups.
    """
    if post_layernorm not in POST_LAYERNORM:
        raise ValueError(f'post_layernorm must be one of {POST_LAYERNORM}, got '
                         f'{post_layernorm!r}')
    drop = list(drop)
    rep = ConversionReport(post_layernorm=post_layernorm)
    norm = 'ln_vision.' if post_layernorm == 'ln_vision' else _V + 'norm.'
    rules = [(r'vision_model\.post_layernorm\.(weight|bias)', norm + r'\1', None)]
    rules += _VISION_RULES
    out, fused, qv, unexpected = {}, {}, {}, []
    for k, v in sd.items():
        if any(re.fullmatch(p, k) for p in drop):
            rep.dropped.append(k)
            continue
        if any(re.fullmatch(p, k) for p in _IGNORE):
            rep.ignored.append(k)
            continue
        m = re.fullmatch(_QV_BIAS, k)
        if m is not None:
            qv.setdefault(int(m.group(1)), {})[m.group(2)] = v
            continue
        for pattern, target, order in _FUSED:
            m = re.fullmatch(pattern, k)
            if m is not None:
                key = target.format(*m.groups())
                fused.setdefault((key, order), {})[m.group(2)] = v
                break
        else:
            try:
                out.update(common.rename_state_dict({k: v}, rules))
            except KeyError:
                unexpected.append(k)
    if unexpected:
        raise KeyError(f'unexpected keys in the HF BLIP-2 checkpoint (no rule maps them, '
                       f'pass drop patterns to discard them on purpose): {unexpected}')
    for (key, order), parts in fused.items():
        if set(parts) != set(order):
            raise KeyError(f'{key}: only {sorted(parts)} of {list(order)} present')
        out[key] = torch.cat([parts[s] for s in order], dim=0)
    for i, parts in qv.items():  # older files: qkv.bias = [q_bias; 0; v_bias]
        key = f'{_V}blocks.{i}.attn.qkv.bias'
        if set(parts) != {'q', 'v'} or key in out:
            raise KeyError(f'vision layer {i}: q_bias / v_bias incomplete or with qkv.bias')
        out[key] = torch.cat([parts['q'], torch.zeros_like(parts['q']), parts['v']])
    for k in (_V + 'cls_token', _V + 'pos_embed'):  # [1, (N+1,) C]
        if k in out:
            out[k] = out[k].reshape(1, -1, out[k].shape[-1])
    return out, rep


# -- vlp config -------------------------------------------------------------------------------
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
                ln_eps=qc.layer_norm_eps, act_layer=common.map_activation(qc.hidden_act),
                pad_token_id=qc.pad_token_id if qc.pad_token_id is not None else 0)


def hf_blip2_model_cfg(config, post_layernorm: str = 'ln_vision', mean=None, std=None,
                       prompt: str = '') -> dict:
    """vlp ``BLIP2LM`` config for a HF ``Blip2Config`` (or its dict)."""
    config = _as_hf_config(config)
    vision = hf_blip.vision_cfg(config.vision_config)
    if post_layernorm == 'ln_vision':
        vision['final_norm'] = False
    mean = common.OPENAI_CLIP_MEAN if mean is None else mean  # BLIP-2's image statistics
    std = common.OPENAI_CLIP_STD if std is None else std
    return dict(
        type='BLIP2LM',
        data_preprocessor=dict(type='VLPDataPreprocessor',
                               mean=[round(m * 255, 6) for m in mean],
                               std=[round(s * 255, 6) for s in std]),
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


# -- conversion ---------------------------------------------------------------------------
def convert_hf_blip2(sd: Dict[str, torch.Tensor], config, post_layernorm: str = 'ln_vision',
                     prompt: str = '', mean=None, std=None, drop: Iterable[str] = (),
                     seed: int = 0
                     ) -> Tuple[Dict[str, torch.Tensor], dict, ConversionReport]:
    """HF BLIP-2 state dict + ``Blip2Config`` (or dict) -> (complete vlp state dict, vlp
    model config, :class:`ConversionReport`). Parts the source lacks take the values of a
    vlp model built from the config (under ``torch.manual_seed(seed)``, the global RNG
    state restored); a missing tied LM output matrix is the input embedding matrix.

    Raises:
        KeyError: unknown source keys, or the converted names do not match the vlp model.
        ValueError: shape mismatches.
    """
    config = _as_hf_config(config)
    state, rep = convert_hf_blip2_state_dict(sd, drop, post_layernorm)
    model_cfg = hf_blip2_model_cfg(config, post_layernorm, mean, std, prompt)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = common.build_vlp_model(model_cfg, device='cpu')
    own = fresh.state_dict()
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise KeyError(f'converted keys the vlp BLIP2LM does not have: {unexpected}')
    # tied output matrix (HF's save_pretrained omits it)
    lm = fresh.llm.model
    out_emb, in_emb = lm.get_output_embeddings(), lm.get_input_embeddings()
    if out_emb is not None and out_emb.weight is in_emb.weight:
        tied = [n for n, p in fresh.named_parameters(remove_duplicate=False)
                if p is in_emb.weight]
        src = next((n for n in tied if n in state), None)
        for n in tied:
            if n not in state and src is not None:
                state[n] = state[src]
                rep.tied_lm_head = True
    for key, value in own.items():
        if key not in state:
            if key.startswith(('llm.', 'vision.', 'projection.', 'ln_vision.')) \
                    or key == 'qformer.query_tokens':
                raise KeyError(f'the HF BLIP-2 checkpoint lacks {key}')
            state[key] = value
            rep.left_at_init.append(key)
    state = OrderedDict((k, state[k]) for k in own)
    common.check_state_dict(model_cfg, state)
    return state, model_cfg, rep


def convert(src: Union[str, Dict[str, torch.Tensor]], out_dir: str, config=None,
            post_layernorm: str = 'ln_vision', prompt: str = '',
            dtype: Optional[torch.dtype] = torch.float32, drop: Sequence[str] = (),
            seed: int = 0) -> Dict[str, Union[str, dict, ConversionReport]]:
    """Convert a HF ``save_pretrained`` directory (or a state dict with its ``config``);
    returns the written paths, the model config and the report."""
    sd, config, mean, std, source_path = hf_blip.read_hf_source(src, config)
    state, model_cfg, rep = convert_hf_blip2(sd, config, post_layernorm, prompt, mean, std,
                                             drop, seed)
    state = common.cast_state_dict(state, dtype)
    meta = dict(source='transformers.Blip2ForConditionalGeneration', source_path=source_path,
                converter='tools/convert/hf_blip2_to_vlp.py', post_layernorm=post_layernorm)
    header = (f'# vlp BLIP2LM converted by tools/convert/hf_blip2_to_vlp.py from '
              f'{source_path}\n# (transformers Blip2ForConditionalGeneration / Blip2Model). '
              f'Left at init: {hf_blip.summarize(rep.left_at_init) or "nothing"}.\n'
              '# Load with vlp.apis.init_model(<this file>, <dir>/model.pth).\n')
    cfg_path, ckpt_path = common.save_converted(out_dir, model_cfg, state, meta, header)
    return dict(config=cfg_path, checkpoint=ckpt_path, model=model_cfg, report=rep)


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src_dir', help='HF save_pretrained directory of a BLIP-2 model')
    parser.add_argument('out_dir', help='output directory (config.py, model.pth)')
    parser.add_argument('--post-layernorm', default='ln_vision', choices=POST_LAYERNORM,
                        help="where HF's vision post_layernorm goes (default ln_vision, "
                             "trainable, eps 1e-5; vision_norm: the frozen ViT's final norm, "
                             "HF's eps)")
    parser.add_argument('--prompt', default='', help="captioning prompt (default '')")
    common.add_drop_keys_arg(parser)
    parser.add_argument('--seed', type=int, default=0, help='seed of the parts left at init')
    common.add_dtype_arg(parser)
    args = parser.parse_args(argv)
    out = convert(args.src_dir, args.out_dir, post_layernorm=args.post_layernorm,
                  prompt=args.prompt, dtype=common.dtype_arg(args.dtype),
                  drop=args.drop_keys, seed=args.seed)
    rep = out['report']
    print(f'post_layernorm -> {rep.post_layernorm}; tied LM head filled: {rep.tied_lm_head}')
    print(f'left at init: {hf_blip.summarize(rep.left_at_init) or "nothing"}')
    for what, keys in (('ignored', rep.ignored), ('dropped', rep.dropped)):
        if keys:
            print(f'{what}: {", ".join(keys)}')
    print(f'wrote {out["config"]} and {out["checkpoint"]}')
    return out


if __name__ == '__main__':
    main()
