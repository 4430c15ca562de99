# BLIP-2 (Li et al. 2023) stage 1, vision-language representation learning from a frozen
# image encoder: frozen EVA ViT-g/14 (fp16, 224 px) -> trainable LayerNorm -> Q-Former
# (bert-base-uncased init, 32 queries, cross-attention every 2nd layer, query FFNs copied
# from the text FFNs) trained with ITC (max over queries, all-rank in-batch negatives, label
# smoothing 0.1), ITM (hard negatives, logits averaged over queries) and ITG (multi-modal
# causal mask, [DEC]).
# The model's inputs come with it: its tokenizer (BERT WordPiece + [DEC], 32 tokens), image
# size and transforms (random resized crop + flip; stage-1 pre-training and retrieval).
# Simplifications (docs/models.md): BLIP-2 drops the last ViT-g layer and uses the
# second-last layer's output; here the whole timm EVA-g is used. timm's
# `eva_giant_patch14_224.clip_ft_in1k` stands in for EVA-CLIP's ViT-g.
# Files (not downloaded by vlp): data/bert-base-uncased/.
image_size = 224
__tokenizer = dict(type='BertTokenizer', vocab_file='data/bert-base-uncased/vocab.txt',
                   lowercase=True, max_length=32, additional_special_tokens=['[DEC]'])
__vocab_size = 30523  # bert-base-uncased + [DEC]

model = dict(
    type='BLIP2',
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[122.771, 116.746, 104.094],
                           std=[68.501, 66.632, 70.323]),
    vision=dict(type='TimmTower', model_name='eva_giant_patch14_224.clip_ft_in1k',
                img_size=image_size, pretrained=True),
    freeze_vision=True,
    vision_dtype='fp16',
    qformer=dict(type='QFormer', num_query_tokens=32, encoder_width=1408,
                 cross_attention_freq=2, vocab_size=__vocab_size,
                 pretrained='data/bert-base-uncased'),
    vision_proj=dict(type='Projection', in_dim=768, out_dim=256, bias=True, init_std=0.02),
    text_proj=dict(type='Projection', in_dim=768, out_dim=256, bias=True, init_std=0.02),
    itm_head=dict(type='ITMHead', hidden_size=768),
    lm_head=dict(type='MLMHead', hidden_size=768, vocab_size=__vocab_size),
    itc=dict(type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
             max_logit_scale=1000.0),
    tokenizer=__tokenizer)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.5, 1.0),
         interpolation='bicubic'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='CleanCaption', max_words=50, style='blip'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tokenizer),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='CleanCaption', max_words=50, style='blip'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tokenizer),
]
