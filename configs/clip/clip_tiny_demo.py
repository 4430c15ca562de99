# CLIP tiny demo: the CLIP architecture (ViT image tower with pre-LN and QuickGELU, causal
# text transformer with EOT pooling, linear projections, symmetric InfoNCE with a learnable
# temperature) at toy size, trained on the embedded demo data on CPU in minutes.
# `python tools/train.py configs/clip/clip_tiny_demo.py`: see the README for the figures.
_base_ = ['../_base_/models/clip_vit-b16.py', '../_base_/datasets/demo_retrieval.py',
          '../_base_/schedules/clip_adamw_cosine_32e.py', '../_base_/default_runtime.py']
image_size = 64
width = 96
embed_dim = 64

# the paper's model at toy size
model = dict(
    vision=dict(img_size=image_size, patch_size=8, embed_dim=width, depth=3, num_heads=4),
    text=dict(vocab_size=64, context_length=32, width=width, layers=3, heads=4),
    vision_proj=dict(in_dim=width, out_dim=embed_dim),
    text_proj=dict(in_dim=width, out_dim=embed_dim),
    itc=dict(local_loss=False),
    tokenizer=dict(_base_.demo_tokenizer, _delete_=True))

# the demo data's own pipelines (ToTensor, Tokenize with the CLIP-style demo tokenizer)
train_pipeline = test_pipeline = {{_base_.train_dataloader.dataset.pipeline}}

max_epochs = 15
# torch's default AdamW implementation (the demo's figures)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.1, fused=None))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=128)
test_after_train = True  # tools/train.py reports the test split at the end
