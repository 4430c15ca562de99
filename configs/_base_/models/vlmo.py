# VLMo-Base (Bao et al. 2022): one multiway transformer (ViT-B/16 sized: 12 blocks, 768
# wide, 12 heads, VL-FFN in the top 2 blocks, layer scale 0.1, BEiT relative position bias,
# stochastic depth 0.1) trained stage-wise (`stage`: 'image' MIM, 'text' MLM, 'image_text'
# ITC (dual encoder) + ITM with hard negatives from the ITC similarities of every rank
# (fusion encoder, pooler + classifier on the fused [CLS]) + MLM (15%)); 224 x 224 images,
# texts of at most 40 BERT (uncased) tokens.
# The model's inputs come with it: its tokenizer, image size and transforms (image-text
# pre-training and retrieval fine-tuning).
# Files (not downloaded by vlp): data/bert-base-uncased/vocab.txt (BERT's WordPiece
# vocabulary).
image_size = 224
__max_text_len = 40
__tokenizer = dict(type='BertTokenizer', vocab_file='data/bert-base-uncased/vocab.txt',
                   lowercase=True, max_length=__max_text_len)

model = dict(
    type='VLMo',
    data_preprocessor=dict(type='VLPDataPreprocessor'),  # ImageNet mean / std
    backbone=dict(type='MultiwayTransformer', img_size=image_size, patch_size=16,
                  vocab_size=30522, max_text_len=__max_text_len, embed_dim=768, depth=12,
                  num_heads=12, num_vl_layers=2, layer_scale_init=0.1, drop_path_rate=0.1,
                  abs_pos_embed=False, rel_pos_bias=True,
                  text_rel_pos_len=196),  # VLMo's max_text_len_of_initckpt
    vision_proj=dict(type='Projection', in_dim=768, out_dim=768, bias=False, init_std=0.02),
    text_proj=dict(type='Projection', in_dim=768, out_dim=768, bias=False, init_std=0.02),
    itm_head=dict(type='ITMHead', hidden_size=768, pooler=True),
    mlm_head=dict(type='MLMHead', hidden_size=768, vocab_size=30522),
    # the image stage's parts, so that the three stages share one set of weights
    mim_head=dict(type='MIMHead', hidden_size=768, out_dim=16 * 16 * 3),
    visual_tokenizer=dict(type='PixelTarget', patch_size=16),
    stage='image_text',
    itc=dict(type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0),
    mlm_probability=0.15,
    tokenizer=__tokenizer)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.5, 1.0),
         interpolation='bicubic'),
    dict(type='RandAugment', num_ops=2, magnitude=9),
    dict(type='CleanCaption', max_words=__max_text_len, style='albef'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tokenizer),
]
test_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='CleanCaption', max_words=__max_text_len, style='albef'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tokenizer),
]

# the evaluation transforms of the image alone (NLVR2 reads them per image, zero-shot
# classification has no text) and of the text alone
image_pipeline = [t for t in test_pipeline if t['type'] not in ('CleanCaption', 'Tokenize')]
text_pipeline = [t for t in test_pipeline if t['type'] in ('CleanCaption', 'Tokenize')]
# fine-tuning (VQA, NLVR2): RandAugment on the resized image (ViLT's; VLMo's
# `square_transform_randaug`)
finetune_image_pipeline = [*image_pipeline[:-1], dict(type='RandAugment', num_ops=2, magnitude=9),
                           image_pipeline[-1]]
