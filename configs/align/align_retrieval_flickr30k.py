# ALIGN (Jia et al. 2021; EfficientNet-B7 + BERT-base as align_base.py) fine-tuned for
# image-text retrieval on Flickr30k (Karpathy 29k/1k/1k) (paper Sec. 6.1 / Table 1
# "fine-tuned"). Differs from configs/align/align_retrieval_coco.py (model, loss, ITC
# ranking, the UNCONFIRMED schedule: lr 1e-5 with linear decay, 10 epochs, batch 1024;
# load_from: see there) only in what is set here: the Flickr30k data.
_base_ = ['./align_retrieval_coco.py']
# the Flickr30k splits (configs/_base_/datasets/flickr30k_retrieval.py) instead of COCO's
train_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                     ann_file='annotations/flickr30k_train.json'))
val_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                   ann_file='annotations/flickr30k_val.json'))
test_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                    ann_file='annotations/flickr30k_test.json'))
