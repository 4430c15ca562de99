# The training loader settings of vlp's pre-training corpora (the dataset files add the
# datasets): shuffled batches, 8 workers kept alive between epochs.
train_dataloader = dict(batch_size=64, num_workers=8, persistent_workers=True,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        collate_fn=dict(type='vlp_collate'))
