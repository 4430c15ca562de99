# BLIP ViT-B/16 (Li et al. 2022) fine-tuned on VQAv2 as answer GENERATION (Sec. 5.3 / Fig. 5,
# Table 8; recipe from the official repo, salesforce/BLIP configs/vqa.yaml, train_vqa.py,
# models/blip_vqa.py and the README):
# - BLIPVQA, answers ranked over BLIP's answer_list.json (configs/_base_/models/blip_vqa.py;
#   3,128 frequent VQAv2 answers, from BLIP's annotation download;
#   tools/data/vqa_answer_list.py builds a comparable list);
# - AdamW lr 2e-5 (`init_lr`), weight decay 0.05 on every parameter, cosine to 0
#   (`min_lr: 0`) stepped once per EPOCH (train_vqa.py cosine_lr_schedule), no warm-up,
#   10 epochs, batch 256 (16 per GPU x 16 A100, the README), no head lr multiplier (no
#   head); questions cleaned as BLIP's pre_question (at most 50 words; vlp's CleanCaption),
#   train augmentation as BLIP's data/__init__.py transform_train: RandomResizedCrop
#   (scale 0.5-1), horizontal flip, RandAugment(2, 5) (BLIP's op list has no colour ops;
#   vlp's RandAugment keeps its default op set); stochastic depth 0.1 in the ViT
#   (models/blip_vqa.py create_vit);
# - data: VQAv2 train + val + Visual Genome QA (`train_files: ['vqa_train', 'vqa_val',
#   'vg_qa']`) in BLIP's JSON list format, no validation split (BLIP trains on val), test
#   on test-dev2015: VQAAccuracy writes the EvalAI submission file.
# DEPARTURE: BLIP fine-tunes VQA at 480 x 480 (`image_size: 480`), interpolating the ViT
# position embeddings; vlp's load_from does not (a mismatched tensor is skipped), so this
# keeps blip_base.py's 224 px.
# load_from: the pre-training run of configs/blip/blip_base.py, or the official BLIP weights
# converted with tools/convert/hf_blip_to_vlp.py (loaded non-strictly: the ITC / ITM parts,
# momentum twins and queue of the checkpoint are unused keys; BLIP's shared encoder /
# decoder tensors initialise the question encoder and the separate answer decoder).
_base_ = ['../_base_/models/blip_vqa.py', '../_base_/datasets/vqav2.py',
          '../_base_/schedules/blip_adamw_step_20e.py', '../_base_/default_runtime.py']
__tok = _base_.model.tokenizer
image_size = 224
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.5, 1.0),
         interpolation='bicubic'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='RandAugment', num_ops=2, magnitude=5),
    dict(type='CleanCaption', max_words=50, style='blip', key='question'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tok, key='question'),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='CleanCaption', max_words=50, style='blip', key='question'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tok, key='question'),
]
# BLIP's JSON lists (data/vqav2/vqa_train.json, vqa_val.json: "image" relative to the COCO
# image root, "train2014/COCO_train2014_...jpg"; vg_qa.json relative to data/vqav2/vg)
train_dataloader = dict(
    batch_size=16,  # x 16 = 256
    dataset=dict(question_file=None, annotation_file=None,
                 ann_file=['vqa_train.json', 'vqa_val.json', 'vg_qa.json'],
                 img_prefix=['.', '.', 'vg'], pipeline=train_pipeline))
test_dataloader = dict(batch_size=32, dataset=dict(pipeline=test_pipeline))
test_evaluator = dict(output_file='work_dirs/blip_vqa/vqav2_test-dev2015_submission.json')
# no validation: BLIP trains on val2014 too
val_dataloader = val_evaluator = val_cfg = None
load_from = 'work_dirs/blip_base/epoch_20.pth'  # or tools/convert/hf_blip_to_vlp.py output

max_epochs = 10
optim_wrapper = dict(optimizer=dict(lr=2e-5, weight_decay=0.05))
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0, end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=256, enable=False)
