# ViLT's image-only initialisation at demo scale. ViLT (Kim et al. 2021, Sec. 3.1) does not
# train its transformer from scratch: it starts from a ViT pre-trained on ImageNet. The demo
# stand-in: the same single-stream transformer as the ViLT task demos trained as an image
# classifier on the embedded DemoClassification images (40 colour-shape classes, one object
# anywhere in the picture), reading a constant text ("a picture", SetText) so that the
# classifier on the pooled first token must gather the image tokens. The ViLT VQA demo
# (vilt_vqa_tiny_demo.py) starts from its work dir, as ViLT starts from the ViT.
# `python tools/train.py configs/vilt/vilt_vit_init_tiny_demo.py`; figures in docs/tasks.md.
_base_ = ['../_base_/models/vilt_classifier_tiny.py',
          '../_base_/datasets/demo_classification.py', '../_base_/default_runtime.py']
model = dict(head=dict(num_classes=40))  # from random weights

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
