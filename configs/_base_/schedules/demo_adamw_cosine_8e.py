# The task demos' fine-tuning schedule: AdamW lr 5e-4, weight decay 0.02 (none on norms and
# biases), gradients clipped at 1; a warm-up epoch then cosine decay to 1e-5 over 8 epochs,
# batch 64; evaluated once, at the end.
max_epochs = 8
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.02),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=64, enable=False)
