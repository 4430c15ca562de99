"""Weights-only checkpoint loading that still resumes mmengine training checkpoints.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True`` and refuses mmengine
0.10.7's training checkpoints: their ``message_hub`` holds ``HistoryBuffer`` objects
(numpy arrays and scalars inside, and a dict of bound statistics methods that pickle as
``getattr(HistoryBuffer, 'mean')``). Instead of turning weights-only loading off, every
local checkpoint read through mmengine's :class:`~mmengine.runner.CheckpointLoader`
(``--resume``, ``load_from``, ``load_checkpoint``, ``tools/test.py``) goes through
:func:`load_from_local`: ``torch.load(weights_only=True)`` inside a *scoped*
``torch.serialization.safe_globals`` allow-list of exactly what mmengine writes
(:data:`MMENGINE_SAFE_GLOBALS`, found by inspecting a real checkpoint with
``torch.serialization.get_unsafe_globals_in_checkpoint``):

- ``mmengine.logging.history_buffer.HistoryBuffer``
- ``numpy.ndarray``, ``numpy.dtype`` (and the per-type classes its instances have,
  ``numpy.dtypes.Float64DType``..., numeric types only), ``numpy._core.multiarray.
  _reconstruct`` and ``numpy._core.multiarray.scalar`` (and their numpy 1.x paths)
- ``builtins.getattr`` -> :func:`_history_buffer_getattr`, a *restricted* getattr that
  only returns ``HistoryBuffer``'s registered statistics methods. A plain ``getattr``
  would hand a checkpoint any attribute of any object (module globals included), which
  defeats weights-only loading.

Nothing is added to torch's global allow-list. Importing :mod:`vlp.engine` installs the
loader for local paths (scheme prefix ``''``) in mmengine's ``CheckpointLoader``.
"""
import os.path as osp
import pickle
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.utils import digit_version

SafeGlobal = Union[Callable, Tuple[Callable, str]]

# torch.load's allow-list takes (object, 'name.in.checkpoint') pairs since 2.6
_HAS_SAFE_GLOBALS = digit_version(torch.__version__) >= digit_version('2.6.0')


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


def safe_load(filename, map_location=None, extra_safe_globals: Optional[List[SafeGlobal]] = None):
    """``torch.load(weights_only=True)`` with mmengine's classes allowed for this call only."""
    allow = MMENGINE_SAFE_GLOBALS + list(extra_safe_globals or [])
    if not _HAS_SAFE_GLOBALS:
        # torch < 2.6 cannot name allow-listed objects; its default was weights_only=False
        # and that is what mmengine expected
        return torch.load(filename, map_location=map_location, weights_only=False)
    with torch.serialization.safe_globals(allow):
        return torch.load(filename, map_location=map_location, weights_only=True)


def load_from_local(filename: str, map_location=None):
    """mmengine ``CheckpointLoader`` backend for local paths, weights-only."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_load(filename, map_location=map_location)


def install_safe_checkpoint_loader() -> None:
    """Make :func:`load_from_local` mmengine's loader for local paths (idempotent)."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)


install_safe_checkpoint_loader()
