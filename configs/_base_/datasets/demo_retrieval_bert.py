# The embedded demo data of demo_retrieval.py, tokenised BERT-style (DemoTokenizer
# style='bert': 53 tokens) for models with a BERT-style text tower.
_base_ = ['./demo_retrieval.py']
demo_tokenizer = dict(type='DemoTokenizer', style='bert', max_length=32)
__pipeline = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=demo_tokenizer)]
train_dataloader = dict(dataset=dict(pipeline=__pipeline))
val_dataloader = dict(dataset=dict(pipeline=__pipeline))
test_dataloader = dict(dataset=dict(pipeline=__pipeline))
