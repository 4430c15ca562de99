# ALBEF (Li et al. 2021, "Align before Fuse"), the paper's model: ViT-B/16 image encoder
# initialised from DeiT-B/16 (ImageNet-1k), BERT-base split into a 6-layer text encoder and
# a 6-layer fusion encoder (cross-attention to the image tokens in each fusion layer), 256-d
# ITC space, ITC with a 65,536-feature queue, ITM with hard negatives, MLM (15%), momentum
# distillation (alpha 0.4 ramped over the first epoch, EMA 0.995); 256 x 256 images.
# The model's inputs come with it: its tokenizer (BERT WordPiece, 30 tokens), image size and
# transforms (pre-training and retrieval fine-tuning: train_pipeline / test_pipeline).
# Weights (not downloaded by vlp): data/bert-base-uncased/{vocab.txt,model.safetensors} (HF
# bert-base-uncased); DeiT-B/16 from timm (`pretrained=True`, hub) or a local file
# (`pretrained=False, checkpoint='data/deit_base_patch16_224.pth', adapt_checkpoint=True`);
# timm resamples the 224-px position embeddings to 256 px.
image_size = 256
__tokenizer = dict(type='BertTokenizer', vocab_file='data/bert-base-uncased/vocab.txt',
                   lowercase=True, max_length=30)
__bert = dict(type='BertEncoder', vocab_size=30522, hidden_size=768, num_heads=12,
              intermediate_size=3072, max_position_embeddings=512,
              pretrained='data/bert-base-uncased')

model = dict(
    type='ALBEF',
    # ALBEF normalises with CLIP's image statistics
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[122.771, 116.746, 104.094],
                           std=[68.501, 66.632, 70.323]),
    vision=dict(type='TimmTower', model_name='deit_base_patch16_224', img_size=image_size,
                pretrained=True),
    text=dict(__bert, num_layers=6),  # BERT layers 0-5
    fusion=dict(__bert, num_layers=6, with_embeddings=False, cross_attention_layers='all',
                pretrained_layer_offset=6),  # BERT layers 6-11 + new cross-attention
    vision_proj=dict(type='Projection', in_dim=768, out_dim=256, bias=True, init_std=0.02),
    text_proj=dict(type='Projection', in_dim=768, out_dim=256, bias=True, init_std=0.02),
    itm_head=dict(type='ITMHead', hidden_size=768),
    mlm_head=dict(type='MLMHead', hidden_size=768, vocab_size=30522),
    # temperature 0.07, clamped to [0.001, 0.5] as ALBEF's temp.clamp_(0.001, 0.5)
    itc=dict(type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
             max_logit_scale=1000.0),
    queue_size=65536,
    alpha=0.4,
    mlm_probability=0.15,
    tokenizer=__tokenizer,
    grad_checkpointing=False)

custom_hooks = [
    dict(type='MomentumUpdateHook', momentum=0.995),
    dict(type='FeatureQueueHook'),
    dict(type='DistillAlphaHook'),  # alpha: 0 -> 0.4 over the first epoch
]

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.2, 1.0),
         interpolation='bicubic'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='RandAugment', num_ops=2, magnitude=7),
    dict(type='CleanCaption', max_words=30, style='albef'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tokenizer),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='CleanCaption', max_words=30, style='albef'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tokenizer),
]

# the evaluation transforms of the image alone (NLVR2 reads them per image, zero-shot
# classification has no text) and of the text alone
image_pipeline = [t for t in test_pipeline if t['type'] not in ('CleanCaption', 'Tokenize')]
text_pipeline = [t for t in test_pipeline if t['type'] in ('CleanCaption', 'Tokenize')]
