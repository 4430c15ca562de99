# A CLIP-style model whose vision tower and loss come from the outside package.
_base_ = ['../../../configs/_base_/default_runtime.py']
custom_imports = dict(imports=['vlp_example_plugin'], allow_failed_imports=False)

model = dict(
    type='CLIP',
    vision=dict(type='ConvTower', width=16, depth=2),  # from the plugin
    text=dict(type='TextTransformer', vocab_size=20, context_length=6, width=16, layers=1,
              heads=2),
    vision_proj=dict(type='Projection', in_dim=16, out_dim=8),
    text_proj=dict(type='Projection', in_dim=16, out_dim=8),
    itc=dict(type='CosineMarginLoss', margin=0.2))  # from the plugin

train_dataloader = dict(
    batch_size=4, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='NoiseImageText', num_samples=8, image_size=16, seq_len=6,
                 vocab_size=20))  # from the plugin
custom_hooks = [dict(type='LossSpikeHook', factor=3.0)]  # from the plugin

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=20)
default_hooks = dict(logger=dict(interval=5),
                     checkpoint=dict(by_epoch=False, interval=20))
log_processor = dict(by_epoch=False)
