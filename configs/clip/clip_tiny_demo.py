# CLIP tiny demo: the CLIP architecture (ViT image tower with pre-LN and QuickGELU, causal
# text transformer with EOT pooling, linear projections, symmetric InfoNCE with a learnable
# temperature) at toy size, trained on the embedded demo data on CPU in minutes.
# `python tools/train.py configs/clip/clip_tiny_demo.py`: see the README for the figures.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/demo_retrieval.py',
    '../_base_/schedules/clip_adamw_cosine_32e.py',
]
image_size = 64
width = 96
embed_dim = 64

model = dict(
    type='CLIP',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    vision=dict(type='TimmTower', model_name='vit_base_patch16_clip_quickgelu_224',
                img_size=image_size, patch_size=8, embed_dim=width, depth=3, num_heads=4),
    text=dict(type='TextTransformer', vocab_size=64, context_length=32, width=width,
              layers=3, heads=4, act_layer='quick_gelu'),
    vision_proj=dict(type='Projection', in_dim=width, out_dim=embed_dim),
    text_proj=dict(type='Projection', in_dim=width, out_dim=embed_dim),
    itc=dict(type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0),
    tokenizer={{_base_.demo_tokenizer}})

max_epochs = 15
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.1))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=128, enable=False)
test_after_train = True  # tools/train.py reports the test split at the end
