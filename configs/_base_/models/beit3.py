# BEiT-3 base (Wang et al. 2022, "Image as a Foreign Language", Sec. 2.2-2.3): masked data
# modelling on one multiway transformer (BEiT3Transformer: 12 layers, width 768, 12 heads,
# FFN 3072, 224 x 224 images, patch 16, stochastic depth 0.1; the layout of the released
# torchscale / unilm code) -- 40% of the image patches masked block-wise (75 of 196) with
# their visual tokens predicted, 15% of monomodal text tokens, 50% of the text tokens of
# image-text pairs (the pair's image unmasked: vlp/models/algorithms/beit3.py).
# The model's inputs come with it: its tokenizer (64 tokens, our choice), image size and
# transforms (random-resized crops, scale 0.08-1 (our choice), and horizontal flips; the
# paper's colour jitter has no vlp transform).
# Departures, all stated:
# - Tokenizer: BEiT-3 uses a 64,010-entry SentencePiece vocabulary (unilm's beit3.spm, an
#   XLM-R style tokenizer). vlp has no SentencePiece tokenizer (vlp/datasets/tokenizers.py:
#   CLIP BPE, BERT WordPiece, demo), so this config uses BERT-base-uncased WordPiece and a
#   30,522-word embedding; the released 64,010-row checkpoints do not load into it.
# - Visual tokens: the paper's targets are BEiT v2's VQ-KD codes (VQKDTokenizer, which
#   reads BEiT v2's released vqkd_encoder_base_decoder_3x768x12_clip-*.pth; not downloaded by
#   vlp). Without that file this config uses PixelTarget (MAE's per-patch normalised pixels,
#   mean-squared error) as the tokenizer-free target; to follow the paper set
#   visual_tokenizer=dict(type='VQKDTokenizer', checkpoint='data/beitv2/vqkd.pth',
#   mean=<the data_preprocessor's mean>, std=<its std>) and
#   mim_head=dict(type='MIMHead', hidden_size=768, out_dim=8192). RandomProjectionTokenizer
#   (BEST-RQ) is a stand-in for demos, not for the paper's configuration.
# Files (not downloaded by vlp): data/bert-base-uncased/vocab.txt (HF bert-base-uncased).
image_size = 224
__patch_size = 16
__width = 768
__vocab_size = 30522  # BERT WordPiece (the paper: 64010, SentencePiece)
__tokenizer = dict(type='BertTokenizer', vocab_file='data/bert-base-uncased/vocab.txt',
                   lowercase=True, max_length=64)

model = dict(
    type='BEiT3',
    # BEiT-3 normalises images to [-1, 1] (mean 0.5, std 0.5; unilm/beit3)
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[127.5, 127.5, 127.5],
                           std=[127.5, 127.5, 127.5]),
    backbone=dict(type='BEiT3Transformer', img_size=image_size, patch_size=__patch_size,
                  vocab_size=__vocab_size, max_text_len=1024, embed_dim=__width, depth=12,
                  num_heads=12, mlp_ratio=4.0, drop_path_rate=0.1),
    mlm_head=dict(type='MLMHead', hidden_size=__width, vocab_size=__vocab_size),
    mim_head=dict(type='MIMHead', hidden_size=__width,
                  out_dim=__patch_size * __patch_size * 3),
    visual_tokenizer=dict(type='PixelTarget', patch_size=__patch_size),
    # BEiT's block-wise masking: 40% of 14 x 14 = 75 patches, blocks of >= 16, aspect 0.3-3.3
    mim_mask=dict(num_masking_patches=75, min_num_patches=16, min_aspect=0.3),
    mlm_probability=0.15,
    pair_mlm_probability=0.5,
    pair_mim=False,
    modes=('image', 'text', 'pair'),
    tokenizer=__tokenizer,
    grad_checkpointing=False)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.08, 1.0),
         interpolation='bicubic'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tokenizer),
]
# the evaluation transforms: of the image alone (NLVR2 reads them per image), of the text
# alone, of both
image_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='ToTensor'),
]
text_pipeline = [dict(type='Tokenize', tokenizer=__tokenizer)]
test_pipeline = image_pipeline + text_pipeline
