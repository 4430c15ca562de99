# The embedded demo classification data (vlp/datasets/demo/scenes.py, DemoClassification):
# one object anywhere in a demo scene, 40 colour-shape classes; train 4,000 images, the
# test split held out; accuracy with ClassificationAccuracy. Each sample reads a constant
# text ("a picture", SetText), for vision-language models that need one.
_base_ = ['./demo_task_loaders.py']
__pipeline = [dict(type='ToTensor'), dict(type='SetText', text='a picture'),
              dict(type='Tokenize', tokenizer={{_base_.demo_task_tokenizer}})]
train_dataloader = dict(dataset=dict(type='DemoClassification', split='train',
                                     num_images=4000, image_size=64, pipeline=__pipeline))
test_dataloader = dict(batch_size=200,
                       dataset=dict(type='DemoClassification', split='test', image_size=64,
                                    pipeline=__pipeline))
test_evaluator = dict(type='ClassificationAccuracy')
