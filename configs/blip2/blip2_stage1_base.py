# BLIP-2 (Li et al. 2023) stage 1: vision-language representation learning from a frozen
# image encoder. Frozen EVA ViT-g/14 (fp16, 224 px) -> trainable LayerNorm -> Q-Former
# (bert-base-uncased init, 32 queries, cross-attention every 2nd layer, query FFNs copied
# from the text FFNs) trained with ITC (max over queries, all-rank in-batch negatives, label
# smoothing 0.1), ITM (hard negatives, logits averaged over queries) and ITG (multi-modal
# causal mask, [DEC]); AdamW (0.9, 0.98), weight decay 0.05, peak lr 1e-4 after 2k warm-up
# steps, cosine decay, 250k steps at batch 1680 (ViT-g), random resized crop + flip.
# The layers: the model (configs/_base_/models/blip2.py, with its simplifications), BLIP-2's
# 129M pairs, COCO Karpathy test for the retrieval evaluation, the schedule.
_base_ = ['../_base_/models/blip2.py', '../_base_/datasets/blip2_pretrain_129m.py',
          '../_base_/datasets/coco_retrieval.py',
          '../_base_/schedules/blip2_stage1_adamw_cosine_250k.py',
          '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=105,  # x 16 GPUs = 1680
                        dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
# ITC ranking (max over the 32 query features), the top 128 re-scored by ITM (LAVIS)
val_evaluator = dict(type='ITMRetrievalMetric', k=128, batch_size=128)
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

# iteration-based schedule: checkpoints and logs by iteration
default_hooks = dict(checkpoint=dict(interval=10000, by_epoch=False, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
