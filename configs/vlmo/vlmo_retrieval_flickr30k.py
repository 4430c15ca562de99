# VLMo-Base (Bao et al. 2022) image-text retrieval fine-tuning on Flickr30k (Karpathy
# 29k/1k/1k) (Sec. 3.3 / 4.2, Table 2). Differs from configs/vlmo/vlmo_retrieval_coco.py
# (dual encoder, ITC only, 224 px departure, load_from: see there) only in what is set
# here: the Flickr30k data and the lr. UNCONFIRMED (the paper's appendix lists the
# fine-tuning hyper-parameters; we could not check them here): lr 1e-05 (10% linear
# warm-up then linear decay, 10 epochs, batch 3072, AdamW (0.9, 0.98), weight decay 0.01
# as for COCO).
_base_ = ['./vlmo_retrieval_coco.py']
from mmengine import Config as __Config  # noqa: E402
# The Flickr30k splits: configs/_base_/datasets/flickr30k_retrieval.py. mmengine refuses it in
# _base_ next to vlmo_retrieval_coco.py (both define the data loaders), so it is read here
# and replaces the COCO fine-tuning data wholesale (_delete_); the pipelines stay the family's.
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/flickr30k_retrieval.py')
train_dataloader = dict(__data.train_dataloader, _delete_=True, batch_size=96)
train_dataloader['dataset']['pipeline'] = {{_base_.train_pipeline}}
val_dataloader = dict(__data.val_dataloader, _delete_=True)
val_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
test_dataloader = dict(__data.test_dataloader, _delete_=True)
test_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}

optim_wrapper = dict(optimizer=dict(lr=1e-05))
