# CLIP ViT-B/16 (Radford et al. 2021) fine-tuned for image-text retrieval on Flickr30k
# (Karpathy 29k/1k/1k). NOT FROM THE PAPER: CLIP reports only ZERO-SHOT retrieval (Sec. 3.1,
# Table 13). Differs from configs/clip/clip_retrieval_coco.py (symmetric InfoNCE, cosine
# ranking, our fine-tuning recipe: AdamW lr 1e-5, 10 epochs, batch 1024, 224 px; load_from:
# see there) only in what is set here: the Flickr30k data.
_base_ = ['./clip_retrieval_coco.py']
# the Flickr30k splits (configs/_base_/datasets/flickr30k_retrieval.py) instead of COCO's
train_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                     ann_file='annotations/flickr30k_train.json'))
val_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                   ann_file='annotations/flickr30k_val.json'))
test_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                    ann_file='annotations/flickr30k_test.json'))
