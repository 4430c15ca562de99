# BLIP ViT-B/16 (Li et al. 2022) fine-tuned on NLVR2 (Sec. 5.4 / Fig. 6, Table 9): BLIP's
# NLVR2 encoder: in every cross-attention layer of the image-grounded text encoder two
# cross-attention heads attend to the left and to the right image (both initialised from
# the pre-trained cross-attention), averaged in the first six layers and merged by a linear
# layer in the last six (BLIP(two_image_fusion=True), TwinCrossAttention; the pre-training
# checkpoint starts both twins when loaded); the [ENC] state into an MLP, true / false.
# Recipe (AdamW, weight decay 0.05, cosine decay, 15 epochs, batch 16 per GPU x 8, lr 3e-5)
# recalled from BLIP's configs/nlvr.yaml, UNCONFIRMED here (the file was not reachable).
# DEPARTURES: BLIP fine-tunes NLVR2 at 384 x 384 (vlp's pretrained loading does not
# interpolate position embeddings) -> blip_base.py's 224 px; the classifier MLP has
# ALBEF's layout (Linear -> ReLU -> Linear).
# pretrained: the pre-training run of configs/blip/blip_base.py, or the official BLIP
# weights converted with tools/convert/hf_blip_to_vlp.py.
# Splits: train / dev (validation) / test-P, ClassificationAccuracy.
_base_ = ['./blip_base.py']
import copy as __copy  # noqa: E402

from mmengine import Config as __Config  # noqa: E402
# The task data: configs/_base_/datasets/nlvr2.py (read here: mmengine refuses it in
# _base_ next to blip_base.py), replacing the pre-training data (_delete_).
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/nlvr2.py')
__tok = _base_.tokenizer
image_size = 224
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
text_pipeline = [dict(type='CleanCaption', max_words=30, style='blip'),
                 dict(type='Tokenize', tokenizer=__tok)]
train_dataloader = dict(__data.train_dataloader, _delete_=True, batch_size=16)  # x 8 = 128 (UNCONFIRMED)
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
__family['queue_size'] = 0
__family['lm_head'] = None  # no decoder in the NLVR2 model
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
    pretrained='work_dirs/blip_base/epoch_20.pth',  # or hf_blip_to_vlp.py output
    drop_parts=['vision_proj', 'text_proj', 'itc', 'itm_head', 'vision_m',
                'vision_proj_m', 'text_m', 'text_proj_m'],
    data_preprocessor=__family['data_preprocessor'])
custom_hooks = []  # no momentum encoders, queue or distillation in fine-tuning

max_epochs = 15
optim_wrapper = dict(optimizer=dict(lr=3e-5, weight_decay=0.05))
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0, end=max_epochs),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', interval=1,
                                     by_epoch=True, max_keep_ckpts=1,
                                     save_best='nlvr2_dev/accuracy', rule='greater'))
auto_scale_lr = dict(base_batch_size=128, enable=False)
