"""Checkpoint reading that never runs code from the file, in every route.

Every file vlp reads weights or training state from -- ``tools/test.py``, ``--resume``,
``load_from``, :func:`vlp.apis.init_model`, a part's ``pretrained`` / ``checkpoint``
argument, the converters in ``tools/convert`` -- is unpickled with
``torch.load(weights_only=True)``: tensors, plain containers and numbers only, plus a
*scoped* allow-list of the few classes mmengine and DeepSpeed write. A file holding any
other object is refused with :class:`UnsafeCheckpointError` (a
``pickle.UnpicklingError``) naming the file; nothing in it is called. This needs torch >=
2.6 (``torch.serialization.safe_globals`` with named entries; before 2.6
``weights_only=True`` also had a remote-code-execution bug, CVE-2025-32434): importing
this module on an older torch raises ``ImportError``.

Allowed classes and functions (found with ``torch.serialization.
get_unsafe_globals_in_checkpoint`` on real checkpoints: mmengine's Runner, and DeepSpeed
ZeRO 0-3 in fp32 and bf16). Unpickling may create instances of an allowed class
(``cls.__new__`` / ``cls(*args)``, then fill ``__dict__`` or call its ``__setstate__``) and
call an allowed function with arguments from the file, so an entry is only safe when
those do nothing but build a value:

:data:`MMENGINE_SAFE_GLOBALS`, in mmengine training checkpoints (``message_hub``):

- ``mmengine.logging.history_buffer.HistoryBuffer``: plain attributes (numpy arrays),
  no ``__setstate__``, an ``__init__`` that only stores its arguments.
- ``numpy.ndarray``, ``numpy.dtype`` and the per-type dtype classes of numeric types
  (``numpy.dtypes.Float64DType``...), ``numpy._core.multiarray._reconstruct`` and
  ``numpy._core.multiarray.scalar`` (and their numpy 1.x ``numpy.core`` paths): numpy's
  own array / scalar pickling, which rebuilds data from bytes. Object arrays are refused
  (their dtype class, ``numpy.dtypes.ObjectDType``, is not listed).
- ``builtins.getattr`` -> :func:`_history_buffer_getattr`, a *restricted* getattr that
  only returns ``HistoryBuffer``'s registered statistics methods (mmengine pickles that
  dict of bound methods as ``getattr(HistoryBuffer, 'mean')``). A plain ``getattr`` would
  hand a checkpoint any attribute of any object (``os.system`` among them).

:func:`deepspeed_safe_globals` (``DEEPSPEED_SAFE_GLOBALS``), in DeepSpeed's
``*_optim_states.pt`` files (model-state files hold only mmengine's classes):

- ``deepspeed.runtime.fp16.loss_scaler.LossScaler`` (ZeRO 1-3, fp32 and bf16) and
  ``DynamicLossScaler`` (its fp16 counterpart): plain attribute holders, ``__init__``
  stores numbers, no ``__setstate__``.
- ``deepspeed.runtime.zero.config.ZeroStageEnum``: an ``int`` ``Enum`` (looked up by value).
- ``deepspeed.utils.tensor_fragment.fragment_address`` (ZeRO 1/2): a dataclass of two ints.

Nothing is added to torch's process-wide allow-list: ``safe_globals`` applies for one
``torch.load`` call. Importing :mod:`vlp.engine` installs :func:`load_from_local` as
mmengine's ``CheckpointLoader`` for local paths (``--resume``, ``load_from``,
``tools/test.py`` with the plain ``Runner``). DeepSpeed's own readers unpickle with
``weights_only=False``: vlp's :class:`~vlp.engine.strategies.DeepSpeedStrategy` swaps in a
weights-only checkpoint engine, and DeepSpeed's ``zero_to_fp32`` consolidation runs under
:func:`weights_only_zero_to_fp32`.

:func:`read_state_dict` is the one reader of weights for the routes that want a state
dict: a ``torch.save`` file (a bare state dict, an mmengine checkpoint's ``state_dict``, a
DeepSpeed model-states file's ``module``, a timm / ALBEF ``model`` entry), a
``.safetensors`` file, or a DeepSpeed checkpoint directory of any ZeRO stage.
"""
import ast
import glob
import inspect
import os.path as osp
import pickle
import re
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.utils import digit_version

if digit_version(torch.__version__) < digit_version('2.6.0'):
    raise ImportError(
        f'vlp needs torch >= 2.6 for weights-only checkpoint loading (a scoped allow-list '
        f'of the classes mmengine and DeepSpeed write), found torch {torch.__version__}: '
        'install torch>=2.6 (see requirements/runtime.txt)')

SafeGlobal = Union[Callable, Tuple[Callable, str]]

__all__ = ['UnsafeCheckpointError', 'MMENGINE_SAFE_GLOBALS', 'deepspeed_safe_globals',
           'safe_load', 'unsafe_checkpoint_error', 'read_state_dict', 'read_deepspeed_state_dict',
           'is_deepspeed_checkpoint_dir', 'weights_only_zero_to_fp32', 'load_from_local',
           'install_safe_checkpoint_loader']


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint refused by weights-only loading: it holds objects other than weights
    (tensors, containers, numbers and the allow-listed classes). Nothing in it ran.

    Attributes:
        filename: the refused file.
        reason: what the unpickler met (e.g. ``Unsupported global: GLOBAL posix.mkdir``).
        opt_out: how the caller may read it fully if the file is trusted (a command-line
            flag of a converter), or ``None`` where vlp offers no such route.
    """

    def __init__(self, filename: str, reason: str, opt_out: Optional[str] = None):
        self.filename, self.reason, self.opt_out = str(filename), reason, opt_out
        todo = (f'If you trust this file, {opt_out}' if opt_out else
                'If you trust this file, re-save its weights in a trusted environment as a '
                'plain state dict (torch.save(model.state_dict(), path)) or a .safetensors '
                'file')
        super().__init__(f'{self.filename}: refused to load, the file holds objects other '
                         f'than weights ({reason}); weights-only loading never runs code '
                         f'from a checkpoint. {todo}.')

    def __reduce__(self):  # picklable (multiprocessing, pytest-xdist)
        return type(self), (self.filename, self.reason, self.opt_out)


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """The only ``getattr`` a checkpoint may call: ``HistoryBuffer``'s statistics
    methods (``min``, ``max``, ``current``, ``mean`` and any registered one)."""
    allowed = set(HistoryBuffer._statistics_methods) | {'min', 'max', 'current', 'mean'}
    if obj is HistoryBuffer and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint asked for getattr({obj!r}, {name!r}); only HistoryBuffer statistics '
        'methods are allowed')


_NUMERIC_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32',
                   'uint64', 'float16', 'float32', 'float64')


def _numpy_globals() -> List[SafeGlobal]:
    core = getattr(np, '_core', None) or np.core  # numpy 2.x / 1.x
    multiarray = core.multiarray
    out: List[SafeGlobal] = [np.ndarray, np.dtype]
    # numpy.dtype(...) builds instances of per-type classes (numpy.dtypes.Float64DType...)
    out += sorted({type(np.dtype(c)) for c in _NUMERIC_DTYPES}, key=str)
    for fn in (multiarray._reconstruct, multiarray.scalar):
        # checkpoints written with numpy 2 say numpy._core..., with numpy 1 numpy.core...
        out.append((fn, f'numpy._core.multiarray.{fn.__name__}'))
        out.append((fn, f'numpy.core.multiarray.{fn.__name__}'))
    return out


MMENGINE_SAFE_GLOBALS: List[SafeGlobal] = [
    HistoryBuffer,
    (_history_buffer_getattr, 'builtins.getattr'),
    *_numpy_globals(),
]

_DEEPSPEED_SAFE_GLOBALS: List[SafeGlobal] = []


def deepspeed_safe_globals() -> List[SafeGlobal]:
    """The classes DeepSpeed writes into its checkpoint files besides mmengine's (see the
    module docstring). Imports DeepSpeed on first use."""
    if not _DEEPSPEED_SAFE_GLOBALS:
        from vlp.engine.dist import setup_deepspeed_accelerator_env
        setup_deepspeed_accelerator_env()  # before deepspeed resolves its accelerator
        from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
        from deepspeed.runtime.zero.config import ZeroStageEnum
        from deepspeed.utils.tensor_fragment import fragment_address
        _DEEPSPEED_SAFE_GLOBALS.extend(
            [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address])
    return _DEEPSPEED_SAFE_GLOBALS


def __getattr__(name: str):
    # DEEPSPEED_SAFE_GLOBALS without importing DeepSpeed when this module is imported
    if name == 'DEEPSPEED_SAFE_GLOBALS':
        return deepspeed_safe_globals()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


_WO_HEADER = 'Weights only load failed'


def _refusal_reason(err: pickle.UnpicklingError) -> Optional[str]:
    """The informative part of torch's weights-only refusal, or ``None`` when ``err`` is
    not one (a truncated or corrupted file)."""
    text = str(err)
    if not text.startswith(_WO_HEADER):
        return None
    parts = [p.strip() for p in text.split('\n\n') if p.strip()]
    keep = [p for p in parts
            if not p.startswith((_WO_HEADER, 'Check the documentation of torch.load'))]
    reason = ' '.join(keep) or text
    # torch then suggests allow-listing the global: not what a user of vlp should do
    reason = re.split(r'\s*Please use `torch\.serialization\.add_safe_globals', reason)[0]
    return reason.rstrip('. ')


def unsafe_checkpoint_error(err: BaseException, filename: str,
                            opt_out: Optional[str] = None) -> Optional[UnsafeCheckpointError]:
    """``err`` as an :class:`UnsafeCheckpointError` about ``filename`` when it is torch's
    weights-only refusal (``None`` otherwise: e.g. a truncated file), for the loaders of
    other libraries (timm) that read weights-only but do not name the file."""
    if isinstance(err, UnsafeCheckpointError):
        return err
    if not isinstance(err, pickle.UnpicklingError):
        return None
    reason = _refusal_reason(err)
    return None if reason is None else UnsafeCheckpointError(filename, reason, opt_out)


def safe_load(filename, map_location=None, extra_safe_globals: Optional[List[SafeGlobal]] = None,
              *, opt_out: Optional[str] = None, mmap: Optional[bool] = None):
    """``torch.load(weights_only=True)`` with mmengine's classes (and
    ``extra_safe_globals``) allowed for this call only.

    Raises:
        UnsafeCheckpointError: the file holds other objects (``opt_out`` is named in the
            message as what the caller may do about a trusted file).
    """
    allow = MMENGINE_SAFE_GLOBALS + list(extra_safe_globals or [])
    kwargs = {} if mmap is None else dict(mmap=mmap)
    try:
        with torch.serialization.safe_globals(allow):
            return torch.load(filename, map_location=map_location, weights_only=True,
                              **kwargs)
    except pickle.UnpicklingError as e:
        refused = unsafe_checkpoint_error(e, getattr(filename, 'name', filename), opt_out)
        if refused is None or refused is e:
            raise
        raise refused from e


# -- state dicts ----------------------------------------------------------------------
def state_dict_of(checkpoint: Any, source: str) -> Dict[str, torch.Tensor]:
    """The weights in a loaded checkpoint: its ``state_dict`` (mmengine, open_clip),
    ``module`` (a DeepSpeed model-states file) or ``model`` (timm, ALBEF) entry, or the
    checkpoint itself (a bare state dict); a ``module.`` prefix on every key (DDP) is
    dropped."""
    if not isinstance(checkpoint, dict):
        raise TypeError(f'{source}: a checkpoint is a dict, got {type(checkpoint).__name__}')
    state = checkpoint
    for key in ('state_dict', 'module', 'model'):
        if isinstance(checkpoint.get(key), dict):
            state = checkpoint[key]
            break
    non_tensor = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if non_tensor:
        raise TypeError(f'{source} holds no state dict of tensors (non-tensor entries: '
                        f'{non_tensor[:5]})')
    prefix = 'module.'
    if state and all(k.startswith(prefix) for k in state):
        return OrderedDict((k[len(prefix):], v) for k, v in state.items())
    return OrderedDict(state)


def read_state_dict(path: str, *, opt_out: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """The weights of a checkpoint on CPU, read without running code from it.

    Args:
        path: a ``torch.save`` file (see :func:`state_dict_of`), a ``.safetensors`` file,
            or a DeepSpeed checkpoint directory (:func:`read_deepspeed_state_dict`).
        opt_out: named in the :class:`UnsafeCheckpointError` message (see :func:`safe_load`).
    """
    path = osp.expanduser(str(path))
    if osp.isdir(path):
        return read_deepspeed_state_dict(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} not found')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return OrderedDict(load_file(path, device='cpu'))
    return state_dict_of(safe_load(path, map_location='cpu', opt_out=opt_out), path)


def _deepspeed_tag_dir(path: str) -> Optional[str]:
    """The directory holding the ``*_model_states.pt`` files: ``path`` itself (mmengine's
    ``iter_N.pth/``, a DeepSpeed tag directory) or, for DeepSpeed's own layout, the tag
    its ``latest`` file names."""
    if glob.glob(osp.join(glob.escape(path), '*_model_states.pt')):
        return path
    latest = osp.join(path, 'latest')
    if osp.isfile(latest):
        with open(latest) as f:
            tagged = osp.join(path, f.read().strip())
        if glob.glob(osp.join(glob.escape(tagged), '*_model_states.pt')):
            return tagged
    return None


def is_deepspeed_checkpoint_dir(path: str) -> bool:
    """Whether ``path`` is a DeepSpeed checkpoint directory (see :func:`_deepspeed_tag_dir`)."""
    return osp.isdir(path) and _deepspeed_tag_dir(path) is not None


def deepspeed_model_states_file(path: str) -> str:
    """The rank-0 model-states file of a DeepSpeed checkpoint directory (client state:
    mmengine's ``meta``, ``message_hub``...; ZeRO 0-2: also the full ``module``)."""
    tag_dir = _deepspeed_tag_dir(path)
    if tag_dir is None:
        raise FileNotFoundError(f'{path} is a directory without DeepSpeed *_model_states.pt '
                                'files: not a DeepSpeed checkpoint')
    for name in ('mp_rank_00_model_states.pt', 'zero_pp_rank_0_mp_rank_00_model_states.pt'):
        if osp.isfile(osp.join(tag_dir, name)):
            return osp.join(tag_dir, name)
    raise FileNotFoundError(f'{tag_dir}: no rank-0 model-states file')


def read_deepspeed_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The full fp32 weights of a DeepSpeed checkpoint directory of any ZeRO stage, read
    weights-only.

    ZeRO 1-3 (``*_optim_states.pt`` files): the fp32 master partitions consolidated by
    DeepSpeed's ``zero_to_fp32`` under :func:`weights_only_zero_to_fp32`. ZeRO 0 (no
    optimizer partitions): the ``module`` of ``mp_rank_00_model_states.pt``.
    """
    tag_dir = _deepspeed_tag_dir(osp.abspath(path))
    if tag_dir is None:
        raise FileNotFoundError(f'{path} is a directory without DeepSpeed *_model_states.pt '
                                'files: not a DeepSpeed checkpoint')
    if glob.glob(osp.join(glob.escape(tag_dir), '*_optim_states.pt')):
        with weights_only_zero_to_fp32() as zero_to_fp32:
            state = zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint(
                osp.dirname(tag_dir), tag=osp.basename(tag_dir))
        return OrderedDict(state)
    states = osp.join(tag_dir, 'mp_rank_00_model_states.pt')
    if not osp.isfile(states):
        raise FileNotFoundError(f'{tag_dir}: neither ZeRO optimizer partitions '
                                '(*_optim_states.pt) nor mp_rank_00_model_states.pt')
    return state_dict_of(
        safe_load(states, map_location='cpu', extra_safe_globals=deepspeed_safe_globals()),
        states)


# -- DeepSpeed's zero_to_fp32, weights-only ----------------------------------------------
#: DeepSpeed version whose ``deepspeed/utils/zero_to_fp32.py`` was read for
#: :func:`weights_only_zero_to_fp32`: ``parse_model_states``, ``parse_optim_states`` and
#: ``_raise_if_autoep_zero3_partitioned_checkpoint`` call ``torch.load(...,
#: weights_only=False)`` through the module global ``torch``.
ZERO_TO_FP32_CHECKED_VERSION = '0.19.8'
_ZERO_TO_FP32_VERIFIED: Dict[Tuple[str, str], List[str]] = {}


def _zero_to_fp32_problems(module) -> List[str]:
    """Reasons why replacing ``module.torch`` would not make every file read of
    ``module`` weights-only (empty: it does). Every call of a ``load``/``loads`` function
    must be ``torch.load`` through the module global ``torch`` (``json.load`` reads
    JSON, not pickles)."""
    problems = []
    if module.__dict__.get('torch') is not torch:
        problems.append('its module global `torch` is not the torch module')
    tree = ast.parse(inspect.getsource(module))
    torch_loads = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split('.')[0] == 'torch' and alias.asname not in (None, 'torch'):
                    problems.append(f'line {node.lineno}: import {alias.name} as {alias.asname}')
        elif isinstance(node, ast.ImportFrom):
            root = (node.module or '').split('.')[0]
            if root in ('torch', 'pickle', 'dill', 'cloudpickle', 'joblib'):
                names = ', '.join(a.name for a in node.names)
                problems.append(f'line {node.lineno}: from {node.module} import {names}')
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', None)
            if name not in ('load', 'loads', 'Unpickler', '_load'):
                continue
            owner = func.value if isinstance(func, ast.Attribute) else None
            owner_name = owner.id if isinstance(owner, ast.Name) else None
            if owner_name == 'torch' and name == 'load':
                torch_loads += 1
            elif owner_name == 'json' and name in ('load', 'loads'):
                continue
            else:
                problems.append(f'line {node.lineno}: {ast.unparse(func)}(...)')
    if torch_loads == 0:
        problems.append('no torch.load call found')
    return problems


def _check_zero_to_fp32(module, version: str) -> None:
    key = (getattr(module, '__file__', ''), version)
    if key not in _ZERO_TO_FP32_VERIFIED:
        _ZERO_TO_FP32_VERIFIED[key] = _zero_to_fp32_problems(module)
    problems = _ZERO_TO_FP32_VERIFIED[key]
    if problems:
        raise RuntimeError(
            f'DeepSpeed {version}: deepspeed.utils.zero_to_fp32 no longer reads checkpoint '
            'files only through `torch.load` of its module global `torch` '
            f'({"; ".join(problems)}), so vlp cannot make it read weights-only (checked '
            f'against DeepSpeed {ZERO_TO_FP32_CHECKED_VERSION}). Install a DeepSpeed within '
            'requirements/runtime.txt, or update vlp.engine.checkpoint.'
            'weights_only_zero_to_fp32 for this version.')


class _WeightsOnlyTorch:
    """Stands in for the module global ``torch`` of ``deepspeed.utils.zero_to_fp32``:
    ``load`` is :func:`safe_load` (``weights_only`` forced on), everything else is torch's."""

    def __init__(self, safe_globals: List[SafeGlobal]):
        self._safe_globals = list(safe_globals)

    def load(self, f, map_location=None, pickle_module=None, *, weights_only=None,
             mmap=None, **pickle_load_args):
        return safe_load(f, map_location=map_location, extra_safe_globals=self._safe_globals,
                         mmap=mmap)

    def __getattr__(self, name: str):
        return getattr(torch, name)


@contextmanager
def weights_only_zero_to_fp32(extra_safe_globals: Optional[List[SafeGlobal]] = None):
    """Inside the block, ``deepspeed.utils.zero_to_fp32`` reads its files weights-only.

    DeepSpeed's ``get_fp32_state_dict_from_zero_checkpoint`` (and the rest of
    ``zero_to_fp32``) unpickles the model-states and optimizer-state files with
    ``torch.load(..., weights_only=False)``. For the duration of the block the name
    ``torch`` *inside that module only* is bound to a stand-in whose ``load`` is
    :func:`safe_load` with :func:`deepspeed_safe_globals` (+ ``extra_safe_globals``) and
    whose other attributes are torch's; torch itself and its process-wide allow-list are
    untouched, and the binding is restored on exit.

    This relies on how ``zero_to_fp32`` is written: every file read is a call of
    ``torch.load`` through its module global ``torch`` (checked by reading DeepSpeed
    :data:`ZERO_TO_FP32_CHECKED_VERSION`). At run time, once per DeepSpeed version, the
    module's source is parsed and any other unpickling call, an aliased ``torch`` import
    or a missing ``torch.load`` raises ``RuntimeError`` naming the DeepSpeed version,
    instead of reading a file unsafely.

    Yields:
        the ``deepspeed.utils.zero_to_fp32`` module.
    """
    allow = deepspeed_safe_globals() + list(extra_safe_globals or [])
    import deepspeed
    from deepspeed.utils import zero_to_fp32
    _check_zero_to_fp32(zero_to_fp32, deepspeed.__version__)
    previous = zero_to_fp32.__dict__['torch']
    zero_to_fp32.torch = _WeightsOnlyTorch(allow)
    try:
        yield zero_to_fp32
    finally:
        zero_to_fp32.torch = previous


# -- mmengine's CheckpointLoader ----------------------------------------------------------
def load_from_local(filename: str, map_location=None):
    """mmengine ``CheckpointLoader`` backend for local paths, weights-only. A DeepSpeed
    checkpoint directory (``load_from`` / ``tools/test.py`` with the plain ``Runner``)
    gives ``{'state_dict': <consolidated weights>, 'meta': <its meta>}``."""
    filename = osp.expanduser(filename)
    if is_deepspeed_checkpoint_dir(filename):
        client = safe_load(deepspeed_model_states_file(filename), map_location='cpu',
                           extra_safe_globals=deepspeed_safe_globals())
        return dict(state_dict=read_deepspeed_state_dict(filename),
                    meta=client.get('meta', {}) if isinstance(client, dict) else {})
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_load(filename, map_location=map_location)


def install_safe_checkpoint_loader() -> None:
    """Make :func:`load_from_local` mmengine's loader for local paths (idempotent)."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)


install_safe_checkpoint_loader()
