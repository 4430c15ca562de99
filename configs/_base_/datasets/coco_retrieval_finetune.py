# COCO Karpathy-split image-text retrieval FINE-TUNING data (113k train images / 5k val /
# 5k test, ~5 captions each), in the ALBEF/BLIP JSON format:
#   train: [{"image": "train2014/COCO_train2014_...jpg", "caption": str, "image_id": ...}]
#          (one entry per caption; entries of one image are grouped by the dataset)
#   val / test: [{"image": "val2014/COCO_val2014_...jpg", "caption": [str, ...]}]
# Expected layout (not downloaded by vlp; BLIP's coco_karpathy_*.json files):
#   data/coco/images/{train2014,val2014}/...
#   data/coco/annotations/coco_karpathy_{train,val,test}.json
# Training draws one sample per (image, caption) pair (train_sampling='pairs'), and every
# caption of an image carries that image's `image_id`, so ALBEF / BLIP mask the other
# captions of the same image out of the contrastive negatives. Evaluation: one sample per
# image with all its captions (RetrievalMetric / ITMRetrievalMetric).
# The model's config supplies the pipelines (its tokenizer, image size, augmentation):
#   train_dataloader = dict(dataset=dict(pipeline=train_pipeline)), val / test likewise.
_base_ = ['./coco_retrieval.py', './finetune_loader.py']
train_dataloader = dict(
    dataset=dict(type='ImageTextJsonDataset', mode='train', train_sampling='pairs',
                 data_root='data/coco', ann_file='annotations/coco_karpathy_train.json',
                 img_prefix='images', pipeline=[]))
# validation / test: the retrieval evaluation splits of coco_retrieval.py
