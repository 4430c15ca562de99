# ALIGN (Jia et al. 2021; EfficientNet + BERT dual encoder, a CLIP config in vlp) zero-shot
# image classification (Sec. 5.2 / Table 4, ImageNet): class names in prompt templates,
# cosine similarity to the image embedding, top-1 / top-5 accuracy (ZeroShotAccuracy).
# Prompt ensemble: OpenAI's 80 ImageNet templates, averaged per class (ALIGN follows CLIP's
# prompt ensembling for ImageNet; UNCONFIRMED which template set ALIGN used, we could not
# check the paper's wording here).
# Default data: the ImageNet-1k validation set in class folders with CLIP's curated class
# names (configs/_base_/datasets/imagefolder_zeroshot.py); images as align_base.py's test
# transforms (resize 346, centre crop 289: ALIGN's evaluation resolution).
# TEST ONLY, no training: give the weights on the command line,
#   python tools/test.py configs/align/align_zeroshot_imagefolder.py CHECKPOINT
# (tools/test.py sets load_from to CHECKPOINT), CHECKPOINT being a checkpoint of
# configs/align/align_base.py (work_dirs/align_base/...). No converter for the released
# Kakao / HF ALIGN weights is provided in tools/convert. Runs without DeepSpeed
# (strategy=None), on a plain .pth.
_base_ = ['./align_base.py']
from mmengine import Config as __Config  # noqa: E402
# The test data: configs/_base_/datasets/imagefolder_zeroshot.py (read here: the family
# config's retrieval test set is replaced wholesale with _delete_).
__data = __Config.fromfile('{{ fileDirname }}/../_base_/datasets/imagefolder_zeroshot.py')
# the family's test transforms without Tokenize (the samples have no text)
zeroshot_pipeline = [t for t in _base_.test_pipeline if t['type'] != 'Tokenize']
test_dataloader = dict(__data.test_dataloader, _delete_=True)
test_dataloader['dataset']['pipeline'] = zeroshot_pipeline
test_evaluator = dict(__data.test_evaluator, _delete_=True)
test_cfg = dict(_delete_=True, type='TestLoop')
custom_hooks = [
    dict(type='ZeroShotClassifierHook', templates='openai_imagenet', on_val=False,
         on_test=True),
]
strategy = None
load_from = None  # tools/test.py CONFIG CHECKPOINT
