"""Importing this package registers hooks, strategies and optimizer wrappers, and makes
mmengine read local checkpoints weights-only (:mod:`vlp.engine.checkpoint`)."""
from .dist import setup_deepspeed_accelerator_env

setup_deepspeed_accelerator_env()  # before anything resolves DeepSpeed's accelerator

from . import checkpoint, hooks, optim, runner, strategies  # noqa: E402,F401
