# ALBEF (Li et al. 2021) fine-tuned on SNLI-VE (Sec. 5.3, Table 4; recipe from the official
# repo, salesforce/ALBEF configs/VE.yaml, VE.py, README):
# - the fusion encoder's [CLS] into ALBEF's `cls_head`: Linear(768, 768) -> ReLU ->
#   Linear(768, 3) (contradiction / neutral / entailment); cross-entropy, no label
#   smoothing;
# - AdamW lr 2e-5, weight decay 0.02 (none on biases / norms: albef_base.py), cosine to
#   1e-6 over 5 epochs (timm scheduler, per epoch, first epoch at the warm-up lr 1e-5:
#   warmup_lr 1e-5, warmup_epochs 1), no head lr multiplier, batch 256 (32 per GPU x 8
#   A100, the README's command); train augmentation as ALBEF's: random resized crop (scale
#   0.5-1), horizontal flip, RandAugment(2, 7); hypotheses cleaned as pre_caption.
# DEPARTURES: ALBEF fine-tunes at 384 x 384 (interpolating the position embeddings; vlp's
# pretrained loading does not), so this keeps albef_base.py's 256 px; ALBEF's SNLI-VE run
# distils from a momentum model (VE.yaml: distill True, alpha 0.4), which VLClassifier does
# not do.
# pretrained: the pre-training run of configs/albef/albef_base.py, or the official ALBEF
# weights converted with tools/convert/albef_to_vlp.py. Dropped: the ITC projections and
# temperature, the ITM and MLM heads, the momentum twins and the feature queue.
# Splits: train / dev (validation) / test, ClassificationAccuracy.
_base_ = ['../_base_/models/albef_classifier.py', '../_base_/datasets/snli_ve.py',
          '../_base_/schedules/albef_adamw_cosine_30e.py', '../_base_/default_runtime.py']
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size={{_base_.image_size}}, scale=(0.5, 1.0),
         interpolation='bicubic'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='RandAugment', num_ops=2, magnitude=7),
    *_base_.train_pipeline[-3:],  # the family's CleanCaption, ToTensor, Tokenize
]
train_dataloader = dict(batch_size=32, dataset=dict(pipeline=train_pipeline))  # x 8 = 256
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
model = dict(head=dict(num_classes=3))

max_epochs = 5
optim_wrapper = dict(optimizer=dict(lr=2e-5, weight_decay=0.02))
param_scheduler = [
    # epoch 0 at 1e-5 (timm's warm-up), then cosine 2e-5 -> 1e-6 by epoch
    dict(type='ConstantLR', factor=0.5, by_epoch=True, begin=0, end=1),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=1, end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1,
                                     save_best='snli_ve_dev/accuracy', rule='greater'))
auto_scale_lr = dict(base_batch_size=256, enable=False)
