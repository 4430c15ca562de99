# VLMo's fusion encoder under a task head (Bao et al. 2022, Sec. 4.1; microsoft/unilm
# vlmo/vlmo/config.py `task_finetune_*_base`): the fused text [CLS] through VLMo's Pooler
# (dense + tanh) INITIALISED FROM THE PRE-TRAINED ITM POOLER (VLMo shares one `pooler`
# between ITM and the task heads; revise_keys below), then the task classifier:
# Linear(in, 1536) -> LayerNorm -> GELU -> Linear(1536, n) (the task config sets n, the
# input and the pairing of images).
# pretrained: the stage-3 run of configs/vlmo/vlmo_base.py, or the official VLMo weights
# converted with tools/convert/vlmo_to_vlp.py. Dropped: ITC projections and temperature,
# ITM classifier (its pooler moved into the head first), MLM head, MIM head and target.
_base_ = ['./vlmo.py']
__vlmo = _base_.model
model = dict(
    _delete_=True,
    type='VLClassifier',
    model=__vlmo,
    head=dict(type='ClassifierHead', in_channels=768, hidden_channels=1536, pooler='bert',
              norm=True, act='gelu'),
    pretrained='work_dirs/vlmo_base/iter_200000.pth',  # or vlmo_to_vlp.py output
    # the pre-trained ITM pooler (dense + tanh) becomes the head's pooler
    revise_keys=[(r'^model\.itm_head\.pooler\.0\.', 'head.pooler.0.')],
    drop_parts=['vision_proj', 'text_proj', 'itc', 'itm_head', 'mlm_head', 'mim_head',
                'visual_tokenizer'],
    data_preprocessor=__vlmo.data_preprocessor)
