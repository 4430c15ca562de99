# BLIP's 14M pre-training set (COCO, Visual Genome, CC3M, CC12M, SBU) in BLIP's JSON
# annotation files ([{"image": path, "caption": str or [str]}]; CapFilt output files have
# the same format, see tools/capfilt.py), read as pretrain_4m.py reads ALBEF's. Expected
# layout (not downloaded by vlp):
#   data/blip/{coco_karpathy_train,vg_caption,cc3m,cc12m,sbu}.json
_base_ = ['./pretrain_4m.py']
train_dataloader = dict(
    batch_size=90,
    dataset=dict(data_root='data/blip',
                 ann_file=['coco_karpathy_train.json', 'vg_caption.json', 'cc3m.json',
                           'cc12m.json', 'sbu.json']))
