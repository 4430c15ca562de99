# BLIP tiny demo: the BLIP architecture and objectives (ViT image encoder; one BERT text
# transformer run as unimodal encoder, image-grounded encoder and image-grounded decoder
# sharing all but the self-attention; ITC with momentum features, a feature queue and
# momentum distillation; ITM with hard negatives; LM with label smoothing 0.1) at toy size,
# trained on the embedded demo data on CPU. The test split is captioned (beam search) and
# scored with BLEU / CIDEr. `python tools/train.py configs/blip/blip_tiny_demo.py`; figures
# in docs/models.md. As the ALBEF demo (random init): queue warm-up of 160 steps and EMA
# 0.95 (BLIP: from the first step, 0.995).
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/demo_retrieval.py',
]
demo_tokenizer = dict(type='DemoTokenizer', style='bert', max_length=32,
                      additional_special_tokens=['[DEC]', '[ENC]'])
vocab_size = 55  # 53 demo tokens + [DEC] + [ENC]
image_size = 64
width = 96
embed_dim = 64

model = dict(
    type='BLIP',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    vision=dict(type='TimmTower', model_name='vit_base_patch16_224', img_size=image_size,
                patch_size=8, embed_dim=width, depth=3, num_heads=4),
    # no dropout at toy scale (as the ALBEF demo)
    text=dict(type='BertEncoder', vocab_size=vocab_size, hidden_size=width, num_layers=2,
              num_heads=4, intermediate_size=4 * width, max_position_embeddings=32,
              type_vocab_size=0, hidden_dropout=0.0, attention_dropout=0.0,
              cross_attention_layers='all'),
    vision_proj=dict(type='Projection', in_dim=width, out_dim=embed_dim, bias=True,
                     init_std=0.02),
    text_proj=dict(type='Projection', in_dim=width, out_dim=embed_dim, bias=True,
                   init_std=0.02),
    itm_head=dict(type='ITMHead', hidden_size=width),
    lm_head=dict(type='MLMHead', hidden_size=width, vocab_size=vocab_size),
    itc=dict(type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
             max_logit_scale=1000.0),
    caption_loss=dict(type='CaptionLoss', label_smoothing=0.1),
    queue_size=1024,
    queue_init='empty',
    alpha=0.4,
    predict_mode='caption',
    generation_cfg=dict(num_beams=3, max_length=30, min_length=5),
    tokenizer=demo_tokenizer)

pipeline = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=demo_tokenizer)]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=pipeline))
val_dataloader = dict(dataset=dict(pipeline=pipeline))
test_dataloader = dict(dataset=dict(pipeline=pipeline))
val_evaluator = dict(type='CaptionMetric')
test_evaluator = val_evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

custom_hooks = [
    dict(type='MomentumUpdateHook', momentum=0.95),
    dict(type='FeatureQueueHook', start_iter=160),
    dict(type='DistillAlphaHook'),
]

max_epochs = 8
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.02),
    # bypass_duplicate: shared encoder/decoder modules, tied LM head
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=40),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=64, enable=False)
test_after_train = True  # tools/train.py reports the test split at the end
