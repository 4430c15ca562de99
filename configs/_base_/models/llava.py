# LLaVA-1.5 (Liu et al. 2023, "Improved Baselines with Visual Instruction Tuning"): the
# penultimate-layer patch tokens of a frozen CLIP ViT-L/14 (336 px, 576 tokens, class token
# dropped) go through a trainable 2-layer MLP projector (`mlp2x_gelu`, 1024 -> 4096 ->
# 4096) into Vicuna-7B (v1.5, frozen in stage 1); no Q-Former; LM loss on the text only.
# Choices: the penultimate layer is timm's ViT-L/14 cut to 23 blocks without its final norm
# (the checkpoint's last block and norm are skipped: strict=False); the 'plain' template is
# BOS, image, caption, EOS.
# The model's inputs come with it: Vicuna's tokenizer (256 tokens), image size and
# transforms (resize to 336 x 336).
# Files (not downloaded by vlp): data/vicuna-7b/ (HF format, v1.5),
# data/clip-vit-l-14-336.bin (OpenAI CLIP or open_clip weights; timm's filter converts them).
image_size = 336
lm_path = 'data/vicuna-7b'
__tokenizer = dict(type='LMTokenizer', pretrained=lm_path, max_length=256)
__vicuna_7b = dict(model_type='llama', vocab_size=32000, hidden_size=4096,
                   intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                   max_position_embeddings=4096, rms_norm_eps=1e-5, pad_token_id=0,
                   bos_token_id=1, eos_token_id=2)
model = dict(
    type='BLIP2LM',
    # CLIP's image statistics
    data_preprocessor=dict(type='VLPDataPreprocessor', mean=[122.771, 116.746, 104.094],
                           std=[68.501, 66.632, 70.323]),
    vision=dict(type='TimmTower', model_name='vit_large_patch14_clip_336.openai',
                img_size=image_size, depth=23, final_norm=False,
                checkpoint='data/clip-vit-l-14-336.bin', strict=False),
    drop_vision_prefix=1,  # patch tokens only
    vision_dtype='bf16',
    ln_vision=False,
    qformer=None,
    use_queries=False,
    projector='mlp2x_gelu',
    # `config` (Vicuna-7B v1.5's architecture) is used only without `pretrained` (tests)
    llm=dict(pretrained=lm_path, torch_dtype='bf16', config=__vicuna_7b),
    freeze_llm=True,
    prompt='<ImageHere>',
    generation_cfg=dict(num_beams=1, max_new_tokens=128),
    tokenizer=__tokenizer)

train_pipeline = [
    dict(type='LoadImage'),
    dict(type='Resize', size=(image_size, image_size), interpolation='bicubic'),
    dict(type='ToTensor'),
    dict(type='Tokenize', tokenizer=__tokenizer),
]
