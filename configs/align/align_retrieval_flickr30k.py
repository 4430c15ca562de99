# ALIGN (Jia et al. 2021; EfficientNet-B7 + BERT-base as align_base.py) fine-tuned for
# image-text retrieval on Flickr30k (Karpathy 29k/1k/1k) (paper Sec. 6.1 / Table 1
# "fine-tuned"). Differs from configs/align/align_retrieval_coco.py (model, loss, ITC
# ranking, the UNCONFIRMED schedule: lr 1e-5 with linear decay, 10 epochs, batch 1024;
# load_from: see there) only in what is set here: the Flickr30k data.
_base_ = ['./align_retrieval_coco.py']
from mmengine import Config as __Config  # noqa: E402
# The Flickr30k splits: configs/_base_/datasets/flickr30k_retrieval.py. mmengine refuses it in
# _base_ next to align_retrieval_coco.py (both define the data loaders), so it is read here
# and replaces the COCO fine-tuning data wholesale (_delete_); the pipelines stay the family's.
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/flickr30k_retrieval.py')
train_dataloader = dict(__data.train_dataloader, _delete_=True, batch_size=64)
train_dataloader['dataset']['pipeline'] = {{_base_.train_pipeline}}
val_dataloader = dict(__data.val_dataloader, _delete_=True)
val_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
test_dataloader = dict(__data.test_dataloader, _delete_=True)
test_dataloader['dataset']['pipeline'] = {{_base_.test_pipeline}}
