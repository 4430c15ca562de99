# VLMo-Base (Bao et al. 2022), stage 3 of its stage-wise pre-training: vision-language
# pre-training of the whole multiway transformer (ViT-B/16 sized: 12 blocks, 768 wide, 12
# heads, VL-FFN in the top 2 blocks, layer scale 0.1, BEiT relative position bias, stochastic
# depth 0.1) with ITC (dual encoder), ITM with hard negatives from the ITC similarities of
# every rank (fusion encoder, pooler + classifier on the fused [CLS]) and MLM (15%), on the
# 4M image-text set (COCO, Visual Genome, CC3M, SBU), 224 x 224 images, texts of at most 40
# BERT (uncased) tokens. Paper (Sec. 4.1): 200k steps, batch 1024, AdamW (0.9, 0.98),
# peak lr 2e-4, weight decay 0.01, 2.5k warm-up steps then linear decay.
#
# It starts from the stage-2 checkpoint (configs/vlmo/vlmo_base_stage2_text.py; that one from
# stage 1, configs/vlmo/vlmo_base_stage1_image.py). Data (not downloaded by vlp), in ALBEF's
# JSON format ([{"image": path, "caption": str or [str]}]):
#   data/albef/{coco,vg,cc3m_train,cc3m_val,sbu}.json    (+ the images they point to)
#   data/coco/...                  (COCO Karpathy test, zero-shot retrieval at the end)
#   data/bert-base-uncased/vocab.txt                    (BERT's WordPiece vocabulary)
#   work_dirs/vlmo_base_stage2_text/iter_200000.pth     (the stage-2 weights)
# A missing file stops the run before training with an error naming it.
# `python tools/train.py configs/vlmo/vlmo_base.py` (one machine) or
# `tools/dist_train.sh configs/vlmo/vlmo_base.py 8` (torchrun; NNODES/NODE_RANK/MASTER_ADDR
# for several machines); 1024 = 8 GPUs x 128 or 32 x 32 (set train_dataloader.batch_size).
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/coco_retrieval.py',
]
image_size = 224
max_text_len = 40
tokenizer = dict(type='BertTokenizer', vocab_file='data/bert-base-uncased/vocab.txt',
                 lowercase=True, max_length=max_text_len)
stage = 'image_text'
max_iters = 200000
warmup_iters = 2500

model = dict(
    type='VLMo',
    data_preprocessor=dict(type='VLPDataPreprocessor'),  # ImageNet mean / std
    backbone=dict(type='MultiwayTransformer', img_size=image_size, patch_size=16,
                  vocab_size=30522, max_text_len=max_text_len, embed_dim=768, depth=12,
                  num_heads=12, num_vl_layers=2, layer_scale_init=0.1, drop_path_rate=0.1,
                  abs_pos_embed=False, rel_pos_bias=True,
                  text_rel_pos_len=196),  # VLMo's max_text_len_of_initckpt
    vision_proj=dict(type='Projection', in_dim=768, out_dim=768, bias=False, init_std=0.02),
    text_proj=dict(type='Projection', in_dim=768, out_dim=768, bias=False, init_std=0.02),
    itm_head=dict(type='ITMHead', hidden_size=768, pooler=True),
    mlm_head=dict(type='MLMHead', hidden_size=768, vocab_size=30522),
    # the image stage's parts, so that the three stages share one set of weights
    mim_head=dict(type='MIMHead', hidden_size=768, out_dim=16 * 16 * 3),
    visual_tokenizer=dict(type='PixelTarget', patch_size=16),
    stage=stage,
    itc=dict(type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0),
    mlm_probability=0.15,
    tokenizer=tokenizer)
load_from = 'work_dirs/vlmo_base_stage2_text/iter_200000.pth'

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.5, 1.0),
         interpolation='bicubic'),
    dict(type='RandAugment', num_ops=2, magnitude=9),
    dict(type='CleanCaption', max_words=max_text_len, style='albef'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='CleanCaption', max_words=max_text_len, style='albef'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer),
]
train_dataloader = dict(
    batch_size=128,
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
val_evaluator = dict(type='RetrievalMetric')  # dual-encoder (ITC) ranking
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=2e-4, betas=(0.9, 0.98), eps=1e-8,
                   weight_decay=0.01),
    clip_grad=None,
    # no decay on norms, biases, layer scale, [CLS] / [MASK] and the position bias
    # (VLMo's no_decay list); the MLM decoder shares the word embeddings
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True,
                       custom_keys={'rel_pos_bias_table': dict(decay_mult=0.0),
                                    'cls_token': dict(decay_mult=0.0),
                                    'mask_token': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=False,
         begin=warmup_iters, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=10000,
                                     max_keep_ckpts=3, save_last=True),
                     logger=dict(type='LoggerHook', interval=50))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=1024, enable=False)
