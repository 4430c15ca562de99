# BLIP-2 (Li et al. 2023) stage-1 model on Flickr30k (Karpathy 29k/1k/1k) retrieval. The PAPER DOES
# NOT FINE-TUNE ON FLICKR30K: Table 5 reports Flickr30k ZERO-SHOT with the COCO-fine-tuned
# model (configs/blip2/blip2_retrieval_coco.py). Reproduce that with
#   python tools/test.py configs/blip2/blip2_retrieval_flickr30k.py \
#       work_dirs/blip2_retrieval_coco/<best>.pth
# (ITC ranking, ITM re-ranking of the top k=128, as LAVIS). Training with this config is
# our extension: the COCO recipe (ITC + ITM + ITG, image encoder fine-tuned, lr 1e-5,
# 5 epochs, batch 128) on the Flickr30k training split. Differs from
# configs/blip2/blip2_retrieval_coco.py only in what is set here: the Flickr30k data and
# load_from (the COCO-fine-tuned model).
_base_ = ['./blip2_retrieval_coco.py']
# the Flickr30k splits (configs/_base_/datasets/flickr30k_retrieval.py) instead of COCO's
train_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                     ann_file='annotations/flickr30k_train.json'))
val_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                   ann_file='annotations/flickr30k_val.json'))
test_dataloader = dict(dataset=dict(data_root='data/flickr30k',
                                    ann_file='annotations/flickr30k_test.json'))
load_from = 'work_dirs/blip2_retrieval_coco/epoch_5.pth'  # the COCO-fine-tuned model
