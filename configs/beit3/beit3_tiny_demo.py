# BEiT-3 tiny demo: masked data modelling (Wang et al. 2022, Sec. 2.2) on the embedded demo
# data, every batch of pairs training the three modes: its images alone (block-wise masks,
# 6 of 16 patches ~ 40%, visual tokens predicted), its captions alone (15% MLM) and the
# pairs (50% of the caption tokens masked, predicted from the fused sequence).
# `python tools/train.py configs/beit3/beit3_tiny_demo.py`; figures in docs/models.md.
# Departures from beit3_base.py, for a CPU demo: toy sizes and schedule; the demo's
# word-level BERT-style vocabulary; visual tokens from a frozen random-projection quantizer
# (BEST-RQ) instead of BEiT v2's VQ-KD (not implemented here, weights not downloadable);
# no validation or test loop (the pre-training has no retrieval head).
_base_ = ['../_base_/models/beit3.py', '../_base_/datasets/demo_retrieval_bert.py',
          '../_base_/schedules/beit3_adamw_cosine_1m.py', '../_base_/default_runtime.py']
image_size = 64
patch_size = 16
width = 96
vocab_size = 53  # the demo's BERT-style word vocabulary
max_iters = 400

# the paper's model at toy size, from random weights
model = dict(
    # the preprocessor's default statistics
    data_preprocessor=dict(_delete_=True, type='VLPDataPreprocessor'),
    backbone=dict(img_size=image_size, vocab_size=vocab_size, max_text_len=34,
                  embed_dim=width, depth=4, num_heads=4, drop_path_rate=0.0),
    mlm_head=dict(hidden_size=width, vocab_size=vocab_size),
    mim_head=dict(hidden_size=width, out_dim=256),
    visual_tokenizer=dict(_delete_=True, type='RandomProjectionTokenizer',
                          patch_size=patch_size, num_classes=256, code_dim=16, seed=0),
    mim_mask=dict(num_masking_patches=6, min_num_patches=2),
    tokenizer=dict(_base_.demo_tokenizer, _delete_=True))

train_dataloader = dict(batch_size=64)
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = test_evaluator = test_cfg = None

# BEiT-3's AdamW and no-decay rules (the schedule base); lr for the toy model, torch's
# default kernel
optim_wrapper = dict(optimizer=dict(lr=1e-3, fused=None))
param_scheduler = [
    dict(type='WarmupCosineLR', by_epoch=False, begin=0, end=max_iters, warmup_iters=30,
         warmup_start_factor=0.01, eta_min_ratio=0.01),
]
train_cfg = dict(max_iters=max_iters)
default_hooks = dict(checkpoint=dict(interval=max_iters, by_epoch=False, max_keep_ckpts=1),
                     logger=dict(interval=20))
log_processor = dict(by_epoch=False)
auto_scale_lr = None
