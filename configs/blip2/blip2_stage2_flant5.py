# BLIP-2 (Li et al. 2023) stage 2 with FlanT5-XL, an encoder-decoder LLM (Sec. 3.3, Fig. 3
# bottom): the projected Q-Former outputs (32 x 2048) and the prompt go into T5's encoder,
# the text is the decoder's target (prefix language modelling: in pretraining each text is
# split at a random point into a prefix, appended to the visual prompts, and a suffix to
# generate; here the prefix is the fixed `prompt`). Frozen FlanT5 in bf16, frozen ViT in
# fp16; batch 1520, otherwise the schedule of blip2_stage2_opt.py.
# Files (not downloaded): data/flan-t5-xl/ (HF format), the stage-1 checkpoint, data as OPT.
_base_ = ['./blip2_stage2_opt.py']
lm_path = 'data/flan-t5-xl'
tokenizer = dict(type='LMTokenizer', pretrained=lm_path, max_length=32)
model = dict(
    # `config` (FlanT5-XL's architecture) is used only without `pretrained` (tests)
    llm=dict(_delete_=True, pretrained=lm_path, torch_dtype='bf16',
             config=dict(model_type='t5', vocab_size=32128, d_model=2048, d_kv=64,
                         d_ff=5120, num_layers=24, num_decoder_layers=24, num_heads=32,
                         feed_forward_proj='gated-gelu', tie_word_embeddings=False,
                         pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)),
    tokenizer=tokenizer)
train_dataloader = dict(
    batch_size=95,  # x 16 GPUs = 1520
    # the stage-2 transforms with T5's tokenizer
    dataset=dict(pipeline=[*_base_.train_pipeline[:-1],
                           dict(type='Tokenize', tokenizer=tokenizer)]))
auto_scale_lr = dict(base_batch_size=1520, enable=False)
