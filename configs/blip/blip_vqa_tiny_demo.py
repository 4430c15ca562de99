# BLIP VQA tiny demo: generative VQA (BLIP Sec. 5.3 / Fig. 5): the question encoded with
# cross-attention to the image ([ENC]), an answer decoder ([DEC]) cross-attending to the
# question states, trained with the LM loss of every unique answer weighted by its share of
# the ten annotators; answers ranked over the candidate list (first-token top-k, then the
# full likelihood: BLIP's and ALBEF's VQA evaluation). Fine-tuned from the BLIP pre-training
# demo (vision tower, image-grounded text encoder -> question encoder, captioning decoder ->
# answer decoder, as BLIP initialises its VQA model) on the embedded demo VQA data:
#   python tools/train.py configs/blip/blip_tiny_demo.py      # its work dir: `pretrained`
#   python tools/train.py configs/blip/blip_vqa_tiny_demo.py
# The caption vocabulary grows to the task one ([DEC] / [ENC] keep their ids). Figures in
# docs/tasks.md.
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/demo_vqa.py']

demo_tokenizer = dict(type='DemoTokenizer', style='bert', vocabulary='tasks', max_length=24,
                      additional_special_tokens=['[DEC]', '[ENC]'])
vocab_size = 117  # 115 'tasks' tokens + [DEC] + [ENC]
width = 96
# the sizes of configs/blip/blip_tiny_demo.py (its checkpoint loads), the task vocabulary
bert = dict(type='BertEncoder', vocab_size=vocab_size, hidden_size=width, num_layers=2,
            num_heads=4, intermediate_size=4 * width, max_position_embeddings=32,
            type_vocab_size=0, hidden_dropout=0.0, attention_dropout=0.0,
            cross_attention_layers='all')

model = dict(
    type='BLIPVQA',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    vision=dict(type='TimmTower', model_name='vit_base_patch16_224',
                img_size={{_base_.image_size}}, patch_size=8, embed_dim=width, depth=3,
                num_heads=4),
    text=bert,  # the question encoder
    # the answer decoder: the question encoder's config, causal, cross-attending to the
    # question states (BLIPVQA's default)
    lm_head=dict(type='MLMHead', hidden_size=width, vocab_size=vocab_size),
    inference='rank',
    answer_list=dict(type='DemoVQA'),  # 25 candidates
    k_test=25,
    tokenizer=demo_tokenizer,
    pretrained='work_dirs/blip_tiny_demo')

pipeline = [dict(type='ToTensor'),
            dict(type='Tokenize', tokenizer=demo_tokenizer, key='question')]
train_dataloader = dict(dataset=dict(pipeline=pipeline))
test_dataloader = dict(dataset=dict(pipeline=pipeline))

max_epochs = 8
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.02),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=64, enable=False)
