# BLIP tiny demo: the BLIP architecture and objectives (ViT image encoder; one BERT text
# transformer run as unimodal encoder, image-grounded encoder and image-grounded decoder
# sharing all but the self-attention; ITC with momentum features, a feature queue and
# momentum distillation; ITM with hard negatives; LM with label smoothing 0.1) at toy size,
# trained on the embedded demo data on CPU. The test split is captioned (beam search) and
# scored with BLEU / CIDEr. `python tools/train.py configs/blip/blip_tiny_demo.py`; figures
# in docs/models.md. As the ALBEF demo (random init): queue warm-up of 160 steps and EMA
# 0.95 (BLIP: from the first step, 0.995).
_base_ = ['../_base_/models/blip.py', '../_base_/datasets/demo_retrieval.py',
          '../_base_/schedules/blip_adamw_step_20e.py', '../_base_/default_runtime.py']
demo_tokenizer = dict(type='DemoTokenizer', style='bert', max_length=32,
                      additional_special_tokens=['[DEC]', '[ENC]'])
vocab_size = 55  # 53 demo tokens + [DEC] + [ENC]
image_size = 64
width = 96
embed_dim = 64

# the paper's model at toy size, from random weights
model = dict(
    vision=dict(model_name='vit_base_patch16_224', img_size=image_size, patch_size=8,
                embed_dim=width, depth=3, num_heads=4, pretrained=False, drop_path_rate=None),
    # no dropout at toy scale (as the ALBEF demo)
    text=dict(vocab_size=vocab_size, hidden_size=width, num_layers=2, num_heads=4,
              intermediate_size=4 * width, max_position_embeddings=32, hidden_dropout=0.0,
              attention_dropout=0.0, pretrained=None),
    vision_proj=dict(in_dim=width, out_dim=embed_dim),
    text_proj=dict(in_dim=width, out_dim=embed_dim),
    itm_head=dict(hidden_size=width),
    lm_head=dict(hidden_size=width, vocab_size=vocab_size),
    queue_size=1024,
    queue_init='empty',
    predict_mode='caption',
    generation_cfg=dict(min_length=5),
    tokenizer=dict(demo_tokenizer, _delete_=True))

train_pipeline = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=demo_tokenizer)]
test_pipeline = train_pipeline
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_evaluator = dict(type='CaptionMetric')
test_evaluator = val_evaluator

custom_hooks = [
    dict(type='MomentumUpdateHook', momentum=0.95),
    dict(type='FeatureQueueHook', start_iter=160),
    dict(type='DistillAlphaHook'),
]

max_epochs = 8
# lr 1e-3 at toy scale, torch's default AdamW kernel; no decay on norms and biases (the
# schedule's bypass_duplicate: shared encoder / decoder modules, tied LM head)
optim_wrapper = dict(
    optimizer=dict(lr=1e-3, weight_decay=0.02, fused=None),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=40),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=64)
test_after_train = True  # tools/train.py reports the test split at the end
