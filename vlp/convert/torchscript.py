"""The weights of a TorchScript archive, read without running it.

OpenAI's CLIP release files (and ``torch.jit.save`` files in general) are TorchScript
archives. ``torch.jit.load`` compiles the TorchScript code inside the archive and runs it:
a module's ``__setstate__`` executes on load (a hostile archive can, for instance, create
files with ``torch.from_file``), and ``torch.load(weights_only=True)`` refuses such
archives. :func:`read_torchscript_state_dict` reads the same state dict as
``torch.jit.load(path).state_dict()`` without compiling or calling anything from the
archive:

- ``<root>/data.pkl`` (the module tree) is unpickled by :class:`_RestrictedUnpickler`,
  which resolves only ``torch._utils._rebuild_tensor_v2``, torch's typed storage classes,
  ``collections.OrderedDict``, the identity helpers of ``torch.jit._pickle`` and the
  TorchScript classes ``__torch__.*``; these become inert records of their pickled
  attributes (nothing of theirs is called). Any other global is refused.
- tensor storages are read from ``<root>/data/<key>`` (little-endian archives);
- which attributes of a module are its parameters and buffers is read from the
  ``__parameters__`` / ``__buffers__`` lists of the class definitions in ``<root>/code/``
  (text, parsed, never compiled); submodules follow in attribute order, as
  ``ScriptModule.state_dict()`` orders them.

A module class with a custom ``__getstate__`` (its pickled state is not its attributes)
cannot be read without running its ``__setstate__``: that is refused
(``UnsafeCheckpointError``, naming the class); a converter's ``--no-weights-only``
(``torch.jit.load``) is the way for a trusted file.
"""
import pickle
import posixpath
import re
import sys
import zipfile
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch

_STORAGE_DTYPES = {
    'FloatStorage': torch.float32, 'DoubleStorage': torch.float64,
    'HalfStorage': torch.float16, 'BFloat16Storage': torch.bfloat16,
    'LongStorage': torch.int64, 'IntStorage': torch.int32, 'ShortStorage': torch.int16,
    'CharStorage': torch.int8, 'ByteStorage': torch.uint8, 'BoolStorage': torch.bool,
    'ComplexFloatStorage': torch.complex64, 'ComplexDoubleStorage': torch.complex128}
_STORAGE_CLASSES = {getattr(torch, name): dtype for name, dtype in _STORAGE_DTYPES.items()}
_JIT_PICKLE_HELPERS = ('build_intlist', 'build_tensorlist', 'build_doublelist',
                       'build_boollist', 'build_tensor_from_id', 'restore_type_tag')
_MODULE_CLASS = re.compile(
    r'^class (\w+)\(Module\):\n[ \t]+__parameters__ = \[([^\]]*)\]\n'
    r'[ \t]+__buffers__ = \[([^\]]*)\]', re.M)


def torchscript_root(path: str) -> Optional[str]:
    """The archive's root folder if ``path`` is a TorchScript archive (a zip with a
    ``constants.pkl``), else ``None``."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if name == 'constants.pkl' or name.endswith('/constants.pkl'):
                return posixpath.dirname(name)
    return None


class _ScriptObject:
    """An instance of a TorchScript class, as pickled: ``qualname`` and ``state``."""
    qualname = ''

    def __setstate__(self, state):
        self.state = state


def _refuse(path: str, reason: str, opt_out: Optional[str]):
    from vlp.engine.checkpoint import UnsafeCheckpointError
    return UnsafeCheckpointError(path, reason, opt_out)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, zf: zipfile.ZipFile, root: str, path: str,
                 opt_out: Optional[str]):
        super().__init__(file)
        self._zf, self._root, self._path, self._opt_out = zf, root, path, opt_out
        self._classes: Dict[str, type] = {}
        self._storages: Dict[str, torch.storage.TypedStorage] = {}

    def find_class(self, module: str, name: str):
        if module == 'torch._utils' and name == '_rebuild_tensor_v2':
            return torch._utils._rebuild_tensor_v2
        if module == 'collections' and name == 'OrderedDict':
            return OrderedDict
        if module == 'torch' and name in _STORAGE_DTYPES:
            return getattr(torch, name)
        if module == 'torch.jit._pickle' and name in _JIT_PICKLE_HELPERS:
            import torch.jit._pickle as jit_pickle
            return getattr(jit_pickle, name)
        if module == '__torch__' or module.startswith('__torch__.'):
            qualname = f'{module}.{name}'
            if qualname not in self._classes:
                self._classes[qualname] = type('ScriptObject', (_ScriptObject,),
                                               dict(qualname=qualname))
            return self._classes[qualname]
        raise _refuse(self._path, f'TorchScript data.pkl asks for the global '
                      f'{module}.{name}', self._opt_out)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage'
                and pid[1] in _STORAGE_CLASSES and isinstance(pid[2], str)):
            raise _refuse(self._path, f'TorchScript data.pkl has the persistent id {pid!r}',
                          self._opt_out)
        _, storage_class, key, _location, _numel = pid
        if key not in self._storages:
            record = f'{self._root}/data/{key}' if self._root else f'data/{key}'
            info = self._zf.getinfo(record)
            buf = bytearray(info.file_size)
            with self._zf.open(info) as f:
                f.readinto(buf)
            untyped = (torch.frombuffer(buf, dtype=torch.uint8).untyped_storage() if buf
                       else torch.UntypedStorage(0))
            self._storages[key] = torch.storage.TypedStorage(
                wrap_storage=untyped, dtype=_STORAGE_CLASSES[storage_class], _internal=True)
        return self._storages[key]


def _module_classes(zf: zipfile.ZipFile, root: str) -> Dict[str, Tuple[List[str], List[str]]]:
    """``{qualname: (parameter names, buffer names)}`` of the archive's module classes."""
    code = f'{root}/code/' if root else 'code/'
    out = {}
    for name in zf.namelist():
        if not (name.startswith(code) and name.endswith('.py')):
            continue
        module = name[len(code):-len('.py')].replace('/', '.')
        text = zf.read(name).decode('utf-8')
        for m in _MODULE_CLASS.finditer(text):
            params, buffers = (re.findall(r'"([^"]*)"', g) for g in m.group(2, 3))
            out[f'{module}.{m.group(1)}'] = (params, buffers)
    return out


def read_torchscript_state_dict(path: str, opt_out: Optional[str] = None
                                ) -> Dict[str, torch.Tensor]:
    """``torch.jit.load(path).state_dict()`` without running the archive (see the module
    docstring).

    Raises:
        vlp.engine.checkpoint.UnsafeCheckpointError: ``data.pkl`` names another global,
            or a module pickles a custom state (its ``__setstate__`` would have to run).
        ValueError: a module class without a definition in ``code/``, a foreign byte
            order, an archive older than torch 1.4.
    """
    root = torchscript_root(path)
    if root is None:
        raise ValueError(f'{path} is not a TorchScript archive')
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        prefix = f'{root}/' if root else ''
        if f'{prefix}data.pkl' not in names:
            raise ValueError(f'{path}: a TorchScript archive without data.pkl (a format older '
                             'than torch 1.4); convert it with a trusted torch.jit.load')
        if f'{prefix}byteorder' in names:
            order = zf.read(f'{prefix}byteorder').decode().strip()
            if order != sys.byteorder:
                raise ValueError(f'{path}: a {order}-endian archive on a {sys.byteorder}-'
                                 'endian machine')
        modules = _module_classes(zf, root)
        with zf.open(f'{prefix}data.pkl') as f:
            top = _RestrictedUnpickler(f, zf, root, path, opt_out).load()

    out: Dict[str, torch.Tensor] = OrderedDict()

    def collect(obj: _ScriptObject, key_prefix: str) -> None:
        spec = modules.get(obj.qualname)
        if spec is None:
            raise ValueError(f'{path}: the TorchScript class {obj.qualname} has no module '
                             'definition (__parameters__ / __buffers__) in the archive code')
        state = getattr(obj, 'state', None)
        if not isinstance(state, dict):
            raise _refuse(path, f'the TorchScript module {obj.qualname} pickles a custom '
                          'state (__getstate__): reading its weights would run its '
                          '__setstate__ code', opt_out)
        params, buffers = spec
        for name in params + buffers:
            value = state.get(name)
            if isinstance(value, torch.Tensor):
                out[key_prefix + name] = value.detach()
        for name, value in state.items():
            if isinstance(value, _ScriptObject) and value.qualname in modules:
                collect(value, f'{key_prefix}{name}.')

    if not isinstance(top, _ScriptObject):
        raise ValueError(f'{path}: data.pkl does not hold a TorchScript module')
    collect(top, '')
    return out
