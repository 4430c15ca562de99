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
_base_ = ['../_base_/models/blip_vqa.py', '../_base_/datasets/demo_vqa.py',
          '../_base_/schedules/demo_adamw_cosine_8e.py', '../_base_/default_runtime.py']
demo_tokenizer = dict(type='DemoTokenizer', style='bert', vocabulary='tasks', max_length=24,
                      additional_special_tokens=['[DEC]', '[ENC]'])
image_size = 64
vocab_size = 117  # 115 'tasks' tokens + [DEC] + [ENC]
width = 96

# the sizes of configs/blip/blip_tiny_demo.py (its checkpoint loads), the task vocabulary
model = dict(
    vision=dict(model_name='vit_base_patch16_224', img_size=image_size, patch_size=8,
                embed_dim=width, depth=3, num_heads=4, drop_path_rate=None),
    text=dict(vocab_size=vocab_size, hidden_size=width, num_layers=2, num_heads=4,
              intermediate_size=4 * width, max_position_embeddings=32, hidden_dropout=0.0,
              attention_dropout=0.0),
    lm_head=dict(hidden_size=width, vocab_size=vocab_size),
    label_smoothing=0.0,
    answer_list=dict(_delete_=True, type='DemoVQA'),  # the demo's 25 candidates
    k_test=25,
    generation_cfg=None,
    tokenizer=dict(demo_tokenizer, _delete_=True),
    pretrained='work_dirs/blip_tiny_demo')

pipeline = [dict(type='ToTensor'),
            dict(type='Tokenize', tokenizer=demo_tokenizer, key='question')]
train_dataloader = dict(dataset=dict(pipeline=pipeline))
test_dataloader = dict(dataset=dict(pipeline=pipeline))

# bypass_duplicate: the answer decoder's LM head is tied to its word embeddings
optim_wrapper = dict(paramwise_cfg=dict(bypass_duplicate=True))
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval={{_base_.max_epochs}}, max_keep_ckpts=1))
