# CLIP ViT-B/16 (Radford et al. 2021) zero-shot image classification (Sec. 3.1.2 / 3.1.4):
# every class name is put into OpenAI's 80 ImageNet prompt templates, the text embeddings
# are L2-normalised, averaged per class and renormalised (the prompt ensemble, Sec. 3.1.4;
# templates from OpenAI's notebook "Prompt_Engineering_for_ImageNet"), and each image goes
# to the class of highest cosine similarity; top-1 / top-5 accuracy (ZeroShotAccuracy).
# Default data: the ImageNet-1k validation set in class folders with CLIP's curated class
# names (configs/_base_/datasets/imagefolder_zeroshot.py); images resized (shorter side,
# bicubic) and centre-cropped to 224, as CLIP's preprocess.
# TEST ONLY, no training: give the weights on the command line,
#   python tools/test.py configs/clip/clip_zeroshot_imagefolder.py CHECKPOINT
# (tools/test.py sets load_from to CHECKPOINT), CHECKPOINT being the last checkpoint of
# configs/clip/clip_vit-b16_base.py (work_dirs/clip_vit-b16_base/...) or OpenAI's weights
# converted with tools/convert/hf_clip_to_vlp.py / open_clip_to_vlp.py. Runs without
# DeepSpeed, on a plain .pth; the config has no training part.
_base_ = ['../_base_/models/clip_vit-b16.py', '../_base_/datasets/imagefolder_zeroshot.py',
          '../_base_/default_runtime.py']
# the family's evaluation image transforms (the samples have no text)
test_dataloader = dict(dataset=dict(pipeline={{_base_.image_pipeline}}))
custom_hooks = [dict(type='ZeroShotClassifierHook', templates='openai_imagenet', on_val=False,
                     on_test=True)]
