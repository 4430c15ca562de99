# What the embedded demo tasks (vlp/datasets/demo/tasks.py) share: the demo scenes (64 x 64;
# the model config states its own image_size), their task vocabulary (the demo words plus
# the question / statement / hypothesis words: 115 tokens, BERT style), shuffled training
# batches of 64 and test batches of 128 read in the main process (demo data is generated,
# not read), no validation during training: the test split is reported at the end
# (test_after_train). The task files add the datasets and metrics.
demo_task_tokenizer = dict(type='DemoTokenizer', style='bert', vocabulary='tasks',
                           max_length=24)
train_dataloader = dict(
    batch_size=64, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vlp_collate'))
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = dict(
    batch_size=128, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vlp_collate'))
test_cfg = dict(type='TestLoop')
test_after_train = True
