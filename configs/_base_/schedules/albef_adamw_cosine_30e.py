# ALBEF's pre-training schedule (Li et al. 2021, 4M-image setting): 30 epochs, AdamW (lr
# 1e-4, weight decay 0.02; none on biases and norms, as timm's filter_bias_and_bn), lr
# warmed up from 1e-5 then cosine decay to 1e-5, batch 512 (64 x 8 GPUs).
max_epochs = 30
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=1e-4, weight_decay=0.02),
    # bypass_duplicate: the MLM decoder shares its weight with the word embeddings
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True))
param_scheduler = [
    # warm-up 1e-5 -> 1e-4 over the first 2,000 iterations (ALBEF: 20 steps of 100 its)
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2000),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=512, enable=False)
