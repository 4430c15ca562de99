# BEiT-3's pre-training schedule, as the paper reports it for BEiT-3 giant (Wang et al. 2022,
# Sec. 2.3): AdamW (0.9, 0.98), eps 1e-6, weight decay 0.05, peak lr 1e-3 with 10k linear
# warm-up steps then cosine decay, 1M steps, 6144 samples a batch (2048 images + 2048 texts
# + 2048 pairs). GUESSES (the paper gives no separate recipe for base): base reuses it; the
# cosine floor (1% of the peak) is our choice. Iteration-based: the config sets
# default_hooks.checkpoint / log_processor by_epoch=False.
max_iters = 1_000_000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=1e-3, betas=(0.9, 0.98), eps=1e-6,
                   weight_decay=0.05),
    # no decay on norms, biases, [CLS] / [MASK] and the position tables; bypass_duplicate:
    # the MLM decoder shares its weight with the word embeddings
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True,
                       custom_keys={'cls_token': dict(decay_mult=0.0),
                                    'mask_token': dict(decay_mult=0.0),
                                    'pos_embed': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='WarmupCosineLR', by_epoch=False, begin=0, end=max_iters, warmup_iters=10_000,
         warmup_start_factor=1e-3, eta_min_ratio=0.01),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
auto_scale_lr = dict(base_batch_size=2048, enable=False)
