# CLIP ViT-B/16 (Radford et al. 2021) fine-tuned for image-text retrieval on Flickr30k (Karpathy 29k/1k/1k):
# the dual encoder and its symmetric InfoNCE (ITC, learnable temperature, negatives from
# every rank), ranked by cosine similarity (RetrievalMetric, no re-ranking).
# NOT FROM THE PAPER: CLIP reports only ZERO-SHOT retrieval (Sec. 3.1, Table 13) and gives
# no retrieval fine-tuning recipe. Our choices, common practice for fine-tuning CLIP:
# AdamW lr 1e-5 (weight decay 0.1), 1 epoch of linear warm-up then cosine, 10 epochs,
# batch 128 x 8 GPUs = 1024, 224 px (the pre-training resolution).
# load_from: the pre-training run of configs/clip/clip_vit-b16_base.py, or OpenAI's weights
# converted with tools/convert/hf_clip_to_vlp.py (or open_clip_to_vlp.py); point load_from
# at the converted model.pth.
_base_ = ['./clip_vit-b16_base.py']
from mmengine import Config as __Config  # noqa: E402
# The fine-tuning splits: configs/_base_/datasets/flickr30k_retrieval.py. mmengine refuses it in
# _base_ next to clip_base.py (both define the data loaders), so it is read here and
# replaces the pre-training data wholesale (_delete_); the pipelines stay the family's.
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/flickr30k_retrieval.py')
train_dataloader = dict(__data.train_dataloader, _delete_=True, batch_size=128)
train_dataloader['dataset']['pipeline'] = {{_base_.train_pipeline}}
val_dataloader = dict(__data.val_dataloader, _delete_=True)
val_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
test_dataloader = dict(__data.test_dataloader, _delete_=True)
test_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
load_from = 'work_dirs/clip_vit-b16_base/iter_last.pth'  # or a converted OpenAI checkpoint

max_epochs = 10
optim_wrapper = dict(optimizer=dict(lr=1e-5, weight_decay=0.1))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
default_hooks = dict(checkpoint=dict(_delete_=True, type='CheckpointHook', interval=1,
                                     by_epoch=True, max_keep_ckpts=1, save_best='auto'))
log_processor = dict(by_epoch=True)
auto_scale_lr = dict(base_batch_size=1024, enable=False)
