# CapFilt as LAION-scale recaptioning does it: a captioner samples many candidate captions
# per image (40, nucleus sampling), a CLIP-style dual encoder ranks them and keeps the top
# 5, a second, stronger scorer (BLIP's ITM head) keeps the best one; it joins the alt text,
# which is kept as it was (output.web='all'). The same tool as BLIP's rule
# (capfilt_blip_rule.py): only the stages differ. docs/capfilt.md.
#   python tools/capfilt.py configs/capfilt/capfilt_laion_recipe.py \
#       --input 'data/laion/{00000..99999}.tar' --output data/laion_recap
# Captioners with generate: BLIP, CoCa (configs/coca/coca_base.py), BLIP-2's LM stage
# (configs/blip2/blip2_stage2_opt.py); rankers: any model with encode_image / encode_text
# (CLIP, ALIGN, open_clip converted with tools/convert/open_clip_to_vlp.py). The models
# as in capfilt_blip_rule.py, and the ranker:
#   tools/convert/hf_clip_to_vlp.py openai/clip-vit-base-patch16 checkpoints/clip_vit_b16
default_scope = 'vlp'
_captioner = dict(config='checkpoints/blip_caption_base/config.py',
                  checkpoint='checkpoints/blip_caption_base/model.pth')
_ranker = dict(config='checkpoints/clip_vit_b16/config.py',
               checkpoint='checkpoints/clip_vit_b16/model.pth')
_scorer = dict(config='checkpoints/blip_itm_base_coco/config.py',
               checkpoint='checkpoints/blip_itm_base_coco/model.pth')

input = dict(path='data/laion/{00000..99999}.tar', caption_key='caption')
output = dict(path='data/laion_recap', web='all', samples='per_caption', scores=True,
              keep_empty=False)
stages = [
    dict(type='Captioner', model=_captioner, num_captions=40, dedupe=True,
         decoding=dict(do_sample=True, top_p=0.9, top_k=50, repetition_penalty=1.1,
                       max_length=30, min_length=5)),
    # drop degenerate samples before the models score them
    dict(type='CaptionRules', min_words=3, dedupe=True, apply_to='synthetic'),
    dict(type='DualEncoderRanker', model=_ranker, top_k=5, apply_to='synthetic',
         text_batch_size=1024),
    dict(type='ITMFilter', model=_scorer, threshold=None, top_k=1, apply_to='synthetic'),
]
runtime = dict(batch_size=32, num_workers=8, seed=0, device='auto', amp='bf16',
               progress_interval=30.0)
