# Runtime shared by every vlp config: registry scope, hooks, logging, environment.
default_scope = 'vlp'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # by_epoch follows the schedule: iteration-based schedules set by_epoch=False
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # python/numpy/torch/cuda RNG states in every checkpoint, restored on --resume.
    # A default hook (not a custom one) so configs that set custom_hooks keep it.
    rng_state=dict(type='RNGStateHook'),
    # samples skipped by the data pipeline, logged per epoch / validation / test
    data_skips=dict(type='DataSkipReportHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # 'auto': nccl when CUDA is available, gloo otherwise (vlp.engine.dist.init_dist,
    # used by tools/train.py, tools/test.py and the DeepSpeed strategy)
    dist_cfg=dict(backend='auto'),
)

vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends, name='visualizer')

# epoch-based by default (the papers' schedules); iteration-based schedules override
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)
log_level = 'INFO'

load_from = None
resume = False

randomness = dict(seed=0, diff_rank_seed=False, deterministic=False)
