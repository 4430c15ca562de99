# VLMo VQA tiny demo: VQA as classification on the multiway transformer's fusion mode (VLMo
# Sec. 4.1 / Table 2: the fused [CLS] through VLMo's pooler, then ViLT's classifier MLP;
# BUTD soft targets, binary cross-entropy x the vocabulary size), fine-tuned from the VLMo
# pre-training demo (all three stages) on the embedded demo VQA data:
#   python tools/train.py configs/vlmo/vlmo_tiny_demo.py     # its work dir: `pretrained`
#   python tools/train.py configs/vlmo/vlmo_vqa_tiny_demo.py
# The caption vocabulary grows to the task one; the ITC projections, MIM and MLM parts of
# the pre-training are dropped; a checkpoint whose ITM head has VLMo's pooler starts the
# task pooler from it (revise_keys; the demo's ITM head has none). Figures in docs/tasks.md.
_base_ = ['../_base_/models/vlmo_classifier.py', '../_base_/datasets/demo_vqa.py',
          '../_base_/schedules/demo_adamw_linear_8e.py', '../_base_/default_runtime.py']
image_size = 64
vocab_size = 115  # the 'tasks' vocabulary
width = 96

model = dict(
    type='VQAClassifier',
    model=dict(
        # the sizes of configs/vlmo/vlmo_tiny_demo.py (its checkpoint loads)
        backbone=dict(img_size=image_size, vocab_size=vocab_size, max_text_len=32,
                      embed_dim=width, depth=4, num_heads=4, num_vl_layers=1,
                      drop_path_rate=0.0, text_rel_pos_len=None, initializer_range=0.1),
        vision_proj=dict(in_dim=width, out_dim=64, bias=True, init_std=None),
        text_proj=dict(in_dim=width, out_dim=64, bias=True, init_std=None),
        itm_head=None, mlm_head=None, mim_head=None, visual_tokenizer=None, itc=None,
        data_preprocessor=None, tokenizer=dict(_base_.demo_task_tokenizer, _delete_=True)),
    # the ITC projections are pre-training parts: dropped (not trained, not saved)
    pretrained='work_dirs/vlmo_tiny_demo',
    drop_parts=('vision_proj', 'text_proj'),
    head=dict(in_channels=width, hidden_channels=None),
    answer_list=dict(type='DemoVQA'),
    target='butd')

default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval={{_base_.max_epochs}}, max_keep_ckpts=1))
