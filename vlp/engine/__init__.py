"""Importing this package registers hooks, strategies and optimizer wrappers, and makes
mmengine read local checkpoints weights-only (:mod:`vlp.engine.checkpoint`) and write local
files atomically (:mod:`vlp.engine.safe_io`)."""
from .dist import setup_deepspeed_accelerator_env

setup_deepspeed_accelerator_env()  # before anything resolves DeepSpeed's accelerator

from . import checkpoint, hooks, optim, runner, safe_io, strategies  # noqa: E402,F401
