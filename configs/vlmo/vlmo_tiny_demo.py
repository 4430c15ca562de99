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
_base_ = ['../_base_/models/vlmo.py', '../_base_/datasets/demo_retrieval_bert.py',
          '../_base_/schedules/vlmo_adamw_linear_200k.py', '../_base_/default_runtime.py']
image_size = 64
patch_size = 16
width = 96
embed_dim = 64
stage_iters = dict(image=240, text=240, image_text=1280)
text_begin = stage_iters['image']
vl_begin = text_begin + stage_iters['text']
max_iters = vl_begin + stage_iters['image_text']

# the paper's model at toy size, from random weights
model = dict(
    backbone=dict(img_size=image_size, patch_size=patch_size, vocab_size=53, max_text_len=32,
                  embed_dim=width, depth=4, num_heads=4, num_vl_layers=1,
                  drop_path_rate=0.0, text_rel_pos_len=None,
                  # 0.1 ~ width ** -0.5, as BEiT's 0.02 is for width 768: with 0.02 at
                  # width 96 the [CLS] features start as near-copies and ITC sits at
                  # chance for hundreds of steps (docs/models.md)
                  initializer_range=0.1),
    vision_proj=dict(in_dim=width, out_dim=embed_dim, bias=True),
    text_proj=dict(in_dim=width, out_dim=embed_dim, bias=True),
    itm_head=dict(hidden_size=width, pooler=False),
    mlm_head=dict(hidden_size=width, vocab_size=53),
    mim_head=dict(hidden_size=width, out_dim=256),
    visual_tokenizer=dict(_delete_=True, type='RandomProjectionTokenizer',
                          patch_size=patch_size, num_classes=256, code_dim=16, seed=0),
    mim_mask=dict(num_masking_patches=6, min_num_patches=2, min_aspect=0.3),
    stage='image',  # the first stage; the hook switches to the others
    itc=dict(min_logit_scale=2.0),
    tokenizer=dict(_base_.demo_tokenizer, _delete_=True))

train_dataloader = dict(batch_size=64)
val_evaluator = dict(type='ITMRetrievalMetric', k=16, batch_size=256)
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

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

# VLMo's AdamW and no-decay rules (the schedule base; in the text stage only the text
# entries of the relative position bias get gradients: with no decay its image entries
# stay as the image stage left them); lr 1e-3 for the toy model, torch's default kernel
optim_wrapper = dict(optimizer=dict(lr=1e-3, fused=None))
# one warm-up + cosine per stage (closed form, so each stage starts from the base lr)
param_scheduler = [
    dict(type='WarmupCosineLR', by_epoch=False, begin=b, end=e, warmup_iters=24,
         warmup_start_factor=0.01, eta_min_ratio=0.01)
    for b, e in ((0, text_begin), (text_begin, vl_begin), (vl_begin, max_iters))]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=vl_begin, by_epoch=False, max_keep_ckpts=4),
                     logger=dict(interval=20))
log_processor = dict(by_epoch=False)
auto_scale_lr = None
test_after_train = True  # tools/train.py reports the test split at the end
