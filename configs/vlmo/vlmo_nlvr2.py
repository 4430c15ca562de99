# VLMo-Base (Bao et al. 2022) fine-tuned on NLVR2 (Sec. 4.1 / Table 1; recipe from the
# official repo, microsoft/unilm vlmo/vlmo/config.py `task_finetune_nlvr2_base`):
# - ViLT's "pair" method: each image fused with the statement on its own (VLClassifier
#   num_images=2, pair_encoding='separate'); each fused text [CLS] through VLMo's shared
#   Pooler (dense + tanh, INITIALISED FROM THE PRE-TRAINED ITM POOLER:
#   configs/_base_/models/vlmo_classifier.py), the two pooled states concatenated into
#   `nlvr2_classifier`: Linear(1536, 1536) -> LayerNorm -> GELU -> Linear(1536, 2);
#   cross-entropy, no label smoothing;
# - AdamW lr 5e-5, betas (0.9, 0.98), eps 1e-8, weight decay 0.01 (none on biases / norms,
#   layer scale, position bias), no head lr multiplier (`lr_mult = 1`), 10% linear warm-up
#   then linear decay to 0, 10 epochs, batch 128 (e.g. 8 GPUs x 16), stochastic depth 0.1,
#   RandAugment (`square_transform_randaug`), 224 x 224 images (the 384 px variant,
#   `..._image384`, is not reproduced: vlp does not resample the position bias).
# pretrained: the stage-3 run of configs/vlmo/vlmo_base.py, or the official VLMo weights
# converted with tools/convert/vlmo_to_vlp.py. Dropped: ITC projections and temperature,
# ITM classifier (its pooler moved into the head first), MLM head, MIM head and target.
# Splits: train / dev (validation) / test-P (test1), ClassificationAccuracy.
_base_ = ['../_base_/models/vlmo_classifier.py', '../_base_/datasets/nlvr2.py',
          '../_base_/schedules/vlmo_adamw_linear_10e.py', '../_base_/default_runtime.py']
text_pipeline = [dict(type='Tokenize', tokenizer={{_base_.model.model.tokenizer}})]  # no cleaning
train_dataloader = dict(batch_size=16,  # x 8 = 128
                        dataset=dict(image_pipeline={{_base_.finetune_image_pipeline}},
                                     pipeline=text_pipeline))
# evaluation: the family's image transforms
val_dataloader = dict(dataset=dict(image_pipeline={{_base_.image_pipeline}},
                                   pipeline=text_pipeline))
test_dataloader = val_dataloader  # the same transforms on test-P
model = dict(head=dict(num_classes=2, num_inputs=2), num_images=2,
             pair_encoding='separate', label_smoothing=0.0)

optim_wrapper = dict(optimizer=dict(lr=5e-5, weight_decay=0.01))
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1,
                                     save_best='nlvr2_dev/accuracy', rule='greater'))
