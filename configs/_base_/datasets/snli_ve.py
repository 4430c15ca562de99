# SNLI-VE (Xie et al. 2019, "Visual Entailment"): a Flickr30k image (premise) and a
# hypothesis, 3-way: contradiction 0 / neutral 1 / entailment 2 (ALBEF's order). Official
# JSON-lines files of the necla-ml/SNLI-VE repository (snli_ve_{train,dev,test}.jsonl):
#   {"Flickr30K_ID": "3534548254", "sentence2": hypothesis, "gold_label": "entailment",
#    "pairID": ..., "sentence1": the SNLI premise caption (unused), ...}
# (pairs whose gold_label is '-' are left out by SNLIVEDataset). Expected layout (not
# downloaded by vlp):
#   data/snli_ve/flickr30k_images/3534548254.jpg ...   (the Flickr30k images)
#   data/snli_ve/snli_ve_{train,dev,test}.jsonl
# ALBEF's JSON list ([{"image": "xxx.jpg", "sentence": str, "label": "entailment"}],
# ve_{train,dev,test}.json) is read as well.
# Splits: train / dev (validation) / test; accuracy with ClassificationAccuracy.
# The model's config supplies the pipelines (LoadImage ... Tokenize on 'text').
data_root = 'data/snli_ve'
train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='SNLIVEDataset', mode='train', data_root=data_root,
                 ann_file='snli_ve_train.jsonl', img_prefix='flickr30k_images',
                 pipeline=[]))
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='SNLIVEDataset', mode='eval', data_root=data_root,
                 ann_file='snli_ve_dev.jsonl', img_prefix='flickr30k_images',
                 pipeline=[]))
test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='vlp_collate'),
    dataset=dict(type='SNLIVEDataset', mode='eval', data_root=data_root,
                 ann_file='snli_ve_test.jsonl', img_prefix='flickr30k_images',
                 pipeline=[]))
val_evaluator = dict(type='ClassificationAccuracy', prefix='snli_ve_dev')
test_evaluator = dict(type='ClassificationAccuracy', prefix='snli_ve_test')
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
