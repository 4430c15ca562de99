# BLIP-2's 129M pre-training pairs (COCO, Visual Genome, CC3M, CC12M, SBU and LAION-115M with
# CapFilt captions) as JSON files ([{"image": path, "caption": str or [str]}]), read as
# pretrain_4m.py reads ALBEF's. Expected layout (not downloaded by vlp):
#   data/blip2/{coco_karpathy_train,vg_caption,cc3m,cc12m,sbu,laion115m_capfilt}.json
_base_ = ['./pretrain_4m.py']
train_dataloader = dict(
    batch_size=105,
    dataset=dict(data_root='data/blip2',
                 ann_file=['coco_karpathy_train.json', 'vg_caption.json', 'cc3m.json',
                           'cc12m.json', 'sbu.json', 'laion115m_capfilt.json']))
