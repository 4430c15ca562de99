# ALIGN (Jia et al. 2021) with the EfficientNet-B7 + BERT-base towers of the paper's
# ablations (the headline model is EfficientNet-L2 + BERT-Large; swap the two tower names
# for it), a CLIP config in vlp: images at 289 x 289 (resize to 346, random crop, horizontal
# flip), the image embedding is the globally pooled EfficientNet feature map without the
# 1x1 head convolution (640-d for B7), the text embedding a linear projection of BERT's
# [CLS] to the same 640 dims, texts of at most 64 WordPiece tokens, normalised-softmax
# (InfoNCE) loss with one learnable temperature initialised at 1.0 and label smoothing 0.1,
# in-batch negatives from every rank.
# The model's inputs come with it: its tokenizer, image size and transforms (pre-training
# and retrieval fine-tuning).
image_size = 289
__tokenizer = dict(type='BertTokenizer', vocab_file='data/bert-base-uncased/vocab.txt',
                   lowercase=True, max_length=64)

model = dict(
    type='CLIP',
    # ImageNet statistics (timm's EfficientNet convention); the TF reference's input
    # scaling differs slightly, a documented simplification (docs/models.md)
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375]),
    vision=dict(type='TimmTower', model_name='tf_efficientnet_b7', head_conv=False,
                drop_path_rate=0.2),
    text=dict(type='BertEncoder', vocab_size=30522, hidden_size=768, num_layers=12,
              num_heads=12, intermediate_size=3072, max_position_embeddings=512),
    vision_proj=None,  # the pooled 640-d feature map is the image embedding
    text_proj=dict(type='Projection', in_dim=768, out_dim=640, bias=True),
    # local loss: [B, W*B] logits per rank instead of [W*B, W*B], the same gradients
    itc=dict(type='ContrastiveLoss', temperature=1.0, max_logit_scale=100.0,
             label_smoothing=0.1, local_loss=True),
    tokenizer=__tokenizer)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(346, 346), interpolation='bicubic'),
    # a random 289 x 289 crop of the 346 x 346 image: (289 / 346) ** 2 = 0.6977 of its area
    dict(type='RandomResizedCrop', size=image_size, scale=(0.6977, 0.6977), ratio=(1.0, 1.0)),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tokenizer),
]
# the evaluation transforms: of the image alone (zero-shot classification has no text),
# with the text
image_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(346, 346), interpolation='bicubic'),
    dict(type='CenterCrop', size=image_size),
    dict(type='ToTensor'),
]
test_pipeline = [*image_pipeline, dict(type='Tokenize', tokenizer=__tokenizer)]
