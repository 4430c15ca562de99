# ViLT-B/32 (Kim et al. 2021), the paper's model: one single-stream transformer in the
# ViT-B/32 layout (12 pre-LN blocks, width 768, 12 heads, patch 32) initialised from
# ImageNet ViT-B/32 weights (the paper: ImageNet-21k pre-trained, 1k fine-tuned), with
# BERT-base-uncased's tokenizer and freshly initialised word embeddings (ViLT does not use
# BERT weights), text length 40; objectives ITM (half of the images replaced by other
# images) + WPA (IPOT, weight 0.1) + MLM with whole-word masking (15%).
# The model's inputs come with it: its tokenizer, image size and transforms (no image
# augmentation in pre-training: ViLT uses RandAugment only when fine-tuning).
# Departures: images are resized to 384 x 384 (ViLT: shorter side 384, longer at most 640,
# at most 200 of the patches sampled per image; here 144 patches, all kept), one LayerNorm
# epsilon (1e-6) for the text embeddings' norm too (BERT's is 1e-12), the ITM negative is
# another image of the batch (ViLT: a random image of the dataset); see
# vlp/models/algorithms/vilt.py and docs/models.md.
# Files (not downloaded by vlp): data/bert-base-uncased/vocab.txt;
# data/vit_base_patch32_384.pth (timm's ViT-B/32-384; converting it to this backbone's names
# is not provided: the paper's checkpoints come through tools/convert/hf_vilt_to_vlp.py).
image_size = 384
__max_text_len = 40
__tokenizer = dict(type='BertTokenizer', vocab_file='data/bert-base-uncased/vocab.txt',
                   lowercase=True, max_length=__max_text_len)

model = dict(
    type='ViLT',
    # ViLT normalises to [-1, 1] (mean = std = 0.5)
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[127.5, 127.5, 127.5],
                           std=[127.5, 127.5, 127.5]),
    backbone=dict(type='SingleStreamTransformer', img_size=image_size, patch_size=32,
                  vocab_size=30522, max_text_len=__max_text_len, embed_dim=768, depth=12,
                  num_heads=12, mlp_ratio=4.0, drop=0.1, ln_eps=1e-6, max_image_len=200),
    itm_head=dict(type='ITMHead', hidden_size=768),
    mlm_head=dict(type='MLMHead', hidden_size=768, vocab_size=30522),
    wpa=dict(type='WordPatchAlignmentLoss', beta=0.5, iterations=50, inner=1),
    itm_neg_prob=0.5,
    mlm_probability=0.15,
    whole_word_masking=True,
    loss_weights=dict(itm=1.0, mlm=1.0, wpa=0.1),
    tokenizer=__tokenizer,
    grad_checkpointing=False)

# the image transforms (no augmentation in pre-training; NLVR2 reads them per image)
image_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='ToTensor'),
]
# fine-tuning (VQA, NLVR2): RandAugment on the resized image, ViLT's `_randaug` variants
# (vlp's default op set: ViLT leaves out colour inversion and cutout, a departure)
finetune_image_pipeline = [*image_pipeline[:-1], dict(type='RandAugment', num_ops=2, magnitude=9),
                           image_pipeline[-1]]
text_pipeline = [dict(type='Tokenize', tokenizer=__tokenizer)]
train_pipeline = [*image_pipeline, dict(type='Tokenize', tokenizer=__tokenizer, random_caption=True,
                                         return_word_ids=True)]
test_pipeline = image_pipeline + text_pipeline
