# ViLT VQA tiny demo: VQA as classification (ViLT Sec. 4.2: an MLP head on the pooled
# state scores every answer of the vocabulary; BUTD soft targets, binary cross-entropy x
# the vocabulary size) on the embedded demo VQA data (vlp/datasets/demo_tasks.py: questions
# about colour, shape, count, position, size and yes/no of the demo scenes, ten annotator
# answers each, scored with the official VQA accuracy), starting from ViLT's image-only
# initialisation (the demo stand-in of its ImageNet ViT):
#   python tools/train.py configs/vilt/vilt_vit_init_tiny_demo.py
#   python tools/train.py configs/vilt/vilt_vqa_tiny_demo.py
# Figures in docs/tasks.md. Departures from vilt_vqa.py: sizes, data, schedule, no dropout.
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/demo_vqa.py']

vocab_size = 115  # the 'tasks' vocabulary (tests/test_task_demos.py checks it)
width = 128

model = dict(
    type='VQAClassifier',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    model=dict(
        type='ViLT',
        backbone=dict(type='SingleStreamTransformer', img_size={{_base_.image_size}},
                      patch_size=16, vocab_size=vocab_size, max_text_len=24, embed_dim=width, depth=4,
                      num_heads=4, mlp_ratio=4.0, drop=0.0, ln_eps=1e-12,
                      initializer_range=0.02),
        itm_head=None, mlm_head=None, tokenizer={{_base_.demo_task_tokenizer}}),
    # ViLT starts from an image-only pre-trained transformer (an ImageNet ViT; here the
    # demo stand-in, configs/vilt/vilt_vit_init_tiny_demo.py, run it first): its
    # VLClassifier keys model.* -> this model's, its class head unused
    pretrained='work_dirs/vilt_vit_init_tiny_demo',
    revise_keys=[(r'^model\.model\.', 'model.')],
    # ViLT's vqa_classifier: Linear(C, 2C) -> LayerNorm -> GELU -> Linear(2C, #answers)
    head=dict(type='ClassifierHead', in_channels=width),
    answer_list=dict(type='DemoVQA'),  # the dataset's metainfo['answer_list'] (25 answers)
    target='butd')

max_epochs = 8
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.01),
    # ViLT: the task head learns at 10x the backbone's rate
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       custom_keys={'head.': dict(lr_mult=10.0)}),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    # ViLT: linear warm-up (10% of the steps in ViLT; one epoch here), then linear decay to 0
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=True, begin=1,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=64, enable=False)
