# BEiT-3 base (Wang et al. 2022) fine-tuned on NLVR2 (Sec. 3.1 / Table 3; recipe from the
# official repo, microsoft/unilm beit3/get_started/get_started_for_nlvr2.md, base command,
# and run_beit3_finetuning.py / optim_factory.py / modeling_finetune.py):
# - each image encoded jointly with the statement (VLClassifier num_images=2,
#   pair_encoding='separate'), the two states concatenated into an MLP: Linear -> LayerNorm
#   -> GELU -> Linear(1536, 2) (BEiT3ForVisualReasoning's TwoLayerMLP, weights initialised
#   x 0.001: init_std 2e-5 here); cross-entropy, no label smoothing;
# - AdamW lr 7e-4, betas (0.9, 0.98) (UNCONFIRMED for NLVR2: the command gives no
#   --opt_betas, the script's default is used; we keep beit3_base.py's (0.9, 0.98)), weight
#   decay 0.2 (none on 1-D parameters, biases, [CLS] / image position embedding), LAYER-WISE
#   LR DECAY 0.65 (lr x 0.65^(13 - layer): embeddings layer 0, block k layer k + 1, the rest
#   and the head x1; optim_factory's get_num_layer_for_vit), 5 warm-up epochs then cosine to
#   1e-6, 20 epochs, batch 256 (8 GPUs x 32), stochastic depth 0.2, 224 x 224 images, no
#   RandAugment (the command has no --randaug). The train crop (RandomResizedCrop, scale
#   0.5-1, no flip) is UNCONFIRMED.
# DEPARTURE: BEiT-3 feeds the head 4 x 768 (the vision [CLS] and the text [CLS] of each
# pair, LayerNorm on that input); vlp's BEiT3.fused_features gives the image [CLS] only, so
# the head reads 2 x 768 without the input LayerNorm. The tokenizer is beit3_base.py's BERT
# WordPiece, not SentencePiece.
# pretrained: the pre-training run of configs/beit3/beit3_base.py, or the official weights
# converted with tools/convert/torchscale_beit3_to_vlp.py (vocabulary caveat: beit3_base.py).
# Dropped: the MLM and MIM heads and the visual tokenizer.
# Splits: train / dev (validation) / test-P (test1), ClassificationAccuracy.
_base_ = ['../_base_/models/beit3_classifier.py', '../_base_/datasets/nlvr2.py',
          '../_base_/schedules/beit3_adamw_cosine_1m.py', '../_base_/default_runtime.py']
image_size = 224
train_image_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.5, 1.0),
         interpolation='bicubic'),
    dict(type='ToTensor'),
]
train_dataloader = dict(batch_size=32,  # x 8 = 256
                        dataset=dict(image_pipeline=train_image_pipeline,
                                     pipeline={{_base_.text_pipeline}}))
# evaluation: the family's image and text transforms
val_dataloader = dict(dataset=dict(image_pipeline={{_base_.image_pipeline}},
                                   pipeline={{_base_.text_pipeline}}))
test_dataloader = val_dataloader  # the same transforms on test-P
model = dict(
    model=dict(backbone=dict(drop_path_rate=0.2)),
    head=dict(num_classes=2, num_inputs=2, pooler=None, init_std=2e-5),
    num_images=2,
    pair_encoding='separate',
    label_smoothing=0.0)

# Layer-wise lr decay as mmengine custom keys (vlp has no layer-decay constructor). A custom
# key overrides the norm / bias no-decay rules, so the norms and biases of every block are
# keys of their own with decay_mult=0; the final norm and the head keep the base lr.
__depth = 12
__layer_decay = 0.65
__stem = {'cls_token': 0.0, 'mask_token': 0.0, 'patch_embed.weight': 1.0,
          'patch_embed.bias': 0.0, 'word_embeddings': 1.0, 'image_pos_embed': 0.0,
          'text_pos_embed': 1.0}  # name -> decay_mult
__no_decay = ['norm1', 'norm2', 'attn.norm', 'ffn.v.norm', 'ffn.l.norm',
              'attn.qkv.v.bias', 'attn.qkv.l.bias', 'attn.proj.v.bias', 'attn.proj.l.bias',
              'ffn.v.fc1.bias', 'ffn.l.fc1.bias', 'ffn.v.fc2.bias', 'ffn.l.fc2.bias']
__custom_keys = {f'model.backbone.{n}': dict(lr_mult=__layer_decay ** (__depth + 1),
                                             decay_mult=d) for n, d in __stem.items()}
for __k in range(__depth):
    __mult = __layer_decay ** (__depth - __k)  # block k is layer k + 1
    __custom_keys[f'model.backbone.blocks.{__k}.'] = dict(lr_mult=__mult)
    for __n in __no_decay:
        __custom_keys[f'model.backbone.blocks.{__k}.{__n}'] = dict(lr_mult=__mult,
                                                                   decay_mult=0.0)
max_epochs = 20
warmup_epochs = 5
optim_wrapper = dict(optimizer=dict(lr=7e-4, weight_decay=0.2),
                     paramwise_cfg=dict(custom_keys=__custom_keys))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1,
                                     save_best='nlvr2_dev/accuracy', rule='greater'))
auto_scale_lr = dict(base_batch_size=256, enable=False)
