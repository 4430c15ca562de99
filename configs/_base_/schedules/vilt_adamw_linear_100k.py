# ViLT's pre-training schedule (Kim et al. 2021): AdamW lr 1e-4, weight decay 0.01
# (none on biases and norms), betas (0.9, 0.98), linear warm-up over the first 10% of the
# steps then linear decay to 0, 100k steps (ViLT-B/32 200k: set max_iters=200000 and the
# scheduler ends), batch 4096 (e.g. 64 GPUs x 64). Iteration-based: the config sets
# default_hooks.checkpoint / log_processor by_epoch=False.
max_iters = 100000
warmup_iters = max_iters // 10
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=1e-4, weight_decay=0.01, betas=(0.9, 0.98),
                   eps=1e-8),
    # no weight decay on biases and norms (ViLT); bypass_duplicate: the MLM decoder is tied
    # to the word embeddings
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=False,
         begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
auto_scale_lr = dict(base_batch_size=4096, enable=False)
