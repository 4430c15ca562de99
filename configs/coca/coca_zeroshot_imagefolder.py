# CoCa (Yu et al. 2022) zero-shot image classification (Sec. 4.2.1, "zero-shot
# transfer", ImageNet): the attentional-pooled image embedding against the text
# embeddings of the class names in prompt templates (the unimodal text decoder's [CLS]),
# top-1 / top-5 accuracy (ZeroShotAccuracy). Prompt ensemble: OpenAI's 80 ImageNet
# templates averaged per class (CoCa follows CLIP's protocol; UNCONFIRMED which template
# set the paper used, we could not check its wording here).
# Default data: the ImageNet-1k validation set in class folders with CLIP's curated class
# names (configs/_base_/datasets/imagefolder_zeroshot.py); images as coca_base.py's test
# transforms (resize and centre crop to the pre-training resolution).
# TEST ONLY, no training: give the weights on the command line,
#   python tools/test.py configs/coca/coca_zeroshot_imagefolder.py CHECKPOINT
# (tools/test.py sets load_from to CHECKPOINT), CHECKPOINT being a checkpoint of
# configs/coca/coca_base.py or open_clip's CoCa weights converted with
# tools/convert/open_clip_coca_to_vlp.py.
# ZeroShotClassifierHook sets the class embeddings (model.set_zero_shot_classifier); CoCa's
# predict in 'retrieval' mode then returns `logits`.
_base_ = ['../_base_/models/coca.py', '../_base_/datasets/imagefolder_zeroshot.py',
          '../_base_/default_runtime.py']
# the family's evaluation image transforms (the samples have no text)
test_dataloader = dict(dataset=dict(pipeline={{_base_.image_pipeline}}))
custom_hooks = [dict(type='ZeroShotClassifierHook', templates='openai_imagenet', on_val=False,
                     on_test=True)]
