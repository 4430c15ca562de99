# BLIP (Li et al. 2022), the ViT-B/16 model of the paper (Sec. 4.1): ViT-B/16 image encoder
# initialised from ImageNet weights, a BERT-base text transformer (12 layers, cross-attention
# to the image in every layer) initialised from bert-base-uncased and run as unimodal
# encoder ([CLS]), image-grounded encoder ([ENC], ITM) and image-grounded decoder ([DEC], LM;
# shares all but the self-attention with the encoder), ITC with momentum encoders (EMA
# 0.995), a 57,600-feature queue and momentum distillation (alpha 0.4), ITM with hard
# negatives, LM with label smoothing 0.1; 224 px images.
# The model's inputs come with it: its tokenizer (BERT WordPiece + [DEC] / [ENC], 35
# tokens), image size and transforms (pre-training and retrieval fine-tuning).
# Weights (not downloaded by vlp): data/bert-base-uncased/{vocab.txt,model.safetensors};
# the ViT-B/16 ImageNet weights from timm (`pretrained=True`, hub) or a local file.
image_size = 224
# BLIP adds [DEC] (decoder bos) and [ENC] (ITM) to BERT's vocabulary: 30,524 tokens
__tokenizer = dict(type='BertTokenizer', vocab_file='data/bert-base-uncased/vocab.txt',
                   lowercase=True, max_length=35, additional_special_tokens=['[DEC]', '[ENC]'])
__vocab_size = 30524

model = dict(
    type='BLIP',
    # BLIP normalises with CLIP's image statistics
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[122.771, 116.746, 104.094],
                           std=[68.501, 66.632, 70.323]),
    vision=dict(type='TimmTower', model_name='vit_base_patch16_224.augreg_in21k_ft_in1k',
                img_size=image_size, pretrained=True, drop_path_rate=0.0),
    text=dict(type='BertEncoder', vocab_size=__vocab_size, hidden_size=768, num_layers=12,
              num_heads=12, intermediate_size=3072, max_position_embeddings=512,
              type_vocab_size=0, cross_attention_layers='all',
              pretrained='data/bert-base-uncased'),
    vision_proj=dict(type='Projection', in_dim=768, out_dim=256, bias=True, init_std=0.02),
    text_proj=dict(type='Projection', in_dim=768, out_dim=256, bias=True, init_std=0.02),
    itm_head=dict(type='ITMHead', hidden_size=768),
    lm_head=dict(type='MLMHead', hidden_size=768, vocab_size=__vocab_size),
    share_decoder=True,
    itc=dict(type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
             max_logit_scale=1000.0),
    caption_loss=dict(type='CaptionLoss', label_smoothing=0.1),
    queue_size=57600,
    alpha=0.4,
    # retrieval evaluation during pretraining; 'caption' + CaptionMetric for captioning
    predict_mode='retrieval',
    generation_cfg=dict(num_beams=3, max_length=30, min_length=10),
    tokenizer=__tokenizer,
    grad_checkpointing=False)

custom_hooks = [
    dict(type='MomentumUpdateHook', momentum=0.995),
    dict(type='FeatureQueueHook'),
    dict(type='DistillAlphaHook'),
]

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.2, 1.0),
         interpolation='bicubic'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='RandAugment', num_ops=2, magnitude=5),
    dict(type='CleanCaption', max_words=30, style='blip'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tokenizer),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='CleanCaption', max_words=30, style='blip'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tokenizer),
]

# the evaluation transforms of the image alone (NLVR2 reads them per image, zero-shot
# classification has no text) and of the text alone
image_pipeline = [t for t in test_pipeline if t['type'] not in ('CleanCaption', 'Tokenize')]
text_pipeline = [t for t in test_pipeline if t['type'] in ('CleanCaption', 'Tokenize')]
