# The embedded demo data (vlp/datasets/demo/scenes.py): rendered shape scenes with five
# compositional captions each; nothing to download. Train: one image per sample with one of
# its captions drawn at random; val/test: one image per sample with all five captions
# (COCO retrieval protocol). No horizontal flips: captions say left and right.
# The pipelines tokenise with the CLIP-style demo tokenizer; a config whose model reads
# another one sets its own (train_dataloader = dict(dataset=dict(pipeline=...)), ...).
_base_ = ['./pretrain_loader.py', './eval_loaders.py']
__image_size = 64  # the demo scenes (the model config states its own image_size)
demo_tokenizer = dict(type='DemoTokenizer', style='clip', max_length=32)
__pipeline = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=demo_tokenizer)]
__demo = dict(type='DemoImageText', image_size=__image_size, pipeline=__pipeline)
# batches of 128 (evaluation: 100), 2 workers
train_dataloader = dict(batch_size=128, num_workers=2, dataset=dict(__demo, split='train'))
val_dataloader = dict(batch_size=100, num_workers=2, dataset=dict(__demo, split='val'))
test_dataloader = dict(batch_size=100, num_workers=2, dataset=dict(__demo, split='test'))
val_evaluator = dict(type='RetrievalMetric')
test_evaluator = val_evaluator
