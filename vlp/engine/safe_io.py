"""Writes that a kill or a full disk cannot leave half-done.

Every file is written to a temporary name in its own folder, flushed and ``fsync``-ed, then
renamed over the final name (``os.replace``, atomic on POSIX), and the folder is ``fsync``-ed
so the rename survives a power cut. A reader therefore sees the old complete file or the new
complete file, never a prefix of one. A write that fails (no space left, quota, I/O error)
removes its temporary file, leaves any previous file of that name untouched and raises an
``OSError`` naming the file, the bytes it needed and the bytes free.

Importing :mod:`vlp.engine` registers :class:`AtomicLocalBackend` as mmengine's backend for
local paths, so every ``put`` / ``put_text`` mmengine makes (checkpoints of ``Runner``,
``dump`` of the test metrics) goes through :func:`atomic_write_bytes`. DeepSpeed checkpoint
files go through :func:`atomic_torch_save` (vlp's DeepSpeed checkpoint engine), and the
DeepSpeed checkpoint *directory* is made under a temporary name and renamed when every rank
has written its part (``vlp.engine.strategies.deepspeed``).
"""
import errno
import io
import os
import os.path as osp
import shutil
from typing import Union

import torch
from mmengine.fileio.backends import LocalBackend, register_backend

PathLike = Union[str, os.PathLike]
_TMP_TAG = '.partial'


def temp_name(path: PathLike, unique: bool = True) -> str:
    """The temporary sibling of ``path``: hidden, unique to this process (``unique``) or
    the same on every rank (a directory all ranks write into)."""
    folder, name = osp.split(osp.abspath(str(path).rstrip(os.sep)))
    return osp.join(folder, f'.{name}{_TMP_TAG}{os.getpid() if unique else ""}')


def is_temp_name(name: str) -> bool:
    return name.startswith('.') and _TMP_TAG in name


def fsync_dir(folder: PathLike) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def disk_full_error(path: PathLike, needed: int, exc: OSError) -> OSError:
    """An ``OSError`` (same errno) that says which file, how many bytes, how many free."""
    folder = osp.dirname(osp.abspath(path)) or '.'
    try:
        free = shutil.disk_usage(folder).free
        free_txt = f'{free:,} bytes free in {folder}'
    except OSError:
        free_txt = f'free space of {folder} unknown'
    err = OSError(exc.errno, f'{os.strerror(exc.errno or errno.EIO)}: could not write {path} '
                  f'({needed:,} bytes needed, {free_txt}); nothing was replaced. Free space '
                  'or point work_dir / the checkpoint out_dir elsewhere, then resume '
                  '(--resume picks the newest complete checkpoint).')
    err.filename = str(path)
    return err


def _write(path: PathLike, write, size_hint=None) -> None:
    path = osp.abspath(path)
    folder = osp.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # KeyboardInterrupt, SystemExit too: never leave the temp
        _remove_quietly(tmp)
        space = _out_of_space(exc)
        if space is not None:
            raise disk_full_error(path, size_hint() if size_hint else -1, space) from exc
        raise
    fsync_dir(folder)


def _out_of_space(exc: BaseException):
    """The ENOSPC / EDQUOT / EFBIG ``OSError`` in ``exc``'s chain (torch's zip writer
    raises a RuntimeError while handling the OSError of the write that failed)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    _write(path, lambda f: f.write(data), lambda: len(data))


def atomic_write_text(path: PathLike, text: str, encoding: str = 'utf-8') -> None:
    atomic_write_bytes(path, text.encode(encoding))


class _ByteCounter(io.RawIOBase):
    """A sink that counts what is written to it (the size of a serialisation)."""

    def __init__(self):
        self.n = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.n += len(b)
        return len(b)


def serialized_size(obj) -> int:
    """Bytes ``torch.save(obj)`` writes."""
    sink = _ByteCounter()
    torch.save(obj, sink)
    return sink.n


def atomic_torch_save(obj, path: PathLike) -> None:
    """``torch.save(obj, path)`` atomically; on a full disk the error gives the size."""
    _write(path, lambda f: torch.save(obj, f), lambda: serialized_size(obj))


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose writes are atomic (:func:`atomic_write_bytes`)."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write_text(filepath, obj, encoding)


def install_atomic_local_backend() -> None:
    """Make :class:`AtomicLocalBackend` mmengine's backend for local paths (idempotent)."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')


install_atomic_local_backend()
