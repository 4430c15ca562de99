# ViLT VQA tiny demo: VQA as classification (ViLT Sec. 4.2: an MLP head on the pooled
# state scores every answer of the vocabulary; BUTD soft targets, binary cross-entropy x
# the vocabulary size) on the embedded demo VQA data (vlp/datasets/demo/tasks.py: questions
# about colour, shape, count, position, size and yes/no of the demo scenes, ten annotator
# answers each, scored with the official VQA accuracy), starting from ViLT's image-only
# initialisation (the demo stand-in of its ImageNet ViT):
#   python tools/train.py configs/vilt/vilt_vit_init_tiny_demo.py
#   python tools/train.py configs/vilt/vilt_vqa_tiny_demo.py
# Figures in docs/tasks.md. Departures from vilt_vqa.py: sizes, data, schedule, no dropout.
_base_ = ['../_base_/models/vilt_classifier_tiny.py', '../_base_/datasets/demo_vqa.py',
          '../_base_/schedules/demo_adamw_linear_8e.py', '../_base_/default_runtime.py']
model = dict(
    type='VQAClassifier',
    # ViLT starts from an image-only pre-trained transformer (an ImageNet ViT; here the
    # demo stand-in, configs/vilt/vilt_vit_init_tiny_demo.py, run it first): its
    # VLClassifier keys model.* -> this model's, its class head unused
    pretrained='work_dirs/vilt_vit_init_tiny_demo',
    revise_keys=[(r'^model\.model\.', 'model.')],
    # ViLT's vqa_classifier: Linear(C, 2C) -> LayerNorm -> GELU -> Linear(2C, #answers)
    answer_list=dict(type='DemoVQA'),  # the dataset's metainfo['answer_list'] (25 answers)
    target='butd')

default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval={{_base_.max_epochs}}, max_keep_ckpts=1))
