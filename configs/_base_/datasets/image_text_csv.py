# Web-scale image-text pretraining data as a CSV/TSV of (image path, caption), the format
# open_clip reads (columns `filepath` and `title`, tab-separated). Expected layout (not
# downloaded by vlp; e.g. LAION-400M, CC12M or your own corpus converted with img2dataset):
#   data/pretrain/train.tsv     filepath<TAB>title
#   data/pretrain/images/...
# The model's config supplies the pipeline: train_dataloader = dict(dataset=dict(pipeline=...)).
_base_ = ['./pretrain_loader.py']
train_dataloader = dict(
    batch_size=128,
    dataset=dict(type='CsvImageTextDataset', data_root='data/pretrain',
                 csv_file='train.tsv', img_root='images', img_key='filepath',
                 caption_key='title', sep='\t', pipeline=[]))
