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
_base_ = ['./finetune_loader.py', './eval_loaders.py']
__snli_ve = dict(type='SNLIVEDataset', data_root='data/snli_ve', img_prefix='flickr30k_images',
                 pipeline=[])
train_dataloader = dict(dataset=dict(__snli_ve, mode='train', ann_file='snli_ve_train.jsonl'))
val_dataloader = dict(dataset=dict(__snli_ve, mode='eval', ann_file='snli_ve_dev.jsonl'))
test_dataloader = dict(dataset=dict(__snli_ve, mode='eval', ann_file='snli_ve_test.jsonl'))
val_evaluator = dict(type='ClassificationAccuracy', prefix='snli_ve_dev')
test_evaluator = dict(type='ClassificationAccuracy', prefix='snli_ve_test')
