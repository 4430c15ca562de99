# ALBEF (Li et al. 2021) on VQAv2 as answer CLASSIFICATION: NOT the paper's VQA model.
# ALBEF answers VQA generatively (Sec. 5.2 / Fig. 3a: a 6-layer answer decoder, answers
# ranked over a candidate list; vlp: BLIPVQA-style models, see configs/blip/blip_vqa.py).
# This variant puts a classifier on the fusion encoder's [CLS] instead, the head ALBEF uses
# for SNLI-VE and NLVR2 (`cls_head`: Linear(768, 768) -> ReLU -> Linear(768, n)), over the
# 3,129 answers (tools/data/vqa_answer_list.py), BUTD soft targets, BCE x number of answers
# (vlp/models/algorithms/downstream.py VQAClassifier), no label smoothing.
# Optimisation from ALBEF's VQA recipe (salesforce/ALBEF configs/VQA.yaml): AdamW lr 2e-5,
# weight decay 0.02 (none on biases / norms: albef_base.py), cosine to 1e-6 over 8
# epochs, batch 256 (32 per GPU x 8 A100, the README's command), warm-up from 1e-5 over
# the first 400 iterations (VQA.py: 4 warm-up "epochs" of 100 steps; ALBEF's timm
# scheduler then continues its cosine from step 4 of 8, an offset not reproduced here), no
# head lr multiplier (ALBEF has none). Train augmentation as ALBEF's VQA: random resized
# crop (scale 0.5-1), horizontal flip, RandAugment(2, 7); questions cleaned as
# pre_question (at most 50 words; vlp's CleanCaption).
# DEPARTURES: ALBEF fine-tunes at 384 x 384 and interpolates the position embeddings; vlp's
# pretrained loading does not, so this keeps albef_base.py's 256 px. ALBEF trains its VQA
# model on VQAv2 train + val + Visual Genome QA (VQA.yaml); here train2014 with val2014
# validation by default (configs/_base_/datasets/vqav2.py: how to add val2014 / VG).
# pretrained: the pre-training run of configs/albef/albef_base.py, or the official ALBEF
# weights converted with tools/convert/albef_to_vlp.py. Dropped: the ITC projections and
# temperature, the ITM and MLM heads, the momentum twins and the feature queue.
_base_ = ['../_base_/models/albef_classifier.py', '../_base_/datasets/vqav2.py',
          '../_base_/schedules/albef_adamw_cosine_30e.py', '../_base_/default_runtime.py']
__tok = _base_.model.model.tokenizer
image_size = 256
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.5, 1.0),
         interpolation='bicubic'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='RandAugment', num_ops=2, magnitude=7),
    dict(type='CleanCaption', max_words=50, style='albef', key='question'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tok, key='question'),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='CleanCaption', max_words=50, style='albef', key='question'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tok, key='question'),
]
train_dataloader = dict(batch_size=32, dataset=dict(pipeline=train_pipeline))  # x 8 = 256
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_evaluator = dict(output_file='work_dirs/albef_vqa_cls/vqav2_test-dev2015_submission.json')

answer_list = 'data/vqav2/answer_list.json'  # tools/data/vqa_answer_list.py (3,129 answers)
model = dict(type='VQAClassifier', head=dict(num_classes=3129), answer_list=answer_list,
             target='butd')

max_epochs = 8
optim_wrapper = dict(optimizer=dict(lr=2e-5, weight_decay=0.02))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=400),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1,
                                     save_best='vqa/accuracy', rule='greater'))
auto_scale_lr = dict(base_batch_size=256, enable=False)
