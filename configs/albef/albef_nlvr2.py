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
_base_ = ['./albef_base.py']
import copy as __copy  # noqa: E402

from mmengine import Config as __Config  # noqa: E402
# The task data: configs/_base_/datasets/nlvr2.py (read here: mmengine refuses it in
# _base_ next to albef_base.py), replacing the pre-training data (_delete_).
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/nlvr2.py')
__tok = _base_.tokenizer
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
test_image_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='ToTensor'),
]
text_pipeline = [dict(type='CleanCaption', max_words=30, style='albef'),
                 dict(type='Tokenize', tokenizer=__tok)]
train_dataloader = dict(__data.train_dataloader, _delete_=True, batch_size=16)  # x 8 = 128
train_dataloader['dataset'].update(image_pipeline=train_image_pipeline,
                                   pipeline=text_pipeline)
val_dataloader = dict(__data.val_dataloader, _delete_=True)
val_dataloader['dataset'].update(image_pipeline=test_image_pipeline, pipeline=text_pipeline)
test_dataloader = dict(__data.test_dataloader, _delete_=True)
test_dataloader['dataset'].update(image_pipeline=test_image_pipeline, pipeline=text_pipeline)
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
__family['fusion']['num_layers'] = 12  # 6 pre-trained layers, each twice
__family['two_image_fusion'] = True
model = dict(
    _delete_=True,
    type='VLClassifier',
    model=__family,
    head=dict(type='ClassifierHead', in_channels=768, num_classes=2, num_inputs=1,
              hidden_channels=768, pooler=None, norm=False, act='relu'),
    num_images=2,
    pair_encoding='joint',
    label_smoothing=0.0,
    pretrained='work_dirs/albef_base/epoch_30.pth',  # or albef_to_vlp.py output
    drop_parts=['vision_proj', 'text_proj', 'itc', 'itm_head', 'mlm_head', 'vision_m',
                'vision_proj_m', 'text_m', 'text_proj_m', 'fusion_m', 'mlm_head_m'],
    data_preprocessor=__family['data_preprocessor'])
custom_hooks = []  # no momentum encoders, queue or distillation in fine-tuning

max_epochs = 10
optim_wrapper = dict(optimizer=dict(lr=2e-5, weight_decay=0.02),
                     paramwise_cfg=dict(bypass_duplicate=True))  # the tied cross-attention K/V
param_scheduler = [
    # epoch 0 at 1e-5 (timm's warm-up), then cosine 2e-5 -> 1e-6 by epoch
    dict(type='ConstantLR', factor=0.5, by_epoch=True, begin=0, end=1),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=1, end=max_epochs),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', interval=1,
                                     by_epoch=True, max_keep_ckpts=1,
                                     save_best='nlvr2_dev/accuracy', rule='greater'))
auto_scale_lr = dict(base_batch_size=128, enable=False)
