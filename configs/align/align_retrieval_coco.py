# ALIGN (Jia et al. 2021; EfficientNet-B7 + BERT-base as align_base.py) fine-tuned for
# image-text retrieval on COCO (Karpathy 113k/5k/5k) (paper Sec. 6.1 / Table 1 "fine-tuned"): the same
# normalised-softmax contrastive loss (learnable temperature, label smoothing 0.1,
# in-batch negatives from every rank), ITC ranking only (RetrievalMetric); 289 px images as
# in pre-training. UNCONFIRMED (the paper's appendix gives its fine-tuning schedule, which we
# could not check here): lr 1e-5 with linear decay, 10 epochs, batch 64 x 16 = 1024 (the
# paper uses larger TPU batches); the LAMB optimiser of the pre-training schedule is kept.
# load_from: the pre-training run of configs/align/align_base.py (no official ALIGN weights
# are public; no converter).
_base_ = ['../_base_/models/align.py', '../_base_/datasets/coco_retrieval_finetune.py',
          '../_base_/schedules/align_lamb_linear_1200k.py', '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=64, dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
load_from = 'work_dirs/align_base/iter_last.pth'

max_epochs = 10
optim_wrapper = dict(optimizer=dict(lr=1e-5))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=True,
         begin=0, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1, save_best='retrieval/r_mean', rule='greater'))
auto_scale_lr = dict(base_batch_size=1024, enable=False)
strategy = dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=1),
                bf16=dict(enabled=True))  # as pre-training
