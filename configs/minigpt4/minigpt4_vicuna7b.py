# MiniGPT-4 (Zhu et al. 2023), first (pretraining) stage: BLIP-2's frozen EVA ViT-g/14 +
# LayerNorm + Q-Former (32 queries), ONE trainable linear layer (768 -> 4096) into a frozen
# Vicuna-7B (v0). The visual prompts sit inside the text prompt
# '###Human: <Img><ImageHere></Img> ###Assistant: ', the caption is the target. 20k steps at
# batch 256 (4 x 64), AdamW weight decay 0.05, lr 1e-4 after 5k warm-up steps from 1e-6,
# cosine to 8e-5; ViT and Vicuna in fp16. Trainable: the projection only (~3M).
# Choices: texts end with Vicuna's EOS (MiniGPT-4 appends '###'); vision, ln_vision and
# Q-Former come from a BLIP-2 checkpoint in vlp's key layout (`stage1.checkpoint`).
# Files (not downloaded): data/vicuna-7b/ (HF format), data/minigpt4/blip2_vitg.pth,
# data/minigpt4/*.json (LAION / CC / SBU pairs, ~5M).
_base_ = ['../blip2/blip2_stage2_opt.py']
lm_path = 'data/vicuna-7b'
tokenizer = dict(type='LMTokenizer', pretrained=lm_path, max_length=32)
vicuna_7b = dict(model_type='llama', vocab_size=32000, hidden_size=4096,
                 intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 max_position_embeddings=2048, rms_norm_eps=1e-6, pad_token_id=0,
                 bos_token_id=1, eos_token_id=2)
model = dict(
    freeze_ln_vision=True,
    freeze_qformer=True,
    projector='linear',
    # `config` (Vicuna-7B's architecture) is used only without `pretrained` (tests)
    llm=dict(_delete_=True, pretrained=lm_path, torch_dtype='fp16', config=vicuna_7b),
    freeze_llm=True,
    prompt='###Human: <Img><ImageHere></Img> ###Assistant: ',
    stage1=dict(checkpoint='data/minigpt4/blip2_vitg.pth'),
    generation_cfg=dict(_delete_=True, num_beams=1, max_new_tokens=300, min_length=1,
                        repetition_penalty=1.0, length_penalty=1.0),
    tokenizer=tokenizer)
train_dataloader = dict(
    batch_size=64,  # x 4 GPUs = 256
    dataset=dict(data_root='data/minigpt4', ann_file=['laion.json', 'cc_sbu.json'],
                 pipeline=[
                     dict(type='LoadImage'),
                     dict(type='RandomResizedCrop', size=224, scale=(0.5, 1.0),
                          interpolation='bicubic'),
                     dict(type='CleanCaption', max_words=50, style='blip'),
                     dict(type='ToTensor'),
                     dict(type='Tokenize', tokenizer=tokenizer),
                 ]))
max_iters = 20000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 1e-4, by_epoch=False, begin=0, end=5000),
    dict(type='CosineAnnealingLR', eta_min=8e-5, by_epoch=False, begin=5000, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
auto_scale_lr = dict(base_batch_size=256, enable=False)
