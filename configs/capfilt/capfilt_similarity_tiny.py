# CapFilt at toy size on CPU, the recipe of tools/capfilt_demo.py (docs/capfilt.md, "the
# claim in miniature"): a BLIP captioning model samples one caption per image; a CLIP
# similarity filter keeps a web or synthetic caption whose cosine is >= its threshold. Both
# models are bootstrapped by the demo from a run on noisy data (fine-tuned on a small clean
# set; the threshold calibrated on held-out clean images), which writes the files named
# here (seed 0, default sizes) and runs this config with its own paths. After the demo:
#   python tools/capfilt.py configs/capfilt/capfilt_similarity_tiny.py \
#       --cfg-options stages.1.threshold=<the seed's calibrated threshold>
default_scope = 'vlp'
_demo = 'work_dirs/capfilt_demo/seed0'
input = dict(path=f'{_demo}/web_noisy.json', img_root=f'{_demo}/images')
output = dict(path=f'{_demo}/web_capfilt_cli.json', scores=True, web='kept',
              keep_empty=False)
stages = [
    dict(type='Captioner',
         model=dict(config=f'{_demo}/captioner.py',
                    checkpoint=f'{_demo}/captioner/iter_60.pth'),
         num_captions=1,
         decoding=dict(do_sample=True, top_p=0.9, top_k=50, repetition_penalty=1.1,
                       max_length=30, min_length=5)),
    dict(type='SimilarityFilter',
         model=dict(config=f'{_demo}/filter.py', checkpoint=f'{_demo}/filter/iter_60.pth'),
         threshold=0.5, apply_to='all'),
]
runtime = dict(batch_size=64, num_workers=2, seed=0, device='cpu', progress_interval=10.0)
