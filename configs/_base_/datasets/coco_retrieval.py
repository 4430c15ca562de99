# COCO Karpathy-split retrieval (5k test images, ~5 captions each), in the ALBEF/BLIP JSON
# format: [{"image": "val2014/COCO_val2014_...jpg", "caption": [str, ...]}, ...].
# Expected layout (not downloaded by vlp):
#   data/coco/images/{train2014,val2014}/...
#   data/coco/annotations/coco_karpathy_{val,test}.json
# The model's config supplies the pipeline (its tokenizer and image size):
#   val_dataloader = dict(dataset=dict(pipeline=test_pipeline)), and the same for test.
_base_ = ['./eval_loaders.py']
__karpathy = dict(type='ImageTextJsonDataset', mode='eval', data_root='data/coco',
                  img_prefix='images', pipeline=[])
val_dataloader = dict(dataset=dict(__karpathy, ann_file='annotations/coco_karpathy_val.json'))
test_dataloader = dict(dataset=dict(__karpathy,
                                    ann_file='annotations/coco_karpathy_test.json'))
val_evaluator = dict(type='RetrievalMetric')
test_evaluator = val_evaluator
