# ViLT under a task head (Kim et al. 2021, Sec. 4.2; dandelin/ViLT vilt/config.py
# `task_finetune_*`): the pooled first token (the pooler is part of ViLT's backbone) into
# ViLT's classifier, Linear(in, 1536) -> LayerNorm -> GELU -> Linear(1536, n) (the task
# config sets n, the input and the pairing of images).
# pretrained: the pre-training run of configs/vilt/vilt_base.py, or the official ViLT weights
# converted with tools/convert/hf_vilt_to_vlp.py; the pre-training heads (ITM, MLM, WPA)
# are dropped.
_base_ = ['./vilt.py']
__vilt = _base_.model
model = dict(
    _delete_=True,
    type='VLClassifier',
    model=__vilt,
    head=dict(type='ClassifierHead', in_channels=768, hidden_channels=1536, pooler=None,
              norm=True, act='gelu'),
    pretrained='work_dirs/vilt_base/iter_100000.pth',  # or hf_vilt_to_vlp.py output
    drop_parts=['itm_head', 'mlm_head', 'wpa'],
    data_preprocessor=__vilt.data_preprocessor)
