# BLIP (Li et al. 2022) ViT-B/16 image-text retrieval fine-tuning on Flickr30k (Karpathy
# 29k/1k/1k) (Sec. 5.1 and the released configs/retrieval_flickr.yaml). Differs from
# configs/blip/blip_retrieval_coco.py (ITC + ITM, no LM, schedule: AdamW lr 1e-5, cosine,
# batch 256, 6 epochs; 224 px departure, load_from: see there) only in what is set here:
# the Flickr30k data; ITM hard negatives from the local batch (negative_all_rank=False);
# evaluation: ITC top-k=128 re-scored by ITM (+ ITC) (the paper: k=256 COCO, 128 Flickr30k).
_base_ = ['./blip_retrieval_coco.py']
from mmengine import Config as __Config  # noqa: E402
# The Flickr30k splits: configs/_base_/datasets/flickr30k_retrieval.py. mmengine refuses it in
# _base_ next to blip_retrieval_coco.py (both define the data loaders), so it is read here
# and replaces the COCO fine-tuning data wholesale (_delete_); the pipelines stay the family's.
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/flickr30k_retrieval.py')
train_dataloader = dict(__data.train_dataloader, _delete_=True, batch_size=32)
train_dataloader['dataset']['pipeline'] = {{_base_.train_pipeline}}
val_dataloader = dict(__data.val_dataloader, _delete_=True)
val_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
test_dataloader = dict(__data.test_dataloader, _delete_=True)
test_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
model = dict(itm_negatives='local')

val_evaluator = dict(k=128)
test_evaluator = val_evaluator
