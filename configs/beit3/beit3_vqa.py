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
_base_ = ['../_base_/models/beit3_classifier.py', '../_base_/datasets/vqav2.py',
          '../_base_/schedules/beit3_adamw_cosine_1m.py', '../_base_/default_runtime.py']
__tok = _base_.model.model.tokenizer
image_size = 224
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.5, 1.0),
         interpolation='bicubic'),
    dict(type='RandAugment', num_ops=2, magnitude=9),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tok, key='question'),
]
# the family's evaluation image transforms, the question tokenised
test_pipeline = [*_base_.image_pipeline, dict(type='Tokenize', tokenizer=__tok, key='question')]
train_dataloader = dict(batch_size=16, dataset=dict(pipeline=train_pipeline))  # x 8 = 128
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_evaluator = dict(output_file='work_dirs/beit3_vqa/vqav2_test-dev2015_submission.json')

answer_list = 'data/vqav2/answer_list.json'  # tools/data/vqa_answer_list.py (3,129 answers)
model = dict(type='VQAClassifier', model=dict(backbone=dict(drop_path_rate=0.1)),
             head=dict(num_classes=3129, num_inputs=1, pooler='ln_bert'),
             answer_list=answer_list, target='butd')

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
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1,
                                     save_best='vqa/accuracy', rule='greater'))
auto_scale_lr = dict(base_batch_size=128, enable=False)
