# VLMo-Base (Bao et al. 2022) image-text retrieval fine-tuning on Flickr30k (Karpathy
# 29k/1k/1k) (Sec. 3.3 / 4.2, Table 2). Differs from configs/vlmo/vlmo_retrieval_coco.py
# (dual encoder, ITC only, 224 px departure, load_from: see there) only in what is set
# here: the Flickr30k data and the lr. UNCONFIRMED (the paper's appendix lists the
# fine-tuning hyper-parameters; we could not check them here): lr 1e-05 (10% linear
# warm-up then linear decay, 10 epochs, batch 3072, AdamW (0.9, 0.98), weight decay 0.01
# as for COCO).
_base_ = ['./vlmo_retrieval_coco.py']
# the Flickr30k splits (configs/_base_/datasets/flickr30k_retrieval.py) instead of COCO's
train_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                     ann_file='annotations/flickr30k_train.json'))
val_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                   ann_file='annotations/flickr30k_val.json'))
test_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                    ann_file='annotations/flickr30k_test.json'))

optim_wrapper = dict(optimizer=dict(lr=1e-05))
