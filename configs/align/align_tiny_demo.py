# ALIGN tiny demo: ALIGN's architecture (EfficientNet image tower without the head
# convolution, BERT text tower with a linear projection of [CLS], InfoNCE with label
# smoothing 0.1 and a temperature initialised at 1.0) at toy size (TinyNet-E, a scaled-down
# EfficientNet, and a 2-layer BERT), on the embedded demo data, CPU minutes.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/demo_retrieval.py',
    '../_base_/schedules/align_lamb_linear_1200k.py',
]
demo_tokenizer = dict(type='DemoTokenizer', style='bert', max_length=32)
width = 96

model = dict(
    type='CLIP',
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375]),
    vision=dict(type='TimmTower', model_name='tinynet_e', head_conv=False),
    text=dict(type='BertEncoder', vocab_size=64, hidden_size=width, num_layers=2,
              num_heads=4, intermediate_size=4 * width, max_position_embeddings=32),
    vision_proj=dict(type='Projection', in_dim=160, out_dim=64),  # TinyNet-E's last stage (160 ch)
    text_proj=dict(type='Projection', in_dim=width, out_dim=64, bias=True),
    itc=dict(type='ContrastiveLoss', temperature=1.0, max_logit_scale=100.0,
             label_smoothing=0.1),
    tokenizer=demo_tokenizer)

pipeline = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=demo_tokenizer)]
train_dataloader = dict(dataset=dict(pipeline=pipeline))
val_dataloader = dict(dataset=dict(pipeline=pipeline))
test_dataloader = dict(dataset=dict(pipeline=pipeline))

max_iters = 400
optim_wrapper = dict(optimizer=dict(type='Lamb', lr=5e-3, weight_decay=1e-5))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=40),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=False, begin=40,
         end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=128, enable=False)
test_after_train = True  # tools/train.py reports the test split at the end
