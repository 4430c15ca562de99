"""Stage-wise pre-training inside one run (VLMo, Bao et al. 2022, Sec. 3.3: image-only, then
text-only with the self-attention and the vision experts frozen, then image-text).

:class:`StagewiseFreezeHook` switches the model's stage at configured iterations. The model
decides what a stage trains: ``model.set_stage(name)`` sets ``requires_grad`` (and picks
the stage's objectives); the hook then gives the run a new optimizer over exactly the
trainable parameters, so that **frozen parameters get no gradient and no optimizer
state**:

- the new optimizer comes from the config's ``optim_wrapper`` (its constructor and
  ``paramwise_cfg``, which skip frozen parameters) and replaces the old one inside the same
  optimizer wrapper; the param schedulers are re-bound to its groups, the scheduled values
  (``lr`` ...) continuing at the schedule's current factor;
- plain training (mmengine ``Runner``, optionally DDP): with ``reset_optimizer=False`` the
  parameters that stay trainable keep their state (default: every state restarts, each
  VLMo stage being its own pre-training run); a DDP wrapper is rebuilt, its reducer only
  knowing the trainable parameters; on resume, the stage of the resumed iteration is
  applied before the checkpoint's optimizer state is loaded;
- DeepSpeed ZeRO 0-2 (``FlexibleRunner``): ZeRO builds its flat fp32 partitions from the
  trainable parameters when the engine is built, so the hook builds a new engine on the
  same module (the old engine's gradient hooks removed), keeping the fp32 master weights;
  optimizer state restarts. ZeRO-3 partitions the parameters themselves, and DeepSpeed
  resumes before any hook runs: for those, run one config per stage (each starting from the
  previous stage's checkpoint), as the paper does.

mmengine's ``LinearLR`` / ``CosineAnnealingLR`` are chainable (each step rescales the
current value): give each stage its own ``WarmupCosineLR`` (closed form) with ``begin`` /
``end`` at the stage boundaries (configs/vlmo/vlmo_tiny_demo.py).
"""
import copy
from typing import List, Optional

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from vlp.registry import HOOKS


@HOOKS.register_module()
class StagewiseFreezeHook(Hook):
    """Switch the model's pre-training stage at given iterations.

    Args:
        stages: ``[dict(begin=0, stage='image'), dict(begin=N1, stage='text'), ...]``,
            ``begin`` in iterations, increasing from 0; ``stage`` a name the model's
            ``set_stage`` knows (VLMo: ``'image'``, ``'text'``, ``'image_text'``).
        reset_optimizer: restart every parameter's optimizer state at a switch (plain
            training; DeepSpeed always restarts it).
    """
    priority = 'VERY_HIGH'  # before the other hooks see the step

    def __init__(self, stages: List[dict], reset_optimizer: bool = True):
        if not stages:
            raise ValueError('StagewiseFreezeHook needs at least one stage')
        begins = [int(s['begin']) for s in stages]
        if begins[0] != 0 or begins != sorted(set(begins)):
            raise ValueError(f'stage begins must start at 0 and increase, got {begins}')
        self.stages = [dict(begin=int(s['begin']), stage=s['stage']) for s in stages]
        self.reset_optimizer = reset_optimizer

    def stage_at(self, it: int) -> str:
        current = self.stages[0]['stage']
        for s in self.stages:
            if it >= s['begin']:
                current = s['stage']
        return current

    def before_run(self, runner) -> None:
        model = _bare(runner.model)
        if not hasattr(model, 'set_stage'):
            raise TypeError(f'{type(model).__name__} has no set_stage(): StagewiseFreezeHook '
                            'needs a model with pre-training stages (VLMo)')
        if _deepspeed_engine(runner.model) is None and hasattr(runner, 'optim_wrapper') and \
                not isinstance(runner.optim_wrapper, dict):
            # mmengine's Runner resumes after before_run: give the optimizer the resumed
            # iteration's stage first, so that the checkpoint's optimizer state fits it
            it = _resume_iter(runner)
            if it is not None:
                self._switch(runner, self.stage_at(it), reset=True, it=it)

    def before_train(self, runner) -> None:
        # a fresh start or a resumed run: keep the (resumed) state of trainable parameters
        self._switch(runner, self.stage_at(runner.iter), reset=False)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if any(s['begin'] == runner.iter for s in self.stages):
            self._switch(runner, self.stage_at(runner.iter), reset=self.reset_optimizer)

    # -----------------------------------------------------------------------------------------
    def _switch(self, runner, stage: str, reset: bool, it: Optional[int] = None) -> None:
        model = _bare(runner.model)
        if getattr(model, 'stage', None) == stage and _optimizer_agrees(runner, model):
            return  # built in this stage (the model froze itself before any wrapper)
        model.set_stage(stage)
        if _deepspeed_engine(runner.model) is not None:
            _rebuild_deepspeed(runner, model)
        else:
            _rebuild_plain(runner, model, reset)
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        runner.logger.info(f'StagewiseFreezeHook: iteration {runner.iter if it is None else it}'
                           f': stage "{stage}", {n:,} of {total:,} parameters trainable')


def _bare(model: nn.Module) -> nn.Module:
    """The model inside DDP / DeepSpeed wrappers."""
    # class attributes only: DeepSpeed's engine forwards unknown attributes to its module
    while not hasattr(type(model), 'set_stage'):
        inner = getattr(model, 'module', None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, 'model', None)
        if not isinstance(inner, nn.Module):
            break
        model = inner
    return model


def _deepspeed_engine(model: nn.Module):
    from .momentum import find_deepspeed_engine
    return find_deepspeed_engine(model)


def _resume_iter(runner) -> Optional[int]:
    """The iteration the plain Runner is about to resume from, or ``None``."""
    if not runner._resume:
        return None
    from mmengine.runner import find_latest_checkpoint
    path = runner._load_from if isinstance(runner._load_from, str) and runner._load_from \
        else find_latest_checkpoint(runner.work_dir)
    if not path:
        return None
    from vlp.engine.checkpoint import safe_load
    return int(safe_load(path, map_location='cpu').get('meta', {}).get('iter', 0))


def _optimizer_agrees(runner, model: nn.Module) -> bool:
    """Whether the optimizer trains exactly the trainable parameters."""
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    engine = _deepspeed_engine(runner.model)
    if engine is not None:
        groups = getattr(engine.optimizer, 'bit16_groups', None)
        if groups is None:  # ZeRO-0: the torch optimizer itself
            groups = [g['params'] for g in engine.optimizer.param_groups]
        return {id(p) for g in groups for p in g} == trainable
    opt = runner.optim_wrapper.optimizer
    return {id(p) for g in opt.param_groups for p in g['params']} == trainable


def _carry_schedule(old_groups: list, new_groups: list) -> None:
    """Give the new groups the scheduled values at the schedule's current factor: for
    every ``initial_<key>`` of the old groups, ``new[key] = new_base * old[key] / old_base``
    (mmengine's schedulers scale every group by one factor)."""
    ref = old_groups[0]
    for key in [k[len('initial_'):] for k in ref if k.startswith('initial_')]:
        base = ref[f'initial_{key}']
        factor = ref[key] / base if base else 1.0
        for g in new_groups:
            g[f'initial_{key}'] = g[key]
            g[key] = g[key] * factor


def _rebind_schedulers(runner, param_groups: list) -> None:
    schedulers = runner.param_schedulers or []
    if isinstance(schedulers, dict):
        schedulers = [s for v in schedulers.values() for s in v]
    for s in schedulers:
        if isinstance(s, dict):  # not built yet (Runner.before_run on a dict config)
            continue
        s.base_values = [g[f'initial_{s.param_name}'] for g in param_groups]


def _optim_cfg(runner) -> dict:
    cfg = runner.cfg.get('optim_wrapper')
    if cfg is None or 'optimizer' not in cfg:
        raise RuntimeError('StagewiseFreezeHook rebuilds the optimizer from the config\'s '
                           'optim_wrapper (one optimizer; OptimWrapperDict is not supported)')
    return copy.deepcopy(cfg)


def _rebuild_plain(runner, model: nn.Module, reset: bool) -> None:
    from mmengine.optim import build_optim_wrapper
    wrapper = runner.optim_wrapper
    old = wrapper.optimizer
    new = build_optim_wrapper(model, _optim_cfg(runner)).optimizer
    _carry_schedule(old.param_groups, new.param_groups)
    if not reset:
        for g in new.param_groups:
            for p in g['params']:
                if p in old.state:
                    new.state[p] = old.state[p]
    for p in model.parameters():
        if not p.requires_grad:
            p.grad = None
    wrapper.optimizer = new
    _rebind_schedulers(runner, wrapper.param_groups)  # with mmengine's base-setting group
    if is_model_wrapper(runner.model) and hasattr(runner.model, 'reducer'):
        # DDP's reducer was built for the previous trainable set
        runner.model = runner.wrap_model(runner.cfg.get('model_wrapper_cfg'), model)


def _rebuild_deepspeed(runner, model: nn.Module) -> None:
    from deepspeed.utils import safe_get_full_fp32_param, safe_set_full_fp32_param
    strategy = runner.strategy
    old = _deepspeed_engine(runner.model)
    if old.zero_optimization_partition_weights():
        raise RuntimeError(
            'StagewiseFreezeHook cannot switch stages inside a ZeRO-3 run (the parameters '
            'are partitioned when the engine is built): run one config per stage, each '
            "loading the previous stage's checkpoint (configs/vlmo/vlmo_stage*.py)")
    params = [p for p in model.parameters() if p.requires_grad]
    master = {id(p): safe_get_full_fp32_param(p) for p in params}
    old_groups = [dict(g) for g in old.optimizer.param_groups]
    steps, samples = old.global_steps, old.global_samples
    old.destroy()  # removes ZeRO's gradient hooks from the module's parameters
    torch_opt = strategy.build_optim_wrapper(_optim_cfg(runner), model).optimizer
    _carry_schedule(old_groups, torch_opt.param_groups)
    strategy.optim_wrapper.optimizer = torch_opt
    strategy.model = strategy._wrap_model(model)
    strategy.optim_wrapper.model = strategy.model
    runner.model = strategy.model
    engine = _deepspeed_engine(strategy.model)
    engine.global_steps, engine.global_samples = steps, samples
    for p in params:
        if master[id(p)] is not None:
            safe_set_full_fp32_param(p, master[id(p)])
    _rebind_schedulers(runner, strategy.optim_wrapper.param_groups)


__all__ = ['StagewiseFreezeHook']
