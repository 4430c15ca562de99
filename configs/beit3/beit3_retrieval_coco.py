# BEiT-3 base (Wang et al. 2022) image-text retrieval fine-tuning on COCO (Karpathy 113k/5k/5k) (Sec. 3.2,
# Fig. 3(d), Table 3): the multiway encoder as a DUAL ENCODER trained with ITC only, ranked
# by cosine similarity (RetrievalMetric; configs/_base_/models/beit3_retrieval.py).
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
_base_ = ['../_base_/models/beit3_retrieval.py',
          '../_base_/datasets/coco_retrieval_finetune.py',
          '../_base_/schedules/beit3_adamw_cosine_1m.py', '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=192, dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
model = dict(backbone=dict(drop_path_rate=0.2))
load_from = 'work_dirs/beit3_base/iter_1000000.pth'

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
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1, save_best='retrieval/r_mean', rule='greater'))
auto_scale_lr = dict(base_batch_size=3072, enable=False)
