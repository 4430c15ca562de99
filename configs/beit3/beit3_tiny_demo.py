# BEiT-3 tiny demo: masked data modelling (Wang et al. 2022, Sec. 2.2) on the embedded demo
# data, every batch of pairs training the three modes: its images alone (block-wise masks,
# 6 of 16 patches ~ 40%, visual tokens predicted), its captions alone (15% MLM) and the
# pairs (50% of the caption tokens masked, predicted from the fused sequence).
# `python tools/train.py configs/beit3/beit3_tiny_demo.py`; figures in docs/models.md.
# Departures from beit3_base.py, for a CPU demo: toy sizes and schedule; the demo's
# word-level BERT-style vocabulary; visual tokens from a frozen random-projection quantizer
# (BEST-RQ) instead of BEiT v2's VQ-KD (not implemented here, weights not downloadable);
# no validation or test loop (the pre-training has no retrieval head).
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/demo_retrieval.py',
]
demo_tokenizer = dict(type='DemoTokenizer', style='bert', max_length=32)
image_size = 64
patch_size = 16
width = 96
vocab_size = 53  # the demo's BERT-style word vocabulary
max_iters = 400

model = dict(
    type='BEiT3',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    backbone=dict(type='BEiT3Transformer', img_size=image_size, patch_size=patch_size,
                  vocab_size=vocab_size, max_text_len=34, embed_dim=width, depth=4,
                  num_heads=4),
    mlm_head=dict(type='MLMHead', hidden_size=width, vocab_size=vocab_size),
    mim_head=dict(type='MIMHead', hidden_size=width, out_dim=256),
    visual_tokenizer=dict(type='RandomProjectionTokenizer', patch_size=patch_size,
                          num_classes=256, code_dim=16, seed=0),
    mim_mask=dict(num_masking_patches=6, min_num_patches=2, min_aspect=0.3),
    mlm_probability=0.15,
    pair_mlm_probability=0.5,
    modes=('image', 'text', 'pair'),
    tokenizer=demo_tokenizer)

pipeline = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=demo_tokenizer)]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None

optim_wrapper = dict(
    type='OptimWrapper',
    # BEiT-3: AdamW, betas (0.9, 0.98), eps 1e-6, weight decay 0.05 (lr for the toy model)
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True,
                       custom_keys={'cls_token': dict(decay_mult=0.0),
                                    'mask_token': dict(decay_mult=0.0),
                                    'pos_embed': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='WarmupCosineLR', by_epoch=False, begin=0, end=max_iters, warmup_iters=30,
         warmup_start_factor=0.01, eta_min_ratio=0.01),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=max_iters,
                                     by_epoch=False, max_keep_ckpts=1, save_last=True),
                     logger=dict(type='LoggerHook', interval=20))
log_processor = dict(by_epoch=False)
