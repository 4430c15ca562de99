# ViLT's image-only initialisation at demo scale. ViLT (Kim et al. 2021, Sec. 3.1) does not
# train its transformer from scratch: it starts from a ViT pre-trained on ImageNet. The demo
# stand-in: the same single-stream transformer as the ViLT task demos trained as an image
# classifier on the embedded DemoClassification images (40 colour-shape classes, one object
# anywhere in the picture), reading a constant text ("a picture", SetText) so that the
# classifier on the pooled first token must gather the image tokens. The ViLT VQA demo
# (vilt_vqa_tiny_demo.py) starts from its work dir, as ViLT starts from the ViT.
# `python tools/train.py configs/vilt/vilt_vit_init_tiny_demo.py`; figures in docs/tasks.md.
_base_ = ['../_base_/default_runtime.py']

demo_task_tokenizer = dict(type='DemoTokenizer', style='bert', vocabulary='tasks',
                           max_length=24)
vocab_size = 115  # the 'tasks' vocabulary: the task demos' embedding tables
image_size = 64
width = 128

model = dict(
    type='VLClassifier',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    model=dict(
        type='ViLT',
        backbone=dict(type='SingleStreamTransformer', img_size=image_size, patch_size=16,
                      vocab_size=vocab_size, max_text_len=24, embed_dim=width, depth=4,
                      num_heads=4, mlp_ratio=4.0, drop=0.0, ln_eps=1e-12,
                      initializer_range=0.02),
        itm_head=None, mlm_head=None, tokenizer=demo_task_tokenizer),
    head=dict(type='ClassifierHead', in_channels=width, num_classes=40))

pipeline = [dict(type='ToTensor'), dict(type='SetText', text='a picture'),
            dict(type='Tokenize', tokenizer=demo_task_tokenizer)]
train_dataloader = dict(
    batch_size=64, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='DemoClassification', split='train', num_images=4000,
                 image_size=image_size, pipeline=pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = dict(
    batch_size=200, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='DemoClassification', split='test', image_size=image_size,
                 pipeline=pipeline))
test_evaluator = dict(type='ClassificationAccuracy')
test_cfg = dict(type='TestLoop')
test_after_train = True

max_epochs = 12
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=64, enable=False)
