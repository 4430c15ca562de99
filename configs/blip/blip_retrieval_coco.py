# BLIP (Li et al. 2022) ViT-B/16 image-text retrieval fine-tuning on COCO (Karpathy 113k/5k/5k) (Sec. 5.1
# and the released configs/retrieval_coco.yaml): ITC
# (momentum encoders, 57,600 queue with image ids, momentum distillation alpha 0.4) + ITM
# with hard negatives (from every rank: negative_all_rank=True); NO LM (lm_head=None:
# the decoder is not built). Evaluation: ITC top-k=256 re-scored by ITM (+ ITC, as BLIP's
# evaluation) (the paper: k=256 COCO, 128 Flickr30k). AdamW lr 1e-5 (ViT-B), weight decay
# 0.05, cosine decay to 0 per epoch, batch 32 x 8 GPUs = 256, 6 epochs.
# DEPARTURE: BLIP fine-tunes at 384 x 384; vlp's load_from does not resample the ViT
# position embeddings, so this config keeps blip_base.py's 224 px (for 384 px, load a
# checkpoint converted at 384 px with tools/convert/hf_blip_to_vlp.py and set the sizes).
# load_from: the pre-training run of configs/blip/blip_base.py, or the official BLIP
# checkpoint (HF Salesforce/blip-itm-base-coco layout) converted with
# tools/convert/hf_blip_to_vlp.py.
_base_ = ['../_base_/models/blip.py', '../_base_/datasets/coco_retrieval_finetune.py',
          '../_base_/schedules/blip_adamw_step_20e.py', '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=32, dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
model = dict(lm_head=None, queue_ids=True, itm_negatives='global', predict_mode='retrieval',
             vision=dict(pretrained=False), text=dict(pretrained=None))
load_from = 'work_dirs/blip_base/epoch_20.pth'  # or tools/convert/hf_blip_to_vlp.py output

val_evaluator = dict(type='ITMRetrievalMetric', k=256, batch_size=128)
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

max_epochs = 6
optim_wrapper = dict(optimizer=dict(lr=1e-5, weight_decay=0.05))
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0,
         end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1, save_best='retrieval/r_mean', rule='greater'))
auto_scale_lr = dict(base_batch_size=256, enable=False)
