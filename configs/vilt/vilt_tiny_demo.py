# ViLT tiny demo: the ViLT architecture and objectives (one single-stream pre-LN transformer
# over BERT word embeddings and linear patch projections; ITM with half of the images
# swapped for other images, WPA (IPOT optimal transport, weight 0.1), whole-word MLM) at
# toy size, from random weights on the embedded demo data (about 5 min on one CPU thread).
# Retrieval is ViLT's: every image-text pair of the (reduced, 50-image) test split is scored
# by the ITM head. `python tools/train.py configs/vilt/vilt_tiny_demo.py`; figures in
# docs/models.md. Within this budget MLM learns the captions' language (acc 0.2 -> 0.68) but
# neither MLM nor ITM uses the image yet (ITM stays at 0.5, retrieval at chance): ViLT
# starts from an ImageNet ViT, this demo from scratch. Departures from vilt_base.py: sizes,
# data, schedule, no dropout.
_base_ = ['../_base_/models/vilt.py', '../_base_/datasets/demo_retrieval.py',
          '../_base_/default_runtime.py']
demo_tokenizer = dict(type='DemoTokenizer', style='bert', max_length=32)
# 48 px images in 16 px patches: a 3 x 3 grid (the captions' left / centre / right / top /
# bottom), 10 image tokens; few tokens and small batches keep a CPU step short
image_size = 48
width = 96

# the paper's model at toy size, from random weights
model = dict(
    # the preprocessor's default statistics
    data_preprocessor=dict(_delete_=True, type='VLPDataPreprocessor'),
    backbone=dict(img_size=image_size, patch_size=16, vocab_size=53, max_text_len=32,
                  embed_dim=width, depth=3, num_heads=4, drop=0.0, ln_eps=1e-12,
                  max_image_len=None),
    itm_head=dict(hidden_size=width),
    mlm_head=dict(hidden_size=width, vocab_size=53),
    tokenizer=dict(demo_tokenizer, _delete_=True))

train_pipeline = [dict(type='ToTensor'),
                  dict(type='Tokenize', tokenizer=demo_tokenizer, return_word_ids=True)]
test_pipeline = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=demo_tokenizer)]
train_dataloader = dict(batch_size=32,
                        dataset=dict(image_size=image_size, pipeline=train_pipeline))
# no validation during training; the test split is reported at the end. ITM scores every
# pair (50 images x 250 captions, both directions): a small evaluation split
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = dict(dataset=dict(num_images=50, image_size=image_size,
                                    pipeline=test_pipeline))
# k >= the gallery: no ITC stage (ViLT has none), every pair re-scored by ITM
test_evaluator = dict(type='ITMRetrievalMetric', k=1000000, batch_size=250)
test_cfg = dict(type='RetrievalTestLoop')

max_epochs = 12
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01),
    # bypass_duplicate: the MLM decoder shares its weight with the word embeddings
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True))
param_scheduler = [
    # ViLT: linear warm-up over 10% of the steps (157 per epoch), then linear decay to 0
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=188),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=True, begin=0,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=25),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=32, enable=False)
test_after_train = True  # tools/train.py reports the test split at the end
