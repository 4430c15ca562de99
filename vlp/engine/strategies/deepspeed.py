"""Device-aware DeepSpeed strategy for mmengine's FlexibleRunner (GPU and CPU).

mmengine 0.10.7's ``DeepSpeedStrategy`` calls ``torch.cuda.set_device`` while setting up
the process group and so cannot start on a machine without CUDA. This subclass, registered
in vlp's ``STRATEGIES`` under the same name (configs write
``strategy=dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=2), ...)``):

- sets up the group through :func:`vlp.engine.dist.init_dist`: nccl on CUDA, gloo on CPU
  (with ``DS_ACCELERATOR=cpu``, set on import when CUDA is absent), and a one-process group
  when launched without a launcher (world size 1);
- supports ZeRO stages 0-3, bf16 and fp16 (fp16 where the device supports it: a clear
  error otherwise), ``gradient_clipping`` and ``gradient_accumulation_steps``; an
  ``optim_wrapper`` written for mmengine's ``OptimWrapper`` (``clip_grad``,
  ``accumulative_counts``) is translated to the DeepSpeed equivalents;
- casts only the floating-point model inputs to the engine's half dtype (mmengine casts
  every tensor under the listed keys, token ids included);
- calls the runner's checkpoint callbacks (``before_save_checkpoint`` /
  ``after_load_checkpoint`` hooks: RNG states, feature queues...) which mmengine's skips;
- works around two incompatibilities of the installed versions (see
  :mod:`~vlp.engine.strategies.deepspeed_compat`): mmengine registering DeepSpeed's
  removed 1-bit optimizers, and DeepSpeed's parameter broadcasts failing on 0-dim
  parameters (CLIP's ``logit_scale``);
- reads DeepSpeed checkpoints weights-only: the engine's files through
  :class:`WeightsOnlyCheckpointEngine`, the ZeRO consolidation of ``load_from`` through
  :func:`~vlp.engine.checkpoint.read_deepspeed_state_dict` (DeepSpeed itself, engine and
  ``zero_to_fp32`` alike, unpickles them with ``weights_only=False``); DeepSpeed's
  universal checkpoints, which its ZeRO code reads with ``weights_only=False`` outside the
  checkpoint engine, are refused;
- ``load_from`` takes a DeepSpeed checkpoint directory of any ZeRO stage or a plain
  weights file (loaded weights-only; ZeRO-3 parameters are gathered to load it).

Activation checkpointing needs no DeepSpeed config: models switch it on themselves
(``grad_checkpointing=True`` -> ``VLPModel.set_grad_checkpointing``).
"""
import importlib
import os
import os.path as osp
import shutil
from typing import Callable, Dict, List, Optional, Union

from vlp.engine.dist import init_dist, setup_deepspeed_accelerator_env

setup_deepspeed_accelerator_env()  # before deepspeed resolves its accelerator

import deepspeed  # noqa: E402
import torch  # noqa: E402
import torch.distributed as torch_dist  # noqa: E402
import torch.nn as nn  # noqa: E402
from deepspeed.accelerator import get_accelerator  # noqa: E402
from deepspeed.runtime.checkpoint_engine import TorchCheckpointEngine  # noqa: E402
from mmengine._strategy.deepspeed import DeepSpeedStrategy as MMDeepSpeedStrategy  # noqa: E402
from mmengine._strategy.deepspeed import MMDeepSpeedEngineWrapper  # noqa: E402
from mmengine.optim import BaseOptimWrapper  # noqa: E402
from mmengine.utils import apply_to  # noqa: E402

from vlp.engine.checkpoint import (deepspeed_model_states_file,  # noqa: E402
                                   deepspeed_safe_globals, read_deepspeed_state_dict,
                                   safe_load)
from vlp.engine.safe_io import atomic_torch_save, fsync_dir, temp_name  # noqa: E402
from vlp.engine.strategies import deepspeed_compat  # noqa: E402,F401  (patches on import)
from vlp.registry import MODEL_WRAPPERS, STRATEGIES  # noqa: E402

# Non-tensor objects DeepSpeed writes into its checkpoint files (see vlp.engine.checkpoint)
DEEPSPEED_SAFE_GLOBALS = deepspeed_safe_globals()


class WeightsOnlyCheckpointEngine(TorchCheckpointEngine):
    """DeepSpeed's torch checkpoint engine, but reading weights-only with a scoped
    allow-list (mmengine's classes + :data:`DEEPSPEED_SAFE_GLOBALS` + ``extra``)
    instead of DeepSpeed's ``torch.load(weights_only=False)``."""

    def __init__(self, config_params=None, extra_safe_globals: Optional[list] = None):
        super().__init__(config_params)
        self.extra_safe_globals = DEEPSPEED_SAFE_GLOBALS + list(extra_safe_globals or [])

    def load(self, path: str, map_location=None):
        return safe_load(path, map_location=map_location,
                         extra_safe_globals=self.extra_safe_globals)

    def save(self, state_dict, path: str):
        """Each file written under a temporary name and renamed (a full disk names the
        file and the bytes it needed); the directory is renamed when complete
        (:meth:`DeepSpeedStrategy.save_checkpoint`)."""
        atomic_torch_save(state_dict, path)


def _plain(obj):
    """ConfigDicts -> dicts (DeepSpeed pickles its config into every checkpoint)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


@MODEL_WRAPPERS.register_module()
class VLPDeepSpeedEngineWrapper(MMDeepSpeedEngineWrapper):
    """mmengine's engine wrapper, but half-casting only floating-point inputs and logging
    DeepSpeed's global gradient norm of the latest optimizer step (``grad_norm``)."""

    def train_step(self, data, optim_wrapper) -> Dict[str, torch.Tensor]:
        log_vars = super().train_step(data, optim_wrapper)
        norm = self.model.get_global_grad_norm()  # of the latest optimizer step
        if norm is not None:
            log_vars['grad_norm'] = float(norm)
        return log_vars

    def _cast_inputs_half(self, inputs):
        if self._inputs_to_half is None:
            return inputs
        dtype = next(self.model.parameters()).dtype

        def cast(x):
            return apply_to(x, lambda t: torch.is_tensor(t) and t.is_floating_point(),
                            lambda t: t.to(dtype))

        if isinstance(inputs, dict):
            return {k: cast(v) if k in self._inputs_to_half else v for k, v in inputs.items()}
        if isinstance(inputs, (list, tuple)):
            return type(inputs)(cast(v) if i in self._inputs_to_half else v
                                for i, v in enumerate(inputs))
        raise TypeError(f'inputs should be a list, tuple or dict, got {type(inputs)}')


@STRATEGIES.register_module(name='DeepSpeedStrategy')
class DeepSpeedStrategy(MMDeepSpeedStrategy):
    """DeepSpeed through mmengine's FlexibleRunner, on CUDA (nccl) or CPU (gloo).

    Args: those of mmengine's ``DeepSpeedStrategy`` (``config``, ``zero_optimization``,
        ``gradient_clipping``, ``fp16``, ``bf16``, ``inputs_to_half``,
        ``gradient_accumulation_steps``, ...). ``inputs_to_half`` defaults to
        ``['inputs']`` when fp16/bf16 is on (the floating tensors of the preprocessed
        ``inputs`` dict: images).
        safe_globals: extra classes (or ``'module.Class'`` strings) allowed when reading
            DeepSpeed checkpoints weights-only, for DeepSpeed features that pickle other
            objects than the known ones.
    """

    def __init__(self, *, fp16: Optional[dict] = None, bf16: Optional[dict] = None,
                 inputs_to_half: Optional[List[Union[int, str]]] = None,
                 safe_globals: Optional[list] = None, **kwargs):
        self.safe_globals = [_import_global(g) if isinstance(g, str) else g
                             for g in (safe_globals or [])]
        config = self._parse_config(kwargs.get('config'))
        fp16_on = (fp16 or config.get('fp16') or {}).get('enabled', False)
        bf16_on = (bf16 or config.get('bf16') or {}).get('enabled', False)
        if fp16_on and bf16_on:
            raise ValueError('DeepSpeedStrategy: enable fp16 or bf16, not both')
        if fp16_on and not get_accelerator().is_fp16_supported():
            raise ValueError(
                f'DeepSpeed fp16 is not supported on this device '
                f'({get_accelerator().device_name()}): use bf16=dict(enabled=True) '
                'or train on a GPU')
        if bf16_on and not get_accelerator().is_bf16_supported():
            raise ValueError(f'DeepSpeed bf16 is not supported on this device '
                             f'({get_accelerator().device_name()}): use fp16 or fp32')
        if inputs_to_half is None and (fp16_on or bf16_on):
            inputs_to_half = ['inputs']
        super().__init__(fp16=fp16, bf16=bf16, inputs_to_half=inputs_to_half, **kwargs)

    # -- distributed setup ---------------------------------------------------------------
    def _setup_distributed(self, launcher: Optional[str] = None, backend: str = 'auto',
                           **kwargs) -> None:
        init_dist(launcher, backend, init_backend='deepspeed', **kwargs)

    def _ensure_process_group(self) -> None:
        """DeepSpeed needs a process group even for one process."""
        if not (torch_dist.is_available() and torch_dist.is_initialized()):
            dist_cfg = dict(self._env_kwargs.get('dist_cfg') or {})
            init_dist('none', dist_cfg.pop('backend', 'auto'), init_backend='deepspeed',
                      **dist_cfg)

    # -- building --------------------------------------------------------------------------
    def build_optim_wrapper(self, optim_wrapper, model=None) -> BaseOptimWrapper:
        if isinstance(optim_wrapper, dict):
            optim_wrapper = optim_wrapper.copy()
            wrapper_type = optim_wrapper.get('type', 'OptimWrapper')
            name = wrapper_type if isinstance(wrapper_type, str) else wrapper_type.__name__
            if name in ('AmpOptimWrapper', 'ApexOptimWrapper'):
                raise ValueError(f'{name} does not combine with DeepSpeed: set the strategy\'s '
                                 'bf16=dict(enabled=True) or fp16=dict(enabled=True)')
            if name == 'OptimWrapper':
                optim_wrapper['type'] = 'DeepSpeedOptimWrapper'
            clip_grad = optim_wrapper.pop('clip_grad', None)
            if clip_grad:
                if clip_grad.get('type', 'norm') != 'norm':
                    raise ValueError('DeepSpeed clips by global norm only (gradient_clipping)')
                self.config.setdefault('gradient_clipping', clip_grad['max_norm'])
            counts = optim_wrapper.pop('accumulative_counts', None)
            if counts is not None and counts > 1:
                if self.config.get('gradient_accumulation_steps', 1) not in (1, counts):
                    raise ValueError('accumulative_counts and gradient_accumulation_steps '
                                     'disagree')
                self.config['gradient_accumulation_steps'] = counts
        return super().build_optim_wrapper(optim_wrapper, model)

    def _wrap_model(self, model: nn.Module) -> nn.Module:
        self._ensure_process_group()
        config = _plain(self.config)
        if hasattr(self, 'optim_wrapper'):
            engine, self.optim_wrapper.optimizer, *_ = deepspeed.initialize(
                model=model, optimizer=self.optim_wrapper.optimizer, config=config)
        else:
            # evaluation only: ZeRO-1/2 partition optimizer states and gradients, which do
            # not exist here, and DeepSpeed refuses them without an optimizer
            zero = dict(config.get('zero_optimization') or {})
            if zero.get('stage', 0) in (1, 2):
                config['zero_optimization'] = dict(zero, stage=0)
            engine, *_ = deepspeed.initialize(model=model, config=config)
        if type(getattr(engine, 'checkpoint_engine', None)) is TorchCheckpointEngine:
            engine.checkpoint_engine = WeightsOnlyCheckpointEngine(engine._config,
                                                                   self.safe_globals)
        return VLPDeepSpeedEngineWrapper(model=engine, inputs_to_half=self._inputs_to_half)

    # -- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, filename: str, *, save_optimizer: bool = True,
                        save_param_scheduler: bool = True, extra_ckpt: Optional[dict] = None,
                        callback: Optional[Callable] = None) -> None:
        """As mmengine's (a DeepSpeed checkpoint directory ``filename``), plus the
        ``before_save_checkpoint`` callback on the client state."""
        extra_ckpt = dict() if extra_ckpt is None else extra_ckpt
        if callback is not None:
            callback(extra_ckpt)
        # Every rank writes its files into one temporary directory; when all are done, rank 0
        # renames it to ``filename`` (a kill or a full disk before that leaves the previous
        # checkpoints as they were, and the temporary is never picked by --resume).
        final = osp.abspath(filename)
        tmp = temp_name(final, unique=False)
        if torch_dist.get_rank() == 0 and osp.isdir(tmp):
            shutil.rmtree(tmp)  # left by an interrupted save of the same name
        torch_dist.barrier()
        try:
            super().save_checkpoint(tmp, save_optimizer=save_optimizer,
                                    save_param_scheduler=save_param_scheduler,
                                    extra_ckpt=extra_ckpt)
        finally:
            torch_dist.barrier()  # every rank's part written (or failed)
        if torch_dist.get_rank() == 0:
            old = None
            if osp.exists(final):  # a re-save of the same name: move the old one aside first
                old = temp_name(final + '.old')
                os.replace(final, old)
            os.replace(tmp, final)
            fsync_dir(osp.dirname(final))
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        torch_dist.barrier()

    def resume(self, filename: str, *, resume_optimizer: bool = True,
               resume_param_scheduler: bool = True, map_location='default',
               callback: Optional[Callable] = None) -> dict:
        """Load model, ZeRO optimizer partitions, optimizer wrapper, schedulers and the
        client state (meta, message hub, hook states) of a DeepSpeed checkpoint."""
        self.logger.info(f'Resume checkpoint from {filename}')
        self._refuse_universal_checkpoints()
        dirname, tag = osp.split(osp.abspath(filename))
        _, extra_ckpt = self.model.load_checkpoint(
            dirname, tag=tag, load_optimizer_states=resume_optimizer,
            load_module_strict=not self.exclude_frozen_parameters)
        if extra_ckpt is None:
            raise FileNotFoundError(f'no DeepSpeed checkpoint at {filename}')
        if callback is not None:
            callback(extra_ckpt)
        if resume_optimizer and 'optim_wrapper' in extra_ckpt:
            self.load_optim_state_dict(extra_ckpt.pop('optim_wrapper'))
        if resume_param_scheduler and hasattr(self, 'param_schedulers') and \
                'param_schedulers' in extra_ckpt:
            self.load_scheduler_state_dict(extra_ckpt.pop('param_schedulers'))
        resumed_seed = extra_ckpt.get('meta', {}).get('seed')
        if resumed_seed is not None and resumed_seed != self._randomness.get('seed'):
            if self._randomness.get('seed') is not None:
                self.logger.warning(f'The random seed in the checkpoint ({resumed_seed}) '
                                    f'differs from the config ({self._randomness["seed"]})')
            self._randomness.update(seed=resumed_seed)
            self._set_randomness(**self._randomness)
        return extra_ckpt

    def load_checkpoint(self, filename: str, *, map_location='cpu', strict: bool = False,
                        revise_keys: list = [(r'^module.', '')],
                        callback: Optional[Callable] = None) -> dict:
        """Load weights from a DeepSpeed checkpoint directory or a weights file
        (``state_dict`` inside, or the state dict itself; read weights-only)."""
        self.logger.info(f'Load checkpoint from {filename}')
        if not osp.isdir(filename):
            extra_ckpt = safe_load(filename, map_location='cpu')
            if callback is not None:
                callback(extra_ckpt)
            state_dict = extra_ckpt.get('state_dict', extra_ckpt)
            self._load_weights(state_dict, strict=strict, revise_keys=revise_keys)
            return extra_ckpt

        self._refuse_universal_checkpoints()
        dirname, tag = osp.split(osp.abspath(filename))
        engine = self.model.model
        full_states = osp.join(filename, 'mp_rank_00_model_states.pt')
        if engine.zero_optimization_partition_weights() or not osp.isfile(full_states):
            # A ZeRO-3 engine or checkpoint: DeepSpeed's own module-only load looks for a
            # 'latest' file (which mmengine's tag-named checkpoints do not write) and would
            # read the wrong tag if one existed. Consolidate this tag's fp32 weights instead,
            # weights-only (DeepSpeed's zero_to_fp32 alone would unpickle them fully).
            state_dict = read_deepspeed_state_dict(filename)
            self._load_weights(state_dict, strict=strict, revise_keys=revise_keys)
            extra_ckpt = safe_load(deepspeed_model_states_file(filename), map_location='cpu',
                                   extra_safe_globals=DEEPSPEED_SAFE_GLOBALS)
            extra_ckpt.pop('module', None)
        else:
            _, extra_ckpt = self.model.load_checkpoint(
                dirname, tag=tag, load_optimizer_states=False,
                load_lr_scheduler_states=False, load_module_only=True,
                load_module_strict=strict and not self.exclude_frozen_parameters)
            extra_ckpt = extra_ckpt or {}
        if callback is not None:
            callback(extra_ckpt)
        return extra_ckpt

    def _refuse_universal_checkpoints(self) -> None:
        """DeepSpeed reads universal checkpoints (``checkpoint.load_universal``) with
        ``torch.load(weights_only=False)`` in its ZeRO code, past the checkpoint engine."""
        if self.model.model.load_universal_checkpoint():
            raise ValueError(
                'DeepSpeed universal checkpoints (checkpoint=dict(load_universal=True) in the '
                'DeepSpeed config) are unpickled by DeepSpeed with weights_only=False, which '
                'can run code from the files: vlp does not load them. Load the DeepSpeed '
                'checkpoint directory the run wrote instead.')

    def _load_weights(self, state_dict: dict, strict: bool, revise_keys: list) -> None:
        """Load a full state dict into the engine's module; under ZeRO-3 the partitioned
        parameters are gathered, filled on rank 0 and re-partitioned."""
        from mmengine.runner.checkpoint import _load_checkpoint_to_model
        engine = self.model.model
        module = engine.module
        if engine.zero_optimization_partition_weights():
            params = list(module.parameters())
            with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
                if torch_dist.get_rank() == 0:
                    _load_checkpoint_to_model(module, dict(state_dict=state_dict), strict,
                                              revise_keys)
        else:
            _load_checkpoint_to_model(module, dict(state_dict=state_dict), strict, revise_keys)
            # ZeRO-1/2 keep fp32 master copies of the weights: refresh them
            optimizer = getattr(engine, 'optimizer', None)
            if optimizer is not None and hasattr(optimizer, 'refresh_fp32_params'):
                optimizer.refresh_fp32_params()


def _import_global(path: str):
    module, _, name = path.rpartition('.')
    return getattr(importlib.import_module(module), name)


__all__ = ['DeepSpeedStrategy', 'VLPDeepSpeedEngineWrapper', 'WeightsOnlyCheckpointEngine']
