# BEiT-3 base (Wang et al. 2022, "Image as a Foreign Language", Sec. 2.2-2.3) pre-training:
# masked data modelling on one multiway transformer (BEiT3Transformer: 12 layers, width 768,
# 12 heads, FFN 3072, 224 x 224 images, patch 16; the layout of the released torchscale /
# unilm code) -- 40% of the image patches masked block-wise (75 of 196) with their visual
# tokens predicted, 15% of monomodal text tokens, 50% of the text tokens of image-text pairs
# (the pair's image unmasked: vlp/models/algorithms/beit3.py).
#
# Optimisation as the paper reports it for BEiT-3 (giant; Sec. 2.3): AdamW, betas (0.9, 0.98),
# eps 1e-6, weight decay 0.05, peak lr 1e-3 with 10k linear warm-up steps then cosine decay,
# stochastic depth 0.1, 1M steps, 6144 samples a batch (2048 images + 2048 texts + 2048 pairs),
# random-resized crops and horizontal flips (+ colour jitter, which vlp has no transform for).
# GUESSES (the paper gives no separate recipe for base, whose weights unilm released later):
# base reuses the giant's recipe above; the cosine floor (1% of the peak), the text length
# (64 tokens) and the crop scale (0.08-1) are our choices.
#
# Departures, all stated (tokenizer and visual tokens: configs/_base_/models/beit3.py):
# - Data: the paper samples images (ImageNet-21K, 14M), texts (160 GB: Wikipedia, BookCorpus,
#   OpenWebText, CC-News, Stories) and pairs (21M: CC12M, CC3M, SBU, COCO, VG) separately.
#   One vlp data loader yields one kind of batch, so here every batch is 2048 pairs and each
#   trains all three modes (the pair's image alone, its caption alone, the pair). For
#   separate corpora run the modes on their own data (ImageListDataset with
#   modes=('image',), TextCorpusDataset with modes=('text',)).
#
# The layers: the model, the 14M image-text set (the paper's 21M pairs:
# data/albef/{coco,vg,cc3m_train,cc3m_val,sbu,cc12m}.json), the schedule; each names the
# files it reads. A missing file fails with FileNotFoundError naming its path when the
# dataset is built.
# Batch: 2048 pairs = e.g. 64 GPUs x 32 (or fewer GPUs with accumulative_counts).
_base_ = ['../_base_/models/beit3.py', '../_base_/datasets/pretrain_14m.py',
          '../_base_/schedules/beit3_adamw_cosine_1m.py', '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=32, sampler=dict(type='InfiniteSampler'),
                        dataset=dict(pipeline={{_base_.train_pipeline}}))

# iteration-based schedule: checkpoints and logs by iteration
default_hooks = dict(checkpoint=dict(interval=10_000, by_epoch=False))
log_processor = dict(by_epoch=False)
