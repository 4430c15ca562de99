# BLIP (Li et al. 2022) ViT-B/16 image-text retrieval fine-tuning on Flickr30k (Karpathy 29k/1k/1k) (Sec. 5.1
# and the released configs/retrieval_flickr.yaml): ITC
# (momentum encoders, 57,600 queue with image ids, momentum distillation alpha 0.4) + ITM
# with hard negatives (from the local batch: negative_all_rank=False); NO LM (lm_head=None:
# the decoder is not built). Evaluation: ITC top-k=128 re-scored by ITM (+ ITC, as BLIP's
# evaluation) (the paper: k=256 COCO, 128 Flickr30k). AdamW lr 1e-5 (ViT-B), weight decay
# 0.05, cosine decay to 0 per epoch, batch 32 x 8 GPUs = 256, 6 epochs.
# DEPARTURE: BLIP fine-tunes at 384 x 384; vlp's load_from does not resample the ViT
# position embeddings, so this config keeps blip_base.py's 224 px (for 384 px, load a
# checkpoint converted at 384 px with tools/convert/hf_blip_to_vlp.py and set the sizes).
# load_from: the pre-training run of configs/blip/blip_base.py, or the official BLIP
# checkpoint (HF Salesforce/blip-itm-base-coco layout) converted with
# tools/convert/hf_blip_to_vlp.py.
_base_ = ['./blip_base.py']
from mmengine import Config as __Config  # noqa: E402
# The fine-tuning splits: configs/_base_/datasets/flickr30k_retrieval.py. mmengine refuses it in
# _base_ next to blip_base.py (both define the data loaders), so it is read here and
# replaces the pre-training data wholesale (_delete_); the pipelines stay the family's.
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/flickr30k_retrieval.py')
train_dataloader = dict(__data.train_dataloader, _delete_=True, batch_size=32)
train_dataloader['dataset']['pipeline'] = {{_base_.train_pipeline}}
val_dataloader = dict(__data.val_dataloader, _delete_=True)
val_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
test_dataloader = dict(__data.test_dataloader, _delete_=True)
test_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
model = dict(lm_head=None, queue_ids=True, itm_negatives='local', predict_mode='retrieval',
             vision=dict(pretrained=False), text=dict(pretrained=None))
load_from = 'work_dirs/blip_base/epoch_20.pth'  # or tools/convert/hf_blip_to_vlp.py output

val_evaluator = dict(type='ITMRetrievalMetric', k=128, batch_size=128)
test_evaluator = val_evaluator

max_epochs = 6
optim_wrapper = dict(optimizer=dict(lr=1e-5, weight_decay=0.05))
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0,
         end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=1, save_best='auto'))
auto_scale_lr = dict(base_batch_size=256, enable=False)
