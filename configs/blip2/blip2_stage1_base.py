# BLIP-2 (Li et al. 2023) stage 1: vision-language representation learning from a frozen
# image encoder. Frozen EVA ViT-g/14 (fp16, 224 px) -> trainable LayerNorm -> Q-Former
# (bert-base-uncased init, 32 queries, cross-attention every 2nd layer, query FFNs copied
# from the text FFNs) trained with ITC (max over queries, all-rank in-batch negatives, label
# smoothing 0.1), ITM (hard negatives, logits averaged over queries) and ITG (multi-modal
# causal mask, [DEC]); AdamW (0.9, 0.98), weight decay 0.05, peak lr 1e-4 after 2k warm-up
# steps, cosine decay, 250k steps at batch 1680 (ViT-g), random resized crop + flip.
#
# Simplifications (docs/models.md): BLIP-2 drops the last ViT-g layer and uses the
# second-last layer's output; here the whole timm EVA-g is used. timm's
# `eva_giant_patch14_224.clip_ft_in1k` stands in for EVA-CLIP's ViT-g.
# Data (not downloaded): BLIP-2's 129M pairs (COCO, VG, CC3M, CC12M, SBU, LAION-115M with
# CapFilt captions) as JSON files under data/blip2/; data/bert-base-uncased/.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/coco_retrieval.py',
]
image_size = 224
tokenizer = dict(type='BertTokenizer', vocab_file='data/bert-base-uncased/vocab.txt',
                 lowercase=True, max_length=32, additional_special_tokens=['[DEC]'])
vocab_size = 30523  # bert-base-uncased + [DEC]

model = dict(
    type='BLIP2',
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[122.771, 116.746, 104.094],
                           std=[68.501, 66.632, 70.323]),
    vision=dict(type='TimmTower', model_name='eva_giant_patch14_224.clip_ft_in1k',
                img_size=image_size, pretrained=True),
    freeze_vision=True,
    vision_dtype='fp16',
    qformer=dict(type='QFormer', num_query_tokens=32, encoder_width=1408,
                 cross_attention_freq=2, vocab_size=vocab_size,
                 pretrained='data/bert-base-uncased'),
    vision_proj=dict(type='Projection', in_dim=768, out_dim=256, bias=True, init_std=0.02),
    text_proj=dict(type='Projection', in_dim=768, out_dim=256, bias=True, init_std=0.02),
    itm_head=dict(type='ITMHead', hidden_size=768),
    lm_head=dict(type='MLMHead', hidden_size=768, vocab_size=vocab_size),
    itc=dict(type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
             max_logit_scale=1000.0),
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
    dict(type='CleanCaption', max_words=50, style='blip'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer),
]
train_dataloader = dict(
    batch_size=105,  # x 16 GPUs = 1680
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
val_evaluator = dict(type='ITMRetrievalMetric', k=128, batch_size=128)
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

max_iters = 250000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=1e-4, betas=(0.9, 0.98), weight_decay=0.05),
    # bypass_duplicate: the LM head's output matrix is the word embedding matrix
    paramwise_cfg=dict(bypass_duplicate=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 1e-4, by_epoch=False, begin=0, end=2000),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=2000, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=10000)
default_hooks = dict(checkpoint=dict(interval=10000, by_epoch=False, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=1680, enable=False)
