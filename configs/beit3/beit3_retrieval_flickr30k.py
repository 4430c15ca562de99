# BEiT-3 base (Wang et al. 2022) image-text retrieval fine-tuning on Flickr30k (Karpathy
# 29k/1k/1k) (Sec. 3.2, Fig. 3(d), Table 3). Differs from configs/beit3/beit3_retrieval_coco.py
# (dual encoder, ITC only, ranking by cosine similarity, departures, load_from: see there)
# only in what is set here: the Flickr30k data and the schedule, from unilm/beit3's
# get_started_for_retrieval.md for BEiT-3 base, as we recall it (UNCONFIRMED here; the
# paper's appendix gives the giant model's): lr 0.0001, 5 warm-up epochs then cosine, 20
# epochs (AdamW (0.9, 0.98), layer-wise lr decay 0.65 (not set, as for COCO), weight decay
# 0.05, batch 3072 (192 x 16 GPUs), stochastic depth 0.2 as for COCO).
_base_ = ['./beit3_retrieval_coco.py']
# the Flickr30k splits (configs/_base_/datasets/flickr30k_retrieval.py) instead of COCO's
train_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                     ann_file='annotations/flickr30k_train.json'))
val_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                   ann_file='annotations/flickr30k_val.json'))
test_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                    ann_file='annotations/flickr30k_test.json'))

max_epochs = 20
optim_wrapper = dict(optimizer=dict(lr=0.0001))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
         end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=5, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
