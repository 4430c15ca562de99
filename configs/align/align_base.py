# ALIGN (Jia et al. 2021) with the EfficientNet-B7 + BERT-base towers of the paper's
# ablations (the headline model is EfficientNet-L2 + BERT-Large; swap the two tower names
# for it). As in the paper: images at 289 x 289 (resize to 346, random crop, horizontal
# flip), the image embedding is the globally pooled EfficientNet feature map without the
# 1x1 head convolution (640-d for B7), the text embedding a linear projection of BERT's
# [CLS] to the same 640 dims, texts of at most 64 WordPiece tokens, normalised-softmax
# (InfoNCE) loss with one learnable temperature initialised at 1.0 and label smoothing 0.1,
# in-batch negatives from every rank. The paper's 1.8B-pair corpus is not public: point
# data/pretrain at COYO-700M, LAION or your own corpus (see the dataset base file).
# The layers: the model (configs/_base_/models/align.py), the pre-training CSV, COCO
# Karpathy test for the retrieval evaluation, the schedule.
_base_ = ['../_base_/models/align.py', '../_base_/datasets/image_text_csv.py',
          '../_base_/datasets/coco_retrieval.py',
          '../_base_/schedules/align_lamb_linear_1200k.py', '../_base_/default_runtime.py']
# 16 pairs per accelerator in the paper (1024 TPUv3 cores); 64 x 256 GPUs here
train_dataloader = dict(batch_size=64, dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))

# iteration-based schedule: checkpoints and logs by iteration
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=50_000))
log_processor = dict(by_epoch=False)

strategy = dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=1),
                bf16=dict(enabled=True))
