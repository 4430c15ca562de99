# CoCa's pretraining schedule (Yu et al. 2022, Sec. 4.1): 500k steps at a global batch of
# 65,536 image-text pairs (e.g. 256 x 256 devices); Adafactor with beta1 = 0.9, beta2 =
# 0.999 and decoupled weight decay 0.01 (timm's big_vision port, registered as
# 'AdafactorBigVision'; its decay is multiplied by the lr, AdamW style); the lr warmed up
# over the first 2% of the steps (10k) to 8e-4, then decayed linearly (to 0 here; the paper
# does not give the end value). No decay on norms, biases, queries, embeddings.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdafactorBigVision', lr=8e-4, momentum=0.9, beta2_cap=0.999,
                   weight_decay=0.01),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
        custom_keys={'logit_scale': dict(decay_mult=0.0), 'query': dict(decay_mult=0.0),
                     'pos_embed': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0),
                     'positional_embedding': dict(decay_mult=0.0),
                     'cls_emb': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=10_000),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=False, begin=10_000,
         end=500_000),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=500_000, val_interval=50_000)
auto_scale_lr = dict(base_batch_size=65536, enable=False)
