"""Shared logic of the CLIP checkpoint converters (``hf_clip_to_vlp.py``, ``open_clip_to_vlp.py``).

Both references implement CLIP (Radford et al. 2021, "Learning Transferable Visual Models
From Natural Language Supervision"): a pre-LN ViT with a class token, a LayerNorm before the
blocks (``ln_pre``) and after them (``ln_post``), and a GPT-2-style causal text transformer
pooled at the end-of-text token; two bias-free projections and a learned ``logit_scale``.
In vlp the image tower is timm's ``VisionTransformer`` in a ``TimmTower`` (``pre_norm=True``
gives ``norm_pre`` and a bias-free patch embedding, LayerNorm eps 1e-5 from timm's
``vit_*_clip_*`` entry points), the text tower is ``TextTransformer``, the projections are
``Projection(bias=False)`` necks and ``logit_scale`` lives in the ``ContrastiveLoss``.

A converter (1) reads the reference config into a :class:`ClipArch`, (2) renames tensors
with a table of regex rules (:func:`rename_state_dict`; every source key must match a rule
or an explicit ignore pattern), (3) checks names and shapes against the vlp model built on
the meta device (:func:`check_state_dict`), and (4) writes ``OUT_DIR/config.py`` and
``OUT_DIR/model.pth`` (:func:`save_converted`).

The timm ViT block and vlp's ``TransformerBlock`` use the same parameter names
(``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``), so one block
rule table per source serves both towers (:func:`block_rules`).
"""
import os
import os.path as osp
import re
import shutil
import sys
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

if osp.dirname(osp.abspath(__file__)) not in sys.path:  # _torchscript beside this file
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

# OpenAI CLIP's image statistics (0-1 scale); vlp's data preprocessor takes the 0-255 scale.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Prefixes of the parts of vlp's CLIP (``vlp/models/algorithms/clip.py``).
VISION_PREFIX = 'vision.model.'  # the timm VisionTransformer inside TimmTower
TEXT_PREFIX = 'text.'
VISION_PROJ_KEY = 'vision_proj.proj.weight'
TEXT_PROJ_KEY = 'text_proj.proj.weight'
LOGIT_SCALE_KEY = 'itc.logit_scale'

# Activation names of the references -> vlp / timm names (both accept these three).
ACTIVATIONS = {
    'quick_gelu': 'quick_gelu',
    'gelu': 'gelu',  # exact (erf) GELU: HF 'gelu', torch nn.GELU()
    'gelu_pytorch_tanh': 'gelu_tanh',
    'gelu_new': 'gelu_tanh',  # HF's tanh approximation, same formula as nn.GELU('tanh')
}

# (width, depth) -> size word of timm's registered CLIP ViTs (``vit_<size>_patch<p>_clip_*``).
_TIMM_SIZES = {(768, 12): 'base', (1024, 24): 'large', (1280, 32): 'huge',
               (1408, 40): 'giant', (1664, 48): 'gigantic'}


@dataclass
class TowerArch:
    """Sizes of one transformer tower."""
    width: int
    layers: int
    heads: int
    mlp_ratio: float
    act_layer: str  # vlp / timm activation name
    ln_eps: float = 1e-5


@dataclass
class ClipArch:
    """Everything the vlp config needs to know about a CLIP checkpoint."""
    embed_dim: int
    image_size: int
    patch_size: int
    vision: TowerArch
    vocab_size: int
    context_length: int
    text: TowerArch
    eot_token_id: Optional[int] = None  # None: pool at argmax(input_ids)
    mean: Sequence[float] = OPENAI_CLIP_MEAN  # 0-1 scale
    std: Sequence[float] = OPENAI_CLIP_STD


def to_scalar(t: torch.Tensor) -> torch.Tensor:
    """``logit_scale`` as the 0-dim tensor of vlp's ``ContrastiveLoss`` (open_clip's
    ``nonscalar_logit_scale`` stores ``[1]``)."""
    return t.reshape(())


def map_activation(name: str) -> str:
    """Reference activation name -> vlp/timm name; raise on anything else."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise NotImplementedError(
            f'activation {name!r} has no exact vlp equivalent (supported: '
            f'{sorted(ACTIVATIONS)})') from None


def mlp_ratio_of(width: int, hidden: int) -> float:
    """The ``mlp_ratio`` that gives exactly ``hidden`` (both timm and vlp use
    ``int(width * mlp_ratio)``)."""
    ratio = hidden / width
    if int(width * ratio) != hidden:
        raise NotImplementedError(f'MLP width {hidden} is not int({width} * r) for r = {ratio}')
    return ratio


# -- vlp config ---------------------------------------------------------------------------
def timm_model_name(arch: ClipArch) -> str:
    """The registered timm CLIP ViT whose name matches ``arch`` (for readability only: every
    size is also passed explicitly); ViT-B/16 when no registered name matches."""
    import timm
    v = arch.vision
    gelu = '_quickgelu' if v.act_layer == 'quick_gelu' else ''
    size = _TIMM_SIZES.get((v.width, v.layers))
    if size is not None:
        name = f'vit_{size}_patch{arch.patch_size}_clip{gelu}_{arch.image_size}'
        if timm.is_model(name):
            return name
    return f'vit_base_patch16_clip{gelu}_224'


def build_model_cfg(arch: ClipArch, tokenizer: Optional[dict] = None) -> dict:
    """vlp ``CLIP`` model config for ``arch``."""
    v, t = arch.vision, arch.text
    if v.ln_eps != 1e-5:
        # timm's CLIP entry points fix LayerNorm eps at 1e-5; another eps needs a
        # norm_layer callable, which a config file cannot hold.
        raise NotImplementedError(f'vision LayerNorm eps {v.ln_eps} != 1e-5')
    vision = dict(
        type='TimmTower',
        model_name=timm_model_name(arch),
        pretrained=False,
        img_size=arch.image_size,
        patch_size=arch.patch_size,
        embed_dim=v.width,
        depth=v.layers,
        num_heads=v.heads,
        mlp_ratio=v.mlp_ratio,
        act_layer=v.act_layer,
        pre_norm=True,  # ln_pre; also makes the patch embedding bias-free (CLIP's conv1)
        class_token=True,
        global_pool='token')
    text = dict(
        type='TextTransformer',
        vocab_size=arch.vocab_size,
        context_length=arch.context_length,
        width=t.width,
        layers=t.layers,
        heads=t.heads,
        mlp_ratio=t.mlp_ratio,
        act_layer=t.act_layer,
        ln_eps=t.ln_eps,
        eot_token_id=arch.eot_token_id)
    model = dict(
        type='CLIP',
        data_preprocessor=dict(
            type='VLPDataPreprocessor',
            mean=[round(m * 255, 6) for m in arch.mean],
            std=[round(s * 255, 6) for s in arch.std]),
        vision=vision,
        text=text,
        vision_proj=dict(type='Projection', in_dim=v.width, out_dim=arch.embed_dim, bias=False),
        text_proj=dict(type='Projection', in_dim=t.width, out_dim=arch.embed_dim, bias=False),
        # CLIP: T initialised at 0.07, scale clamped at 100 (the value comes from the weights)
        itc=dict(type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0))
    if tokenizer is not None:
        model['tokenizer'] = tokenizer
    return model


def tokenizer_cfg(files: Sequence[str], max_length: int) -> dict:
    """vlp ``CLIPTokenizer`` config for tokenizer files copied next to the written config
    (paths relative to it through mmengine's ``{{ fileDirname }}``): a ``tokenizer.json``,
    a ``vocab.json`` + ``merges.txt`` pair or OpenAI's ``bpe_simple_vocab_16e6.txt.gz``."""
    names = {osp.basename(f) for f in files}
    here = '{{ fileDirname }}/'
    cfg = dict(type='CLIPTokenizer', max_length=max_length)
    if names == {'tokenizer.json'}:
        cfg['tokenizer_file'] = here + 'tokenizer.json'
    elif names == {'vocab.json', 'merges.txt'}:
        cfg.update(vocab_file=here + 'vocab.json', merges_file=here + 'merges.txt')
    elif len(names) == 1 and next(iter(names)).endswith('.txt.gz'):
        cfg['bpe_path'] = here + next(iter(names))
    else:
        raise ValueError(f'cannot make a CLIPTokenizer from {sorted(names)}')
    return cfg


# -- state dict mapping -------------------------------------------------------------------
Rule = Tuple[str, str, Optional[Callable[[torch.Tensor], torch.Tensor]]]


def block_rules(src: str, dst: str, names: Sequence[Tuple[str, str]]) -> List[Rule]:
    """Rules for the transformer blocks ``{src}<i>.<name>`` -> ``{dst}<i>.<vlp name>``.

    ``names`` maps a block-relative source name (a regex fragment; a trailing ``.`` keeps
    the parameter suffix) to the vlp name.
    """
    rules = []
    for s, d in names:
        if s.endswith('.'):
            rules.append((re.escape(src) + r'(\d+)\.' + re.escape(s) + r'(weight|bias)',
                          dst + r'\1.' + d + r'\2', None))
        else:
            rules.append((re.escape(src) + r'(\d+)\.' + re.escape(s), dst + r'\1.' + d, None))
    return rules


def rename_state_dict(state_dict: Dict[str, torch.Tensor], rules: Sequence[Rule],
                      ignore: Iterable[str] = ()) -> Dict[str, torch.Tensor]:
    """Apply the first rule whose regex fully matches each key.

    Raises:
        KeyError: a key matches no rule and no ``ignore`` regex, or two keys map to one.
    """
    ignore = list(ignore)
    out: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if any(re.fullmatch(p, key) for p in ignore):
            continue
        for pattern, target, fn in rules:
            m = re.fullmatch(pattern, key)
            if m is None:
                continue
            new = m.expand(target)
            if new in out:
                raise KeyError(f'two source keys map to {new!r}')
            out[new] = fn(value) if fn is not None else value
            break
        else:
            raise KeyError(f'unexpected key {key!r} in the source checkpoint (no rule maps it)')
    return out


def fuse_qkv(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Concatenate separate ``*.attn.{q,k,v}_proj.{weight,bias}`` (rows in q, k, v order, as
    in ``nn.MultiheadAttention.in_proj_weight``) into ``*.attn.qkv.{weight,bias}``."""
    out, groups = {}, {}
    for key, value in state_dict.items():
        m = re.fullmatch(r'(.*\.attn\.)([qkv])_proj\.(weight|bias)', key)
        if m is None:
            out[key] = value
        else:
            groups.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
    for (prefix, param), parts in groups.items():
        if set(parts) != {'q', 'k', 'v'}:
            raise KeyError(f'{prefix}{{q,k,v}}_proj.{param}: only {sorted(parts)} present')
        out[f'{prefix}qkv.{param}'] = torch.cat([parts['q'], parts['k'], parts['v']], dim=0)
    return out


def build_vlp_model(model_cfg: dict, device: str = 'cpu') -> torch.nn.Module:
    """Build vlp's model from ``model_cfg`` (tokenizer left out) on ``device``."""
    import copy

    from vlp.registry import MODELS
    cfg = copy.deepcopy(model_cfg)
    cfg.pop('tokenizer', None)
    with torch.device(device):
        return MODELS.build(cfg)


def check_state_dict(model_cfg: dict, state_dict: Dict[str, torch.Tensor]) -> None:
    """Compare names and shapes with the vlp model built (on the meta device) from
    ``model_cfg``.

    Raises:
        KeyError: missing or unexpected keys.
        ValueError: shape mismatches.
    """
    expected = build_vlp_model(model_cfg, device='meta').state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise KeyError(f'converted state dict does not match the vlp model: '
                       f'missing {missing}, unexpected {unexpected}')
    bad = [f'{k}: {tuple(v.shape)} != {tuple(expected[k].shape)}'
           for k, v in state_dict.items() if v.shape != expected[k].shape]
    if bad:
        raise ValueError('shape mismatch: ' + '; '.join(bad))


def cast_state_dict(state_dict: Dict[str, torch.Tensor],
                    dtype: Optional[torch.dtype] = torch.float32) -> Dict[str, torch.Tensor]:
    """Cast floating tensors to ``dtype`` (``None`` keeps them) and give each its own
    contiguous storage (so ``torch.save`` writes no shared or oversized storages)."""
    out = {}
    for k, v in state_dict.items():
        v = v.detach()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous().clone()
    return out


# -- files ----------------------------------------------------------------------------
def load_weights_file(path: str, weights_only: bool = True,
                      opt_out: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, read without running code from it.

    A TorchScript archive (OpenAI's original CLIP release files) is read by
    :func:`_torchscript.read_torchscript_state_dict` (its code is never compiled or run);
    anything else by vlp's weights-only
    :func:`~vlp.engine.checkpoint.read_state_dict` (``.safetensors``, a plain state dict or
    one under ``'state_dict'``/``'module'``/``'model'``, ``module.`` prefixes dropped). A
    file holding other objects is refused (``UnsafeCheckpointError``, naming ``opt_out``).

    ``weights_only=False`` (a converter's ``--no-weights-only``, for trusted files only)
    uses ``torch.jit.load`` / ``torch.load(weights_only=False)``, which run code from the
    file.
    """
    from _torchscript import read_torchscript_state_dict, torchscript_root
    from vlp.engine.checkpoint import read_state_dict, state_dict_of
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} not found')
    if torchscript_root(path) is not None:
        if weights_only:
            return dict(read_torchscript_state_dict(path, opt_out=opt_out))
        return dict(torch.jit.load(path, map_location='cpu').state_dict())
    if weights_only:
        return dict(read_state_dict(path, opt_out=opt_out))
    if path.endswith('.safetensors'):
        return dict(read_state_dict(path))
    return dict(state_dict_of(torch.load(path, map_location='cpu', weights_only=False), path))


#: what the converters with ``--no-weights-only`` tell a user whose file was refused
NO_WEIGHTS_ONLY_HINT = 'pass --no-weights-only to unpickle it fully'


def save_converted(out_dir: str, model_cfg: dict, state_dict: Dict[str, torch.Tensor],
                   meta: Dict[str, object], header: str,
                   copy_files: Sequence[str] = ()) -> Tuple[str, str]:
    """Write ``out_dir/config.py`` (``default_scope='vlp'`` and ``model``) and
    ``out_dir/model.pth`` (``{'state_dict', 'meta'}``, loadable with ``weights_only=True``);
    copy ``copy_files`` (tokenizer files) into ``out_dir``.

    Returns:
        ``(config_path, checkpoint_path)``.
    """
    for k, v in meta.items():
        if not isinstance(v, (str, int)) or isinstance(v, bool):
            raise TypeError(f'meta[{k!r}] must be a str or int, got {type(v).__name__}')
    os.makedirs(out_dir, exist_ok=True)
    for f in copy_files:
        shutil.copy(f, osp.join(out_dir, osp.basename(f)))
    cfg_path = osp.join(out_dir, 'config.py')
    with open(cfg_path, 'w') as f:
        f.write(header.rstrip() + "\ndefault_scope = 'vlp'\n\nmodel = "
                + format_py(model_cfg) + '\n')
    ckpt_path = osp.join(out_dir, 'model.pth')
    torch.save({'state_dict': state_dict, 'meta': dict(meta)}, ckpt_path)
    return cfg_path, ckpt_path


def format_py(value, indent: int = 0) -> str:
    """Python source of a config value: ``dict(k=v, ...)`` in insertion order (``type``
    first), one key a line for dicts holding dicts or too long for one line."""
    if isinstance(value, dict):
        flat = 'dict(' + ', '.join(f'{k}={format_py(v)}' for k, v in value.items()) + ')'
        if len(flat) + indent <= 80 and not any(isinstance(v, dict) for v in value.values()):
            return flat
        pad = ' ' * (indent + 4)
        return 'dict(\n' + ',\n'.join(f'{pad}{k}={format_py(v, indent + 4)}'
                                       for k, v in value.items()) + ')'
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(format_py(v, indent) for v in value) + ']'
    return repr(value)


def config_header(tool: str, source: str) -> str:
    """Comment block at the top of a written config."""
    return (f'# vlp CLIP converted by tools/convert/{tool} from {source}\n'
            '# Load with vlp.apis.init_model(<this file>, <dir>/model.pth).\n'
            '# Paths containing {{ fileDirname }} resolve to this directory.\n')


def dtype_arg(name: str) -> Optional[torch.dtype]:
    """``--dtype`` choice -> torch dtype (``keep`` -> ``None``)."""
    return {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16,
            'keep': None}[name]


# -- command lines -------------------------------------------------------------------
def add_dtype_arg(parser) -> None:
    """``--dtype`` of the written floating tensors (read back with :func:`dtype_arg`)."""
    parser.add_argument('--dtype', default='fp32', choices=['fp32', 'fp16', 'bf16', 'keep'],
                        help='dtype of the floating tensors written (default fp32)')


def add_drop_keys_arg(parser) -> None:
    """``--drop-keys``: source keys to drop on purpose."""
    parser.add_argument('--drop-keys', nargs='*', default=[], metavar='REGEX',
                        help='source keys (full-match regexes) to drop on purpose')


def add_weights_only_arg(parser) -> None:
    """``--no-weights-only``: unpickle a trusted checkpoint fully."""
    parser.add_argument('--no-weights-only', action='store_true',
                        help='unpickle the checkpoint fully (only for files you trust)')
