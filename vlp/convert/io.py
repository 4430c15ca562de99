"""Reading and writing checkpoints for the converters.

:func:`read_checkpoint` is the one reader of every layout a converter meets, never running
code from a file unless the caller opts out (``weights_only=False``, a converter's
``--no-weights-only``, for trusted files):

- a ``torch.save`` file (a bare state dict, an mmengine checkpoint's ``state_dict``, a
  DeepSpeed model-states ``module``, a timm / ALBEF ``model`` entry; ``module.`` prefixes
  dropped), a ``.safetensors`` file, a DeepSpeed checkpoint directory of any ZeRO stage:
  :func:`vlp.engine.checkpoint.read_state_dict`;
- a HF ``save_pretrained`` folder (``model.safetensors`` / ``pytorch_model.bin``, sharded
  with an ``*.index.json`` too): :func:`read_hf_weights`;
- a TorchScript archive (OpenAI's CLIP release files): read by
  :mod:`vlp.convert.torchscript` without compiling or running its code.

Writers: :func:`save_vlp` (``config.py`` + ``model.pth`` that ``vlp.apis.init_model``
loads), :func:`write_hf_folder` (``config.json`` + ``model.safetensors`` that
``XModel.from_pretrained`` loads) and :func:`write_open_clip_folder`
(``open_clip_config.json`` + ``open_clip_model.safetensors``: ``open_clip.create_model(
'local-dir:<folder>')``, or the weights file as ``pretrained=``).
"""
import copy
import json
import os
import os.path as osp
import shutil
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from .rules import check_keys

StateDict = Dict[str, torch.Tensor]

#: what the converters with ``--no-weights-only`` tell a user whose file was refused
NO_WEIGHTS_ONLY_HINT = 'pass --no-weights-only to unpickle it fully'
# OpenAI CLIP's image statistics (0-1 scale); vlp's data preprocessor takes the 0-255 scale.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HF_WEIGHTS = ('model.safetensors', 'pytorch_model.bin')
_HF_INDEXES = ('model.safetensors.index.json', 'pytorch_model.bin.index.json')


# -- reading ------------------------------------------------------------------------------
def is_hf_folder(path: str) -> bool:
    """A ``save_pretrained`` folder: weights (or a shard index) in a directory."""
    return osp.isdir(path) and any(osp.isfile(osp.join(path, n))
                                   for n in _HF_WEIGHTS + _HF_INDEXES)


def read_hf_weights(folder: str, opt_out: Optional[str] = None) -> StateDict:
    """The tensors of a HF ``save_pretrained`` folder (sharded or not), weights-only."""
    from vlp.engine.checkpoint import read_state_dict
    for index in _HF_INDEXES:
        path = osp.join(folder, index)
        if osp.isfile(path):
            with open(path) as f:
                shards = sorted(set(json.load(f)['weight_map'].values()))
            state: StateDict = OrderedDict()
            for shard in shards:
                state.update(read_state_dict(osp.join(folder, shard), opt_out=opt_out))
            return state
    for name in _HF_WEIGHTS:
        path = osp.join(folder, name)
        if osp.isfile(path):
            return OrderedDict(read_state_dict(path, opt_out=opt_out))
    raise FileNotFoundError(f'no model.safetensors or pytorch_model.bin in {folder}')


def read_checkpoint(path: str, weights_only: bool = True,
                    opt_out: Optional[str] = None) -> StateDict:
    """The tensors of any checkpoint layout (see the module docstring), on CPU.

    Args:
        path: a file, a HF folder or a DeepSpeed checkpoint directory.
        weights_only: ``False`` unpickles a trusted file fully (``torch.jit.load`` for a
            TorchScript archive, ``torch.load(weights_only=False)`` otherwise).
        opt_out: named in the :class:`~vlp.engine.checkpoint.UnsafeCheckpointError` of a
            refused file (the caller's ``--no-weights-only``).
    """
    from vlp.engine.checkpoint import read_state_dict, state_dict_of

    from .torchscript import read_torchscript_state_dict, torchscript_root
    path = osp.expanduser(str(path))
    if osp.isdir(path):
        if is_hf_folder(path):
            return read_hf_weights(path, opt_out)
        return OrderedDict(read_state_dict(path))  # DeepSpeed directory
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} not found')
    if torchscript_root(path) is not None:
        if weights_only:
            return OrderedDict(read_torchscript_state_dict(path, opt_out=opt_out))
        return OrderedDict(torch.jit.load(path, map_location='cpu').state_dict())
    if weights_only or path.endswith('.safetensors'):
        return OrderedDict(read_state_dict(path, opt_out=opt_out))
    return state_dict_of(torch.load(path, map_location='cpu', weights_only=False), path)


def read_json(path: str) -> Optional[dict]:
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def hf_image_stats(folder: str) -> Tuple[Optional[list], Optional[list]]:
    """``image_mean`` / ``image_std`` of a folder's ``preprocessor_config.json``."""
    pre = read_json(osp.join(folder, 'preprocessor_config.json')) or {}
    return pre.get('image_mean'), pre.get('image_std')


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = 'module.') -> StateDict:
    """Drop ``prefix`` when every key has it (DDP's ``module.``)."""
    if state and all(k.startswith(prefix) for k in state):
        return OrderedDict((k[len(prefix):], v) for k, v in state.items())
    return OrderedDict(state)


def read_hf_source(src: Union[str, Mapping[str, torch.Tensor]], config=None):
    """``(state_dict, config, mean, std, source_path)`` of a HF ``save_pretrained`` folder
    (its ``config.json`` unless ``config`` is given; a ``config.json`` path or dict), of one
    weights file (with ``config``) or of an in-memory state dict (with ``config``)."""
    if isinstance(config, str):
        config = read_json(config)
    if not isinstance(src, str):
        if config is None:
            raise ValueError('a state dict needs its config')
        return dict(src), config, None, None, '<state dict>'
    if is_hf_folder(src):
        if config is None:
            config = read_json(osp.join(src, 'config.json'))
        return read_hf_weights(src), config, *hf_image_stats(src), osp.abspath(src)
    if not osp.isfile(src):
        raise FileNotFoundError(f'{src}: neither a HF folder nor a file')
    if config is None:
        raise ValueError(f'{src} is a single weights file: pass its config.json (--config)')
    return read_checkpoint(src), config, None, None, osp.abspath(src)


def hf_expected(hf_config, model_class: str = 'CLIPModel') -> Dict[str, torch.Tensor]:
    """State dict (meta tensors) of the HF model ``model_class`` built from ``hf_config``."""
    import transformers
    with torch.device('meta'):
        return getattr(transformers, model_class)(hf_config).state_dict()


# -- vlp models -------------------------------------------------------------------------------
def vlp_model_cfg(config: Union[str, Mapping]) -> dict:
    """The ``model`` dict of a vlp config file (or of a config / model dict)."""
    if isinstance(config, str):
        from mmengine.config import Config
        config = Config.fromfile(config)
    cfg = config.get('model', config) if 'type' not in config else config
    if hasattr(cfg, 'to_dict'):
        cfg = cfg.to_dict()
    return copy.deepcopy(dict(cfg))


def build_vlp_model(model_cfg: Mapping, device: str = 'cpu') -> torch.nn.Module:
    """Build vlp's model from ``model_cfg`` (tokenizer left out) on ``device``."""
    import vlp.models  # noqa: F401  (registers the model classes)
    from vlp.registry import MODELS
    cfg = copy.deepcopy(dict(model_cfg))
    cfg.pop('tokenizer', None)
    with torch.device(device):
        return MODELS.build(cfg)


def vlp_expected(model_cfg: Mapping, seed: Optional[int] = None) -> StateDict:
    """The state dict of a fresh vlp model: on the meta device (names and shapes), or on
    CPU built under ``torch.manual_seed(seed)`` (the global RNG state restored) when
    ``seed`` is given, for parts a checkpoint does not hold."""
    if seed is None:
        return build_vlp_model(model_cfg, device='meta').state_dict()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_vlp_model(model_cfg, device='cpu').state_dict()


def check_state_dict(model_cfg: Mapping, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Names and shapes against the vlp model built (on the meta device) from
    ``model_cfg`` (``KeyError`` / ``ValueError``, see :func:`~vlp.convert.rules.check_keys`)."""
    check_keys(state_dict, vlp_expected(model_cfg), 'the vlp model')


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside DDP / DeepSpeed / mmengine wrappers (mmengine's
    ``is_model_wrapper``)."""
    from mmengine.model import is_model_wrapper
    while is_model_wrapper(model):
        model = model.module
    return model


# -- writing ---------------------------------------------------------------------------------
def cast_state_dict(state_dict: Mapping[str, torch.Tensor],
                    dtype: Optional[torch.dtype] = torch.float32) -> StateDict:
    """Cast floating tensors to ``dtype`` (``None`` keeps them) and give each its own
    contiguous storage (no shared or oversized storages in the written file)."""
    out = OrderedDict()
    for k, v in state_dict.items():
        v = v.detach()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous().clone()
    return out


def format_py(value, indent: int = 0) -> str:
    """Python source of a config value: ``dict(k=v, ...)`` in insertion order (``type``
    first), one key a line for dicts holding dicts or too long for one line."""
    if isinstance(value, dict):
        if not all(isinstance(k, str) and k.isidentifier() for k in value):
            return repr(value)
        flat = 'dict(' + ', '.join(f'{k}={format_py(v)}' for k, v in value.items()) + ')'
        if len(flat) + indent <= 80 and not any(isinstance(v, dict) for v in value.values()):
            return flat
        pad = ' ' * (indent + 4)
        return 'dict(\n' + ',\n'.join(f'{pad}{k}={format_py(v, indent + 4)}'
                                       for k, v in value.items()) + ')'
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(format_py(v, indent) for v in value) + ']'
    return repr(value)


def config_header(tool: str, source: str, what: str = 'CLIP', extra: str = '') -> str:
    """Comment block at the top of a written config."""
    return (f'# vlp {what} converted by tools/convert/{tool} from {source}\n'
            + (f'# {extra}\n' if extra else '')
            + '# Load with vlp.apis.init_model(<this directory>) (config.py + model.pth).\n'
            '# Paths containing {{ fileDirname }} resolve to this directory.\n')


def build_tokenizer(tok_cfg: Mapping, files: Sequence[str] = ()):
    """The tokenizer of a config about to be written: its ``{{ fileDirname }}/<name>``
    paths read from ``files`` (the originals of the copies)."""
    import vlp.datasets  # noqa: F401  (registers the tokenizers)
    from vlp.registry import TOKENIZERS
    by_name = {osp.basename(f): f for f in files}
    cfg = {}
    for k, v in dict(tok_cfg).items():
        if isinstance(v, str) and v.startswith('{{ fileDirname }}/'):
            v = by_name.get(v[len('{{ fileDirname }}/'):], v)
        cfg[k] = v
    return TOKENIZERS.build(cfg)


def check_token_ids(vocab_size: int, what: str, **ids: Optional[int]) -> None:
    """Every given special token id lies in ``[0, vocab_size)``; the error names the
    ``--<name>-token-id`` option that sets it."""
    for name, tid in ids.items():
        if tid is None:
            continue
        if not 0 <= int(tid) < int(vocab_size):
            opt = '--' + name.replace('_', '-')
            raise ValueError(f'{what}: {name} {tid} lies outside the vocabulary of {vocab_size} '
                             f'tokens: pass {opt} with the id the weights were trained with')


def check_tokenizer_vocab(tok, vocab_size: int, source: str, what: str = 'the model') -> None:
    """The tokenizer's ids all index the model's word embeddings (its vocabulary is not
    larger than the model's, its special tokens inside): else a ``ValueError`` saying what to
    pass (a ``tokenizer.encode`` would otherwise end in an ``IndexError`` at the
    embedding)."""
    n = int(tok.vocab_size)
    if n > int(vocab_size):
        raise ValueError(
            f'the tokenizer {source} has {n:,} tokens but {what} has a vocabulary of '
            f'{int(vocab_size):,} (its word embeddings): texts would hit ids the weights do not '
            'have. Pass the tokenizer the weights were trained with (--tokenizer / '
            '--vocab-file / --tokenizer-file) or --no-tokenizer (then give token ids)')
    ids = {k: v for k, v in getattr(tok, 'special_token_ids', {}).items() if v is not None}
    bad = {k: v for k, v in ids.items() if not 0 <= v < int(vocab_size)}
    if bad:
        raise ValueError(f'the tokenizer {source}: special tokens {bad} lie outside the '
                         f'vocabulary of {int(vocab_size)} tokens of {what}')


def save_vlp(out_dir: str, model_cfg: dict, state_dict: Mapping[str, torch.Tensor],
             meta: Dict[str, Any], header: str, copy_files: Sequence[str] = (),
             pipelines: Optional[Mapping[str, list]] = None) -> Tuple[str, str]:
    """Write ``out_dir/config.py`` (``default_scope='vlp'``, ``model`` and the
    ``pipelines``: ``image_pipeline`` / ``test_pipeline``, the reference implementation's
    test transforms) and ``out_dir/model.pth`` (``{'state_dict', 'meta'}``, loadable with
    ``weights_only=True``); copy ``copy_files`` (tokenizer files) into ``out_dir``; write
    the evaluation configs of the family
    (:func:`vlp.convert.eval_configs.write_eval_configs`). Returns the two paths."""
    from .eval_configs import write_eval_configs
    for k, v in meta.items():
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            raise TypeError(f'meta[{k!r}] must be a str or int, got {type(v).__name__}')
    os.makedirs(out_dir, exist_ok=True)
    for f in copy_files:
        shutil.copy(f, osp.join(out_dir, osp.basename(f)))
    evals = write_eval_configs(out_dir, model_cfg, pipelines) if pipelines else []
    if evals:
        header = header.rstrip() + '\n# Evaluation configs (tools/test.py EVAL model.pth): ' + \
            ', '.join(osp.basename(e) for e in evals) + '; docs/model_zoo.md.\n'
    cfg_path = osp.join(out_dir, 'config.py')
    body = "\ndefault_scope = 'vlp'\n\nmodel = " + format_py(model_cfg) + '\n'
    for name, value in (pipelines or {}).items():
        body += f'{name} = ' + format_py(value) + '\n'
    with open(cfg_path, 'w') as f:
        f.write(header.rstrip() + body)
    ckpt_path = osp.join(out_dir, 'model.pth')
    torch.save({'state_dict': dict(state_dict), 'meta': dict(meta)}, ckpt_path)
    return cfg_path, ckpt_path


def written_eval_configs(out_dir: str) -> List[str]:
    """The ``eval_*.py`` configs :func:`save_vlp` wrote into ``out_dir``."""
    import glob
    return sorted(glob.glob(osp.join(glob.escape(out_dir), 'eval_*.py')))


def _save_safetensors(state: Mapping[str, torch.Tensor], path: str) -> None:
    from safetensors.torch import save_file
    save_file(cast_state_dict(state, None), path, metadata={'format': 'pt'})


def write_hf_folder(out_dir: str, hf_config, state_dict: Mapping[str, torch.Tensor],
                    files: Optional[Dict[str, Any]] = None) -> str:
    """``out_dir/config.json`` (``hf_config.save_pretrained``) and
    ``out_dir/model.safetensors``; ``files``: other JSON files to write
    (``{name: dict}``, e.g. ``preprocessor_config.json``). Returns ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    hf_config.save_pretrained(out_dir)
    _save_safetensors(state_dict, osp.join(out_dir, 'model.safetensors'))
    for name, content in (files or {}).items():
        with open(osp.join(out_dir, name), 'w') as f:
            json.dump(content, f, indent=2)
    return out_dir


def write_open_clip_folder(out_dir: str, model_cfg: dict, state_dict: Mapping[str, torch.Tensor],
                           preprocess_cfg: Optional[dict] = None) -> str:
    """``out_dir/open_clip_config.json`` (``{'model_cfg', 'preprocess_cfg'}``) and
    ``out_dir/open_clip_model.safetensors``; returns the weights file's path."""
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'open_clip_config.json'), 'w') as f:
        json.dump(dict(model_cfg=model_cfg, preprocess_cfg=preprocess_cfg or {}), f, indent=2)
    path = osp.join(out_dir, 'open_clip_model.safetensors')
    _save_safetensors(state_dict, path)
    return path


def mean_std_255(mean: Sequence[float], std: Sequence[float]) -> dict:
    """``VLPDataPreprocessor`` config for 0-1 scale statistics."""
    return dict(type='VLPDataPreprocessor', mean=[round(m * 255, 6) for m in mean],
                std=[round(s * 255, 6) for s in std])


def mean_std_01(model_cfg: Mapping) -> Tuple[List[float], List[float]]:
    """0-1 scale image statistics of a vlp model config's data preprocessor (OpenAI
    CLIP's when it has none)."""
    pre = model_cfg.get('data_preprocessor') or {}
    mean, std = pre.get('mean'), pre.get('std')
    if mean is None or std is None:
        return list(OPENAI_CLIP_MEAN), list(OPENAI_CLIP_STD)
    return [round(m / 255, 8) for m in mean], [round(s / 255, 8) for s in std]
