# ALBEF tiny demo: the ALBEF architecture and objectives (ViT image encoder; BERT text
# encoder + fusion encoder with cross-attention; ITC with momentum features, a feature
# queue and momentum distillation; ITM with hard negatives; MLM) at toy size, trained on
# the embedded demo data on CPU (11-17 min on 2 cores). Test retrieval is ranked by ITC and
# re-ranked by ITM on the top-16 candidates. `python tools/train.py
# configs/albef/albef_tiny_demo.py`; figures in docs/models.md.
# Three departures from the paper's recipe, because this model starts from random weights
# (ALBEF starts from DeiT and BERT-base): the queue stays empty for the first 160 steps
# (2 epochs: in-batch momentum negatives only, until the features are no longer
# near-copies of each other), ITM negatives are drawn uniformly for the first 320 steps
# (the fusion encoder learns the easy task before the hard negatives), and the EMA
# coefficient is 0.95 (a few hundred steps, not ~100k). docs/models.md shows what happens
# without them.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/demo_retrieval.py',
]
demo_tokenizer = dict(type='DemoTokenizer', style='bert', max_length=32)
image_size = 64
width = 96
embed_dim = 64
# no dropout at toy scale (as the CLIP demo): with BERT's 0.1, a 2-layer [CLS] trained from
# scratch sits on a long plateau before its features separate
bert = dict(type='BertEncoder', vocab_size=53, hidden_size=width, num_heads=4,
            intermediate_size=4 * width, max_position_embeddings=32, hidden_dropout=0.0,
            attention_dropout=0.0)

model = dict(
    type='ALBEF',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    vision=dict(type='TimmTower', model_name='vit_base_patch16_224', img_size=image_size,
                patch_size=8, embed_dim=width, depth=3, num_heads=4),
    text=dict(bert, num_layers=2),
    fusion=dict(bert, num_layers=2, with_embeddings=False, cross_attention_layers='all',
                cross_attention_dim=width),
    vision_proj=dict(type='Projection', in_dim=width, out_dim=embed_dim, bias=True,
                     init_std=0.02),
    text_proj=dict(type='Projection', in_dim=width, out_dim=embed_dim, bias=True,
                   init_std=0.02),
    itm_head=dict(type='ITMHead', hidden_size=width),
    mlm_head=dict(type='MLMHead', hidden_size=width, vocab_size=53),
    itc=dict(type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
             max_logit_scale=1000.0),
    queue_size=1024,
    queue_init='empty',  # unwritten rows are no negatives (see FeatureQueueHook below)
    alpha=0.4,
    mlm_probability=0.15,
    tokenizer=demo_tokenizer)

pipeline = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=demo_tokenizer)]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=pipeline))
val_dataloader = dict(dataset=dict(pipeline=pipeline))
test_dataloader = dict(dataset=dict(pipeline=pipeline))
val_evaluator = dict(type='ITMRetrievalMetric', k=16, batch_size=256)
test_evaluator = val_evaluator

custom_hooks = [
    # 0.95 at toy scale (1,264 steps from scratch; ALBEF: 0.995 over ~100k steps)
    dict(type='MomentumUpdateHook', momentum=0.95),
    # queue warm-up: nothing enqueued in the first 2 epochs (ALBEF: from the first step)
    dict(type='FeatureQueueHook', start_iter=160),
    dict(type='DistillAlphaHook'),  # alpha ramps from 0 to 0.4 over the first epoch
    # ITM negatives drawn uniformly for 4 epochs, then by ITC similarity (ALBEF: always)
    dict(type='ITMNegativeWarmupHook', iters=320),
]

max_epochs = 16
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.02),
    # bypass_duplicate: the MLM decoder shares its weight with the word embeddings
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=40),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=64, enable=False)
test_after_train = True  # tools/train.py reports the test split at the end
