# ViLT-B/32 (Kim et al. 2021) pre-training as in the paper: one single-stream transformer
# in the ViT-B/32 layout (12 pre-LN blocks, width 768, 12 heads, patch 32) initialised from
# ImageNet ViT-B/32 weights (the paper: ImageNet-21k pre-trained, 1k fine-tuned), with
# BERT-base-uncased's tokenizer and freshly initialised word embeddings (ViLT does not use
# BERT weights), text length 40; objectives ITM (half of the images replaced by other
# images) + WPA (IPOT, weight 0.1) + MLM with whole-word masking (15%); AdamW lr 1e-4,
# weight decay 0.01, linear warm-up over the first 10% of the steps then linear decay to 0,
# 100k steps (ViLT-B/32 200k: set max_iters=200000), batch 4096 (e.g. 64 GPUs x 64; or fewer
# GPUs with gradient accumulation: accumulative_counts).
#
# No image augmentation in pre-training (ViLT uses RandAugment only when fine-tuning).
# Departures: images are resized to 384 x 384 (ViLT: shorter side 384, longer at most 640,
# at most 200 of the patches sampled per image; here 144 patches, all kept), one LayerNorm
# epsilon (1e-6) for the text embeddings' norm too (BERT's is 1e-12), the ITM negative is
# another image of the batch (ViLT: a random image of the dataset); see
# vlp/models/algorithms/vilt.py and docs/models.md.
#
# Data (not downloaded by vlp): the 4M set in ALBEF's JSON format (COCO, VG, SBU, GCC =
# CC3M; ViLT's pre-training data), [{"image": path, "caption": str or [str]}]:
#   data/albef/{coco,vg,cc3m_train,cc3m_val,sbu}.json (a missing file fails with
#       FileNotFoundError naming its path when the dataset is built)
#   data/coco/...   (COCO Karpathy test for the zero-shot retrieval evaluation)
#   data/bert-base-uncased/vocab.txt
#   data/vit_base_patch32_384.pth (timm's ViT-B/32-384; converting it to this backbone's
#       names is not provided: the paper's checkpoints come through
#       tools/convert/hf_vilt_to_vlp.py instead)
# Retrieval scores EVERY image-text pair with the ITM head (ViLT has no ITC stage): on COCO
# 5k that is 5k x 25k pairs per direction, and the metric holds every test image in
# memory (5k x 3 x 384 x 384 fp32, 8.8 GB): run it on many GPUs or on a subset.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/coco_retrieval.py',
]
image_size = 384
max_text_len = 40
tokenizer = dict(type='BertTokenizer', vocab_file='data/bert-base-uncased/vocab.txt',
                 lowercase=True, max_length=max_text_len)

model = dict(
    type='ViLT',
    # ViLT normalises to [-1, 1] (mean = std = 0.5)
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[127.5, 127.5, 127.5],
                           std=[127.5, 127.5, 127.5]),
    backbone=dict(type='SingleStreamTransformer', img_size=image_size, patch_size=32,
                  vocab_size=30522, max_text_len=max_text_len, embed_dim=768, depth=12,
                  num_heads=12, mlp_ratio=4.0, drop=0.1, ln_eps=1e-6, max_image_len=200),
    itm_head=dict(type='ITMHead', hidden_size=768),
    mlm_head=dict(type='MLMHead', hidden_size=768, vocab_size=30522),
    wpa=dict(type='WordPatchAlignmentLoss', beta=0.5, iterations=50, inner=1),
    itm_neg_prob=0.5,
    mlm_probability=0.15,
    whole_word_masking=True,
    loss_weights=dict(itm=1.0, mlm=1.0, wpa=0.1),
    tokenizer=tokenizer,
    grad_checkpointing=False)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer, random_caption=True, return_word_ids=True),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer),
]
train_dataloader = dict(
    batch_size=64,  # x 64 GPUs = 4096
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='ImageTextJsonDataset', data_root='data/albef',
                 ann_file=['coco.json', 'vg.json', 'cc3m_train.json', 'cc3m_val.json',
                           'sbu.json'],
                 pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# k >= the gallery: every pair scored by ITM (the ITC stage is a constant, see ViLT.predict)
val_evaluator = dict(type='ITMRetrievalMetric', k=10 ** 9, batch_size=256)
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

max_iters = 100000
warmup_iters = max_iters // 10
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=1e-4, weight_decay=0.01, betas=(0.9, 0.98),
                   eps=1e-8),
    # no weight decay on biases and norms (ViLT); bypass_duplicate: the MLM decoder is tied
    # to the word embeddings
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=False,
         begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=4096, enable=False)
