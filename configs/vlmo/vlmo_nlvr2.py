# VLMo-Base (Bao et al. 2022) fine-tuned on NLVR2 (Sec. 4.1 / Table 1; recipe from the
# official repo, microsoft/unilm vlmo/vlmo/config.py `task_finetune_nlvr2_base`):
# - ViLT's "pair" method: each image fused with the statement on its own (VLClassifier
#   num_images=2, pair_encoding='separate'); each fused text [CLS] through VLMo's shared
#   Pooler (dense + tanh, INITIALISED FROM THE PRE-TRAINED ITM POOLER: revise_keys below),
#   the two pooled states concatenated into `nlvr2_classifier`: Linear(1536, 1536) ->
#   LayerNorm -> GELU -> Linear(1536, 2); cross-entropy, no label smoothing;
# - AdamW lr 5e-5, betas (0.9, 0.98), eps 1e-8, weight decay 0.01 (none on biases / norms,
#   layer scale, position bias), no head lr multiplier (`lr_mult = 1`), 10% linear warm-up
#   then linear decay to 0, 10 epochs, batch 128 (e.g. 8 GPUs x 16), stochastic depth 0.1,
#   RandAugment (`square_transform_randaug`), 224 x 224 images (the 384 px variant,
#   `..._image384`, is not reproduced: vlp does not resample the position bias).
# pretrained: the stage-3 run of configs/vlmo/vlmo_base.py, or the official VLMo weights
# converted with tools/convert/vlmo_to_vlp.py. Dropped: ITC projections and temperature,
# ITM classifier (its pooler moved into the head first), MLM head, MIM head and target.
# Splits: train / dev (validation) / test-P (test1), ClassificationAccuracy.
_base_ = ['./vlmo_base.py']
import copy as __copy  # noqa: E402

from mmengine import Config as __Config  # noqa: E402
# The task data: configs/_base_/datasets/nlvr2.py (read here: mmengine refuses it in _base_
# next to vlmo_base.py), replacing the pre-training data (_delete_).
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/nlvr2.py')
__tok = _base_.tokenizer
image_size = 224
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
__family['itm_head'] = dict(type='ITMHead', hidden_size=768, pooler=True)  # for its pooler
model = dict(
    _delete_=True,
    type='VLClassifier',
    model=__family,
    head=dict(type='ClassifierHead', in_channels=768, num_classes=2, num_inputs=2,
              hidden_channels=1536, pooler='bert', norm=True, act='gelu'),
    num_images=2,
    pair_encoding='separate',
    label_smoothing=0.0,
    pretrained='work_dirs/vlmo_base/iter_200000.pth',  # or vlmo_to_vlp.py output
    # the pre-trained ITM pooler (dense + tanh) becomes the head's pooler
    revise_keys=[(r'^model\.itm_head\.pooler\.0\.', 'head.pooler.0.')],
    drop_parts=['vision_proj', 'text_proj', 'itc', 'itm_head', 'mlm_head', 'mim_head',
                'visual_tokenizer'],
    data_preprocessor=__family['data_preprocessor'])
load_from = None  # vlmo_base.py's stage-2 checkpoint: the weights come from `pretrained`

max_epochs = 10
optim_wrapper = dict(optimizer=dict(lr=5e-5, weight_decay=0.01))
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
