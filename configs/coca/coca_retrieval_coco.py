# CoCa-Base (Yu et al. 2022) fine-tuned for image-text retrieval on COCO (Karpathy 113k/5k/5k) with the
# contrastive objective only: ITC between the attentional-pooled image embedding and the
# unimodal text [CLS] (learnable temperature, negatives from every rank), ranked by cosine
# similarity (RetrievalMetric). The captioning loss is a pre-training objective and is
# switched off (caption_weight=0; vlp's CoCa still runs the multimodal decoder in the
# forward pass, so the step costs as much as pre-training: a known inefficiency).
# NOT FROM THE PAPER: CoCa reports only ZERO-SHOT retrieval (Sec. 4.3, Table 3) and gives
# no retrieval fine-tuning recipe. Our choices: AdamW lr 1e-5, weight decay 0.1, 1 epoch
# warm-up then cosine, 10 epochs, batch 128 x 8 = 1024, 288 px (pre-training size).
# load_from: the pre-training run of configs/coca/coca_base.py, or open_clip CoCa weights
# converted with tools/convert/open_clip_coca_to_vlp.py (then match coca_base's sizes to
# the converted config).
_base_ = ['../_base_/models/coca.py', '../_base_/datasets/coco_retrieval_finetune.py',
          '../_base_/schedules/coca_adafactor_linear_500k.py', '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=128, dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
model = dict(caption_weight=0.0, predict_mode='retrieval')
load_from = 'work_dirs/coca_base/iter_last.pth'

max_epochs = 10
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', fused=True, lr=1e-5, betas=(0.9, 0.98),
                                    weight_decay=0.1))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1, save_best='retrieval/r_mean', rule='greater'))
auto_scale_lr = dict(base_batch_size=1024, enable=False)
