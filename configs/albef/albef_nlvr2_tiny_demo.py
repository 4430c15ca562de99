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
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/demo_nlvr2.py']

vocab_size = 115  # the 'tasks' vocabulary
width = 96
# the sizes of configs/albef/albef_tiny_demo.py (its checkpoint loads), the task vocabulary
bert = dict(type='BertEncoder', vocab_size=vocab_size, hidden_size=width, num_heads=4,
            intermediate_size=4 * width, max_position_embeddings=32, hidden_dropout=0.0,
            attention_dropout=0.0)

model = dict(
    type='VLClassifier',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    model=dict(
        type='ALBEF',
        vision=dict(type='TimmTower', model_name='vit_base_patch16_224',
                    img_size={{_base_.image_size}}, patch_size=8, embed_dim=width, depth=3,
                    num_heads=4),
        text=dict(bert, num_layers=2),
        # 2 pre-trained fusion layers -> 4 (left, right, left, right)
        fusion=dict(bert, num_layers=4, with_embeddings=False, cross_attention_layers='all',
                    cross_attention_dim=width),
        vision_proj=dict(type='Projection', in_dim=width, out_dim=64),
        text_proj=dict(type='Projection', in_dim=width, out_dim=64),
        two_image_fusion=True,
        queue_size=0, momentum_distill=False, tokenizer={{_base_.demo_task_tokenizer}}),
    # the SNLI-VE demo's VLClassifier: its model.* keys -> this model's (head unused)
    pretrained='work_dirs/albef_snli_ve_tiny_demo',
    revise_keys=[(r'^model\.model\.', 'model.')],
    drop_parts=('vision_proj', 'text_proj', 'vision_m', 'text_m', 'fusion_m',
                'vision_proj_m', 'text_proj_m'),
    head=dict(type='ClassifierHead', in_channels=width, num_classes=2, hidden_channels=width,
              norm=False, act='relu'),
    num_images=2,
    pair_encoding='joint')

max_epochs = 6
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.02),  # 5e-4 collapsed to chance
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True),  # the tied cross-attention K/V
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=64, enable=False)
