# The embedded demo VQA data (vlp/datasets/demo_tasks.py, DemoVQA): questions about the
# colour, shape, count, position and size of the demo scenes' objects and yes/no questions,
# ten annotator answers each (VQAv2 style, 25 canonical answers), scored with the official
# VQA accuracy. Train 15,000 questions on 5,000 scenes (three per scene); test 510 on 170
# other scenes (majority answer: 9%; the text-only prior, the most frequent training answer
# of the same question: 39%, tools/data/demo_task_baselines.py). The model config sets the
# pipelines' tokenizer (`question` key).
image_size = 64
demo_task_tokenizer = dict(type='DemoTokenizer', style='bert', vocabulary='tasks',
                           max_length=24)
vqa_pipeline = [dict(type='ToTensor'),
                dict(type='Tokenize', tokenizer=demo_task_tokenizer, key='question')]
train_dataloader = dict(
    batch_size=64, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='DemoVQA', split='train', num_images=5000, image_size=image_size,
                 pipeline=vqa_pipeline))
# no validation during training; the test split is reported at the end (test_after_train)
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = dict(
    batch_size=128, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='DemoVQA', split='test', image_size=image_size, pipeline=vqa_pipeline))
test_evaluator = dict(type='VQAAccuracy')
test_cfg = dict(type='TestLoop')
test_after_train = True
