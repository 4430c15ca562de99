# VLMo's fine-tuning schedule (Bao et al. 2022; microsoft/unilm vlmo/vlmo/config.py
# `task_finetune_*_base`): ViLT's (VLMo's code is ViLT's: vilt_adamw_linear_10e.py, the
# task config sets the lr) with VLMo's optimizer rules: no decay on layer scale, [CLS] /
# [MASK] and the relative position bias either; batch 128.
_base_ = ['./vilt_adamw_linear_10e.py']
optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    clip_grad=None,
    paramwise_cfg=dict(custom_keys={'rel_pos_bias_table': dict(decay_mult=0.0),
                                    'cls_token': dict(decay_mult=0.0),
                                    'mask_token': dict(decay_mult=0.0)}))
auto_scale_lr = dict(base_batch_size=128)
