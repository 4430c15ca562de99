# CLIP ViT-B/16 (Radford et al. 2021), as in the paper: 224 px images, ViT-B/16 image
# encoder (width 768, 12 layers, 12 heads, pre-LN, QuickGELU), text transformer (width 512,
# 12 layers, 8 heads, causal, 77 tokens, 49,408 BPE vocabulary, EOT pooling), 512-d joint
# space, symmetric InfoNCE with a learnable temperature initialised at 0.07 and clipped to
# logit scale 100, negatives from every rank. The paper's WIT-400M corpus is not public:
# point data/pretrain at LAION-400M or another web corpus (see the dataset base file).
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/image_text_csv.py',
    '../_base_/datasets/coco_retrieval.py',
    '../_base_/schedules/clip_adamw_cosine_32e.py',
]
# byte-level BPE of OpenAI CLIP, from a local tokenizer.json (or vocab.json + merges.txt)
tokenizer = dict(type='CLIPTokenizer', tokenizer_file='data/clip/tokenizer.json',
                 max_length=77)

model = dict(
    type='CLIP',
    data_preprocessor=dict(type='VLPDataPreprocessor',
                           mean=[122.771, 116.746, 104.094], std=[68.501, 66.632, 70.323]),
    vision=dict(type='TimmTower', model_name='vit_base_patch16_clip_quickgelu_224',
                img_size=224),
    text=dict(type='TextTransformer', vocab_size=49408, context_length=77, width=512,
              layers=12, heads=8, act_layer='quick_gelu'),
    vision_proj=dict(type='Projection', in_dim=768, out_dim=512),
    text_proj=dict(type='Projection', in_dim=512, out_dim=512),
    # local loss (open_clip --local-loss with gather-with-grad): each rank scores its own
    # B rows against the W*B gathered columns, [B, W*B] logits instead of [W*B, W*B]; the
    # same gradients (tests/models/test_contrastive.py, 2 ranks)
    itc=dict(type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0,
             local_loss=True),
    tokenizer=tokenizer,
    grad_checkpointing=False)

train_pipeline = [
    dict(type='LoadImage'),
    # open_clip's CLIP recipe: random resized crop with scale (0.9, 1.0), no other augmentation
    dict(type='RandomResizedCrop', size=224, scale=(0.9, 1.0), interpolation='bicubic'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=224, interpolation='bicubic'),
    dict(type='CenterCrop', size=224),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer),
]
train_dataloader = dict(batch_size=128, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))

# 32,768 = 128 per GPU x 256 GPUs; bf16 mixed precision; ZeRO-1 shards the AdamW state.
# torch's fused AdamW kernel (one kernel over all tensors; 6x faster than foreach on CPU)
optim_wrapper = dict(optimizer=dict(fused=True))
strategy = dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=1),
                bf16=dict(enabled=True), gradient_clipping=0.0)
