# VLMo-Base (Bao et al. 2022) image-text retrieval fine-tuning on COCO (Karpathy 113k/5k/5k) (Sec. 3.3 /
# 4.2, Table 2): VLMo fine-tunes retrieval as a DUAL ENCODER with the image-text
# contrastive loss only (the image pass through the V-FFN experts, the text pass through
# the L-FFN experts, [CLS] projections, InfoNCE over the batch of every rank); no ITM, no
# MLM (itm_head / mlm_head / the MIM parts set to None), ranked by ITC (RetrievalMetric).
# UNCONFIRMED (the paper's appendix lists the fine-tuning hyper-parameters; we could not
# check them here): lr 2e-05 with 10% linear warm-up then linear decay, 10 epochs,
# batch 3072 (e.g. 96 x 32 GPUs), AdamW (0.9, 0.98), weight decay 0.01.
# DEPARTURE: VLMo fine-tunes retrieval at 384 px; vlp's load_from does not resample the
# relative position bias / position embeddings, so this keeps vlmo_base.py's 224 px.
# load_from: the stage-3 run of configs/vlmo/vlmo_base.py, or an official VLMo checkpoint
# converted with tools/convert/vlmo_to_vlp.py.
_base_ = ['./vlmo_base.py']
from mmengine import Config as __Config  # noqa: E402
# The fine-tuning splits: configs/_base_/datasets/coco_retrieval_finetune.py. mmengine refuses it in
# _base_ next to vlmo_base.py (both define the data loaders), so it is read here and
# replaces the pre-training data wholesale (_delete_); the pipelines stay the family's.
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/coco_retrieval_finetune.py')
train_dataloader = dict(__data.train_dataloader, _delete_=True, batch_size=96)
train_dataloader['dataset']['pipeline'] = {{_base_.train_pipeline}}
val_dataloader = dict(__data.val_dataloader, _delete_=True)
val_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
test_dataloader = dict(__data.test_dataloader, _delete_=True)
test_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
model = dict(itm_head=None, mlm_head=None, mim_head=None, visual_tokenizer=None)
load_from = 'work_dirs/vlmo_base/iter_200000.pth'  # or tools/convert/vlmo_to_vlp.py output

val_evaluator = dict(type='RetrievalMetric')  # ITC ranking (dual encoder)
test_evaluator = val_evaluator

max_epochs = 10
optim_wrapper = dict(optimizer=dict(lr=2e-05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
         end=max_epochs // 10, convert_to_iter_based=True),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=True,
         begin=max_epochs // 10, end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', interval=1,
                                     by_epoch=True, max_keep_ckpts=1, save_best='auto'))
log_processor = dict(by_epoch=True)
auto_scale_lr = dict(base_batch_size=3072, enable=False)
