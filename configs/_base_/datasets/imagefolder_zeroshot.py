# Zero-shot image classification (CLIP's protocol, Radford et al. 2021, Sec. 3.1) on an
# image folder in ImageNet's layout: one sub-folder per class, the label being the index of
# the folder among the sorted folder names. Default: the ImageNet-1k validation set
# (50,000 images, 1,000 classes; not downloaded by vlp), with ILSVRC2012_img_val.tar
# extracted and sorted into its class folders (e.g. with the usual valprep.sh):
#   data/imagenet/val/n01440764/ILSVRC2012_val_00000293.JPEG ...
#   data/imagenet/classnames.json   {"n01440764": "tench", ...}: the human-readable names the
#       prompts use (CLIP's curated ImageNet class names, from its notebook
#       "Prompt_Engineering_for_ImageNet"; a text file with one name per line in sorted
#       folder order works too; without it the prompts would read the WordNet ids)
# Any other folder dataset: test_dataloader.dataset.img_dir / class_names.
# Test only: ZeroShotClassifierHook (in the model's config) encodes every class name in the
# prompt templates before the test epoch and ZeroShotAccuracy reports top-1 / top-5.
# The model's config supplies the pipeline (its image size and crop; no Tokenize: the
# samples have no text): test_dataloader = dict(dataset=dict(pipeline=...)).
test_dataloader = dict(batch_size=64, num_workers=8, persistent_workers=True,
                       sampler=dict(type='DefaultSampler', shuffle=False),
                       collate_fn=dict(type='vlp_collate'),
                       dataset=dict(type='ImageFolderClassification', data_root='data/imagenet',
                                    img_dir='val', class_names='data/imagenet/classnames.json',
                                    pipeline=[]))
test_evaluator = dict(type='ZeroShotAccuracy', topk=(1, 5))
test_cfg = dict(type='TestLoop')
