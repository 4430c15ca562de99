# LLaVA-1.5 stage 2, visual instruction tuning: the stage-1 projector and Vicuna-7B both
# train (the CLIP ViT stays frozen), with gradient checkpointing in the LLM and DeepSpeed
# ZeRO-3 (parameters, gradients and AdamW state sharded); 665K instruction mix, 1 epoch,
# batch 128, lr 2e-5 (warm-up 3%, cosine), no weight decay, bf16.
# Limits: BLIP2LM trains single-turn (prompt, answer) pairs: the fixed `prompt` below (the
# v1 system prompt around the image) or per-sample `prompt_ids` (placed after the image);
# LLaVA's multi-turn conversations with per-sample questions need a conversation transform
# that vlp does not have yet.
# Files: the stage-1 checkpoint (`load_from`), data/llava/llava_v1_5_mix665k.json.
_base_ = ['./llava_stage1.py']
model = dict(
    freeze_llm=False,
    llm_grad_checkpointing=True,
    prompt=("A chat between a curious human and an artificial intelligence assistant. "
            "The assistant gives helpful, detailed, and polite answers to the human's "
            "questions. USER: <ImageHere>\n ASSISTANT:"))
load_from = 'work_dirs/llava_stage1/epoch_1.pth'
train_dataloader = dict(
    batch_size=16,  # x 8 GPUs = 128
    dataset=dict(ann_file='llava_v1_5_mix665k.json'))
optim_wrapper = dict(optimizer=dict(lr=2e-5))
# 665K / 128 = 5,197 steps; warm-up 3%
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=156),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=156, end=5197),
]
auto_scale_lr = dict(base_batch_size=128, enable=False)
strategy = dict(type='DeepSpeedStrategy',
                zero_optimization=dict(stage=3, overlap_comm=True, contiguous_gradients=True,
                                       stage3_gather_16bit_weights_on_model_save=True),
                bf16=dict(enabled=True), gradient_clipping=1.0)
