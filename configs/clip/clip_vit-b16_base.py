# CLIP ViT-B/16 (Radford et al. 2021), as in the paper: 224 px images, ViT-B/16 image
# encoder (width 768, 12 layers, 12 heads, pre-LN, QuickGELU), text transformer (width 512,
# 12 layers, 8 heads, causal, 77 tokens, 49,408 BPE vocabulary, EOT pooling), 512-d joint
# space, symmetric InfoNCE with a learnable temperature initialised at 0.07 and clipped to
# logit scale 100, negatives from every rank. The paper's WIT-400M corpus is not public:
# point data/pretrain at LAION-400M or another web corpus (see the dataset base file).
# The layers: the model (configs/_base_/models/clip_vit-b16.py), the pre-training CSV, COCO
# Karpathy test for the retrieval evaluation, the schedule.
_base_ = ['../_base_/models/clip_vit-b16.py', '../_base_/datasets/image_text_csv.py',
          '../_base_/datasets/coco_retrieval.py',
          '../_base_/schedules/clip_adamw_cosine_32e.py', '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=128, dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))

# 32,768 = 128 per GPU x 256 GPUs; bf16 mixed precision; ZeRO-1 shards the AdamW state
strategy = dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=1),
                bf16=dict(enabled=True), gradient_clipping=0.0)
