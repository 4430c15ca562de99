# BEiT-3 base (Wang et al. 2022, "Image as a Foreign Language", Sec. 2.2-2.3) pre-training:
# masked data modelling on one multiway transformer (BEiT3Transformer: 12 layers, width 768,
# 12 heads, FFN 3072, 224 x 224 images, patch 16; the layout of the released torchscale /
# unilm code) -- 40% of the image patches masked block-wise (75 of 196) with their visual
# tokens predicted, 15% of monomodal text tokens, 50% of the text tokens of image-text pairs
# (the pair's image unmasked: vlp/models/algorithms/beit3.py).
#
# Optimisation as the paper reports it for BEiT-3 (giant; Sec. 2.3): AdamW, betas (0.9, 0.98),
# eps 1e-6, weight decay 0.05, peak lr 1e-3 with 10k linear warm-up steps then cosine decay,
# stochastic depth 0.1, 1M steps, 6144 samples a batch (2048 images + 2048 texts + 2048 pairs),
# random-resized crops and horizontal flips (+ colour jitter, which vlp has no transform for).
# GUESSES (the paper gives no separate recipe for base, whose weights unilm released later):
# base reuses the giant's recipe above; the cosine floor (1% of the peak), the text length
# (64 tokens) and the crop scale (0.08-1) are our choices.
#
# Departures, all stated:
# - Tokenizer: BEiT-3 uses a 64,010-entry SentencePiece vocabulary (unilm's beit3.spm, an
#   XLM-R style tokenizer). vlp has no SentencePiece tokenizer (vlp/datasets/tokenizers.py:
#   CLIP BPE, BERT WordPiece, demo), so this config uses BERT-base-uncased WordPiece and a
#   30,522-word embedding; the released 64,010-row checkpoints do not load into it.
# - Visual tokens: BEiT v2's VQ-KD tokenizer is not implemented here. The config uses
#   PixelTarget (MAE's per-patch normalised pixels, mean-squared error) as the tokenizer-free
#   target; to follow the paper, register a frozen VQ-KD port of your own (num_classes =
#   8192 returning [B, 196] codes; BEiT v2's file: vqkd_encoder_base_decoder_3x768x12_clip.pth)
#   and set e.g. visual_tokenizer=dict(type='VQKDTokenizer', checkpoint='data/beitv2/vqkd.pth'),
#   mim_head=dict(type='MIMHead', hidden_size=768, out_dim=8192). RandomProjectionTokenizer
#   (BEST-RQ) is a stand-in for demos, not for the paper's configuration.
# - Data: the paper samples images (ImageNet-21K, 14M), texts (160 GB: Wikipedia, BookCorpus,
#   OpenWebText, CC-News, Stories) and pairs (21M: CC12M, CC3M, SBU, COCO, VG) separately.
#   One vlp data loader yields one kind of batch, so here every batch is 2048 pairs and each
#   trains all three modes (the pair's image alone, its caption alone, the pair). For
#   separate corpora run the modes on their own data (ImageListDataset with
#   modes=('image',), TextCorpusDataset with modes=('text',)).
#
# Data (not downloaded by vlp), ALBEF's JSON annotation files with the image paths they
# hold ([{"image": path, "caption": str or [str]}]):
#   data/albef/{coco,vg,cc3m_train,cc3m_val,sbu,cc12m}.json   (the paper's 21M pairs)
#   data/bert-base-uncased/vocab.txt                          (HF bert-base-uncased)
# A missing file fails with FileNotFoundError naming its path when the dataset is built.
# Batch: 2048 pairs = e.g. 64 GPUs x 32 (or fewer GPUs with accumulative_counts).
_base_ = ['../_base_/default_runtime.py']
image_size = 224
patch_size = 16
width = 768
vocab_size = 30522  # BERT WordPiece (the paper: 64010, SentencePiece)
tokenizer = dict(type='BertTokenizer', vocab_file='data/bert-base-uncased/vocab.txt',
                 lowercase=True, max_length=64)

model = dict(
    type='BEiT3',
    # BEiT-3 normalises images to [-1, 1] (mean 0.5, std 0.5; unilm/beit3)
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[127.5, 127.5, 127.5],
                           std=[127.5, 127.5, 127.5]),
    backbone=dict(type='BEiT3Transformer', img_size=image_size, patch_size=patch_size,
                  vocab_size=vocab_size, max_text_len=1024, embed_dim=width, depth=12,
                  num_heads=12, mlp_ratio=4.0, drop_path_rate=0.1),
    mlm_head=dict(type='MLMHead', hidden_size=width, vocab_size=vocab_size),
    mim_head=dict(type='MIMHead', hidden_size=width, out_dim=patch_size * patch_size * 3),
    visual_tokenizer=dict(type='PixelTarget', patch_size=patch_size),
    # BEiT's block-wise masking: 40% of 14 x 14 = 75 patches, blocks of >= 16, aspect 0.3-3.3
    mim_mask=dict(num_masking_patches=75, min_num_patches=16, min_aspect=0.3),
    mlm_probability=0.15,
    pair_mlm_probability=0.5,
    pair_mim=False,
    modes=('image', 'text', 'pair'),
    tokenizer=tokenizer,
    grad_checkpointing=False)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.08, 1.0),
         interpolation='bicubic'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='ImageTextJsonDataset', data_root='data/albef',
                 ann_file=['coco.json', 'vg.json', 'cc3m_train.json', 'cc3m_val.json',
                           'sbu.json', 'cc12m.json'],
                 pipeline=train_pipeline))

max_iters = 1_000_000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', fused=True, lr=1e-3, betas=(0.9, 0.98), eps=1e-6,
                   weight_decay=0.05),
    # no decay on norms, biases, [CLS] / [MASK] and the position tables; bypass_duplicate:
    # the MLM decoder shares its weight with the word embeddings
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True,
                       custom_keys={'cls_token': dict(decay_mult=0.0),
                                    'mask_token': dict(decay_mult=0.0),
                                    'pos_embed': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='WarmupCosineLR', by_epoch=False, begin=0, end=max_iters, warmup_iters=10_000,
         warmup_start_factor=1e-3, eta_min_ratio=0.01),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=10_000, by_epoch=False,
                                     max_keep_ckpts=3, save_last=True))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=2048, enable=False)
