# The embedded demo SNLI-VE data (vlp/datasets/demo_tasks.py, DemoSNLIVE): a demo scene as
# premise and a hypothesis that is entailed, contradicted, or undecidable from the picture
# (neutral: "the red circle is made of wood" about a circle that is there; the same claim
# about an absent object is a contradiction). One hypothesis of each class per image:
# train 15,000 on 5,000 scenes, test 510 (exactly a third each). Text alone can reach about
# 67% (the text-only prior of tools/data/demo_task_baselines.py: 61%).
image_size = 64
demo_task_tokenizer = dict(type='DemoTokenizer', style='bert', vocabulary='tasks',
                           max_length=24)
snli_ve_pipeline = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=demo_task_tokenizer)]
train_dataloader = dict(
    batch_size=64, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='DemoSNLIVE', split='train', num_images=5000, image_size=image_size,
                 pipeline=snli_ve_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = dict(
    batch_size=128, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='DemoSNLIVE', split='test', image_size=image_size,
                 pipeline=snli_ve_pipeline))
test_evaluator = dict(type='ClassificationAccuracy')
test_cfg = dict(type='TestLoop')
test_after_train = True
