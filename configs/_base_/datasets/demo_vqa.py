# The embedded demo VQA data (vlp/datasets/demo/tasks.py, DemoVQA): questions about the
# colour, shape, count, position and size of the demo scenes' objects and yes/no questions,
# ten annotator answers each (VQAv2 style, 25 canonical answers), scored with the official
# VQA accuracy. Train 15,000 questions on 5,000 scenes (three per scene); test 510 on 170
# other scenes (majority answer: 9%; the text-only prior, the most frequent training answer
# of the same question: 39%, tools/data/demo_task_baselines.py). The model config sets the
# pipelines' tokenizer (`question` key).
_base_ = ['./demo_task_loaders.py']
vqa_pipeline = [dict(type='ToTensor'),
                dict(type='Tokenize', tokenizer={{_base_.demo_task_tokenizer}}, key='question')]
train_dataloader = dict(dataset=dict(type='DemoVQA', split='train', num_images=5000,
                                     image_size=64, pipeline=vqa_pipeline))
test_dataloader = dict(dataset=dict(type='DemoVQA', split='test', image_size=64,
                                    pipeline=vqa_pipeline))
test_evaluator = dict(type='VQAAccuracy')
