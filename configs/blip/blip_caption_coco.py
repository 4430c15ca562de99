# BLIP (Li et al. 2022) ViT-B/16 image CAPTIONING fine-tuning on COCO (Karpathy 113k/5k/5k)
# (Sec. 5.2, Table 7; recipe from the official repo, salesforce/BLIP configs/caption_coco.yaml
# and train_caption.py):
# - the captioning model: the ViT and the image-grounded decoder only (BLIPCaption, BLIP's
#   BLIP_Decoder: no unimodal text encoder, no ITC / ITM, no momentum twins or queue; the
#   BLIP keys of the base are accepted and unused), LM loss with label smoothing 0.1, the
#   prompt 'a picture of ' put before every training caption (CleanCaption prefix) and kept
#   out of the loss;
# - AdamW lr 1e-5 (`init_lr`), weight decay 0.05, cosine to 0 (`min_lr: 0`) stepped once per
#   epoch, 5 epochs, batch 32 per GPU (x 8 GPUs = 256), train augmentation as BLIP's
#   transform_train (RandomResizedCrop scale 0.5-1, flip, RandAugment(2, 5)), captions cleaned
#   to at most 30 words;
# - decoding: beam 3, max length 20, min length 5 (prompt included, as BLIP's generate);
#   CaptionMetric (BLEU-4, CIDEr) on the Karpathy val / test images' reference captions.
# DEPARTURE: BLIP fine-tunes captioning at 384 x 384; vlp's load_from does not resample the
# ViT position embeddings, so this keeps blip_base.py's 224 px (as blip_retrieval_coco.py).
# load_from: the pre-training run of configs/blip/blip_base.py, or BLIP weights converted
# with tools/convert/hf_blip_to_vlp.py; loaded non-strictly: the decoder's keys initialise the
# decoder, the encoder / ITC / ITM parts of the checkpoint are unused keys.
_base_ = ['../_base_/models/blip.py', '../_base_/datasets/coco_retrieval_finetune.py',
          '../_base_/schedules/blip_adamw_step_20e.py', '../_base_/default_runtime.py']
image_size = 224
prompt = 'a picture of '
__tok = _base_.model.tokenizer
model = dict(type='BLIPCaption', vision_proj=None, text_proj=None, itm_head=None,
             prompt=prompt,
             predict_mode='caption', vision=dict(pretrained=False),
             text=dict(pretrained=None),
             generation_cfg=dict(num_beams=3, max_length=20, min_length=5))
custom_hooks = []  # no momentum encoders, no queue, no distillation
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.5, 1.0),
         interpolation='bicubic'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='RandAugment', num_ops=2, magnitude=5),
    dict(type='CleanCaption', max_words=30, style='blip', prefix=prompt),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tok),
]
# the references go to CaptionMetric as they are (its PTB tokenisation normalises them)
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='ToTensor'),
]
# every caption of an image is a training sample (BLIP's coco_karpathy_train)
train_dataloader = dict(batch_size=32, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_evaluator = dict(type='CaptionMetric')
test_evaluator = val_evaluator
load_from = 'work_dirs/blip_base/epoch_20.pth'  # or tools/convert/hf_blip_to_vlp.py output

max_epochs = 5
optim_wrapper = dict(optimizer=dict(lr=1e-5, weight_decay=0.05))
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0, end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1, save_best='caption/CIDEr',
                                     rule='greater'))
auto_scale_lr = dict(base_batch_size=256, enable=False)
