# ALBEF (Li et al. 2021) fine-tuned on NLVR2 (Sec. 5.3 / Fig. 3(b), Table 5; recipe from
# the official repo, salesforce/ALBEF configs/NLVR.yaml, NLVR.py):
# - the two-image fusion: the 6 pre-trained fusion layers become 12 (layer k -> 2k, 2k+1),
#   the first of each pair cross-attending to the left image, the second to the right one,
#   the pair sharing its cross-attention keys / values (ALBEF(two_image_fusion=True); the
#   pre-training checkpoint is expanded when loaded, ALBEF.adapt_pretrained_state_dict);
#   ALBEF's cls_head Linear(768, 768) -> ReLU -> Linear(768, 2) on the last [CLS];
# - AdamW lr 2e-5, weight decay 0.02, cosine to 1e-6 over 10 epochs, the first at the
#   warm-up lr 1e-5 (NLVR.yaml), batch 16 per GPU (x 8 GPUs = 128, the README's command).
# DEPARTURES: ALBEF fine-tunes at 384 x 384 (NLVR.yaml image_res; vlp's pretrained loading
# does not interpolate position embeddings) -> 256 px here; ALBEF first runs one epoch of
# "text-assignment" pre-training (Pretrain_nlvr.py: which image a caption describes) to
# adapt the doubled fusion layers, and distils from a momentum model (distill: True, alpha
# 0.4): neither is implemented here.
# pretrained: the pre-training run of configs/albef/albef_base.py, or the official ALBEF
# weights converted with tools/convert/albef_to_vlp.py (6 fusion layers: expanded on load).
# Splits: train / dev (validation) / test-P, ClassificationAccuracy.
_base_ = ['../_base_/models/albef_classifier.py', '../_base_/datasets/nlvr2.py',
          '../_base_/schedules/albef_adamw_cosine_30e.py', '../_base_/default_runtime.py']
image_size = 256
# per image (both images of a pair get the same random crop size; flips are left out:
# NLVR2 statements say left and right)
train_image_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.5, 1.0),
         interpolation='bicubic'),
    dict(type='RandAugment', num_ops=2, magnitude=7),
    dict(type='ToTensor'),
]
train_dataloader = dict(batch_size=16,  # x 8 = 128
                        dataset=dict(image_pipeline=train_image_pipeline,
                                     pipeline={{_base_.text_pipeline}}))
# evaluation: the family's image and text transforms
val_dataloader = dict(dataset=dict(image_pipeline={{_base_.image_pipeline}},
                                   pipeline={{_base_.text_pipeline}}))
test_dataloader = val_dataloader  # the same transforms on test-P
model = dict(
    # 6 pre-trained fusion layers, each twice: left image, right image
    model=dict(fusion=dict(num_layers=12), two_image_fusion=True),
    head=dict(num_classes=2),
    num_images=2,
    pair_encoding='joint')

max_epochs = 10
# (the schedule's bypass_duplicate covers the tied cross-attention K/V)
optim_wrapper = dict(optimizer=dict(lr=2e-5, weight_decay=0.02))
param_scheduler = [
    # epoch 0 at 1e-5 (timm's warm-up), then cosine 2e-5 -> 1e-6 by epoch
    dict(type='ConstantLR', factor=0.5, by_epoch=True, begin=0, end=1),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=1, end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1,
                                     save_best='nlvr2_dev/accuracy', rule='greater'))
auto_scale_lr = dict(base_batch_size=128, enable=False)
