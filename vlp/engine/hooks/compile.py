"""``torch.compile`` of the model's forward for training.

mmengine's own ``compile=True`` compiles the whole ``train_step`` (data preprocessing,
forward, backward and the optimizer step in one function); under torch 2.14 dynamo fails
inside ``AdamW.step`` on mmengine's parameter groups. vlp maps a config's ``compile``
(``True`` or ``torch.compile`` keyword arguments) to this hook instead
(:func:`vlp.engine.launch.prepare_launch`): it compiles the forward of the model (inside
any DDP / DeepSpeed wrapper) before training, so the loss and its backward run compiled
and the optimizer step, hooks and data pipeline stay eager. Validation and test reuse
the compiled forward (a separate graph per ``mode``).
"""
from typing import Optional

import torch
from mmengine.hooks import Hook

from vlp.registry import HOOKS
from .zero_shot import unwrap_model


@HOOKS.register_module()
class CompileHook(Hook):
    """Replace the model's ``forward`` by ``torch.compile(forward, **options)`` before
    training (``options``: e.g. ``dict(mode='max-autotune')``, ``dict(dynamic=True)``;
    ``backend='eager'`` checks the tracing without code generation)."""

    priority = 'VERY_HIGH'

    def __init__(self, options: Optional[dict] = None):
        self.options = dict(options or {})

    def before_train(self, runner) -> None:
        model = unwrap_model(runner.model)
        if getattr(model, '_vlp_compiled', False):
            return
        model.forward = torch.compile(model.forward, **self.options)
        model._vlp_compiled = True
        runner.logger.info(f'CompileHook: compiled {type(model).__name__}.forward '
                           f'(options {self.options}); the first iterations are slow')
