# BLIP-2 stage 1 tiny demo: a frozen (random, never trained) ViT 3 x 96 at 64 px, a
# 2-layer Q-Former of width 96 with 8 queries and cross-attention every 2nd layer, trained
# with ITC (max over queries), ITM (hard negatives) and ITG on the embedded demo data on CPU;
# test retrieval by ITC and by ITM re-ranking of the top 16. Figures in docs/models.md.
_base_ = ['../_base_/models/blip2.py', '../_base_/datasets/demo_retrieval.py',
          '../_base_/schedules/blip2_stage1_adamw_cosine_250k.py',
          '../_base_/default_runtime.py']
demo_tokenizer = dict(type='DemoTokenizer', style='bert', max_length=32,
                      additional_special_tokens=['[DEC]'])
image_size = 64
vocab_size = 54  # 53 demo tokens + [DEC]
width = 96

# the paper's model at toy size: a frozen random ViT (fp32), a 2-layer Q-Former, 8 queries
model = dict(
    vision=dict(model_name='vit_base_patch16_224', img_size=image_size, patch_size=8,
                embed_dim=width, depth=3, num_heads=4, pretrained=False),
    vision_dtype=None,
    qformer=dict(num_query_tokens=8, encoder_width=width, vocab_size=vocab_size,
                 hidden_size=width, num_layers=2, num_heads=4, intermediate_size=4 * width,
                 max_position_embeddings=32, hidden_dropout=0.0, attention_dropout=0.0,
                 pretrained=None),
    vision_proj=dict(in_dim=width, out_dim=64),
    text_proj=dict(in_dim=width, out_dim=64),
    itm_head=dict(hidden_size=width),
    lm_head=dict(hidden_size=width, vocab_size=vocab_size),
    tokenizer=dict(demo_tokenizer, _delete_=True))

train_pipeline = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=demo_tokenizer)]
test_pipeline = train_pipeline
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_evaluator = dict(type='ITMRetrievalMetric', k=16, batch_size=256)
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')
# as the ALBEF demo (from scratch): ITM negatives uniform for the first 4 epochs
custom_hooks = [dict(type='ITMNegativeWarmupHook', iters=320)]

max_epochs = 12
optim_wrapper = dict(
    optimizer=dict(lr=1e-3, fused=None),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=40),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=64)
test_after_train = True
