# VLMo VQA tiny demo: VQA as classification on the multiway transformer's fusion mode (VLMo
# Sec. 4.1 / Table 2: the fused [CLS] through VLMo's pooler, then ViLT's classifier MLP;
# BUTD soft targets, binary cross-entropy x the vocabulary size), fine-tuned from the VLMo
# pre-training demo (all three stages) on the embedded demo VQA data:
#   python tools/train.py configs/vlmo/vlmo_tiny_demo.py     # its work dir: `pretrained`
#   python tools/train.py configs/vlmo/vlmo_vqa_tiny_demo.py
# The caption vocabulary grows to the task one; the ITC projections, MIM and MLM parts of
# the pre-training are dropped; a checkpoint whose ITM head has VLMo's pooler starts the
# task pooler from it (revise_keys; the demo's ITM head has none). Figures in docs/tasks.md.
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/demo_vqa.py']

vocab_size = 115  # the 'tasks' vocabulary
width = 96

model = dict(
    type='VQAClassifier',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    model=dict(
        type='VLMo',
        # the sizes of configs/vlmo/vlmo_tiny_demo.py (its checkpoint loads)
        backbone=dict(type='MultiwayTransformer', img_size={{_base_.image_size}},
                      patch_size=16, vocab_size=vocab_size, max_text_len=32,
                      embed_dim=width, depth=4, num_heads=4, num_vl_layers=1,
                      layer_scale_init=0.1, abs_pos_embed=False, rel_pos_bias=True,
                      initializer_range=0.1),
        vision_proj=dict(type='Projection', in_dim=width, out_dim=64, bias=True),
        text_proj=dict(type='Projection', in_dim=width, out_dim=64, bias=True),
        stage='image_text', tokenizer={{_base_.demo_task_tokenizer}}),
    # the ITC projections are pre-training parts: dropped (not trained, not saved)
    pretrained='work_dirs/vlmo_tiny_demo',
    drop_parts=('vision_proj', 'text_proj'),
    revise_keys=[(r'^model\.itm_head\.pooler\.0\.', 'head.pooler.0.')],
    head=dict(type='ClassifierHead', in_channels=width, pooler='bert'),
    answer_list=dict(type='DemoVQA'),
    target='butd')

max_epochs = 8
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       custom_keys={'head.': dict(lr_mult=10.0)}),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=True, begin=1,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=64, enable=False)
