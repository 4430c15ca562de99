# CoCa-Base (Yu et al. 2022, "CoCa: Contrastive Captioners are Image-Text Foundation
# Models", Table 1 and Sec. 4.1), as far as the paper documents it: a ViT-B image encoder
# (12 layers, width 768, MLP 3072, 12 heads) on 288 x 288 images with 18 x 18 patches; a
# text decoder of width 768 (MLP 3072, 12 heads) split into 12 unimodal layers (causal,
# with a [CLS] appended whose final state is the text embedding) and 12 multimodal layers
# (cross-attention to the image); attentional poolers with 1 contrastive and 256
# captioning queries, read in parallel from the image tokens; loss 1 * ITC + 2 *
# captioning; Adafactor, 500k steps at batch 65,536 (the schedule base file).
# Not given by the paper, chosen here: pooler heads (8, as open_clip), the text length
# (76, as open_clip's coca_base.json), no linear projections into the contrastive space
# (the paper's pseudo-code compares the pooled states directly; open_clip adds them), the
# crop augmentation. Simplifications: the paper's 64k SentencePiece vocabulary is not
# public (OpenAI's CLIP BPE here), nor is its JFT-3B + ALIGN data (point data/pretrain at
# a public corpus, see the dataset base file); no extra epoch at 576 px.
_base_ = ['../_base_/models/coca.py', '../_base_/datasets/image_text_csv.py',
          '../_base_/datasets/coco_retrieval.py',
          '../_base_/schedules/coca_adafactor_linear_500k.py', '../_base_/default_runtime.py']
# 65,536 pairs per step = 256 per device x 256 devices
train_dataloader = dict(batch_size=256, dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))

# iteration-based schedule: checkpoints and logs by iteration
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=50_000))
log_processor = dict(by_epoch=False)
