# CoCa tiny demo: the CoCa architecture and objectives (ViT image encoder; a contrastive
# attentional pooler with 1 query and a captioning pooler with N queries in parallel; a
# causal unimodal text decoder with an appended [CLS] giving the text embedding; a
# multimodal decoder with cross-attention to the captioning tokens; loss
# 1 * ITC + 2 * captioning) at toy size, trained on the embedded demo data on CPU in
# minutes. The val/test splits are captioned (beam search) and scored with BLEU / CIDEr.
# `python tools/train.py configs/coca/coca_tiny_demo.py` (6.5 min on 2 CPU cores); figures
# in docs/models.md.
# Differences from coca_base.py besides the sizes: AdamW instead of Adafactor, 16
# captioning queries instead of 256, the demo's word-level CLIP-style tokenizer.
_base_ = ['../_base_/models/coca.py', '../_base_/datasets/demo_retrieval.py',
          '../_base_/default_runtime.py']
vocab_size = 52  # DemoTokenizer(style='clip'): <pad>, <unk>, 48 words, SOT, EOT
context_length = 32
image_size = 64
width = 96

# the paper's model at toy size
model = dict(
    vision=dict(img_size=image_size, patch_size=8, embed_dim=width, depth=3, num_heads=4),
    text=dict(vocab_size=vocab_size, context_length=context_length, width=width, layers=2,
              heads=4),
    decoder=dict(vocab_size=vocab_size, width=width, layers=2, heads=4),
    con_pooler=dict(dim=width, context_dim=width, num_heads=4),
    cap_pooler=dict(dim=width, context_dim=width, num_heads=4, n_queries=16),
    itc=dict(local_loss=False),
    predict_mode='caption',
    generation_cfg=dict(num_beams=3),
    tokenizer=dict(_base_.demo_tokenizer, _delete_=True))

# the demo data's own pipelines (ToTensor, Tokenize with the CLIP-style demo tokenizer)
train_pipeline = test_pipeline = {{_base_.train_dataloader.dataset.pipeline}}
val_evaluator = dict(type='CaptionMetric')
test_evaluator = val_evaluator

max_epochs = 15
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
                       custom_keys={'query': dict(decay_mult=0.0),
                                    'positional_embedding': dict(decay_mult=0.0),
                                    'pos_embed': dict(decay_mult=0.0),
                                    'cls_token': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
auto_scale_lr = dict(base_batch_size=128, enable=False)
test_after_train = True  # tools/train.py reports the test split at the end
