"""Device-aware distributed setup: the same launch works on GPUs (nccl) and on CPUs (gloo).

mmengine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally, so a
``torchrun`` launch on a machine without CUDA fails before the runner exists. The tools
(``tools/train.py``, ``tools/test.py``) and :class:`~vlp.engine.strategies.DeepSpeedStrategy`
initialise the process group through :func:`init_dist` here; mmengine's runners then see
an initialised group and skip their own call.

The backend name ``'auto'`` (the default in ``configs/_base_/default_runtime.py``) means
``nccl`` when CUDA is available and ``gloo`` otherwise.
"""
import datetime
import os
import socket
import subprocess
from typing import Optional

import torch
import torch.distributed as torch_dist

AUTO_BACKEND = 'auto'


def cuda_available() -> bool:
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def default_backend() -> str:
    """``nccl`` on CUDA machines, ``gloo`` otherwise."""
    return 'nccl' if cuda_available() else 'gloo'


def resolve_backend(backend: Optional[str]) -> str:
    """Turn ``None``/``'auto'`` into the device's backend; ``nccl`` without CUDA -> ``gloo``."""
    if backend in (None, AUTO_BACKEND):
        return default_backend()
    if backend == 'nccl' and not cuda_available():
        return 'gloo'
    return backend


def setup_deepspeed_accelerator_env() -> None:
    """Set ``DS_ACCELERATOR=cpu`` when CUDA is absent (no-op when already set).

    DeepSpeed resolves its accelerator once, on first use (``import mmengine.runner``
    imports deepspeed); the entry points call this before anything imports deepspeed.
    """
    if 'DS_ACCELERATOR' not in os.environ and not cuda_available():
        os.environ['DS_ACCELERATOR'] = 'cpu'


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _slurm_env(port: Optional[int]) -> None:
    """Translate SLURM variables into torch's env:// variables (as mmengine does)."""
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    node_list = os.environ['SLURM_NODELIST']
    local_rank = os.environ.get('SLURM_LOCALID')
    if local_rank is None:
        ngpus = max(torch.cuda.device_count(), 1)
        local_rank = str(proc_id % ngpus)
    addr = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ.setdefault('MASTER_ADDR', addr)
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['LOCAL_RANK'] = local_rank
    os.environ['RANK'] = str(proc_id)


def init_dist(launcher: str,
              backend: Optional[str] = AUTO_BACKEND,
              init_backend: str = 'torch',
              **kwargs) -> str:
    """Initialise the default process group for ``launcher`` on whatever device exists.

    Args:
        launcher: ``'pytorch'`` (torchrun), ``'slurm'``, ``'mpi'``, or ``'none'`` for a
            one-process group (rank 0 of 1) on a free local port.
        backend: ``'auto'``/``None`` (device's default), ``'nccl'`` (falls back to gloo
            without CUDA), ``'gloo'``...
        init_backend: ``'torch'`` (``init_process_group``) or ``'deepspeed'``
            (``deepspeed.init_distributed``).
        kwargs: ``timeout`` in seconds (or a ``timedelta``): the default group's and,
            through :func:`set_default_group_timeout`, that of every group created later
            without one (DeepSpeed's); ``port`` for slurm; the rest goes to the init call.

    Returns:
        the backend used.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_backend()
    backend = resolve_backend(backend)
    timeout = to_timedelta(kwargs.pop('timeout', None))
    if timeout is not None:
        kwargs['timeout'] = timeout
    port = kwargs.pop('port', None)
    if launcher == 'slurm':
        _slurm_env(port)
    elif launcher == 'mpi':
        os.environ.setdefault('MASTER_PORT', '29500')
        os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
        os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
        os.environ['LOCAL_RANK'] = os.environ['OMPI_COMM_WORLD_LOCAL_RANK']
    elif launcher in ('none', None):
        # a one-process group for libraries that insist on one (DeepSpeed), set up
        # without RANK/WORLD_SIZE so mmengine does not infer a launcher from them
        kwargs.setdefault('init_method', f'tcp://127.0.0.1:{_free_port()}')
        kwargs.setdefault('rank', 0)
        kwargs.setdefault('world_size', 1)
        os.environ.setdefault('LOCAL_RANK', '0')  # DeepSpeed reads it
    elif launcher != 'pytorch':
        raise ValueError(f'Invalid launcher {launcher!r}: expected pytorch, slurm or mpi')

    if cuda_available():
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
    if init_backend == 'torch':
        torch_dist.init_process_group(backend=backend, **kwargs)
    elif init_backend == 'deepspeed':
        import deepspeed
        if launcher in ('none', None):
            # deepspeed wraps an existing torch group
            torch_dist.init_process_group(backend=backend, **kwargs)
            deepspeed.init_distributed(dist_backend=backend)
        else:
            deepspeed.init_distributed(dist_backend=backend, **kwargs)
    else:
        raise ValueError(f'init_backend must be torch or deepspeed, got {init_backend!r}')
    if timeout is not None:
        set_default_group_timeout(timeout)
    return backend


def to_timedelta(timeout) -> Optional[datetime.timedelta]:
    """``env_cfg.dist_cfg.timeout`` (seconds, or a ``timedelta``) as a ``timedelta``."""
    if timeout is None or isinstance(timeout, datetime.timedelta):
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f'env_cfg.dist_cfg.timeout must be a positive number of seconds, '
                         f'got {timeout!r}')
    return datetime.timedelta(seconds=timeout)


def set_default_group_timeout(timeout: datetime.timedelta) -> None:
    """Make ``timeout`` the timeout of process groups created later without one.

    torch gives a group made by ``new_group()`` without a ``timeout`` the library default
    (30 min; 10 min for nccl), not the timeout of the default group. DeepSpeed makes its
    data-parallel group that way (``deepspeed.utils.groups._clone_world_group``) and ZeRO
    reduces and gathers on it, so with ``env_cfg.dist_cfg.timeout=60`` a stalled rank
    held its peers in ZeRO's all-gather for up to 30 min. torch reads the default from
    ``distributed_c10d``'s module globals at group creation (``_get_default_timeout``).
    """
    import torch.distributed.distributed_c10d as c10d
    c10d.default_pg_timeout = timeout
    if getattr(c10d, 'default_pg_nccl_timeout', None) is not None:
        c10d.default_pg_nccl_timeout = timeout
