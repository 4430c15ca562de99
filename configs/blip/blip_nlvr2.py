# BLIP ViT-B/16 (Li et al. 2022) fine-tuned on NLVR2 (Sec. 5.4 / Fig. 6, Table 9): BLIP's
# NLVR2 encoder: in every cross-attention layer of the image-grounded text encoder two
# cross-attention heads attend to the left and to the right image (both initialised from
# the pre-trained cross-attention), averaged in the first six layers and merged by a linear
# layer in the last six (BLIP(two_image_fusion=True), TwinCrossAttention; the pre-training
# checkpoint starts both twins when loaded); the [ENC] state into an MLP, true / false.
# Recipe (AdamW, weight decay 0.05, cosine decay, 15 epochs, batch 16 per GPU x 8, lr 3e-5)
# recalled from BLIP's configs/nlvr.yaml, UNCONFIRMED here (the file was not reachable).
# DEPARTURES: BLIP fine-tunes NLVR2 at 384 x 384 (vlp's pretrained loading does not
# interpolate position embeddings) -> blip_base.py's 224 px; the classifier MLP has
# ALBEF's layout (Linear -> ReLU -> Linear).
# pretrained: the pre-training run of configs/blip/blip_base.py, or the official BLIP
# weights converted with tools/convert/hf_blip_to_vlp.py.
# Splits: train / dev (validation) / test-P, ClassificationAccuracy.
_base_ = ['../_base_/models/blip.py', '../_base_/datasets/nlvr2.py',
          '../_base_/schedules/blip_adamw_step_20e.py', '../_base_/default_runtime.py']
image_size = 224
# per image (both images of a pair get the same random crop size; flips are left out:
# NLVR2 statements say left and right)
train_image_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.5, 1.0),
         interpolation='bicubic'),
    dict(type='RandAugment', num_ops=2, magnitude=7),
    dict(type='ToTensor'),
]
train_dataloader = dict(batch_size=16,  # x 8 = 128 (UNCONFIRMED)
                        dataset=dict(image_pipeline=train_image_pipeline,
                                     pipeline={{_base_.text_pipeline}}))
# evaluation: the family's image and text transforms
val_dataloader = dict(dataset=dict(image_pipeline={{_base_.image_pipeline}},
                                   pipeline={{_base_.text_pipeline}}))
test_dataloader = val_dataloader  # the same transforms on test-P

__blip = _base_.model
model = dict(
    _delete_=True,
    type='VLClassifier',
    # every weight comes from `pretrained`: no ImageNet / BERT initialisation first; no
    # decoder, no queue in the NLVR2 model
    model=dict(__blip, vision=dict(__blip.vision, pretrained=False),
               text=dict(__blip.text, pretrained=None), queue_size=0, lm_head=None,
               two_image_fusion=True),
    head=dict(type='ClassifierHead', in_channels=768, num_classes=2, num_inputs=1,
              hidden_channels=768, pooler=None, norm=False, act='relu'),
    num_images=2,
    pair_encoding='joint',
    label_smoothing=0.0,
    pretrained='work_dirs/blip_base/epoch_20.pth',  # or hf_blip_to_vlp.py output
    drop_parts=['vision_proj', 'text_proj', 'itc', 'itm_head', 'vision_m',
                'vision_proj_m', 'text_m', 'text_proj_m'],
    data_preprocessor=__blip.data_preprocessor)
custom_hooks = []  # no momentum encoders, queue or distillation in fine-tuning

max_epochs = 15
optim_wrapper = dict(optimizer=dict(lr=3e-5, weight_decay=0.05))
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=0, end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1,
                                     save_best='nlvr2_dev/accuracy', rule='greater'))
auto_scale_lr = dict(base_batch_size=128, enable=False)
