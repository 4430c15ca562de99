# ALBEF SNLI-VE tiny demo: visual entailment as 3-way classification (ALBEF Sec. 5.2: an MLP
# Linear(C, C) -> ReLU -> Linear(C, 3) on the fusion encoder's [CLS]; cross-entropy),
# fine-tuned from the ALBEF pre-training demo on the embedded demo SNLI-VE data (one
# entailed, one contradicted, one undecidable hypothesis per scene). First run
#   python tools/train.py configs/albef/albef_tiny_demo.py
# (its work dir is `pretrained` below; the caption vocabulary grows to the task one, the
# new words' embeddings start at their init), then
#   python tools/train.py configs/albef/albef_snli_ve_tiny_demo.py
# The pre-training heads and the ITC / momentum parts are dropped; ALBEF's momentum
# distillation of the fine-tuning is not used here. Figures in docs/tasks.md.
_base_ = ['../_base_/models/albef_classifier_tiny.py', '../_base_/datasets/demo_snli_ve.py',
          '../_base_/schedules/demo_adamw_cosine_8e.py', '../_base_/default_runtime.py']
model = dict(pretrained='work_dirs/albef_tiny_demo', head=dict(num_classes=3))

default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval={{_base_.max_epochs}}, max_keep_ckpts=1))
