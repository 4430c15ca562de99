# BLIP-2 (Li et al. 2023) stage 2, generative pre-training with OPT-2.7B (Sec. 3.3): the
# stage-1 frozen EVA ViT-g/14 (fp16) -> LayerNorm -> Q-Former (32 queries, 768-d;
# configs/_base_/models/blip2.py) -> linear projection to OPT's 2560-d input embeddings,
# prepended as soft visual prompts to the text; frozen OPT (fp16), LM loss on the text only.
# Trainable: ln_vision, Q-Former, projection. Captioning: beam 5, 8 to 30 generated tokens
# (LAVIS caption_coco_opt).
# Choices: vision, ln_vision and Q-Former come from the stage-1 checkpoint
# (`stage1.checkpoint`). Texts end with OPT's EOS `</s>` (LAVIS ends them with "\n" and
# stops generation on it). Lengths of generation count generated tokens only.
# The model's inputs: OPT's tokenizer, the stage-1 image transforms (evaluation: image
# only, the model prompts the LLM itself).
# Files (not downloaded by vlp): data/opt-2.7b/ (HF format: config.json, weights, tokenizer).
_base_ = ['./blip2.py']
lm_path = 'data/opt-2.7b'
__tokenizer = dict(type='LMTokenizer', pretrained=lm_path, max_length=32)
__stage1 = _base_.model
model = dict(
    _delete_=True,
    type='BLIP2LM',
    data_preprocessor=__stage1.data_preprocessor,
    vision=dict(__stage1.vision, pretrained=False),
    vision_dtype='fp16',
    ln_vision=True,
    qformer=dict(type='QFormer', num_query_tokens=32, encoder_width=1408,
                 cross_attention_freq=2, vocab_size=30523),
    projector='linear',
    # `config` (OPT-2.7B's architecture) is used only without `pretrained` (tests)
    llm=dict(pretrained=lm_path, torch_dtype='fp16',
             config=dict(model_type='opt', vocab_size=50272, hidden_size=2560,
                         num_hidden_layers=32, ffn_dim=10240, num_attention_heads=32,
                         max_position_embeddings=2048, word_embed_proj_dim=2560,
                         pad_token_id=1, bos_token_id=2, eos_token_id=2)),
    freeze_llm=True,
    prompt='',  # pretraining; captioning fine-tuning uses 'a photo of'
    stage1=dict(checkpoint='work_dirs/blip2_stage1_base/iter_250000.pth'),
    generation_cfg=dict(num_beams=5, max_length=30, min_length=8),
    predict_mode='caption',
    tokenizer=__tokenizer)

# the stage-1 transforms with OPT's tokenizer; evaluation reads the image only
train_pipeline = [*_base_.train_pipeline[:-1], dict(type='Tokenize', tokenizer=__tokenizer)]
test_pipeline = [t for t in _base_.test_pipeline if t.type not in ('CleanCaption', 'Tokenize')]
