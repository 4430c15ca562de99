# BLIP-2's stage-1 schedule (Li et al. 2023): AdamW (0.9, 0.98), weight decay 0.05,
# peak lr 1e-4 after 2k linear warm-up steps from 1e-6, cosine decay, 250k steps at batch
# 1680 (ViT-g; e.g. 105 x 16 GPUs). Iteration-based: the config sets
# default_hooks.checkpoint / log_processor by_epoch=False.
max_iters = 250000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=1e-4, betas=(0.9, 0.98), weight_decay=0.05),
    # bypass_duplicate: the LM head's output matrix is the word embedding matrix
    paramwise_cfg=dict(bypass_duplicate=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 1e-4, by_epoch=False, begin=0, end=2000),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=2000, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10000)
auto_scale_lr = dict(base_batch_size=1680, enable=False)
