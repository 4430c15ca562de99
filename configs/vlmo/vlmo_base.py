# VLMo-Base (Bao et al. 2022), stage 3 of its stage-wise pre-training: vision-language
# pre-training of the whole multiway transformer (ViT-B/16 sized: 12 blocks, 768 wide, 12
# heads, VL-FFN in the top 2 blocks, layer scale 0.1, BEiT relative position bias, stochastic
# depth 0.1) with ITC (dual encoder), ITM with hard negatives from the ITC similarities of
# every rank (fusion encoder, pooler + classifier on the fused [CLS]) and MLM (15%), on the
# 4M image-text set (COCO, Visual Genome, CC3M, SBU), 224 x 224 images, texts of at most 40
# BERT (uncased) tokens. Paper (Sec. 4.1): 200k steps, batch 1024, AdamW (0.9, 0.98),
# peak lr 2e-4, weight decay 0.01, 2.5k warm-up steps then linear decay.
#
# It starts from the stage-2 checkpoint (configs/vlmo/vlmo_base_stage2_text.py; that one from
# stage 1, configs/vlmo/vlmo_base_stage1_image.py): work_dirs/vlmo_base_stage2_text/
# iter_200000.pth. The layers: the model (configs/_base_/models/vlmo.py), the 4M set, COCO
# Karpathy test (zero-shot retrieval at the end), the schedule; each names the files it
# reads. A missing file stops the run before training with an error naming it.
# `python tools/train.py configs/vlmo/vlmo_base.py` (one machine) or
# `tools/dist_train.sh configs/vlmo/vlmo_base.py 8` (torchrun; NNODES/NODE_RANK/MASTER_ADDR
# for several machines); 1024 = 8 GPUs x 128 or 32 x 32 (set train_dataloader.batch_size).
_base_ = ['../_base_/models/vlmo.py', '../_base_/datasets/pretrain_4m.py',
          '../_base_/datasets/coco_retrieval.py',
          '../_base_/schedules/vlmo_adamw_linear_200k.py', '../_base_/default_runtime.py']
load_from = 'work_dirs/vlmo_base_stage2_text/iter_200000.pth'
train_dataloader = dict(batch_size=128, sampler=dict(type='InfiniteSampler'),
                        dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
# dual-encoder (ITC) ranking: coco_retrieval.py's RetrievalMetric
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

# iteration-based schedule: checkpoints and logs by iteration
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000))
log_processor = dict(by_epoch=False)
