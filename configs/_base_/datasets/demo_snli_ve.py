# The embedded demo SNLI-VE data (vlp/datasets/demo/tasks.py, DemoSNLIVE): a demo scene as
# premise and a hypothesis that is entailed, contradicted, or undecidable from the picture
# (neutral: "the red circle is made of wood" about a circle that is there; the same claim
# about an absent object is a contradiction). One hypothesis of each class per image:
# train 15,000 on 5,000 scenes, test 510 (exactly a third each). Text alone can reach about
# 67% (the text-only prior of tools/data/demo_task_baselines.py: 61%).
_base_ = ['./demo_task_loaders.py']
snli_ve_pipeline = [dict(type='ToTensor'),
                    dict(type='Tokenize', tokenizer={{_base_.demo_task_tokenizer}})]
train_dataloader = dict(dataset=dict(type='DemoSNLIVE', split='train', num_images=5000,
                                     image_size=64, pipeline=snli_ve_pipeline))
test_dataloader = dict(dataset=dict(type='DemoSNLIVE', split='test', image_size=64,
                                    pipeline=snli_ve_pipeline))
test_evaluator = dict(type='ClassificationAccuracy')
