# The embedded demo data (vlp/datasets/demo.py): rendered shape scenes with five
# compositional captions each; nothing to download. Train: one image per sample with one of
# its captions drawn at random; val/test: one image per sample with all five captions
# (COCO retrieval protocol). No horizontal flips: captions say left and right.
image_size = 64
demo_tokenizer = dict(type='DemoTokenizer', style='clip', max_length=32)

train_pipeline = [
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=demo_tokenizer),
]
test_pipeline = train_pipeline

train_dataloader = dict(
    batch_size=128,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='DemoImageText', split='train', image_size=image_size,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=100,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='DemoImageText', split='val', image_size=image_size,
                 pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=100,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='DemoImageText', split='test', image_size=image_size,
                 pipeline=test_pipeline))
val_evaluator = dict(type='RetrievalMetric')
test_evaluator = val_evaluator
