"""What ``tools/train.py`` and ``tools/test.py`` share: device-aware process-group setup
and the choice between mmengine's ``Runner`` and ``FlexibleRunner``."""
from mmengine.config import Config, ConfigDict

from vlp.engine.dist import cuda_available, init_dist, resolve_backend
from vlp.engine.watchdog import start_watchdog, stop_watchdog


def uses_deepspeed(cfg: Config) -> bool:
    strategy = cfg.get('strategy')
    if not strategy:
        return False
    name = strategy['type'] if isinstance(strategy['type'], str) else strategy['type'].__name__
    return 'DeepSpeed' in name


# mmengine's runners accept ``None`` (= switched off) only for these default hooks
_MMENGINE_DEFAULT_HOOKS = ('runtime_info', 'timer', 'sampler_seed', 'logger',
                           'param_scheduler', 'checkpoint')


def prepare_launch(cfg: Config) -> Config:
    """Resolve ``env_cfg.dist_cfg.backend`` for this device, initialise the process group
    for ``cfg.launcher`` (mmengine's own init calls ``torch.cuda.set_device`` and fails on
    CPU; it is skipped once a group exists) and let DDP wrap CPU models. Extra default
    hooks set to ``None`` (``default_hooks.rng_state=None``) are dropped. ``compile``
    (``True`` or ``torch.compile`` keyword arguments) becomes a ``CompileHook`` that
    compiles the model's forward: mmengine's own compiles the whole ``train_step``, which
    fails inside the optimizer step under torch 2.14 (``vlp/engine/hooks/compile.py``)."""
    compile_cfg = cfg.get('compile')
    if compile_cfg:
        options = {} if compile_cfg is True else dict(compile_cfg)
        cfg.compile = None
        hooks = list(cfg.get('custom_hooks') or [])
        if not any(h.get('type') in ('CompileHook', 'vlp.CompileHook') for h in hooks):
            hooks.append(dict(type='CompileHook', options=options))
        cfg.custom_hooks = hooks
    train_cfg = cfg.get('train_cfg')
    if train_cfg and 'by_epoch' in train_cfg and 'type' not in train_cfg:
        # mmengine builds its own loop classes for the by_epoch form, bypassing the
        # registry: name the loop so vlp's (exact mid-epoch resume) is used
        by_epoch = train_cfg.pop('by_epoch')
        train_cfg['type'] = 'EpochBasedTrainLoop' if by_epoch else 'IterBasedTrainLoop'
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') in ('RunSummaryHook', 'vlp.RunSummaryHook') for h in hooks):
        cfg.custom_hooks = hooks + [dict(type='RunSummaryHook')]  # vlp/engine/summary.py
    for name, hook in list((cfg.get('default_hooks') or {}).items()):
        if hook is None and name not in _MMENGINE_DEFAULT_HOOKS:
            cfg.default_hooks.pop(name)
    if cfg.get('env_cfg') is None:
        cfg.env_cfg = ConfigDict(dist_cfg=dict(backend='auto'))
    dist_cfg = cfg.env_cfg.get('dist_cfg') or ConfigDict()
    dist_cfg['backend'] = resolve_backend(dist_cfg.get('backend', 'auto'))
    cfg.env_cfg['dist_cfg'] = dist_cfg

    launcher = cfg.get('launcher', 'none')
    if launcher != 'none':
        kwargs = {k: v for k, v in dist_cfg.items() if k != 'backend'}
        init_dist(launcher, dist_cfg['backend'],
                  init_backend='deepspeed' if uses_deepspeed(cfg) else 'torch', **kwargs)
        # a stalled or dead rank ends the job: a heartbeat thread per rank, stopped in
        # finish_launch (config `watchdog`; vlp/engine/watchdog.py)
        start_watchdog(cfg)
        if not cuda_available() and not cfg.get('strategy'):
            # mmengine passes device_ids=[LOCAL_RANK] to DDP, which is for GPU modules
            wrapper = cfg.get('model_wrapper_cfg') or ConfigDict(
                type='MMDistributedDataParallel', broadcast_buffers=False,
                find_unused_parameters=cfg.get('find_unused_parameters', False))
            wrapper.setdefault('device_ids', None)
            cfg.model_wrapper_cfg = wrapper
    return cfg


def build_runner(cfg: Config):
    """``runner_type`` if the config names one, else FlexibleRunner for a ``strategy``
    config and Runner otherwise."""
    from mmengine.registry import RUNNERS, init_default_scope
    from mmengine.runner import FlexibleRunner, Runner

    # FlexibleRunner builds its strategy before it sets the config's default scope, so
    # without this ``type='DeepSpeedStrategy'`` would resolve to mmengine's class
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    if cfg.get('strategy'):
        return FlexibleRunner.from_cfg(cfg)
    return Runner.from_cfg(cfg)


def finish_launch(cfg: Config) -> None:
    """After a launched (multi-process) run, leave the process group in order: a barrier,
    then ``destroy_process_group``. Exiting with a live gloo group can abort a rank at
    interpreter shutdown ('terminate called without an active exception') after its work
    is done. Runs without a launcher keep their one-process group (DeepSpeed caches it)."""
    import torch.distributed as torch_dist
    if cfg.get('launcher', 'none') == 'none':
        return
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()  # the watchdog still runs here: a rank stalled before it
        stop_watchdog()  # is reported; after it every rank is done (no false alarm)
        torch_dist.destroy_process_group()
