# LLaVA-1.5 (Liu et al. 2023, "Improved Baselines with Visual Instruction Tuning"), stage 1,
# feature alignment: the penultimate-layer patch tokens of a frozen CLIP ViT-L/14 (336 px,
# 576 tokens, class token dropped) go through a trainable 2-layer MLP projector
# (`mlp2x_gelu`, 1024 -> 4096 -> 4096) into a frozen Vicuna-7B; no Q-Former. LM loss on the
# caption only; LCS-558K image-caption pairs, 1 epoch, batch 256, lr 1e-3 (warm-up 3%,
# cosine), no weight decay, bf16.
# Choices: the penultimate layer is timm's ViT-L/14 cut to 23 blocks without its final norm
# (the checkpoint's last block and norm are skipped: strict=False); the 'plain' template is
# BOS, image, caption, EOS.
# Files (not downloaded): data/vicuna-7b/ (HF format, v1.5), data/clip-vit-l-14-336.bin
# (OpenAI CLIP or open_clip weights; timm's filter converts them), data/llava/*.json.
_base_ = ['../_base_/default_runtime.py']
image_size = 336
lm_path = 'data/vicuna-7b'
tokenizer = dict(type='LMTokenizer', pretrained=lm_path, max_length=256)
vicuna_7b = dict(model_type='llama', vocab_size=32000, hidden_size=4096,
                 intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 max_position_embeddings=4096, rms_norm_eps=1e-5, pad_token_id=0,
                 bos_token_id=1, eos_token_id=2)
model = dict(
    type='BLIP2LM',
    # CLIP's image statistics
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[122.771, 116.746, 104.094],
                           std=[68.501, 66.632, 70.323]),
    vision=dict(type='TimmTower', model_name='vit_large_patch14_clip_336.openai',
                img_size=image_size, depth=23, final_norm=False,
                checkpoint='data/clip-vit-l-14-336.bin', strict=False),
    drop_vision_prefix=1,  # patch tokens only
    vision_dtype='bf16',
    ln_vision=False,
    qformer=None,
    use_queries=False,
    projector='mlp2x_gelu',
    # `config` (Vicuna-7B v1.5's architecture) is used only without `pretrained` (tests)
    llm=dict(pretrained=lm_path, torch_dtype='bf16', config=vicuna_7b),
    freeze_llm=True,
    prompt='<ImageHere>',
    generation_cfg=dict(num_beams=1, max_new_tokens=128),
    tokenizer=tokenizer)
train_dataloader = dict(
    batch_size=32,  # x 8 GPUs = 256
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='ImageTextJsonDataset', data_root='data/llava',
                 ann_file='blip_laion_cc_sbu_558k.json',
                 pipeline=[
                     dict(type='LoadImage'),
                     dict(type='Resize', size=(image_size, image_size),
                          interpolation='bicubic'),
                     dict(type='ToTensor'),
                     dict(type='Tokenize', tokenizer=tokenizer),
                 ]))
max_epochs = 1
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0),
    # a paramwise_cfg makes mmengine skip requires_grad=False parameters
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
# 558K / 256 = 2,180 steps; warm-up 3%
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=65),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=65, end=2180),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=256, enable=False)
strategy = dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=2),
                bf16=dict(enabled=True), gradient_clipping=1.0)
