# The "4M" image-text pre-training set (COCO, Visual Genome, Conceptual Captions 3M, SBU) in
# ALBEF's JSON annotation files, which hold the image paths: [{"image": path, "caption": str
# or [str]}]. Expected layout (not downloaded by vlp; a missing file fails with
# FileNotFoundError naming its path when the dataset is built):
#   data/albef/{coco,vg,cc3m_train,cc3m_val,sbu}.json   (+ the images they point to)
# ALBEF, ViLT and VLMo pre-train on it; pretrain_14m.py adds CC12M.
# The model's config supplies the pipeline: train_dataloader = dict(dataset=dict(pipeline=...)).
_base_ = ['./pretrain_loader.py']
train_dataloader = dict(
    dataset=dict(type='ImageTextJsonDataset', data_root='data/albef',
                 ann_file=['coco.json', 'vg.json', 'cc3m_train.json', 'cc3m_val.json',
                           'sbu.json'],
                 pipeline=[]))
