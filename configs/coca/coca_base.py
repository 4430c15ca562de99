# CoCa-Base (Yu et al. 2022, "CoCa: Contrastive Captioners are Image-Text Foundation
# Models", Table 1 and Sec. 4.1), as far as the paper documents it: a ViT-B image encoder
# (12 layers, width 768, MLP 3072, 12 heads) on 288 x 288 images with 18 x 18 patches; a
# text decoder of width 768 (MLP 3072, 12 heads) split into 12 unimodal layers (causal,
# with a [CLS] appended whose final state is the text embedding) and 12 multimodal layers
# (cross-attention to the image); attentional poolers with 1 contrastive and 256
# captioning queries, read in parallel from the image tokens; loss 1 * ITC + 2 *
# captioning; Adafactor, 500k steps at batch 65,536 (the schedule base file).
# Not given by the paper, chosen here: pooler heads (8, as open_clip), the text length
# (76, as open_clip's coca_base.json), no linear projections into the contrastive space
# (the paper's pseudo-code compares the pooled states directly; open_clip adds them), the
# crop augmentation. Simplifications: the paper's 64k SentencePiece vocabulary is not
# public (OpenAI's CLIP BPE here), nor is its JFT-3B + ALIGN data (point data/pretrain at
# a public corpus, see the dataset base file); no extra epoch at 576 px.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/image_text_csv.py',
    '../_base_/datasets/coco_retrieval.py',
    '../_base_/schedules/coca_adafactor_linear_500k.py',
]
tokenizer = dict(type='CLIPTokenizer', tokenizer_file='data/clip/tokenizer.json',
                 max_length=76)
vocab_size = 49408
width = 768
image_size = 288

model = dict(
    type='CoCa',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    vision=dict(type='TimmTower', model_name='vit_base_patch16_224', img_size=image_size,
                patch_size=18),
    text=dict(type='TextTransformer', vocab_size=vocab_size, context_length=76,
              width=width, layers=12, heads=12, act_layer='gelu', embed_cls=True),
    decoder=dict(type='MultimodalDecoder', vocab_size=vocab_size, width=width, layers=12,
                 heads=12, act_layer='gelu'),
    con_pooler=dict(type='AttentionalPooler', dim=width, context_dim=768, num_heads=8,
                    n_queries=1),
    cap_pooler=dict(type='AttentionalPooler', dim=width, context_dim=768, num_heads=8,
                    n_queries=256),
    pooler_layout='parallel',
    vision_proj=None,
    text_proj=None,
    # local loss: [B, W*B] logits per rank instead of [W*B, W*B], the same gradients
    itc=dict(type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0,
             local_loss=True),
    caption_loss=dict(type='CaptionLoss', label_smoothing=0.0),
    contrastive_weight=1.0,
    caption_weight=2.0,
    # pretraining is evaluated by zero-shot retrieval (Table 3); for captioning set
    # predict_mode='caption' and the evaluators to dict(type='CaptionMetric')
    predict_mode='retrieval',
    generation_cfg=dict(num_beams=4, max_length=30),
    tokenizer=tokenizer)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.9, 1.0),
         interpolation='bicubic'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=image_size, interpolation='bicubic'),
    dict(type='CenterCrop', size=image_size),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=tokenizer),
]
# 65,536 pairs per step = 256 per device x 256 devices
train_dataloader = dict(batch_size=256, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_evaluator = dict(type='RetrievalMetric')
test_evaluator = val_evaluator

# iteration-based schedule: checkpoints and logs by iteration
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=50_000))
log_processor = dict(by_epoch=False)
