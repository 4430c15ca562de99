# ALBEF (Li et al. 2021) pretraining as in the paper's 4M-image setting: ViT-B/16 image
# encoder initialised from DeiT-B/16 (ImageNet-1k), BERT-base split into a 6-layer text
# encoder and a 6-layer fusion encoder (cross-attention to the image tokens in each fusion
# layer), 256-d ITC space, ITC with a 65,536-feature queue, ITM with hard negatives, MLM
# (15%), momentum distillation (alpha 0.4 ramped over the first epoch, EMA 0.995), 30
# epochs, AdamW (lr 1e-4, weight decay 0.02), 256 x 256 images, batch 512 (64 x 8 GPUs).
# The layers: the model (configs/_base_/models/albef.py), the 4M set (add CC12M for the
# 14M setting: datasets/pretrain_14m.py), COCO Karpathy test for the retrieval evaluation,
# the schedule; each names the files it reads (data/albef/*.json, data/coco/...,
# data/bert-base-uncased/, DeiT-B/16 weights).
_base_ = ['../_base_/models/albef.py', '../_base_/datasets/pretrain_4m.py',
          '../_base_/datasets/coco_retrieval.py',
          '../_base_/schedules/albef_adamw_cosine_30e.py', '../_base_/default_runtime.py']
train_dataloader = dict(dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
# ITC ranking, then the top-256 candidates of every query re-scored by ITM (ALBEF, COCO)
val_evaluator = dict(type='ITMRetrievalMetric', k=256, batch_size=128)
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')
