# VLMo-Base (Bao et al. 2022) fine-tuned on VQAv2 as answer classification (Sec. 4.1 /
# Table 1; recipe from the official repo, microsoft/unilm vlmo/vlmo/config.py
# `task_finetune_vqa_base_image480`):
# - the fusion encoder (VL experts in the top 2 blocks) over [text; image]; the fused text
#   [CLS] through VLMo's Pooler (dense + tanh) INITIALISED FROM THE PRE-TRAINED ITM POOLER
#   (VLMo shares one `pooler` between ITM and the task heads; revise_keys below), then
#   `vqa_classifier`: Linear(768, 1536) -> LayerNorm -> GELU -> Linear(1536, 3129) over
#   the 3,129 answers (`vqav2_label_size`; tools/data/vqa_answer_list.py), BUTD soft
#   targets, BCE x number of answers (VLMo reuses ViLT's compute_vqa);
# - AdamW lr 3e-5, betas (0.9, 0.98), eps 1e-8, weight decay 0.01 (none on biases / norms,
#   layer scale, position bias), classifier lr x20 (`lr_mult = 20`; the shared pooler
#   stays at the base lr), 10% linear warm-up then linear decay to 0, 10 epochs, batch 128
#   (e.g. 8 GPUs x 16), stochastic depth 0.15, RandAugment (`square_transform_randaug`),
#   no label smoothing;
# - DEPARTURE: VLMo fine-tunes VQA at 480 x 480; vlp's pretrained loading does not resample
#   the relative position bias, so this keeps vlmo_base.py's 224 px;
# - data (UNCONFIRMED in the paper: the VLMo data module reads VQAv2 train + val, as ViLT):
#   train2014 with val2014 validation by default; add val2014 for test-dev runs
#   (configs/_base_/datasets/vqav2.py).
# pretrained: the stage-3 run of configs/vlmo/vlmo_base.py, or the official VLMo weights
# converted with tools/convert/vlmo_to_vlp.py. Dropped: ITC projections and temperature,
# ITM classifier (its pooler moved into the head first), MLM head, MIM head and target.
_base_ = ['./vlmo_base.py']
import copy as __copy  # noqa: E402

from mmengine import Config as __Config  # noqa: E402
# The task data: configs/_base_/datasets/vqav2.py (read here: mmengine refuses it in _base_
# next to vlmo_base.py), replacing the pre-training data (_delete_).
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/vqav2.py')
__tok = _base_.tokenizer
image_size = 224
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='RandAugment', num_ops=2, magnitude=9),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tok, key='question'),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tok, key='question'),
]
train_dataloader = dict(__data.train_dataloader, _delete_=True, batch_size=16)  # x 8 = 128
train_dataloader['dataset']['pipeline'] = train_pipeline
val_dataloader = dict(__data.val_dataloader, _delete_=True)
val_dataloader['dataset']['pipeline'] = test_pipeline
test_dataloader = dict(__data.test_dataloader, _delete_=True)
test_dataloader['dataset']['pipeline'] = test_pipeline
val_evaluator = dict(__data.val_evaluator, _delete_=True)
test_evaluator = dict(__data.test_evaluator, _delete_=True,
                      output_file='work_dirs/vlmo_vqa/vqav2_test-dev2015_submission.json')
val_cfg = dict(_delete_=True, type='ValLoop')
test_cfg = dict(_delete_=True, type='TestLoop')

answer_list = 'data/vqav2/answer_list.json'  # tools/data/vqa_answer_list.py (3,129 answers)
__family = __copy.deepcopy(_base_.model)
__family['backbone']['drop_path_rate'] = 0.15
__family['itm_head'] = dict(type='ITMHead', hidden_size=768, pooler=True)  # for its pooler
model = dict(
    _delete_=True,
    type='VQAClassifier',
    model=__family,
    head=dict(type='ClassifierHead', in_channels=768, num_classes=3129, num_inputs=1,
              hidden_channels=1536, pooler='bert', norm=True, act='gelu'),
    answer_list=answer_list,
    target='butd',
    pretrained='work_dirs/vlmo_base/iter_200000.pth',  # or vlmo_to_vlp.py output
    # the pre-trained ITM pooler (dense + tanh) becomes the head's pooler
    revise_keys=[(r'^model\.itm_head\.pooler\.0\.', 'head.pooler.0.')],
    drop_parts=['vision_proj', 'text_proj', 'itc', 'itm_head', 'mlm_head', 'mim_head',
                'visual_tokenizer'],
    data_preprocessor=__family['data_preprocessor'])
load_from = None  # vlmo_base.py's stage-2 checkpoint: the weights come from `pretrained`

max_epochs = 10
optim_wrapper = dict(
    optimizer=dict(lr=3e-5, weight_decay=0.01),
    # classifier lr x20 (VLMo's lr_mult on `vqa_classifier`); its LayerNorm and biases keep
    # no weight decay (custom keys override the norm / bias rules, so they are listed)
    paramwise_cfg=dict(custom_keys={
        'head.mlp': dict(lr_mult=20.0),
        'head.mlp.0.bias': dict(lr_mult=20.0, decay_mult=0.0),
        'head.mlp.1': dict(lr_mult=20.0, decay_mult=0.0),
        'head.mlp.3.bias': dict(lr_mult=20.0, decay_mult=0.0)}))
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
                                     save_best='vqa/accuracy', rule='greater'))
log_processor = dict(by_epoch=True)
auto_scale_lr = dict(base_batch_size=128, enable=False)
