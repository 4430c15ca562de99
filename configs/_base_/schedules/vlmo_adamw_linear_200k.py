# VLMo's pre-training schedule (Bao et al. 2022, Sec. 4.1): 200k steps at batch 1024, AdamW
# (0.9, 0.98), peak lr 2e-4, weight decay 0.01 (none on norms, biases, layer scale, [CLS] /
# [MASK] and the position bias: VLMo's no_decay list), 2.5k linear warm-up steps then linear
# decay to 0. Iteration-based: the config sets default_hooks.checkpoint / log_processor
# by_epoch=False.
max_iters = 200000
warmup_iters = 2500
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=2e-4, betas=(0.9, 0.98), eps=1e-8,
                   weight_decay=0.01),
    clip_grad=None,
    # the MLM decoder shares the word embeddings (bypass_duplicate)
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True,
                       custom_keys={'rel_pos_bias_table': dict(decay_mult=0.0),
                                    'cls_token': dict(decay_mult=0.0),
                                    'mask_token': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=False,
         begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
auto_scale_lr = dict(base_batch_size=1024, enable=False)
