# BLIP (Li et al. 2022) pretraining, ViT-B/16 setting of the paper (Sec. 4.1): ViT-B/16
# image encoder initialised from ImageNet weights, a BERT-base text transformer (12
# layers, cross-attention to the image in every layer) initialised from bert-base-uncased
# and run as unimodal encoder ([CLS]), image-grounded encoder ([ENC], ITM) and
# image-grounded decoder ([DEC], LM; shares all but the self-attention with the encoder),
# ITC with momentum encoders (EMA 0.995), a 57,600-feature queue and momentum distillation
# (alpha 0.4), ITM with hard negatives, LM with label smoothing 0.1; 20 epochs, AdamW
# (weight decay 0.05), lr warmed up to 3e-4 then decayed by 0.85 per epoch, 224 px random
# crops, batch 2880 (e.g. 90 x 32 GPUs).
#
# Data (not downloaded by vlp), BLIP's JSON annotation files
# ([{"image": path, "caption": str or [str]}]):
#   data/blip/{coco_karpathy_train,vg_caption,cc3m,cc12m,sbu}.json (14M; CapFilt output
#   files have the same format, see tools/capfilt.py)
#   data/coco/...   (COCO Karpathy test, retrieval evaluation, see the base file)
#   data/bert-base-uncased/{vocab.txt,model.safetensors}
# The ViT-B/16 ImageNet weights come from timm (`pretrained=True`, hub) or a local file.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/coco_retrieval.py',
]
image_size = 224
# BLIP adds [DEC] (decoder bos) and [ENC] (ITM) to BERT's vocabulary: 30,524 tokens
tokenizer = dict(type='BertTokenizer', vocab_file='data/bert-base-uncased/vocab.txt',
                 lowercase=True, max_length=35, additional_special_tokens=['[DEC]', '[ENC]'])
vocab_size = 30524
text_encoder = dict(type='BertEncoder', vocab_size=vocab_size, hidden_size=768, num_layers=12,
            num_heads=12, intermediate_size=3072, max_position_embeddings=512,
            type_vocab_size=0, cross_attention_layers='all',
            pretrained='data/bert-base-uncased')

model = dict(
    type='BLIP',
    # BLIP normalises with CLIP's image statistics
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[122.771, 116.746, 104.094],
                           std=[68.501, 66.632, 70.323]),
    vision=dict(type='TimmTower', model_name='vit_base_patch16_224.augreg_in21k_ft_in1k',
                img_size=image_size, pretrained=True, drop_path_rate=0.0),
    text=text_encoder,
    vision_proj=dict(type='Projection', in_dim=768, out_dim=256, bias=True, init_std=0.02),
    text_proj=dict(type='Projection', in_dim=768, out_dim=256, bias=True, init_std=0.02),
    itm_head=dict(type='ITMHead', hidden_size=768),
    lm_head=dict(type='MLMHead', hidden_size=768, vocab_size=vocab_size),
    share_decoder=True,
    itc=dict(type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
             max_logit_scale=1000.0),
    caption_loss=dict(type='CaptionLoss', label_smoothing=0.1),
    queue_size=57600,
    alpha=0.4,
    # retrieval evaluation during pretraining; 'caption' + CaptionMetric for captioning
    predict_mode='retrieval',
    generation_cfg=dict(num_beams=3, max_length=30, min_length=10),
    tokenizer=tokenizer,
    grad_checkpointing=False)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.2, 1.0),
         interpolation='bicubic'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='RandAugment', num_ops=2, magnitude=5),
    dict(type='CleanCaption', max_words=30, style='blip'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='CleanCaption', max_words=30, style='blip'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer),
]
train_dataloader = dict(
    batch_size=90,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='ImageTextJsonDataset', data_root='data/blip',
                 ann_file=['coco_karpathy_train.json', 'vg_caption.json', 'cc3m.json',
                           'cc12m.json', 'sbu.json'],
                 pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_evaluator = dict(type='ITMRetrievalMetric', k=256, batch_size=128)
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

custom_hooks = [
    dict(type='MomentumUpdateHook', momentum=0.995),
    dict(type='FeatureQueueHook'),
    dict(type='DistillAlphaHook'),
]

max_epochs = 20
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=3e-4, weight_decay=0.05),
    # bypass_duplicate: the decoder shares modules with the encoder and the LM head its
    # output matrix with the word embeddings
    paramwise_cfg=dict(bypass_duplicate=True))
param_scheduler = [
    # warm-up 1e-6 -> 3e-4 over the first 3,000 iterations (BLIP: warmup_steps 3000)
    dict(type='LinearLR', start_factor=1e-6 / 3e-4, by_epoch=False, begin=0, end=3000),
    # then x0.85 per epoch (BLIP's step_lr_schedule, lr_decay_rate 0.85)
    dict(type='ExponentialLR', gamma=0.85, by_epoch=True, begin=1, end=max_epochs),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3))
auto_scale_lr = dict(base_batch_size=2880, enable=False)
