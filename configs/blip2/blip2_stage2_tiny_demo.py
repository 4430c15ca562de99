# BLIP-2 stage 2 tiny demo: generative vision-to-language learning (Sec. 3.3) on the
# embedded demo data on CPU. The frozen ViT 3 x 96 at 64 px, `ln_vision` and the 2-layer
# Q-Former (8 queries) of `blip2_stage1_tiny_demo.py`, initialised from its checkpoint; a
# linear projection to a tiny randomly initialised OPT (2 layers, width 96, built from a
# transformers config: no download) whose vocabulary is the demo words; LM loss on the
# caption only; the test split is captioned (beam search) and scored with BLEU / CIDEr.
#
#   python tools/train.py configs/blip2/blip2_stage1_tiny_demo.py      # stage 1 first
#   python tools/train.py configs/blip2/blip2_stage2_tiny_demo.py      # loads its epoch_12.pth
#
# (another stage-1 checkpoint: --cfg-options model.stage1.checkpoint=PATH; a missing file
# is an error).
#
# Documented departure: the LLM is TRAINED here (`freeze_llm=False`). BLIP-2 freezes a
# *pretrained* LLM, which already knows the language and only has to be prompted; a frozen
# *random* LLM cannot produce any caption whatever the soft prompts are, so at toy scale
# the LLM must be trained (or pretrained on the demo captions first). Set
# `model.freeze_llm=True` to see the paper's setting fail to learn. Figures in
# docs/models.md.
#
# The LLM tokenizer: `DemoLMTokenizer`, a transformers `PreTrainedTokenizerFast` over the
# demo words built in memory (word level, OPT's special-token layout: `</s>` is BOS and EOS).
_base_ = ['../_base_/models/blip2_opt.py', '../_base_/datasets/demo_retrieval.py',
          '../_base_/schedules/blip2_stage2_adamw_cosine_80k.py',
          '../_base_/default_runtime.py']
stage1_checkpoint = 'work_dirs/blip2_stage1_tiny_demo/epoch_12.pth'
lm_vocab_size = 51  # DemoLMTokenizer: <pad>, </s>, <unk> and the 48 demo words
lm_tokenizer = dict(type='DemoLMTokenizer', max_length=32)
image_size = 64
width = 96

model = dict(
    # the stage-1 demo's parts (same sizes, so its checkpoint loads strictly)
    vision=dict(model_name='vit_base_patch16_224', img_size=image_size, patch_size=8,
                embed_dim=width, depth=3, num_heads=4),
    vision_dtype=None,
    qformer=dict(num_query_tokens=8, encoder_width=width, vocab_size=54, hidden_size=width,
                 num_layers=2, num_heads=4, intermediate_size=4 * width,
                 max_position_embeddings=32, hidden_dropout=0.0, attention_dropout=0.0),
    # a tiny random OPT (8 soft prompts + BOS + 32 text tokens fit in 64 positions)
    llm=dict(_delete_=True,
             config=dict(model_type='opt', vocab_size=lm_vocab_size, hidden_size=width,
                         num_hidden_layers=2, ffn_dim=4 * width, num_attention_heads=4,
                         max_position_embeddings=64, word_embed_proj_dim=width,
                         pad_token_id=0, bos_token_id=1, eos_token_id=1, dropout=0.0,
                         attention_dropout=0.0)),
    freeze_llm=False,  # departure (see the header): a random LLM must learn the language
    stage1=dict(checkpoint=stage1_checkpoint),
    generation_cfg=dict(num_beams=3, min_length=5),
    tokenizer=dict(lm_tokenizer, _delete_=True))

# targets as BLIP2LM's loss expects them: caption tokens + EOS, no BOS, right padded
train_pipeline = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=lm_tokenizer)]
test_pipeline = train_pipeline
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
val_evaluator = dict(type='CaptionMetric')
test_evaluator = val_evaluator

max_epochs = 8
optim_wrapper = dict(
    optimizer=dict(lr=1e-3, fused=None),
    # a paramwise_cfg makes mmengine skip the frozen (requires_grad=False) parameters
    paramwise_cfg=dict(bypass_duplicate=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=40),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=64)
test_after_train = True  # tools/train.py reports the test split at the end
