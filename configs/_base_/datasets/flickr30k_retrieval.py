# Flickr30k Karpathy-split image-text retrieval (29k train images / 1k val / 1k test, 5
# captions each), in the ALBEF/BLIP JSON format:
#   train: [{"image": "flickr30k-images/1000092795.jpg", "caption": str, "image_id": ...}]
#          (one entry per caption; entries of one image are grouped by the dataset)
#   val / test: [{"image": "flickr30k-images/1007129816.jpg", "caption": [str x 5]}]
# Expected layout (not downloaded by vlp; ALBEF's / BLIP's flickr30k_*.json files):
#   data/flickr30k/images/flickr30k-images/*.jpg
#   data/flickr30k/annotations/flickr30k_{train,val,test}.json
# Training draws one sample per (image, caption) pair (train_sampling='pairs'), and every
# caption of an image carries that image's `image_id` (positives masked out of the
# contrastive negatives by ALBEF / BLIP). Evaluation: one sample per image with its five
# captions, on the 1k test images (1k images x 5k captions).
# The model's config supplies the pipelines (its tokenizer, image size, augmentation):
#   train_dataloader = dict(dataset=dict(pipeline=train_pipeline)), val / test likewise.
_base_ = ['./coco_retrieval_finetune.py']  # the same loaders on the Flickr30k files
train_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                     ann_file='annotations/flickr30k_train.json'))
val_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                   ann_file='annotations/flickr30k_val.json'))
test_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                    ann_file='annotations/flickr30k_test.json'))
