# CapFilt with BLIP's rule (Li et al. 2022, Sec. 3.3): for each web image, a captioner
# (BLIP fine-tuned for captioning on COCO) samples one synthetic caption by nucleus sampling
# (top-p 0.9); a filter (BLIP fine-tuned for retrieval on COCO) keeps a web or synthetic
# caption when its ITM match probability is >= 0.5. Webdataset shards in, shards out (one
# per input shard, every other member kept); resumable; N processes with
# tools/dist_capfilt.sh. docs/capfilt.md.
#   python tools/capfilt.py configs/capfilt/capfilt_blip_rule.py \
#       --input 'data/cc3m/{00000..00331}.tar' --output data/cc3m_capfilt
# The models: BLIP's released captioning and retrieval (ITM) checkpoints, converted
# (docs/convert.md; each writes config.py + model.pth), from the HF model folders:
#   tools/convert/hf_blip_to_vlp.py blip-image-captioning-base checkpoints/blip_caption_base
#   tools/convert/hf_blip_to_vlp.py blip-itm-base-coco checkpoints/blip_itm_base_coco
default_scope = 'vlp'
_captioner = dict(config='checkpoints/blip_caption_base/config.py',
                  checkpoint='checkpoints/blip_caption_base/model.pth')
_filter = dict(config='checkpoints/blip_itm_base_coco/config.py',
               checkpoint='checkpoints/blip_itm_base_coco/model.pth')

input = dict(path='data/cc3m/{00000..00331}.tar', caption_key='caption')
output = dict(
    path='data/cc3m_capfilt',
    web='kept',            # the web captions the filter kept, then the kept synthetic ones
    samples='per_caption',  # a sample per kept caption (shard readers take one caption)
    scores=True,           # every candidate with its ITM score in the .json member
    keep_empty=False)      # an image with no caption left is dropped
stages = [
    # BLIP's sampling: top-p 0.9, top-k 50, repetition penalty 1.1, length 5-30 with the
    # prompt 'a picture of ' (the model's own)
    dict(type='Captioner', model=_captioner, num_captions=1,
         decoding=dict(do_sample=True, top_p=0.9, top_k=50, repetition_penalty=1.1,
                       max_length=30, min_length=5)),
    dict(type='ITMFilter', model=_filter, threshold=0.5, apply_to='all'),
]
runtime = dict(batch_size=64, num_workers=8, seed=0, device='auto', amp='bf16',
               progress_interval=30.0)
