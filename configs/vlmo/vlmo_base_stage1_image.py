# VLMo-Base stage 1 (Bao et al. 2022, Sec. 3.3): vision-only pre-training, BEiT's masked
# image modelling (block-wise masks of 75 of the 196 patches, min block 16, aspect
# 0.3-3.3) on ImageNet-22K images; the patch embedding, the self-attention and the vision
# experts train (vlp.models.algorithms.vlmo.STAGE_TRAINABLE['image']).
# The paper starts from BEiT-Base, whose targets are DALL-E dVAE tokens; that tokenizer is
# not implemented here, so this config predicts MAE's normalised pixels (PixelTarget);
# any registered visual tokenizer plugs in through `model.visual_tokenizer` and
# `model.mim_head.out_dim`. BEiT's recipe: AdamW (0.9, 0.999), lr 1.5e-3 for batch 2048,
# weight decay 0.05, 10 warm-up epochs, cosine decay; the 200k steps of batch 1024
# (~15 epochs of ImageNet-22K) are our choice.
# Data (not downloaded by vlp): every image under
#   data/imagenet22k/train/    (any folder layout; .jpg/.jpeg/.png/...)
_base_ = ['./vlmo_base.py']
image_size = 224
model = dict(stage='image',
             mim_mask=dict(num_masking_patches=75, min_num_patches=16, min_aspect=0.3))
load_from = None
train_dataloader = dict(
    dataset=dict(_delete_=True, type='ImageListDataset', img_dir='data/imagenet22k/train',
                 pipeline=[
                     dict(type='LoadImage'),
                     dict(type='RandomResizedCrop', size=image_size, scale=(0.08, 1.0),
                          interpolation='bicubic'),
                     dict(type='RandomHorizontalFlip', prob=0.5),
                     dict(type='ToTensor'),
                 ]))
optim_wrapper = dict(optimizer=dict(lr=1.5e-3 / 2, betas=(0.9, 0.999), weight_decay=0.05))
param_scheduler = [
    dict(type='WarmupCosineLR', by_epoch=False, begin=0, end={{_base_.max_iters}},
         warmup_iters=10000, warmup_start_factor=1e-3, eta_min_ratio=1e-3),
]
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = test_evaluator = test_cfg = None
