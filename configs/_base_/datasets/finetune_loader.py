# The training loader settings of vlp's fine-tuning splits (the dataset files add the
# datasets): those of pre-training (pretrain_loader.py) with batches of 32 per GPU and the
# last incomplete batch dropped.
_base_ = ['./pretrain_loader.py']
train_dataloader = dict(batch_size=32, drop_last=True)
