# VLMo-Base (Bao et al. 2022) fine-tuned on VQAv2 as answer classification (Sec. 4.1 /
# Table 1; recipe from the official repo, microsoft/unilm vlmo/vlmo/config.py
# `task_finetune_vqa_base_image480`):
# - the fusion encoder (VL experts in the top 2 blocks) over [text; image]; the fused text
#   [CLS] through VLMo's Pooler (dense + tanh) INITIALISED FROM THE PRE-TRAINED ITM POOLER
#   (VLMo shares one `pooler` between ITM and the task heads;
#   configs/_base_/models/vlmo_classifier.py), then `vqa_classifier`: Linear(768, 1536) ->
#   LayerNorm -> GELU -> Linear(1536, 3129) over the 3,129 answers (`vqav2_label_size`;
#   tools/data/vqa_answer_list.py), BUTD soft targets, BCE x number of answers (VLMo reuses
#   ViLT's compute_vqa);
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
_base_ = ['../_base_/models/vlmo_classifier.py', '../_base_/datasets/vqav2.py',
          '../_base_/schedules/vlmo_adamw_linear_10e.py', '../_base_/default_runtime.py']
# the family's image transforms (training: its fine-tuning ones), the question tokenised
__question = dict(type='Tokenize', tokenizer=_base_.model.model.tokenizer, key='question')
train_pipeline = [*_base_.finetune_image_pipeline, __question]
test_pipeline = [*_base_.image_pipeline, __question]
train_dataloader = dict(batch_size=16, dataset=dict(pipeline=train_pipeline))  # x 8 = 128
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_evaluator = dict(output_file='work_dirs/vlmo_vqa/vqav2_test-dev2015_submission.json')

answer_list = 'data/vqav2/answer_list.json'  # tools/data/vqa_answer_list.py (3,129 answers)
model = dict(type='VQAClassifier', model=dict(backbone=dict(drop_path_rate=0.15)),
             head=dict(num_classes=3129, num_inputs=1), answer_list=answer_list,
             target='butd')

optim_wrapper = dict(
    optimizer=dict(lr=3e-5, weight_decay=0.01),
    # classifier lr x20 (VLMo's lr_mult on `vqa_classifier`); its LayerNorm and biases keep
    # no weight decay (custom keys override the norm / bias rules, so they are listed)
    paramwise_cfg=dict(custom_keys={
        'head.mlp': dict(lr_mult=20.0),
        'head.mlp.0.bias': dict(lr_mult=20.0, decay_mult=0.0),
        'head.mlp.1': dict(lr_mult=20.0, decay_mult=0.0),
        'head.mlp.3.bias': dict(lr_mult=20.0, decay_mult=0.0)}))
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1,
                                     save_best='vqa/accuracy', rule='greater'))
