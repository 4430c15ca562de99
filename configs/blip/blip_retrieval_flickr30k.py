# BLIP (Li et al. 2022) ViT-B/16 image-text retrieval fine-tuning on Flickr30k (Karpathy
# 29k/1k/1k) (Sec. 5.1 and the released configs/retrieval_flickr.yaml). Differs from
# configs/blip/blip_retrieval_coco.py (ITC + ITM, no LM, schedule: AdamW lr 1e-5, cosine,
# batch 256, 6 epochs; 224 px departure, load_from: see there) only in what is set here:
# the Flickr30k data; ITM hard negatives from the local batch (negative_all_rank=False);
# evaluation: ITC top-k=128 re-scored by ITM (+ ITC) (the paper: k=256 COCO, 128 Flickr30k).
_base_ = ['./blip_retrieval_coco.py']
# the Flickr30k splits (configs/_base_/datasets/flickr30k_retrieval.py) instead of COCO's
train_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                     ann_file='annotations/flickr30k_train.json'))
val_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                   ann_file='annotations/flickr30k_val.json'))
test_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                    ann_file='annotations/flickr30k_test.json'))
model = dict(itm_negatives='local')

val_evaluator = dict(k=128)
test_evaluator = val_evaluator
