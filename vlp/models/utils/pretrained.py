"""Loading a family checkpoint into a model built for another purpose (a task model's
family part, BLIP's VQA model from a BLIP pre-training checkpoint): non-strict and loud,
with key renames, a model-specific adaptation (e.g. ALBEF's NLVR2 fusion expansion) and
vocabularies grown by task tokens. Local files are read weights-only
(:mod:`vlp.engine.checkpoint`)."""
import logging
import os.path as osp
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader


#: keys whose first dimension may grow from checkpoint to model (a vocabulary extended with
#: new tokens: the checkpoint's rows are copied, the new rows keep their initialisation)
GROW_KEYS = (r'word_embeddings\.weight$',)


def resolve_checkpoint(path: str) -> str:
    """A checkpoint file or DeepSpeed checkpoint directory, or a work directory (its
    ``last_checkpoint``, as mmengine writes it after training)."""
    from vlp.engine.checkpoint import is_deepspeed_checkpoint_dir
    if osp.isdir(path) and not is_deepspeed_checkpoint_dir(path):
        last = osp.join(path, 'last_checkpoint')
        if not osp.isfile(last):
            raise FileNotFoundError(f'{path} is a directory without a last_checkpoint file: '
                                    'train the model first, or name a checkpoint file')
        with open(last, encoding='utf-8') as f:
            path = f.read().strip()
    if '://' not in path and not osp.exists(path):
        raise FileNotFoundError(f'pretrained checkpoint not found: {path}')
    return path


def load_state_dict_file(path: str) -> Dict[str, torch.Tensor]:
    """The model weights of a checkpoint file, DeepSpeed checkpoint directory or work
    directory (``state_dict`` / ``model`` / ``module`` wrappers and a leading ``module.``
    removed). Local files are read weights-only (:mod:`vlp.engine.checkpoint`: a file
    holding other objects is refused, nothing in it runs); URLs through mmengine's
    ``CheckpointLoader`` (``torch.load``'s weights-only default)."""
    from vlp.engine.checkpoint import load_from_local
    path = resolve_checkpoint(path)
    ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu') if '://' in path \
        else load_from_local(path, map_location='cpu')
    for key in ('state_dict', 'model', 'module'):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    return {re.sub(r'^module\.', '', k): v for k, v in ckpt.items()
            if isinstance(v, torch.Tensor)}


def load_pretrained_weights(module: torch.nn.Module, path: str, prefix: str = '',
                            revise_keys: Sequence[Tuple[str, str]] = (),
                            grow_keys: Sequence[str] = GROW_KEYS,
                            adapt=None) -> Dict[str, List[str]]:
    """Load a checkpoint into ``module`` without strictness, loudly: its keys get ``prefix``,
    then ``revise_keys`` renames (``(pattern, replacement)``, in order); ``adapt`` then
    rewrites the part under ``prefix`` (keys as the wrapped model names them; e.g. ALBEF's
    NLVR2 fusion expansion), so a task checkpoint (``model.*`` renamed by ``revise_keys``)
    is adapted as a pre-training one is. Tensors whose key
    matches ``grow_keys`` may be shorter in their first dimension than the module's (new
    vocabulary rows keep their init); any other shape mismatch, or no matching key at all,
    raises. Returns and logs the missing and unused keys."""
    state = {f'{prefix}{k}': v for k, v in load_state_dict_file(path).items()}
    for pattern, repl in revise_keys:
        state = {re.sub(pattern, repl, k): v for k, v in state.items()}
    if adapt is not None:  # on the keys under prefix, as the wrapped model names them
        inner = adapt({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        state = {**{k: v for k, v in state.items() if not k.startswith(prefix)},
                 **{f'{prefix}{k}': v for k, v in inner.items()}}
    own = module.state_dict()
    matched = [k for k in state if k in own]
    name = type(module).__name__
    if not matched:
        raise ValueError(f'{path}: no key of the checkpoint matches {name} (e.g. '
                         f'{next(iter(state), None)!r})')
    grown = []
    for k in matched:
        src, dst = state[k], own[k]
        if src.shape == dst.shape:
            continue
        if (any(re.search(p, k) for p in grow_keys) and src.dim() == dst.dim()
                and src.shape[1:] == dst.shape[1:] and src.shape[0] < dst.shape[0]):
            full = dst.detach().clone()
            full[:src.shape[0]] = src.to(full.dtype)
            state[k] = full
            grown.append(f'{k} {src.shape[0]} -> {dst.shape[0]}')
            continue
        raise ValueError(f'{path}: shape mismatch for {k} (checkpoint {tuple(src.shape)} vs '
                         f'model {tuple(dst.shape)})')
    result = module.load_state_dict({k: state[k] for k in matched}, strict=False)
    unexpected = sorted(k for k in state if k not in own)
    missing = sorted(result.missing_keys)
    print_log(f'{name}: loaded {len(matched)} tensors from {path}'
              f'{"; vocabulary grown: " + ", ".join(grown) if grown else ""}; missing '
              f'(trained from scratch) {len(missing)}: {missing[:8]}'
              f'{" ..." if len(missing) > 8 else ""}; unused {len(unexpected)}: '
              f'{unexpected[:8]}{" ..." if len(unexpected) > 8 else ""}',
              logger='current', level=logging.INFO)
    return dict(missing_keys=missing, unexpected_keys=unexpected, grown=grown)


def load_prefixed_parts(checkpoint: Union[str, Dict[str, torch.Tensor]],
                        parts: Mapping[str, Optional[nn.Module]], strict: bool = True,
                        what: str = 'checkpoint') -> None:
    """Load the ``{prefix}*`` keys of a checkpoint (a path, read weights-only, or a state
    dict) into each ``{prefix: part}`` (``None`` parts skipped; other keys ignored). With
    ``strict``, a prefix without keys or a part with missing / unexpected keys raises."""
    from ..backbones.timm_tower import read_state_dict
    sd = read_state_dict(checkpoint) if isinstance(checkpoint, str) else checkpoint
    for prefix, part in parts.items():
        if part is None:
            continue
        sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not sub and strict:
            raise KeyError(f'{what} checkpoint has no {prefix}* keys')
        missing, unexpected = part.load_state_dict(sub, strict=False)
        if strict and (missing or unexpected):
            raise KeyError(f'{what} {prefix}*: missing {list(missing)}, unexpected '
                           f'{list(unexpected)}')


def without_weights(cfg):
    """A model config with pretrained-weight loading switched off (``pretrained`` -> False /
    None, ``checkpoint`` -> None; tokenizers kept: their files are configuration, not
    weights): paper configs name hub weights or local files a test or benchmark machine
    does not have."""
    if isinstance(cfg, dict):
        out = {}
        for k, v in cfg.items():
            if k == 'pretrained':
                out[k] = False if isinstance(v, bool) else None
            elif k == 'checkpoint':
                out[k] = None
            elif k == 'tokenizer':
                out[k] = v
            else:
                out[k] = without_weights(v)
        return out
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(without_weights(v) for v in cfg)
    return cfg
