# BLIP captioning tiny demo: BLIP's captioning fine-tuning (Sec. 5.2; the released
# BLIP_Decoder): the ViT and the image-grounded decoder of the pre-trained model (BLIPCaption:
# no unimodal text encoder, ITC, ITM, momentum twins or queue), the LM loss with label
# smoothing 0.1, beam-search captions of the test split scored with BLEU / CIDEr. Fine-tuned
# from the BLIP pre-training demo on the same demo data (its captions have no prompt: the
# demo vocabulary has no 'a picture of'):
#   python tools/train.py configs/blip/blip_tiny_demo.py      # its work dir: `pretrained`
#   python tools/train.py configs/blip/blip_caption_tiny_demo.py
# The BLIP keys of the base (vision_proj, queue_size, ...) are accepted by BLIPCaption and
# unused. Figures: docs/demos.md.
_base_ = ['./blip_tiny_demo.py']
model = dict(type='BLIPCaption', pretrained='work_dirs/blip_tiny_demo')
custom_hooks = []  # no momentum encoders, no queue, no distillation

max_epochs = 4
optim_wrapper = dict(optimizer=dict(lr=2e-4))
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=max_epochs))
