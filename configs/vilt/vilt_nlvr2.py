# ViLT-B/32 (Kim et al. 2021) fine-tuned on NLVR2 (Sec. 4.2 / Table 2; recipe from the
# official repo, dandelin/ViLT vilt/config.py `task_finetune_nlvr2_randaug`):
# - the "pair" method (Sec. 4.2): each image is fused with the statement on its own
#   (VLClassifier num_images=2, pair_encoding='separate'); the two pooled first tokens are
#   concatenated into ViLT's `nlvr2_classifier`: Linear(1536, 1536) -> LayerNorm -> GELU ->
#   Linear(1536, 2); cross-entropy, no label smoothing;
# - AdamW lr 1e-4, betas (0.9, 0.98), eps 1e-8, weight decay 0.01 (none on biases / norms),
#   no head lr multiplier (`lr_mult = 1`), 10% linear warm-up then linear decay to 0, 10
#   epochs, batch 128 (e.g. 8 GPUs x 16);
# - images 384 (ViLT: shorter side 384, longer <= 640; vlp: 384 x 384), RandAugment in the
#   `_randaug` variant (vlp's default op set: ViLT leaves out colour inversion and cutout).
# Simplification (vlp/models/algorithms/downstream.py): ViLT gives the second image a third
# token-type embedding; here both images use the image type.
# pretrained: the pre-training run of configs/vilt/vilt_base.py, or the official ViLT
# weights converted with tools/convert/hf_vilt_to_vlp.py; ITM / MLM / WPA dropped.
# Splits: train / dev (validation) / test-P (test1), ClassificationAccuracy.
_base_ = ['./vilt_base.py']
import copy as __copy  # noqa: E402

from mmengine import Config as __Config  # noqa: E402
# The task data: configs/_base_/datasets/nlvr2.py (read here: mmengine refuses it in _base_
# next to vilt_base.py), replacing the pre-training data (_delete_).
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/nlvr2.py')
__tok = _base_.tokenizer
image_size = 384
train_image_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='RandAugment', num_ops=2, magnitude=9),
    dict(type='ToTensor'),
]
test_image_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='ToTensor'),
]
text_pipeline = [dict(type='Tokenize', tokenizer=__tok)]
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
model = dict(
    _delete_=True,
    type='VLClassifier',
    model=__family,
    head=dict(type='ClassifierHead', in_channels=768, num_classes=2, num_inputs=2,
              hidden_channels=1536, pooler=None, norm=True, act='gelu'),
    num_images=2,
    pair_encoding='separate',
    label_smoothing=0.0,
    pretrained='work_dirs/vilt_base/iter_100000.pth',  # or hf_vilt_to_vlp.py output
    drop_parts=['itm_head', 'mlm_head', 'wpa'],
    data_preprocessor=__family['data_preprocessor'])

max_epochs = 10
optim_wrapper = dict(optimizer=dict(lr=1e-4, weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=True, begin=1,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', interval=1,
                                     by_epoch=True, max_keep_ckpts=1,
                                     save_best='nlvr2_dev/accuracy', rule='greater'))
log_processor = dict(by_epoch=True)
auto_scale_lr = dict(base_batch_size=128, enable=False)
