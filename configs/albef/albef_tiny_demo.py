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
_base_ = ['../_base_/models/albef.py', '../_base_/datasets/demo_retrieval_bert.py',
          '../_base_/schedules/albef_adamw_cosine_30e.py', '../_base_/default_runtime.py']
image_size = 64
width = 96
embed_dim = 64
# no dropout at toy scale (as the CLIP demo): with BERT's 0.1, a 2-layer [CLS] trained from
# scratch sits on a long plateau before its features separate
__bert = dict(vocab_size=53, hidden_size=width, num_heads=4, intermediate_size=4 * width,
              max_position_embeddings=32, hidden_dropout=0.0, attention_dropout=0.0,
              pretrained=None)

# the paper's model at toy size, from random weights
model = dict(
    vision=dict(model_name='vit_base_patch16_224', img_size=image_size, patch_size=8,
                embed_dim=width, depth=3, num_heads=4, pretrained=False),
    text=dict(__bert, num_layers=2),
    fusion=dict(__bert, num_layers=2, cross_attention_dim=width, pretrained_layer_offset=0),
    vision_proj=dict(in_dim=width, out_dim=embed_dim),
    text_proj=dict(in_dim=width, out_dim=embed_dim),
    itm_head=dict(hidden_size=width),
    mlm_head=dict(hidden_size=width, vocab_size=53),
    queue_size=1024,
    queue_init='empty',  # unwritten rows are no negatives (see FeatureQueueHook below)
    tokenizer=dict(_base_.demo_tokenizer, _delete_=True))

train_dataloader = dict(batch_size=64)
val_evaluator = dict(type='ITMRetrievalMetric', k=16, batch_size=256)
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

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
# lr 1e-3 at toy scale; torch's default AdamW implementation (the demo's figures)
optim_wrapper = dict(optimizer=dict(lr=1e-3, fused=None))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=40),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=64)
test_after_train = True  # tools/train.py reports the test split at the end
