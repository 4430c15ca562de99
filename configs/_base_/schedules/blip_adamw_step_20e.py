# BLIP's pre-training schedule (Li et al. 2022, Sec. 4.1):
# 20 epochs, AdamW (weight decay 0.05), lr warmed up to 3e-4 then decayed by 0.85 per
# epoch, batch 2880 (e.g. 90 x 32 GPUs).
max_epochs = 20
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=3e-4, weight_decay=0.05),
    # bypass_duplicate: the decoder shares modules with the encoder and the LM head its
    # output matrix with the word embeddings
    paramwise_cfg=dict(bypass_duplicate=True))
param_scheduler = [
    # warm-up 1e-6 -> 3e-4 over the first 3,000 iterations (BLIP: warmup_steps 3000)
    dict(type='LinearLR', start_factor=1e-6 / 3e-4, by_epoch=False, begin=0, end=3000),
    # then x0.85 per epoch (BLIP's step_lr_schedule, lr_decay_rate 0.85)
    dict(type='ExponentialLR', gamma=0.85, by_epoch=True, begin=1, end=max_epochs),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=2880, enable=False)
