# ALBEF SNLI-VE tiny demo: visual entailment as 3-way classification (ALBEF Sec. 5.2: an MLP
# Linear(C, C) -> ReLU -> Linear(C, 3) on the fusion encoder's [CLS]; cross-entropy),
# fine-tuned from the ALBEF pre-training demo on the embedded demo SNLI-VE data (one
# entailed, one contradicted, one undecidable hypothesis per scene). First run
#   python tools/train.py configs/albef/albef_tiny_demo.py
# (its work dir is `pretrained` below; the caption vocabulary grows to the task one, the
# new words' embeddings start at their init), then
#   python tools/train.py configs/albef/albef_snli_ve_tiny_demo.py
# The pre-training heads and the ITC / momentum parts are dropped; ALBEF's momentum
# distillation of the fine-tuning is not used here. Figures in docs/tasks.md.
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/demo_snli_ve.py']

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
        fusion=dict(bert, num_layers=2, with_embeddings=False, cross_attention_layers='all',
                    cross_attention_dim=width),
        vision_proj=dict(type='Projection', in_dim=width, out_dim=64),
        text_proj=dict(type='Projection', in_dim=width, out_dim=64),
        queue_size=0, momentum_distill=False, tokenizer={{_base_.demo_task_tokenizer}}),
    pretrained='work_dirs/albef_tiny_demo',
    drop_parts=('vision_proj', 'text_proj', 'vision_m', 'text_m', 'fusion_m',
                'vision_proj_m', 'text_proj_m'),
    head=dict(type='ClassifierHead', in_channels=width, num_classes=3, hidden_channels=width,
              norm=False, act='relu'))

max_epochs = 8
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.02),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0),
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
