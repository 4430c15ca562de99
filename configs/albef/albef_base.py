# ALBEF (Li et al. 2021) pretraining as in the paper's 4M-image setting: ViT-B/16 image
# encoder initialised from DeiT-B/16 (ImageNet-1k), BERT-base split into a 6-layer text
# encoder and a 6-layer fusion encoder (cross-attention to the image tokens in each fusion
# layer), 256-d ITC space, ITC with a 65,536-feature queue, ITM with hard negatives, MLM
# (15%), momentum distillation (alpha 0.4 ramped over the first epoch, EMA 0.995), 30
# epochs, AdamW (lr 1e-4, weight decay 0.02), 256 x 256 images, batch 512 (64 x 8 GPUs).
#
# Data (not downloaded by vlp), ALBEF's JSON annotation files with the image paths they
# hold ([{"image": path, "caption": str or [str]}]):
#   data/albef/{coco,vg,cc3m_train,cc3m_val,sbu}.json   (the 4M set; add cc12m.json for 14M)
#   data/coco/...   (COCO Karpathy test for the retrieval evaluation, see the base file)
#   data/bert-base-uncased/{vocab.txt,model.safetensors}   (HF bert-base-uncased)
# DeiT-B/16 weights come from timm (`pretrained=True`, hub) or a local file
# (`pretrained=False, checkpoint='data/deit_base_patch16_224.pth', adapt_checkpoint=True`);
# timm resamples the 224-px position embeddings to 256 px.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/coco_retrieval.py',
]
image_size = 256
tokenizer = dict(type='BertTokenizer', vocab_file='data/bert-base-uncased/vocab.txt',
                 lowercase=True, max_length=30)
bert = dict(type='BertEncoder', vocab_size=30522, hidden_size=768, num_heads=12,
            intermediate_size=3072, max_position_embeddings=512,
            pretrained='data/bert-base-uncased')

model = dict(
    type='ALBEF',
    # ALBEF normalises with CLIP's image statistics
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[122.771, 116.746, 104.094],
                           std=[68.501, 66.632, 70.323]),
    vision=dict(type='TimmTower', model_name='deit_base_patch16_224', img_size=image_size,
                pretrained=True),
    text=dict(bert, num_layers=6),  # BERT layers 0-5
    fusion=dict(bert, num_layers=6, with_embeddings=False, cross_attention_layers='all',
                pretrained_layer_offset=6),  # BERT layers 6-11 + new cross-attention
    vision_proj=dict(type='Projection', in_dim=768, out_dim=256, bias=True, init_std=0.02),
    text_proj=dict(type='Projection', in_dim=768, out_dim=256, bias=True, init_std=0.02),
    itm_head=dict(type='ITMHead', hidden_size=768),
    mlm_head=dict(type='MLMHead', hidden_size=768, vocab_size=30522),
    # temperature 0.07, clamped to [0.001, 0.5] as ALBEF's temp.clamp_(0.001, 0.5)
    itc=dict(type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
             max_logit_scale=1000.0),
    queue_size=65536,
    alpha=0.4,
    mlm_probability=0.15,
    tokenizer=tokenizer,
    grad_checkpointing=False)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.2, 1.0),
         interpolation='bicubic'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='RandAugment', num_ops=2, magnitude=7),
    dict(type='CleanCaption', max_words=30, style='albef'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='CleanCaption', max_words=30, style='albef'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='ImageTextJsonDataset', data_root='data/albef',
                 ann_file=['coco.json', 'vg.json', 'cc3m_train.json', 'cc3m_val.json',
                           'sbu.json'],
                 pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# ITC ranking, then the top-256 candidates of every query re-scored by ITM (ALBEF, COCO)
val_evaluator = dict(type='ITMRetrievalMetric', k=256, batch_size=128)
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

custom_hooks = [
    dict(type='MomentumUpdateHook', momentum=0.995),
    dict(type='FeatureQueueHook'),
    dict(type='DistillAlphaHook'),  # alpha: 0 -> 0.4 over the first epoch
]

max_epochs = 30
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=1e-4, weight_decay=0.02),
    # no weight decay on biases and norms (timm's filter_bias_and_bn, as ALBEF);
    # bypass_duplicate: the MLM decoder shares its weight with the word embeddings
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True))
param_scheduler = [
    # warm-up 1e-5 -> 1e-4 over the first 2,000 iterations (ALBEF: 20 steps of 100 its)
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2000),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=512, enable=False)
