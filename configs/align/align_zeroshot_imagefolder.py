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
# on a plain .pth; the config has no training part.
_base_ = ['../_base_/models/align.py', '../_base_/datasets/imagefolder_zeroshot.py',
          '../_base_/default_runtime.py']
# the family's evaluation image transforms (the samples have no text)
test_dataloader = dict(dataset=dict(pipeline={{_base_.image_pipeline}}))
custom_hooks = [dict(type='ZeroShotClassifierHook', templates='openai_imagenet', on_val=False,
                     on_test=True)]
