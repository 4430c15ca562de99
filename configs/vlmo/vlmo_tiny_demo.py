# VLMo tiny demo: the three pre-training stages of VLMo (Bao et al. 2022, Sec. 3.3) in one
# run on the embedded demo data, switched by StagewiseFreezeHook:
#   iterations    0-239   'image'       masked image modelling (block-wise masks, 6 of 16
#                                       patches), attention + vision experts train;
#   iterations  240-479   'text'        MLM on the captions alone, attention and vision
#                                       experts frozen, language experts train;
#   iterations  480-1759  'image_text'  ITC + ITM (hard negatives) + MLM, everything trains.
# Each stage has its own warm-up + cosine schedule and a fresh optimizer state (each stage
# of the paper is its own pre-training run). Test retrieval ranks by the dual encoder
# (ITC) and re-ranks the top 16 by ITM. `python tools/train.py configs/vlmo/vlmo_tiny_demo.py`;
# figures in docs/models.md.
# Departures from the paper, for a CPU demo: the image and text stages read the images and
# the captions of the same demo pairs (the paper: ImageNet-22K, then Wikipedia +
# BookCorpus); the visual tokens come from a frozen random-projection quantizer (BEST-RQ)
# instead of DALL-E's dVAE, which cannot be downloaded here; toy sizes and schedule, the
# initialisation scaled to the toy width, and uniform ITM negatives for the first 640
# image-text steps.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/demo_retrieval.py',
]
demo_tokenizer = dict(type='DemoTokenizer', style='bert', max_length=32)
image_size = 64
patch_size = 16
width = 96
embed_dim = 64
stage_iters = dict(image=240, text=240, image_text=1280)
text_begin = stage_iters['image']
vl_begin = text_begin + stage_iters['text']
max_iters = vl_begin + stage_iters['image_text']

model = dict(
    type='VLMo',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    backbone=dict(type='MultiwayTransformer', img_size=image_size, patch_size=patch_size,
                  vocab_size=53, max_text_len=32, embed_dim=width, depth=4, num_heads=4,
                  num_vl_layers=1, layer_scale_init=0.1, abs_pos_embed=False,
                  rel_pos_bias=True,
                  # 0.1 ~ width ** -0.5, as BEiT's 0.02 is for width 768: with 0.02 at
                  # width 96 the [CLS] features start as near-copies and ITC sits at
                  # chance for hundreds of steps (docs/models.md)
                  initializer_range=0.1),
    vision_proj=dict(type='Projection', in_dim=width, out_dim=embed_dim, bias=True,
                     init_std=0.02),
    text_proj=dict(type='Projection', in_dim=width, out_dim=embed_dim, bias=True,
                   init_std=0.02),
    itm_head=dict(type='ITMHead', hidden_size=width),
    mlm_head=dict(type='MLMHead', hidden_size=width, vocab_size=53),
    mim_head=dict(type='MIMHead', hidden_size=width, out_dim=256),
    visual_tokenizer=dict(type='RandomProjectionTokenizer', patch_size=patch_size,
                          num_classes=256, code_dim=16, seed=0),
    mim_mask=dict(num_masking_patches=6, min_num_patches=2, min_aspect=0.3),
    stage='image',  # the first stage; the hook switches to the others
    itc=dict(type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
             max_logit_scale=100.0),
    mlm_probability=0.15,
    tokenizer=demo_tokenizer)

pipeline = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=demo_tokenizer)]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=pipeline))
val_dataloader = dict(dataset=dict(pipeline=pipeline))
test_dataloader = dict(dataset=dict(pipeline=pipeline))
val_evaluator = dict(type='ITMRetrievalMetric', k=16, batch_size=256)
test_evaluator = val_evaluator

custom_hooks = [
    dict(type='StagewiseFreezeHook', stages=[
        dict(begin=0, stage='image'),
        dict(begin=text_begin, stage='text'),
        dict(begin=vl_begin, stage='image_text')]),
    # ITM negatives drawn uniformly for the first 640 image-text steps, then by ITC
    # similarity (VLMo: always by similarity; from scratch the ITM head otherwise stays at
    # the class prior: measured, 960 steps at the prior with 320 uniform steps first)
    dict(type='ITMNegativeWarmupHook', iters=vl_begin + 640),
]

optim_wrapper = dict(
    type='OptimWrapper',
    # VLMo: AdamW, betas (0.9, 0.98), weight decay 0.01
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01),
    # no decay on norms, biases, layer scale, embeddings tables of positions and the
    # relative position bias (in the text stage only its text entries get gradients: with
    # no decay its image entries stay as the image stage left them)
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True,
                       custom_keys={'rel_pos_bias_table': dict(decay_mult=0.0),
                                    'cls_token': dict(decay_mult=0.0),
                                    'mask_token': dict(decay_mult=0.0)}))
# one warm-up + cosine per stage (closed form, so each stage starts from the base lr)
param_scheduler = [
    dict(type='WarmupCosineLR', by_epoch=False, begin=b, end=e, warmup_iters=24,
         warmup_start_factor=0.01, eta_min_ratio=0.01)
    for b, e in ((0, text_begin), (text_begin, vl_begin), (vl_begin, max_iters))]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=vl_begin,
                                     by_epoch=False, max_keep_ckpts=4, save_last=True),
                     logger=dict(type='LoggerHook', interval=20))
log_processor = dict(by_epoch=False)
test_after_train = True  # tools/train.py reports the test split at the end
