# BEiT-3 retrieval tiny demo: BEiT3Retrieval (Wang et al. 2022, Sec. 3.2 / Fig. 3(d)) at toy
# size on the embedded demo data: the multiway encoder as a dual encoder (image-only and
# text-only passes, [CLS] states, linear projections without bias, L2-normalised), trained
# from scratch with the symmetric InfoNCE loss (learnable temperature, negatives from every
# rank) and evaluated by ITC recall@K (RetrievalMetric). Same backbone sizes and BERT-style
# demo vocabulary as beit3_tiny_demo.py; data and schedule conventions of clip_tiny_demo.py.
# `python tools/train.py configs/beit3/beit3_retrieval_tiny_demo.py` (a few CPU minutes).
# To fine-tune the MDM demo instead of training from scratch, set
# load_from = 'work_dirs/beit3_tiny_demo/iter_400.pth' (only the heads differ).
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/demo_retrieval.py',
]
demo_tokenizer = dict(type='DemoTokenizer', style='bert', max_length=32)
image_size = 64
patch_size = 16
width = 96
vocab_size = 53  # the demo's BERT-style word vocabulary

model = dict(
    type='BEiT3Retrieval',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    backbone=dict(type='BEiT3Transformer', img_size=image_size, patch_size=patch_size,
                  vocab_size=vocab_size, max_text_len=34, embed_dim=width, depth=4,
                  num_heads=4),
    vision_proj=dict(type='Projection', in_dim=width, out_dim=width, bias=False),
    text_proj=dict(type='Projection', in_dim=width, out_dim=width, bias=False),
    itc=dict(type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0),
    tokenizer=demo_tokenizer)

pipeline = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=demo_tokenizer)]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=pipeline))
val_dataloader = dict(dataset=dict(pipeline=pipeline))
test_dataloader = dict(dataset=dict(pipeline=pipeline))
val_evaluator = dict(type='RetrievalMetric')
test_evaluator = val_evaluator

max_epochs = 15
optim_wrapper = dict(
    type='OptimWrapper',
    # BEiT-3: AdamW, betas (0.9, 0.98), eps 1e-6, weight decay 0.05 (lr for the toy model)
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       custom_keys={'cls_token': dict(decay_mult=0.0),
                                    'mask_token': dict(decay_mult=0.0),
                                    'pos_embed': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
test_after_train = True  # tools/train.py reports the test split at the end
