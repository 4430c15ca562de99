# LLaVA-1.5 (Liu et al. 2023, "Improved Baselines with Visual Instruction Tuning"), stage 1,
# feature alignment: the penultimate-layer patch tokens of a frozen CLIP ViT-L/14 (336 px,
# 576 tokens, class token dropped) go through a trainable 2-layer MLP projector
# (`mlp2x_gelu`, 1024 -> 4096 -> 4096) into a frozen Vicuna-7B; no Q-Former. LM loss on the
# caption only; LCS-558K image-caption pairs, 1 epoch, batch 256, lr 1e-3 (warm-up 3%,
# cosine), no weight decay, bf16, DeepSpeed ZeRO-2.
# The layers: the model (configs/_base_/models/llava.py, with its choices and files), the
# 558K pairs, the schedule.
_base_ = ['../_base_/models/llava.py', '../_base_/datasets/llava_pretrain_558k.py',
          '../_base_/schedules/llava_adamw_cosine_1e.py', '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=32,  # x 8 GPUs = 256
                        dataset=dict(pipeline={{_base_.train_pipeline}}))
strategy = dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=2),
                bf16=dict(enabled=True), gradient_clipping=1.0)
