# CoCa-Base (Yu et al. 2022) fine-tuned for image-text retrieval on Flickr30k (Karpathy
# 29k/1k/1k) with the contrastive objective only. NOT FROM THE PAPER: CoCa reports only
# ZERO-SHOT retrieval (Sec. 4.3, Table 3). Differs from configs/coca/coca_retrieval_coco.py
# (ITC only with caption_weight=0, cosine ranking, our recipe: AdamW lr 1e-5, 10 epochs,
# batch 1024, 288 px; load_from: see there) only in what is set here: the Flickr30k data.
_base_ = ['./coca_retrieval_coco.py']
# the Flickr30k splits (configs/_base_/datasets/flickr30k_retrieval.py) instead of COCO's
train_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                     ann_file='annotations/flickr30k_train.json'))
val_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                   ann_file='annotations/flickr30k_val.json'))
test_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                    ann_file='annotations/flickr30k_test.json'))
