# ALBEF (Li et al. 2021) image-text retrieval fine-tuning on Flickr30k (Karpathy 29k/1k/1k)
# (Sec. 5 / 6.1 and the released configs/Retrieval_flickr.yaml). Differs from
# configs/albef/albef_retrieval_coco.py (model, objectives, 256 px departure, load_from:
# see there) only in what is set here: the Flickr30k data; ITC ranking then the top-k=128
# candidates of every query re-scored by ITM (the paper: k=256 on COCO, 128 on Flickr30k);
# 10 epochs (from the released config; the paper's text only says "fine-tune", we could not
# confirm the epoch count there), the cosine decay to 1e-6 stretched over them (AdamW lr
# 1e-5, weight decay 0.02, batch 32 x 8 GPUs = 256 as for COCO).
_base_ = ['./albef_retrieval_coco.py']
# the Flickr30k splits (configs/_base_/datasets/flickr30k_retrieval.py) instead of COCO's
train_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                     ann_file='annotations/flickr30k_train.json'))
val_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                   ann_file='annotations/flickr30k_val.json'))
test_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                    ann_file='annotations/flickr30k_test.json'))

val_evaluator = dict(k=128)
test_evaluator = val_evaluator

max_epochs = 10
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=0,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
