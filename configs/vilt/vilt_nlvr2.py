# ViLT-B/32 (Kim et al. 2021) fine-tuned on NLVR2 (Sec. 4.2 / Table 2; recipe from the
# official repo, dandelin/ViLT vilt/config.py `task_finetune_nlvr2_randaug`):
# - the "pair" method (Sec. 4.2): each image is fused with the statement on its own
#   (VLClassifier num_images=2, pair_encoding='separate'); the two pooled first tokens are
#   concatenated into ViLT's `nlvr2_classifier`: Linear(1536, 1536) -> LayerNorm -> GELU ->
#   Linear(1536, 2); cross-entropy, no label smoothing;
# - AdamW lr 1e-4, betas (0.9, 0.98), eps 1e-8, weight decay 0.01 (none on biases / norms),
#   no head lr multiplier (`lr_mult = 1`), 10% linear warm-up then linear decay to 0, 10
#   epochs, batch 128 (e.g. 8 GPUs x 16);
# - images 384 (ViLT: shorter side 384, longer <= 640; vlp: 384 x 384), RandAugment in the
#   `_randaug` variant (vlp's default op set: ViLT leaves out colour inversion and cutout).
# Simplification (vlp/models/algorithms/downstream.py): ViLT gives the second image a third
# token-type embedding; here both images use the image type.
# pretrained: the pre-training run of configs/vilt/vilt_base.py, or the official ViLT
# weights converted with tools/convert/hf_vilt_to_vlp.py; ITM / MLM / WPA dropped.
# Splits: train / dev (validation) / test-P (test1), ClassificationAccuracy.
_base_ = ['../_base_/models/vilt_classifier.py', '../_base_/datasets/nlvr2.py',
          '../_base_/schedules/vilt_adamw_linear_10e.py', '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=16,  # x 8 = 128
                        dataset=dict(image_pipeline={{_base_.finetune_image_pipeline}},
                                     pipeline={{_base_.text_pipeline}}))
# evaluation: the family's image and text transforms
val_dataloader = dict(dataset=dict(image_pipeline={{_base_.image_pipeline}},
                                   pipeline={{_base_.text_pipeline}}))
test_dataloader = val_dataloader  # the same transforms on test-P
model = dict(head=dict(num_classes=2, num_inputs=2), num_images=2,
             pair_encoding='separate', label_smoothing=0.0)

default_hooks = dict(checkpoint=dict(max_keep_ckpts=1,
                                     save_best='nlvr2_dev/accuracy', rule='greater'))
auto_scale_lr = dict(base_batch_size=128)
