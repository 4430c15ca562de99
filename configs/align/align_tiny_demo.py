# ALIGN tiny demo: ALIGN's architecture (EfficientNet image tower without the head
# convolution, BERT text tower with a linear projection of [CLS], InfoNCE with label
# smoothing 0.1 and a learned temperature) at toy size (TinyNet-E, a scaled-down
# EfficientNet, and a 2-layer BERT), on the embedded demo data, CPU minutes. Its optimizer
# and initial temperature are the CLIP demo's, not ALIGN's (below; docs/demos.md).
_base_ = ['../_base_/models/align.py', '../_base_/datasets/demo_retrieval_bert.py',
          '../_base_/schedules/align_lamb_linear_1200k.py', '../_base_/default_runtime.py']
image_size = 64
width = 96

# the paper's model at toy size
model = dict(
    vision=dict(model_name='tinynet_e', drop_path_rate=None),
    text=dict(vocab_size=64, hidden_size=width, num_layers=2, num_heads=4,
              intermediate_size=4 * width, max_position_embeddings=32),
    # TinyNet-E's last stage (160 ch) projected to 64 dims
    vision_proj=dict(_delete_=True, type='Projection', in_dim=160, out_dim=64),
    text_proj=dict(in_dim=width, out_dim=64),
    # CLIP's initial temperature (ALIGN: 1.0), see the optimizer below
    itc=dict(local_loss=False, temperature=0.07),
    tokenizer=dict(_base_.demo_tokenizer, _delete_=True))

max_iters = 400
# Not ALIGN's recipe at this scale: with LAMB (lr 5e-3) and the temperature learned from
# 1.0 the demo stays near chance after 400 steps (test R@1 1.8 / 1.6; with 10x the
# temperature's learning rate 1.6 / 1.9): a softmax over cosine similarities scaled by ~1
# can hardly separate 128 pairs, and LAMB's layer-wise steps learn the towers slowly here
# (training loss 3.8 from 4.85; the CLIP demo reaches 0.65). The demo trains the ALIGN
# model with the CLIP demo's optimizer (AdamW, lr 1e-3, weight decay 0.1) and initial
# temperature; docs/demos.md has the figures.
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.1),
                     paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                                        flat_decay_mult=0.0,
                                        custom_keys={'logit_scale': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=40),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=False, begin=40,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(base_batch_size=128)
test_after_train = True  # tools/train.py reports the test split at the end
