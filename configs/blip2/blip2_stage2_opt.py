# BLIP-2 (Li et al. 2023) stage 2, generative pretraining with OPT-2.7B (Sec. 3.3, 4): the
# stage-1 frozen EVA ViT-g/14 (fp16) -> LayerNorm -> Q-Former (32 queries, 768-d) ->
# linear projection to OPT's 2560-d input embeddings, prepended as soft visual prompts to
# the text; frozen OPT (fp16), LM loss on the text only. Trainable: ln_vision, Q-Former,
# projection. AdamW (0.9, 0.98), weight decay 0.05, lr 1e-4 after 2k linear warm-up
# steps, cosine decay to 5e-5, 80k steps at batch 1920, 224 px random resized crop + flip.
# Captioning evaluation: beam 5, 8 to 30 generated tokens (LAVIS caption_coco_opt).
# The layers: the model (configs/_base_/models/blip2_opt.py: the vision tower of
# configs/blip2/blip2_stage1_base.py, timm's `eva_giant_patch14_224.clip_ft_in1k` standing
# in for EVA-CLIP ViT-g, all 40 layers, the paper drops the last one; choices there), the
# 129M pairs as stage 1, COCO Karpathy test captioned, the schedule.
_base_ = ['../_base_/models/blip2_opt.py', '../_base_/datasets/blip2_pretrain_129m.py',
          '../_base_/datasets/coco_retrieval.py',
          '../_base_/schedules/blip2_stage2_adamw_cosine_80k.py',
          '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=120,  # x 16 GPUs = 1920
                        dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
val_evaluator = dict(type='CaptionMetric')
test_evaluator = val_evaluator

# iteration-based schedule: checkpoints and logs by iteration
default_hooks = dict(checkpoint=dict(interval=10000, by_epoch=False, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
