# ViLT-B/32 (Kim et al. 2021) image-text retrieval fine-tuning on Flickr30k (Karpathy
# 29k/1k/1k) (Sec. 4.3, Tables 3-4). Differs from configs/vilt/vilt_retrieval_coco.py (ITM
# only, departures, schedule: AdamW lr 1e-4, 10 epochs, batch 256; load_from: see there)
# only in what is set here: the Flickr30k data.
# EVALUATION IS EXPENSIVE: ViLT has no ITC stage, so ITMRetrievalMetric scores EVERY
# image-text pair with the single-stream transformer (1k x 5k = 5M pairs per direction on
# Flickr30k); run it on many GPUs.
_base_ = ['./vilt_retrieval_coco.py']
# the Flickr30k splits (configs/_base_/datasets/flickr30k_retrieval.py) instead of COCO's
train_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                     ann_file='annotations/flickr30k_train.json'))
val_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                   ann_file='annotations/flickr30k_val.json'))
test_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                    ann_file='annotations/flickr30k_test.json'))
