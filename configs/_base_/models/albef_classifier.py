# ALBEF's encoders under a task head (Li et al. 2021; VLClassifier for SNLI-VE and NLVR2,
# VQAClassifier for the VQA variant): the fusion encoder's [CLS] into ALBEF's `cls_head`,
# Linear(768, 768) -> ReLU -> Linear(768, n) (the task config sets n and the pairing of
# images), cross-entropy without label smoothing.
# Every weight comes from `pretrained` (the pre-training run of configs/albef/albef_base.py,
# or the official ALBEF weights converted with tools/convert/albef_to_vlp.py): no ImageNet /
# BERT initialisation first. Dropped: the ITC projections and temperature, the ITM and MLM
# heads, the momentum twins and the feature queue; no momentum hooks in fine-tuning.
_base_ = ['./albef.py']
__albef = _base_.model
model = dict(
    _delete_=True,
    type='VLClassifier',
    model=dict(__albef, vision=dict(__albef.vision, pretrained=False),
               text=dict(__albef.text, pretrained=None),
               fusion=dict(__albef.fusion, pretrained=None), queue_size=0),
    head=dict(type='ClassifierHead', in_channels=768, num_inputs=1, hidden_channels=768,
              pooler=None, norm=False, act='relu'),
    pretrained='work_dirs/albef_base/epoch_30.pth',  # or albef_to_vlp.py output
    drop_parts=['vision_proj', 'text_proj', 'itc', 'itm_head', 'mlm_head', 'vision_m',
                'vision_proj_m', 'text_m', 'text_proj_m', 'fusion_m', 'mlm_head_m'],
    data_preprocessor=__albef.data_preprocessor)
custom_hooks = []  # no momentum encoders, queue or distillation in fine-tuning
