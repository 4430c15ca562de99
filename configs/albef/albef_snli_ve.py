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
_base_ = ['./albef_base.py']
import copy as __copy  # noqa: E402

from mmengine import Config as __Config  # noqa: E402
# The task data: configs/_base_/datasets/snli_ve.py (read here: mmengine refuses it in
# _base_ next to albef_base.py), replacing the pre-training data (_delete_).
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/snli_ve.py')
__tok = _base_.tokenizer
image_size = 256
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.5, 1.0),
         interpolation='bicubic'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='RandAugment', num_ops=2, magnitude=7),
    dict(type='CleanCaption', max_words=30, style='albef'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tok),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='CleanCaption', max_words=30, style='albef'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tok),
]
train_dataloader = dict(__data.train_dataloader, _delete_=True, batch_size=32)  # x 8 = 256
train_dataloader['dataset']['pipeline'] = train_pipeline
val_dataloader = dict(__data.val_dataloader, _delete_=True)
val_dataloader['dataset']['pipeline'] = test_pipeline
test_dataloader = dict(__data.test_dataloader, _delete_=True)
test_dataloader['dataset']['pipeline'] = test_pipeline
val_evaluator = dict(__data.val_evaluator, _delete_=True)
test_evaluator = dict(__data.test_evaluator, _delete_=True)
val_cfg = dict(_delete_=True, type='ValLoop')
test_cfg = dict(_delete_=True, type='TestLoop')

__family = __copy.deepcopy(_base_.model)
# every weight comes from `pretrained`: no ImageNet / BERT initialisation first
__family['vision']['pretrained'] = False
__family['text']['pretrained'] = None
__family['fusion']['pretrained'] = None
__family['queue_size'] = 0
model = dict(
    _delete_=True,
    type='VLClassifier',
    model=__family,
    head=dict(type='ClassifierHead', in_channels=768, num_classes=3, num_inputs=1,
              hidden_channels=768, pooler=None, norm=False, act='relu'),
    num_images=1,
    label_smoothing=0.0,
    pretrained='work_dirs/albef_base/epoch_30.pth',  # or albef_to_vlp.py output
    drop_parts=['vision_proj', 'text_proj', 'itc', 'itm_head', 'mlm_head', 'vision_m',
                'vision_proj_m', 'text_m', 'text_proj_m', 'fusion_m', 'mlm_head_m'],
    data_preprocessor=__family['data_preprocessor'])
custom_hooks = []  # no momentum encoders, queue or distillation in fine-tuning

max_epochs = 5
optim_wrapper = dict(optimizer=dict(lr=2e-5, weight_decay=0.02))
param_scheduler = [
    # epoch 0 at 1e-5 (timm's warm-up), then cosine 2e-5 -> 1e-6 by epoch
    dict(type='ConstantLR', factor=0.5, by_epoch=True, begin=0, end=1),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=1, end=max_epochs),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', interval=1,
                                     by_epoch=True, max_keep_ckpts=1,
                                     save_best='snli_ve_dev/accuracy', rule='greater'))
auto_scale_lr = dict(base_batch_size=256, enable=False)
