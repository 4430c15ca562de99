# BEiT-3 under a task head (Wang et al. 2022, Sec. 3.1; microsoft/unilm beit3
# modeling_finetune.py): the task config sets the head's input (the joint [image; text]
# encoding's first state, or one per image of a pair), its pooler and classes; the head is
# Linear(in, 1536) -> LayerNorm -> GELU -> Linear(1536, n).
# pretrained: the pre-training run of configs/beit3/beit3_base.py, or the official weights
# converted with tools/convert/torchscale_beit3_to_vlp.py (vocabulary caveat:
# configs/_base_/models/beit3.py). Dropped: the MLM and MIM heads and the visual tokenizer.
_base_ = ['./beit3.py']
__beit3 = _base_.model
model = dict(
    _delete_=True,
    type='VLClassifier',
    model=__beit3,
    head=dict(type='ClassifierHead', in_channels=768, hidden_channels=1536, norm=True,
              act='gelu'),
    pretrained='work_dirs/beit3_base/iter_1000000.pth',  # or torchscale_beit3_to_vlp.py
    drop_parts=['mlm_head', 'mim_head', 'visual_tokenizer'],
    data_preprocessor=__beit3.data_preprocessor)
