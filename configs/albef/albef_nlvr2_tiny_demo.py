# ALBEF NLVR2 tiny demo: ALBEF's two-image fusion (Sec. 5.3 / Fig. 3(b)): the fusion encoder
# has twice the layers; in each consecutive pair the first cross-attends to the left image
# and the second to the right one, the pair sharing its cross-attention keys and values
# (each fusion layer k of the starting checkpoint initialises layers 2k and 2k+1, expanded
# on load: ALBEF.adapt_pretrained_state_dict); an MLP on the final [CLS] classifies true /
# false. ALBEF adapts its pre-trained model to the two-image layout with an extra
# pre-training step (text assignment) before NLVR2; the demo starts instead from the SNLI-VE
# demo (itself fine-tuned from the pre-training demo): from the pre-training checkpoint
# directly, the fine-tuning stayed at chance for 6 epochs (lr 5e-4 and 1e-4; docs/tasks.md).
#   python tools/train.py configs/albef/albef_tiny_demo.py
#   python tools/train.py configs/albef/albef_snli_ve_tiny_demo.py
#   python tools/train.py configs/albef/albef_nlvr2_tiny_demo.py
# Momentum distillation is not used. Figures in docs/tasks.md.
_base_ = ['../_base_/models/albef_classifier_tiny.py', '../_base_/datasets/demo_nlvr2.py',
          '../_base_/schedules/albef_adamw_cosine_30e.py', '../_base_/default_runtime.py']
model = dict(
    # 2 pre-trained fusion layers -> 4 (left, right, left, right)
    model=dict(fusion=dict(num_layers=4), two_image_fusion=True),
    # the SNLI-VE demo's VLClassifier: its model.* keys -> this model's (head unused)
    pretrained='work_dirs/albef_snli_ve_tiny_demo',
    revise_keys=[(r'^model\.model\.', 'model.')],
    head=dict(num_classes=2),
    num_images=2,
    pair_encoding='joint')

max_epochs = 6
# 5e-4 collapsed to chance; bypass_duplicate (the schedule's): the tied cross-attention K/V
optim_wrapper = dict(optimizer=dict(lr=1e-4, fused=None), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=64)
