# CoCa-Base (Yu et al. 2022) fine-tuned for image-text retrieval on Flickr30k (Karpathy
# 29k/1k/1k) with the contrastive objective only. NOT FROM THE PAPER: CoCa reports only
# ZERO-SHOT retrieval (Sec. 4.3, Table 3). Differs from configs/coca/coca_retrieval_coco.py
# (ITC only with caption_weight=0, cosine ranking, our recipe: AdamW lr 1e-5, 10 epochs,
# batch 1024, 288 px; load_from: see there) only in what is set here: the Flickr30k data.
_base_ = ['./coca_retrieval_coco.py']
from mmengine import Config as __Config  # noqa: E402
# The Flickr30k splits: configs/_base_/datasets/flickr30k_retrieval.py. mmengine refuses it in
# _base_ next to coca_retrieval_coco.py (both define the data loaders), so it is read here
# and replaces the COCO fine-tuning data wholesale (_delete_); the pipelines stay the family's.
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/flickr30k_retrieval.py')
train_dataloader = dict(__data.train_dataloader, _delete_=True, batch_size=128)
train_dataloader['dataset']['pipeline'] = {{_base_.train_pipeline}}
val_dataloader = dict(__data.val_dataloader, _delete_=True)
val_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
test_dataloader = dict(__data.test_dataloader, _delete_=True)
test_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
