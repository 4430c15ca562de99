# ViLT-B/32 (Kim et al. 2021) fine-tuned on VQAv2 as answer classification (Sec. 4.2 / Table 2;
# recipe from the official repo, dandelin/ViLT vilt/config.py `task_finetune_vqa_randaug`):
# - head: ViLT's `vqa_classifier` on the pooled first token (the pooler is part of ViLT's
#   backbone): Linear(768, 1536) -> LayerNorm -> GELU -> Linear(1536, 3129) over the
#   3,129 majority answers seen >= 9 times (config `vqav2_label_size`;
#   tools/data/vqa_answer_list.py builds the list); soft BUTD targets (0.3 per annotator, 1
#   from four on), BCE x number of answers (ViLT's objectives.compute_vqa);
# - AdamW lr 1e-4, betas (0.9, 0.98), eps 1e-8, weight decay 0.01 (none on biases / norms),
#   head lr x10 (`lr_mult = 10`), 10% linear warm-up then linear decay to 0
#   (`warmup_steps = 0.1`, `decay_power = 1`, `end_lr = 0`), 10 epochs, batch 256
#   (e.g. 8 GPUs x 32), no label smoothing;
# - images: 384 (ViLT: shorter side 384, longer <= 640; vlp: 384 x 384, see vilt_base.py),
#   RandAugment in the `_randaug` variant the paper reports (Sec. 4.1: RandAugment
#   without colour inversion and cutout; vlp's RandAugment(num_ops=2, magnitude=9) keeps
#   its default op set: a departure);
# - data: the paper trains on VQAv2 train + val minus 1,000 val images kept for validation
#   and reports test-dev: here train2014 only with val2014 validation by default; for the
#   paper's run put val2014 into train_dataloader (see configs/_base_/datasets/vqav2.py).
# Simplification: no ViLT-specific patch sampling (max_image_len), see vilt_base.py.
# pretrained: the pre-training run of configs/vilt/vilt_base.py, or the official ViLT
# weights converted with tools/convert/hf_vilt_to_vlp.py; the pre-training heads (ITM, MLM,
# WPA) are dropped. test: writes the test-dev submission file for EvalAI.
_base_ = ['../_base_/models/vilt_classifier.py', '../_base_/datasets/vqav2.py',
          '../_base_/schedules/vilt_adamw_linear_10e.py', '../_base_/default_runtime.py']
# the family's image transforms (training: its fine-tuning ones), the question tokenised
__question = dict(type='Tokenize', tokenizer=_base_.model.model.tokenizer, key='question')
train_pipeline = [*_base_.finetune_image_pipeline, __question]
test_pipeline = [*_base_.image_pipeline, __question]
train_dataloader = dict(batch_size=32, dataset=dict(pipeline=train_pipeline))  # x 8 = 256
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_evaluator = dict(output_file='work_dirs/vilt_vqa/vqav2_test-dev2015_submission.json')

answer_list = 'data/vqav2/answer_list.json'  # tools/data/vqa_answer_list.py (3,129 answers)
model = dict(type='VQAClassifier', head=dict(num_classes=3129, num_inputs=1),
             answer_list=answer_list, target='butd')

optim_wrapper = dict(
    # head lr x10 (ViLT's lr_mult on `vqa_classifier`); its LayerNorm and biases keep no
    # weight decay (custom keys override the norm / bias rules, so they are listed)
    paramwise_cfg=dict(custom_keys={
        'head.mlp': dict(lr_mult=10.0),
        'head.mlp.0.bias': dict(lr_mult=10.0, decay_mult=0.0),
        'head.mlp.1': dict(lr_mult=10.0, decay_mult=0.0),
        'head.mlp.3.bias': dict(lr_mult=10.0, decay_mult=0.0)}))
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1,
                                     save_best='vqa/accuracy', rule='greater'))
