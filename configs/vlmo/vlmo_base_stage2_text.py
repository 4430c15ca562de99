# VLMo-Base stage 2 (Bao et al. 2022, Sec. 3.3): language-only pre-training with MLM on
# English Wikipedia and BookCorpus. The self-attention and the vision experts (trained in
# stage 1) are frozen; the text embeddings and the language experts train
# (vlp.models.algorithms.vlmo.STAGE_TRAINABLE['text']). Starts from the stage-1
# checkpoint; stage 3 (configs/vlmo/vlmo_base.py) starts from this one's.
# Data (not downloaded by vlp): plain-text files, one passage per line:
#   data/text/wikipedia.txt, data/text/bookcorpus.txt
#   data/bert-base-uncased/vocab.txt
#   work_dirs/vlmo_base_stage1_image/iter_200000.pth
# The paper gives no schedule for this stage: 200k steps of batch 1024 with the stage-3
# optimizer settings are our choice.
_base_ = ['./vlmo_base.py']
model = dict(stage='text')
load_from = 'work_dirs/vlmo_base_stage1_image/iter_200000.pth'
tokenizer = {{_base_.model.tokenizer}}
train_dataloader = dict(
    dataset=dict(_delete_=True, type='TextCorpusDataset', data_root='data/text',
                 ann_file=['wikipedia.txt', 'bookcorpus.txt'],
                 pipeline=[dict(type='Tokenize', tokenizer=tokenizer)]))
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = test_evaluator = test_cfg = None
