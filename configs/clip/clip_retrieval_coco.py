# CLIP ViT-B/16 (Radford et al. 2021) fine-tuned for image-text retrieval on COCO (Karpathy 113k/5k/5k):
# the dual encoder and its symmetric InfoNCE (ITC, learnable temperature, negatives from
# every rank), ranked by cosine similarity (RetrievalMetric, no re-ranking).
# NOT FROM THE PAPER: CLIP reports only ZERO-SHOT retrieval (Sec. 3.1, Table 13) and gives
# no retrieval fine-tuning recipe. Our choices, common practice for fine-tuning CLIP:
# AdamW lr 1e-5 (weight decay 0.1), 1 epoch of linear warm-up then cosine, 10 epochs,
# batch 128 x 8 GPUs = 1024, 224 px (the pre-training resolution).
# load_from: the pre-training run of configs/clip/clip_vit-b16_base.py, or OpenAI's weights
# converted with tools/convert/hf_clip_to_vlp.py (or open_clip_to_vlp.py); point load_from
# at the converted model.pth.
_base_ = ['../_base_/models/clip_vit-b16.py', '../_base_/datasets/coco_retrieval_finetune.py',
          '../_base_/schedules/clip_adamw_cosine_32e.py', '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=128, dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
load_from = 'work_dirs/clip_vit-b16_base/iter_last.pth'  # or a converted OpenAI checkpoint

max_epochs = 10
optim_wrapper = dict(optimizer=dict(lr=1e-5, weight_decay=0.1))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1, save_best='retrieval/r_mean', rule='greater'))
auto_scale_lr = dict(base_batch_size=1024, enable=False)
strategy = dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=1),
                bf16=dict(enabled=True), gradient_clipping=0.0)  # as pre-training
