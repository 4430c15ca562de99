# ALIGN's schedule (Jia et al. 2021, Sec. 5): LAMB, weight decay 1e-5, lr warmed up linearly
# from 0 to 1e-3 over 10k steps then decayed linearly to 0 at 1.2M steps (~12 epochs of the
# 1.8B-pair corpus), global batch 16,384 (16 pairs x 1024 TPUv3 cores).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Lamb', lr=1e-3, weight_decay=1e-5),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       custom_keys={'logit_scale': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=10_000),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=False, begin=10_000,
         end=1_200_000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1_200_000, val_interval=50_000)
auto_scale_lr = dict(base_batch_size=16384, enable=False)
