# BEiT-3 base (Wang et al. 2022) fine-tuned on VQAv2 as answer classification (Sec. 3.1 /
# Table 3; recipe from the official repo, microsoft/unilm beit3/get_started/
# get_started_for_vqav2.md, base command, and run_beit3_finetuning.py / optim_factory.py):
# - the joint [image; text] encoding; BEiT-3's Pooler (LayerNorm -> dense -> tanh) on the
#   first state, then `head`: Linear(768, 1536) -> LayerNorm -> GELU -> Linear(1536, 3129)
#   over the 3,129 answers (tools/data/vqa_answer_list.py), soft VQA targets, BCE x number
#   of answers, no label smoothing;
# - AdamW lr 3e-5, betas (0.9, 0.98), weight decay 0.01 (none on 1-D parameters, biases,
#   [CLS] / position embeddings), no layer decay (`--layer_decay 1.0`), task head lr x20
#   (`--task_head_lr_weight 20`: the parameters named `head*`, not the pooler:
#   get_is_head_flag_for_vit), 1 warm-up epoch then cosine to 1e-6 (`--min_lr` default),
#   10 epochs, batch 128 (8 GPUs x 16), stochastic depth 0.1, RandAugment (`--randaug`);
# - DEPARTURE: BEiT-3 fine-tunes VQA at 480 x 480 (beit3_base_patch16_480); vlp's pretrained
#   loading does not resample the position embeddings, so this keeps beit3_base.py's 224 px;
#   the tokenizer is beit3_base.py's BERT WordPiece, not BEiT-3's SentencePiece (see there);
# - data: UNCONFIRMED which splits the paper trains its test-dev model on (the repo's
#   make_dataset_index writes train / val / test-dev indices); here train2014 with val2014
#   validation (configs/_base_/datasets/vqav2.py shows how to add val2014 / VG).
# pretrained: the pre-training run of configs/beit3/beit3_base.py, or the official weights
# converted with tools/convert/torchscale_beit3_to_vlp.py (their 64,010-word SentencePiece
# embedding does not fit this config's BERT vocabulary: see beit3_base.py). Dropped: the MLM
# and MIM heads and the visual tokenizer.
_base_ = ['./beit3_base.py']
import copy as __copy  # noqa: E402

from mmengine import Config as __Config  # noqa: E402
# The task data: configs/_base_/datasets/vqav2.py (read here: the pre-training data is
# replaced wholesale with _delete_).
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/vqav2.py')
__tok = _base_.tokenizer
image_size = 224
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.5, 1.0),
         interpolation='bicubic'),
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
val_dataloader = dict(__data.val_dataloader)
val_dataloader['dataset']['pipeline'] = test_pipeline
test_dataloader = dict(__data.test_dataloader)
test_dataloader['dataset']['pipeline'] = test_pipeline
val_evaluator = dict(__data.val_evaluator)
test_evaluator = dict(__data.test_evaluator,
                      output_file='work_dirs/beit3_vqa/vqav2_test-dev2015_submission.json')
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

answer_list = 'data/vqav2/answer_list.json'  # tools/data/vqa_answer_list.py (3,129 answers)
__family = __copy.deepcopy(_base_.model)
__family['backbone']['drop_path_rate'] = 0.1
model = dict(
    _delete_=True,
    type='VQAClassifier',
    model=__family,
    head=dict(type='ClassifierHead', in_channels=768, num_classes=3129, num_inputs=1,
              hidden_channels=1536, pooler='ln_bert', norm=True, act='gelu'),
    answer_list=answer_list,
    target='butd',
    pretrained='work_dirs/beit3_base/iter_1000000.pth',  # or torchscale_beit3_to_vlp.py
    drop_parts=['mlm_head', 'mim_head', 'visual_tokenizer'],
    data_preprocessor=__family['data_preprocessor'])

max_epochs = 10
optim_wrapper = dict(
    optimizer=dict(lr=3e-5, weight_decay=0.01),
    # task head lr x20; its LayerNorm and biases keep no weight decay (custom keys override
    # the norm / bias rules, so they are listed)
    paramwise_cfg=dict(custom_keys={
        'head.mlp': dict(lr_mult=20.0),
        'head.mlp.0.bias': dict(lr_mult=20.0, decay_mult=0.0),
        'head.mlp.1': dict(lr_mult=20.0, decay_mult=0.0),
        'head.mlp.3.bias': dict(lr_mult=20.0, decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', interval=1,
                                     by_epoch=True, max_keep_ckpts=1,
                                     save_best='vqa/accuracy', rule='greater'))
log_processor = dict(by_epoch=True)
auto_scale_lr = dict(base_batch_size=128, enable=False)
