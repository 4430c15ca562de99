# The VQA-classifier demos' schedule (ViLT's fine-tuning recipe at toy scale; ViLT and VLMo
# fine-tune alike): AdamW lr 5e-4, weight decay 0.01 (none on norms and biases), the task
# head at 10x the backbone's rate (ViLT's lr_mult), gradients clipped at 1; a warm-up epoch
# (ViLT: 10% of the steps) then linear decay to 0 over 8 epochs, batch 64; evaluated once,
# at the end.
max_epochs = 8
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       custom_keys={'head.': dict(lr_mult=10.0)}),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=True, begin=1,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=64, enable=False)
