# ViLT-B/32 (Kim et al. 2021) pre-training as in the paper: one single-stream transformer
# in the ViT-B/32 layout (12 pre-LN blocks, width 768, 12 heads, patch 32) initialised from
# ImageNet ViT-B/32 weights (the paper: ImageNet-21k pre-trained, 1k fine-tuned), with
# BERT-base-uncased's tokenizer and freshly initialised word embeddings (ViLT does not use
# BERT weights), text length 40; objectives ITM (half of the images replaced by other
# images) + WPA (IPOT, weight 0.1) + MLM with whole-word masking (15%); AdamW lr 1e-4,
# weight decay 0.01, linear warm-up over the first 10% of the steps then linear decay to 0,
# 100k steps (ViLT-B/32 200k: set max_iters=200000), batch 4096 (e.g. 64 GPUs x 64; or fewer
# GPUs with gradient accumulation: accumulative_counts).
#
# No image augmentation in pre-training (ViLT uses RandAugment only when fine-tuning).
# Departures: see configs/_base_/models/vilt.py (384 x 384 images, one LayerNorm epsilon,
# the ITM negative from the batch).
# The layers: the model, the 4M set (COCO, VG, SBU, GCC = CC3M: ViLT's pre-training data),
# COCO Karpathy test for the zero-shot retrieval evaluation, the schedule; each names the
# files it reads.
# Retrieval scores EVERY image-text pair with the ITM head (ViLT has no ITC stage): on COCO
# 5k that is 5k x 25k pairs per direction, and the metric holds every test image in
# memory (5k x 3 x 384 x 384 fp32, 8.8 GB): run it on many GPUs or on a subset.
_base_ = ['../_base_/models/vilt.py', '../_base_/datasets/pretrain_4m.py',
          '../_base_/datasets/coco_retrieval.py',
          '../_base_/schedules/vilt_adamw_linear_100k.py', '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=64,  # x 64 GPUs = 4096
                        sampler=dict(type='InfiniteSampler'),
                        dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
# k >= the gallery: every pair scored by ITM (the ITC stage is a constant, see ViLT.predict)
val_evaluator = dict(type='ITMRetrievalMetric', k=10 ** 9, batch_size=256)
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

# iteration-based schedule: checkpoints and logs by iteration
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000))
log_processor = dict(by_epoch=False)
