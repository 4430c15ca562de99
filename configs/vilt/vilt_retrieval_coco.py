# ViLT-B/32 (Kim et al. 2021) image-text retrieval fine-tuning on COCO (Karpathy 113k/5k/5k) (Sec. 4.3,
# Tables 3-4): ITM only (the pre-training MLM and WPA are dropped: mlm_head=None, wpa=None);
# the paper samples 15 random negative texts per positive pair; vlp's ViLT draws one
# negative image per pair (itm_neg_prob 0.5), a departure. AdamW lr 1e-4, weight decay
# 0.01, 10% linear warm-up then linear decay, 10 epochs, batch 256 (the paper; we could not
# confirm the batch size there), RandAugment is added in fine-tuning by the paper (not
# added here: vlp's pipeline keeps the pre-training transforms).
# EVALUATION IS EXPENSIVE: ViLT has no ITC stage, so ITMRetrievalMetric scores EVERY
# image-text pair with the single-stream transformer (5k x 25k = 125M pairs per direction on COCO);
# run it on many GPUs.
# load_from: the pre-training run of configs/vilt/vilt_base.py, or the official ViLT
# weights converted with tools/convert/hf_vilt_to_vlp.py.
_base_ = ['../_base_/models/vilt.py', '../_base_/datasets/coco_retrieval_finetune.py',
          '../_base_/schedules/vilt_adamw_linear_10e.py', '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=32, dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
model = dict(mlm_head=None, wpa=None)
load_from = 'work_dirs/vilt_base/iter_100000.pth'  # or tools/convert/hf_vilt_to_vlp.py output

# k >= the gallery: every pair scored by ITM (the ITC stage is a constant in ViLT.predict)
val_evaluator = dict(type='ITMRetrievalMetric', k=10 ** 9, batch_size=256)
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

default_hooks = dict(checkpoint=dict(max_keep_ckpts=1, save_best='retrieval/r_mean', rule='greater'))
