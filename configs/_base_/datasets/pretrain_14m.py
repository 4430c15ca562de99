# The "14M" image-text pre-training set: pretrain_4m.py + Conceptual 12M, in ALBEF's JSON
# annotation files: data/albef/{coco,vg,cc3m_train,cc3m_val,sbu,cc12m}.json (not downloaded
# by vlp). ALBEF's 14M setting; BEiT-3's 21M image-text pairs are these corpora.
_base_ = ['./pretrain_4m.py']
train_dataloader = dict(dataset=dict(ann_file=['coco.json', 'vg.json', 'cc3m_train.json',
                                               'cc3m_val.json', 'sbu.json', 'cc12m.json']))
