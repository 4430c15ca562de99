# The embedded demo NLVR2 data (vlp/datasets/demo_tasks.py, DemoNLVR2): two demo scenes
# and a statement about both ("both images contain a square", "the left image has more
# shapes than the right image"...), true or false; the statement is drawn before the label,
# so the text alone says nothing. Train 10,000 pairs of 5,000 scenes, test 500 (exactly 50%
# true).
image_size = 64
demo_task_tokenizer = dict(type='DemoTokenizer', style='bert', vocabulary='tasks',
                           max_length=24)
nlvr2_pipeline = [dict(type='Tokenize', tokenizer=demo_task_tokenizer)]  # images: dataset
# the statement families a demo-sized model learns in CPU minutes: one image's content
# (a colour or a shape, not their conjunction) and the object counts of both images
# (DemoNLVR2 has three more: "both", "exactly one", "neither")
nlvr2_task = dict(families=('left_contains', 'right_contains', 'total', 'left_more',
                            'right_more', 'same_number'),
                  desc_kinds=('colour', 'shape'))
train_dataloader = dict(
    batch_size=64, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='DemoNLVR2', split='train', num_pairs=10000, image_size=image_size,
                 pipeline=nlvr2_pipeline, **nlvr2_task))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = dict(
    batch_size=128, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='DemoNLVR2', split='test', image_size=image_size,
                 pipeline=nlvr2_pipeline, **nlvr2_task))
test_evaluator = dict(type='ClassificationAccuracy')
test_cfg = dict(type='TestLoop')
test_after_train = True
