# LLaVA-1.5's stage-1 schedule (Liu et al. 2023): 1 epoch, batch 256, AdamW lr 1e-3 with a
# 3% linear warm-up then cosine decay, no weight decay (LCS-558K / 256 = 2,180 steps).
max_epochs = 1
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0),
    # a paramwise_cfg makes mmengine skip requires_grad=False parameters
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
# 558K / 256 = 2,180 steps; warm-up 3%
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=65),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=65, end=2180),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=256, enable=False)
