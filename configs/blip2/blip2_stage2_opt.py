# BLIP-2 (Li et al. 2023) stage 2, generative pretraining with OPT-2.7B (Sec. 3.3, 4): the
# stage-1 frozen EVA ViT-g/14 (fp16) -> LayerNorm -> Q-Former (32 queries, 768-d) ->
# linear projection to OPT's 2560-d input embeddings, prepended as soft visual prompts to
# the text; frozen OPT (fp16), LM loss on the text only. Trainable: ln_vision, Q-Former,
# projection. AdamW (0.9, 0.98), weight decay 0.05, lr 1e-4 after 2k linear warm-up
# steps, cosine decay to 5e-5, 80k steps at batch 1920, 224 px random resized crop + flip.
# Captioning evaluation: beam 5, 8 to 30 generated tokens (LAVIS caption_coco_opt).
#
# Choices: the vision tower is the one of configs/blip2/blip2_stage1_base.py (timm's
# `eva_giant_patch14_224.clip_ft_in1k` standing in for EVA-CLIP ViT-g, all 40 layers; the
# paper drops the last one); vision, ln_vision and Q-Former come from the stage-1
# checkpoint (`stage1.checkpoint`). Texts end with OPT's EOS `</s>` (LAVIS ends them with
# "\n" and stops generation on it). Lengths of generation count generated tokens only.
# Files (not downloaded): data/opt-2.7b/ (HF format: config.json, weights, tokenizer),
# data/blip2/*.json (BLIP-2's 129M pairs, as stage 1), data/coco (Karpathy test).
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/coco_retrieval.py',
]
image_size = 224
lm_path = 'data/opt-2.7b'
tokenizer = dict(type='LMTokenizer', pretrained=lm_path, max_length=32)
model = dict(
    type='BLIP2LM',
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[122.771, 116.746, 104.094],
                           std=[68.501, 66.632, 70.323]),
    vision=dict(type='TimmTower', model_name='eva_giant_patch14_224.clip_ft_in1k',
                img_size=image_size, pretrained=False),
    vision_dtype='fp16',
    ln_vision=True,
    qformer=dict(type='QFormer', num_query_tokens=32, encoder_width=1408,
                 cross_attention_freq=2, vocab_size=30523),
    projector='linear',
    # `config` (OPT-2.7B's architecture) is used only without `pretrained` (tests)
    llm=dict(pretrained=lm_path, torch_dtype='fp16',
             config=dict(model_type='opt', vocab_size=50272, hidden_size=2560,
                         num_hidden_layers=32, ffn_dim=10240, num_attention_heads=32,
                         max_position_embeddings=2048, word_embed_proj_dim=2560,
                         pad_token_id=1, bos_token_id=2, eos_token_id=2)),
    freeze_llm=True,
    prompt='',  # pretraining; captioning fine-tuning uses 'a photo of'
    stage1=dict(checkpoint='work_dirs/blip2_stage1_base/iter_250000.pth'),
    generation_cfg=dict(num_beams=5, max_length=30, min_length=8),
    predict_mode='caption',
    tokenizer=tokenizer)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.5, 1.0),
         interpolation='bicubic'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='CleanCaption', max_words=50, style='blip'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='ToTensor'),
]
train_dataloader = dict(
    batch_size=120,  # x 16 GPUs = 1920
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='ImageTextJsonDataset', data_root='data/blip2',
                 ann_file=['coco_karpathy_train.json', 'vg_caption.json', 'cc3m.json',
                           'cc12m.json', 'sbu.json', 'laion115m_capfilt.json'],
                 pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_evaluator = dict(type='CaptionMetric')
test_evaluator = val_evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

max_iters = 80000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=1e-4, betas=(0.9, 0.98), weight_decay=0.05),
    # a paramwise_cfg makes mmengine skip requires_grad=False parameters (the frozen ViT
    # and LLM never enter the optimizer); no decay on norms and biases as LAVIS
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 1e-4, by_epoch=False, begin=0, end=2000),
    dict(type='CosineAnnealingLR', eta_min=5e-5, by_epoch=False, begin=2000, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10000)
default_hooks = dict(checkpoint=dict(interval=10000, by_epoch=False, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=1920, enable=False)
