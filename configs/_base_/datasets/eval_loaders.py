# The loader settings of vlp's evaluation splits (the dataset files add the datasets and
# metrics): batches of 64 in order, 8 workers kept alive between epochs; plain val / test
# loops (a model that re-ranks retrieval candidates sets its own).
val_dataloader = dict(batch_size=64, num_workers=8, persistent_workers=True,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      collate_fn=dict(type='vlp_collate'))
test_dataloader = val_dataloader
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
