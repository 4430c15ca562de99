# BEiT-3 base (Wang et al. 2022) image-text retrieval fine-tuning on COCO (Karpathy 113k/5k/5k) (Sec. 3.2,
# Fig. 3(d), Table 3): the multiway encoder as a DUAL ENCODER (BEiT3Retrieval: image-only and
# text-only passes, [CLS] states, linear projections without bias, L2-normalised) trained
# with ITC only (InfoNCE, learnable temperature initialised at 0.07, negatives from every
# rank), ranked by cosine similarity (RetrievalMetric).
# Schedule from unilm/beit3's get_started_for_retrieval.md for BEiT-3 base, as we recall it
# (UNCONFIRMED here; the paper's appendix gives the giant model's): AdamW (0.9, 0.98), lr
# 0.0002, layer-wise lr decay 0.65, weight decay 0.05, 3 warm-up epochs then cosine, 15
# epochs, batch 3072 (192 x 16 GPUs), stochastic depth 0.2.
# DEPARTURES: unilm fine-tunes at 384 px (vlp's load_from does not resample the position
# embeddings, so this keeps 224 px); layer-wise lr decay is not set here (vlp/engine/optim
# has it: add it to optim_wrapper as your setup allows); BERT WordPiece instead of beit3.spm
# (see beit3_base.py), so the released BEiT-3 weights do not load.
# load_from: the pre-training run of configs/beit3/beit3_base.py (its MLM / MIM heads are
# dropped on load; only the projections and the temperature start fresh), or a torchscale
# checkpoint of the same vocabulary converted with tools/convert/torchscale_beit3_to_vlp.py
# --prefix backbone.
_base_ = ['./beit3_base.py']
# beit3_base.py (pre-training only) has no evaluation pipeline
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(224, 224), interpolation='bicubic'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer={{_base_.tokenizer}}),
]
from mmengine import Config as __Config  # noqa: E402
# The fine-tuning splits: configs/_base_/datasets/coco_retrieval_finetune.py. mmengine refuses it in
# _base_ next to beit3_base.py (both define the data loaders), so it is read here and
# replaces the pre-training data wholesale (_delete_); the pipelines stay the family's.
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/coco_retrieval_finetune.py')
train_dataloader = dict(__data.train_dataloader, _delete_=True, batch_size=192)
train_dataloader['dataset']['pipeline'] = {{_base_.train_pipeline}}
val_dataloader = dict(__data.val_dataloader)  # beit3_base.py has none to replace
val_dataloader['dataset']['pipeline'] = test_pipeline
test_dataloader = dict(__data.test_dataloader)
test_dataloader['dataset']['pipeline'] = test_pipeline
model = dict(
    _delete_=True,
    type='BEiT3Retrieval',
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[127.5, 127.5, 127.5],
                           std=[127.5, 127.5, 127.5]),
    backbone=dict(type='BEiT3Transformer', img_size=224, patch_size=16, vocab_size=30522,
                  max_text_len=1024, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0,
                  drop_path_rate=0.2),
    vision_proj=dict(type='Projection', in_dim=768, out_dim=768, bias=False, init_std=0.02),
    text_proj=dict(type='Projection', in_dim=768, out_dim=768, bias=False, init_std=0.02),
    itc=dict(type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0),
    tokenizer={{_base_.tokenizer}},
    grad_checkpointing=False)
load_from = 'work_dirs/beit3_base/iter_1000000.pth'
val_evaluator = dict(type='RetrievalMetric')
test_evaluator = val_evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

max_epochs = 15
optim_wrapper = dict(optimizer=dict(lr=0.0002, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
         end=3, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=3, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', interval=1,
                                     by_epoch=True, max_keep_ckpts=1, save_best='auto'))
log_processor = dict(by_epoch=True)
auto_scale_lr = dict(base_batch_size=3072, enable=False)
