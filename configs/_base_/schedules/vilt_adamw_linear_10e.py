# ViLT's fine-tuning schedule (Kim et al. 2021; dandelin/ViLT vilt/config.py
# `task_finetune_*`: `max_epoch = 10`, `warmup_steps = 0.1`, `decay_power = 1`,
# `end_lr = 0`): the pre-training AdamW, 10 epochs, linear warm-up over the first epoch
# (10% of the steps) then linear decay to 0, batch 256; evaluated every epoch.
_base_ = ['./vilt_adamw_linear_100k.py']
max_epochs = 10
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='LinearLR', start_factor=1.0, end_factor=0.0, by_epoch=True, begin=1,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=1)
auto_scale_lr = dict(base_batch_size=256)
