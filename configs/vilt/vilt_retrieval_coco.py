# ViLT-B/32 (Kim et al. 2021) image-text retrieval fine-tuning on COCO (Karpathy 113k/5k/5k) (Sec. 4.3,
# Tables 3-4): ITM only (the pre-training MLM and WPA are dropped: mlm_head=None, wpa=None);
# the paper samples 15 random negative texts per positive pair; vlp's ViLT draws one
# negative image per pair (itm_neg_prob 0.5), a departure. AdamW lr 1e-4, weight decay
# 0.01, 10% linear warm-up then linear decay, 10 epochs, batch 256 (the paper; we could not
# confirm the batch size there), RandAugment is added in fine-tuning by the paper (not
# added here: vlp's pipeline keeps the pre-training transforms).
# EVALUATION IS EXPENSIVE: ViLT has no ITC stage, so ITMRetrievalMetric scores EVERY
# image-text pair with the single-stream transformer (5k x 25k = 125M pairs per direction on COCO);
# run it on many GPUs.
# load_from: the pre-training run of configs/vilt/vilt_base.py, or the official ViLT
# weights converted with tools/convert/hf_vilt_to_vlp.py.
_base_ = ['./vilt_base.py']
from mmengine import Config as __Config  # noqa: E402
# The fine-tuning splits: configs/_base_/datasets/coco_retrieval_finetune.py. mmengine refuses it in
# _base_ next to vilt_base.py (both define the data loaders), so it is read here and
# replaces the pre-training data wholesale (_delete_); the pipelines stay the family's.
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/coco_retrieval_finetune.py')
train_dataloader = dict(__data.train_dataloader, _delete_=True, batch_size=32)
train_dataloader['dataset']['pipeline'] = {{_base_.train_pipeline}}
val_dataloader = dict(__data.val_dataloader, _delete_=True)
val_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
test_dataloader = dict(__data.test_dataloader, _delete_=True)
test_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
model = dict(mlm_head=None, wpa=None)
load_from = 'work_dirs/vilt_base/iter_100000.pth'  # or tools/convert/hf_vilt_to_vlp.py output

# k >= the gallery: every pair scored by ITM (the ITC stage is a constant in ViLT.predict)
val_evaluator = dict(type='ITMRetrievalMetric', k=10 ** 9, batch_size=256)
test_evaluator = val_evaluator

max_epochs = 10
optim_wrapper = dict(optimizer=dict(lr=1e-4, weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=True, begin=1,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', interval=1,
                                     by_epoch=True, max_keep_ckpts=1, save_best='auto'))
log_processor = dict(by_epoch=True)
auto_scale_lr = dict(base_batch_size=256, enable=False)
