# The embedded demo NLVR2 data (vlp/datasets/demo/tasks.py, DemoNLVR2): two demo scenes
# and a statement about both ("both images contain a square", "the left image has more
# shapes than the right image"...), true or false; the statement is drawn before the label,
# so the text alone says nothing. Train 10,000 pairs of 5,000 scenes, test 500 (exactly 50%
# true).
_base_ = ['./demo_task_loaders.py']
# the statement tokenised (the dataset renders the images)
nlvr2_pipeline = [dict(type='Tokenize', tokenizer={{_base_.demo_task_tokenizer}})]
# the statement families a demo-sized model learns in CPU minutes: one image's content
# (a colour or a shape, not their conjunction) and the object counts of both images
# (DemoNLVR2 has three more: "both", "exactly one", "neither")
nlvr2_task = dict(families=('left_contains', 'right_contains', 'total', 'left_more',
                            'right_more', 'same_number'),
                  desc_kinds=('colour', 'shape'))
train_dataloader = dict(dataset=dict(type='DemoNLVR2', split='train', num_pairs=10000,
                                     image_size=64, pipeline=nlvr2_pipeline, **nlvr2_task))
test_dataloader = dict(dataset=dict(type='DemoNLVR2', split='test', image_size=64,
                                    pipeline=nlvr2_pipeline, **nlvr2_task))
test_evaluator = dict(type='ClassificationAccuracy')
