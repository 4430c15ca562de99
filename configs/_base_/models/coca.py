# CoCa-Base (Yu et al. 2022, "CoCa: Contrastive Captioners are Image-Text Foundation
# Models", Table 1 and Sec. 4.1), as far as the paper documents it: a ViT-B image encoder
# (12 layers, width 768, MLP 3072, 12 heads) on 288 x 288 images with 18 x 18 patches; a
# text decoder of width 768 (MLP 3072, 12 heads) split into 12 unimodal layers (causal,
# with a [CLS] appended whose final state is the text embedding) and 12 multimodal layers
# (cross-attention to the image); attentional poolers with 1 contrastive and 256
# captioning queries, read in parallel from the image tokens; loss 1 * ITC + 2 *
# captioning.
# Not given by the paper, chosen here: pooler heads (8, as open_clip), the text length
# (76, as open_clip's coca_base.json), no linear projections into the contrastive space
# (the paper's pseudo-code compares the pooled states directly; open_clip adds them), the
# crop augmentation. Simplification: the paper's 64k SentencePiece vocabulary is not public
# (OpenAI's CLIP BPE here).
# The model's inputs come with it: its tokenizer, image size and transforms (pre-training
# and retrieval fine-tuning).
# OpenAI's CLIP BPE, shipped with vlp (bpe_path='bundled': no file to prepare; a local
# tokenizer.json works too: tokenizer_file='data/clip/tokenizer.json')
__tokenizer = dict(type='CLIPTokenizer', bpe_path='bundled', max_length=76)
__vocab_size = 49408
__width = 768
image_size = 288

model = dict(
    type='CoCa',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    vision=dict(type='TimmTower', model_name='vit_base_patch16_224', img_size=image_size,
                patch_size=18),
    text=dict(type='TextTransformer', vocab_size=__vocab_size, context_length=76,
              width=__width, layers=12, heads=12, act_layer='gelu', embed_cls=True),
    decoder=dict(type='MultimodalDecoder', vocab_size=__vocab_size, width=__width, layers=12,
                 heads=12, act_layer='gelu'),
    con_pooler=dict(type='AttentionalPooler', dim=__width, context_dim=768, num_heads=8,
                    n_queries=1),
    cap_pooler=dict(type='AttentionalPooler', dim=__width, context_dim=768, num_heads=8,
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
    tokenizer=__tokenizer)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.9, 1.0),
         interpolation='bicubic'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tokenizer),
]
# the evaluation transforms: of the image alone (zero-shot classification has no text),
# with the text
image_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=image_size, interpolation='bicubic'),
    dict(type='CenterCrop', size=image_size),
    dict(type='ToTensor'),
]
test_pipeline = [*image_pipeline, dict(type='Tokenize', tokenizer=__tokenizer)]
