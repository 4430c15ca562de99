# CLIP's schedule (Radford et al. 2021, Sec. 2.5 and Table 20, ViT-B/16): 32 epochs, AdamW
# (beta2 0.98, eps 1e-6), decoupled weight decay 0.2 on weights only (not on gains, biases,
# the class token or the temperature), lr 5e-4 warmed up linearly over 2000 iterations then
# cosine decay, global batch 32,768 (e.g. 128 x 256 GPUs).
optim_wrapper = dict(
    type='OptimWrapper',
    # torch's fused AdamW kernel (one kernel over all tensors; 6x faster than foreach on CPU)
    optimizer=dict(type='AdamW', fused=True, lr=5e-4, betas=(0.9, 0.98), eps=1e-6,
                   weight_decay=0.2),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
        custom_keys={'logit_scale': dict(decay_mult=0.0),
                     'cls_token': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=2000),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0, end=32,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=32, val_interval=1)
auto_scale_lr = dict(base_batch_size=32768, enable=False)
