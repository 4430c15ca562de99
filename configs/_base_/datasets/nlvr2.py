# NLVR2 (Suhr et al. 2019): a sentence and a PAIR of images, True / False. Official JSON-lines
# files of the lil-lab/nlvr repository (nlvr2/data/{train,dev,test1}.json):
#   {"identifier": "train-10171-0-0", "sentence": str, "label": "True"/"False",
#    "directory": 67 (train only), "left_url", "right_url", ...}
# images {identifier without its last field}-img0.png / -img1.png (left / right), the train
# images in 100 numbered sub-folders ("directory"). Expected layout (not downloaded by vlp;
# the images need the NLVR2 request form; BEiT-3's get_started_for_nlvr2.md layout):
#   data/nlvr2/images/train/{0..99}/train-10171-0-img0.png ...
#   data/nlvr2/images/dev/dev-269-0-img0.png ...
#   data/nlvr2/images/test1/test1-261-0-img0.png ...
#   data/nlvr2/annotations/{train,dev,test1}.json   (copied from nlvr/nlvr2/data/)
# ALBEF's JSON list ([{"images": [left, right], "sentence", "label"}], nlvr_{train,dev,
# test}.json) is read as well: ann_file='nlvr_train.json', img_prefix='...'.
# Splits: train / dev (validation) / test-P (test1); accuracy with ClassificationAccuracy.
# The model's config supplies, for every split, image_pipeline (per image: LoadImage ...
# ToTensor, one size for both images) and pipeline (Tokenize on 'text').
_base_ = ['./finetune_loader.py', './eval_loaders.py']
__nlvr2 = dict(type='NLVR2Dataset', data_root='data/nlvr2', image_pipeline=[], pipeline=[])
train_dataloader = dict(dataset=dict(__nlvr2, mode='train', ann_file='annotations/train.json',
                                     img_prefix='images/train'))
val_dataloader = dict(dataset=dict(__nlvr2, mode='eval', ann_file='annotations/dev.json',
                                   img_prefix='images/dev'))
test_dataloader = dict(dataset=dict(__nlvr2, mode='eval', ann_file='annotations/test1.json',
                                    img_prefix='images/test1'))
val_evaluator = dict(type='ClassificationAccuracy', prefix='nlvr2_dev')
test_evaluator = dict(type='ClassificationAccuracy', prefix='nlvr2_test')
