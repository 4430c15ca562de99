# CLIP ViT-B/16 (Radford et al. 2021), the paper's model: ViT-B/16 image encoder (width 768,
# 12 layers, 12 heads, pre-LN, QuickGELU) on 224 px images, text transformer (width 512, 12
# layers, 8 heads, causal, 77 tokens, 49,408 BPE vocabulary, EOT pooling), 512-d joint
# space, symmetric InfoNCE with a learnable temperature initialised at 0.07 and clipped to
# logit scale 100, negatives from every rank.
# The model's inputs come with it: its tokenizer and image transforms (pre-training and
# retrieval fine-tuning).
# OpenAI's CLIP BPE, shipped with vlp (bpe_path='bundled': no file to prepare; a local
# tokenizer.json works too: tokenizer_file='data/clip/tokenizer.json')
__tokenizer = dict(type='CLIPTokenizer', bpe_path='bundled', max_length=77)

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
    tokenizer=__tokenizer,
    grad_checkpointing=False)

train_pipeline = [
    dict(type='LoadImage'),
    # open_clip's CLIP recipe: random resized crop with scale (0.9, 1.0), no other augmentation
    dict(type='RandomResizedCrop', size=224, scale=(0.9, 1.0), interpolation='bicubic'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tokenizer),
]
# the evaluation transforms: of the image alone (zero-shot classification has no text),
# with the text
image_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=224, interpolation='bicubic'),
    dict(type='CenterCrop', size=224),
    dict(type='ToTensor'),
]
test_pipeline = [*image_pipeline, dict(type='Tokenize', tokenizer=__tokenizer)]
