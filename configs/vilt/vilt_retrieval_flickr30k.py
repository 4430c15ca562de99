# ViLT-B/32 (Kim et al. 2021) image-text retrieval fine-tuning on Flickr30k (Karpathy
# 29k/1k/1k) (Sec. 4.3, Tables 3-4). Differs from configs/vilt/vilt_retrieval_coco.py (ITM
# only, departures, schedule: AdamW lr 1e-4, 10 epochs, batch 256; load_from: see there)
# only in what is set here: the Flickr30k data.
# EVALUATION IS EXPENSIVE: ViLT has no ITC stage, so ITMRetrievalMetric scores EVERY
# image-text pair with the single-stream transformer (1k x 5k = 5M pairs per direction on
# Flickr30k); run it on many GPUs.
_base_ = ['./vilt_retrieval_coco.py']
from mmengine import Config as __Config  # noqa: E402
# The Flickr30k splits: configs/_base_/datasets/flickr30k_retrieval.py. mmengine refuses it in
# _base_ next to vilt_retrieval_coco.py (both define the data loaders), so it is read here
# and replaces the COCO fine-tuning data wholesale (_delete_); the pipelines stay the family's.
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/flickr30k_retrieval.py')
train_dataloader = dict(__data.train_dataloader, _delete_=True, batch_size=32)
train_dataloader['dataset']['pipeline'] = {{_base_.train_pipeline}}
val_dataloader = dict(__data.val_dataloader, _delete_=True)
val_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
test_dataloader = dict(__data.test_dataloader, _delete_=True)
test_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
