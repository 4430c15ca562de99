# BEiT-3 retrieval tiny demo: BEiT3Retrieval (Wang et al. 2022, Sec. 3.2 / Fig. 3(d)) at toy
# size on the embedded demo data: the multiway encoder as a dual encoder (image-only and
# text-only passes, [CLS] states, linear projections without bias, L2-normalised), trained
# from scratch with the symmetric InfoNCE loss (learnable temperature, negatives from every
# rank) and evaluated by ITC recall@K (RetrievalMetric). Same backbone sizes and BERT-style
# demo vocabulary as beit3_tiny_demo.py; data and schedule conventions of clip_tiny_demo.py.
# `python tools/train.py configs/beit3/beit3_retrieval_tiny_demo.py` (a few CPU minutes).
# To fine-tune the MDM demo instead of training from scratch, set
# load_from = 'work_dirs/beit3_tiny_demo/iter_400.pth' (only the heads differ).
_base_ = ['../_base_/models/beit3_retrieval.py', '../_base_/datasets/demo_retrieval_bert.py',
          '../_base_/schedules/beit3_adamw_cosine_1m.py', '../_base_/default_runtime.py']
image_size = 64
width = 96
vocab_size = 53  # the demo's BERT-style word vocabulary

# the sizes of configs/beit3/beit3_tiny_demo.py, from random weights
model = dict(
    # the preprocessor's default statistics
    data_preprocessor=dict(_delete_=True, type='VLPDataPreprocessor'),
    backbone=dict(img_size=image_size, vocab_size=vocab_size, max_text_len=34,
                  embed_dim=width, depth=4, num_heads=4, drop_path_rate=0.0),
    vision_proj=dict(in_dim=width, out_dim=width, init_std=None),
    text_proj=dict(in_dim=width, out_dim=width, init_std=None),
    tokenizer=dict(_base_.demo_tokenizer, _delete_=True))

train_dataloader = dict(batch_size=64)

max_epochs = 15
# BEiT-3's AdamW and no-decay rules (the schedule base); lr for the toy model, torch's
# default kernel
optim_wrapper = dict(optimizer=dict(lr=1e-3, fused=None),
                     paramwise_cfg=dict(bypass_duplicate=False))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = None
test_after_train = True  # tools/train.py reports the test split at the end
