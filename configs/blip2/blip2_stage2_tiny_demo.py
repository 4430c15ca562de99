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
# The LLM tokenizer: a transformers `PreTrainedTokenizerFast` over the demo words
# (word level, OPT's special-token layout: `</s>` is BOS and EOS), built in-process when
# the config is read and saved once under the system temp directory, so that
# `LMTokenizer(pretrained=...)` (local files only) loads it in every process.
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/demo_retrieval.py',
]


def _demo_lm_tokenizer():
    """Directory of the demo-word OPT-style tokenizer (built and saved on first use) and
    its vocabulary size."""
    import hashlib
    import os
    import os.path as osp
    import shutil
    import tempfile
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from vlp.datasets.tokenizers import _demo_words
    specials = ['<pad>', '</s>', '<unk>']
    tokens = specials + list(_demo_words())
    key = hashlib.sha1(' '.join(tokens).encode()).hexdigest()[:12]
    path = osp.join(tempfile.gettempdir(), f'vlp_demo_opt_tokenizer_{key}')
    if not osp.isfile(osp.join(path, 'tokenizer_config.json')):
        from transformers import PreTrainedTokenizerFast
        tk = Tokenizer(WordLevel({t: i for i, t in enumerate(tokens)}, unk_token='<unk>'))
        tk.normalizer = normalizers.Sequence([normalizers.Replace(Regex(r'\s+'), ' '),
                                              normalizers.Lowercase()])
        tk.pre_tokenizer = pre_tokenizers.Whitespace()
        tk.add_special_tokens(specials)
        tk.post_processor = processors.TemplateProcessing(  # OPT: BOS (= </s>) first
            single='</s> $A', special_tokens=[('</s>', 1)])
        hf = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token='<pad>',
                                     eos_token='</s>', bos_token='</s>', unk_token='<unk>')
        tmp = f'{path}.{os.getpid()}.tmp'
        hf.save_pretrained(tmp)
        try:
            os.replace(tmp, path)  # atomic: several processes may build it at once
        except OSError:  # another process was first
            shutil.rmtree(tmp, ignore_errors=True)
    return path, len(tokens)


lm_tokenizer_dir, lm_vocab_size = _demo_lm_tokenizer()
stage1_checkpoint = 'work_dirs/blip2_stage1_tiny_demo/epoch_12.pth'
lm_tokenizer = dict(type='LMTokenizer', pretrained=lm_tokenizer_dir, max_length=32)
width = 96

model = dict(
    type='BLIP2LM',
    data_preprocessor=dict(type='VLPDataPreprocessor'),
    # the stage-1 demo's parts (same sizes, so its checkpoint loads strictly)
    vision=dict(type='TimmTower', model_name='vit_base_patch16_224', img_size=64,
                patch_size=8, embed_dim=width, depth=3, num_heads=4),
    qformer=dict(type='QFormer', num_query_tokens=8, encoder_width=width,
                 cross_attention_freq=2, vocab_size=54, hidden_size=width,
                 num_layers=2, num_heads=4, intermediate_size=4 * width,
                 max_position_embeddings=32, hidden_dropout=0.0, attention_dropout=0.0),
    # a tiny random OPT (8 soft prompts + BOS + 32 text tokens fit in 64 positions)
    llm=dict(config=dict(model_type='opt', vocab_size=lm_vocab_size, hidden_size=width,
                         num_hidden_layers=2, ffn_dim=4 * width, num_attention_heads=4,
                         max_position_embeddings=64, word_embed_proj_dim=width,
                         pad_token_id=0, bos_token_id=1, eos_token_id=1, dropout=0.0,
                         attention_dropout=0.0)),
    projector='linear',
    freeze_llm=False,  # departure (see the header): a random LLM must learn the language
    prompt='',  # pre-training: [soft prompts; BOS; caption EOS]
    stage1=dict(checkpoint=stage1_checkpoint),
    generation_cfg=dict(num_beams=3, max_length=30, min_length=5),
    tokenizer=lm_tokenizer)

# targets as BLIP2LM's loss expects them: caption tokens + EOS, no BOS, right padded
pipeline = [dict(type='ToTensor'), dict(type='Tokenize', tokenizer=lm_tokenizer)]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=pipeline))
val_dataloader = dict(dataset=dict(pipeline=pipeline))
test_dataloader = dict(dataset=dict(pipeline=pipeline))
val_evaluator = dict(type='CaptionMetric')
test_evaluator = val_evaluator
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

max_epochs = 8
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.98), weight_decay=0.05),
    # a paramwise_cfg makes mmengine skip the frozen (requires_grad=False) parameters
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       bypass_duplicate=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=40),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=64, enable=False)
test_after_train = True  # tools/train.py reports the test split at the end
