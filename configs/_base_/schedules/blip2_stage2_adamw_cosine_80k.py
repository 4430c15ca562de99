# BLIP-2's stage-2 schedule (Li et al. 2023): AdamW (0.9, 0.98), weight decay 0.05,
# lr 1e-4 after 2k linear warm-up steps from 1e-6, cosine decay to 5e-5, 80k steps at batch
# 1920 (OPT; e.g. 120 x 16 GPUs). Iteration-based: the config sets
# default_hooks.checkpoint / log_processor by_epoch=False.
max_iters = 80000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=1e-4, betas=(0.9, 0.98), weight_decay=0.05),
    # a paramwise_cfg makes mmengine skip requires_grad=False parameters (the frozen ViT
    # and LLM never enter the optimizer); no decay on norms and biases as LAVIS
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 1e-4, by_epoch=False, begin=0, end=2000),
    dict(type='CosineAnnealingLR', eta_min=5e-5, by_epoch=False, begin=2000, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10000)
auto_scale_lr = dict(base_batch_size=1920, enable=False)
