# ALBEF (Li et al. 2021) image-text retrieval fine-tuning on COCO (Karpathy 113k/5k/5k) (Sec. 5 / 6.1 and
# the released configs/Retrieval_coco.yaml): ITC (with the
# 65,536 queue, image ids kept in it so captions of the same image are positives, momentum
# distillation alpha 0.4 warmed up over the first epoch) + ITM with hard negatives from the
# local batch; NO MLM (mlm_head=None; the paper drops it for retrieval). Evaluation: ITC
# ranking then the top-k=256 candidates of every query re-scored by ITM (the paper: k=256 on
# COCO, 128 on Flickr30k). AdamW lr 1e-5, weight decay 0.02, cosine decay to 1e-6, batch
# 32 x 8 GPUs = 256, 5 epochs (from the released config; the paper's text only says "fine-
# tune", we could not confirm the epoch count there).
# DEPARTURE: the paper fine-tunes at 384 x 384; vlp's load_from does not resample the ViT
# position embeddings, so this config keeps albef_base.py's 256 px. For 384 px, resample
# the checkpoint first (an ALBEF checkpoint converted with tools/convert/albef_to_vlp.py at
# 384 px, or the official fine-tuned one) and set the pipelines' size.
# load_from: the pre-training run of configs/albef/albef_base.py, or the official ALBEF
# 4M/14M checkpoint converted with tools/convert/albef_to_vlp.py.
_base_ = ['../_base_/models/albef.py', '../_base_/datasets/coco_retrieval_finetune.py',
          '../_base_/schedules/albef_adamw_cosine_30e.py', '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=32, dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
model = dict(mlm_head=None, queue_ids=True, itm_negatives='local',
             vision=dict(pretrained=False), text=dict(pretrained=None),
             fusion=dict(pretrained=None))
load_from = 'work_dirs/albef_base/epoch_30.pth'  # or tools/convert/albef_to_vlp.py output

val_evaluator = dict(type='ITMRetrievalMetric', k=256, batch_size=128)
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

max_epochs = 5
optim_wrapper = dict(optimizer=dict(lr=1e-5, weight_decay=0.02))
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=0,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1, save_best='retrieval/r_mean', rule='greater'))
auto_scale_lr = dict(base_batch_size=256, enable=False)
