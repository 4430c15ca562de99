# VLMo-Base (Bao et al. 2022) image-text retrieval fine-tuning on COCO (Karpathy 113k/5k/5k) (Sec. 3.3 /
# 4.2, Table 2): VLMo fine-tunes retrieval as a DUAL ENCODER with the image-text
# contrastive loss only (the image pass through the V-FFN experts, the text pass through
# the L-FFN experts, [CLS] projections, InfoNCE over the batch of every rank); no ITM, no
# MLM (itm_head / mlm_head / the MIM parts set to None), ranked by ITC (RetrievalMetric).
# UNCONFIRMED (the paper's appendix lists the fine-tuning hyper-parameters; we could not
# check them here): lr 2e-05 with 10% linear warm-up then linear decay, 10 epochs,
# batch 3072 (e.g. 96 x 32 GPUs), AdamW (0.9, 0.98), weight decay 0.01.
# DEPARTURE: VLMo fine-tunes retrieval at 384 px; vlp's load_from does not resample the
# relative position bias / position embeddings, so this keeps vlmo_base.py's 224 px.
# load_from: the stage-3 run of configs/vlmo/vlmo_base.py, or an official VLMo checkpoint
# converted with tools/convert/vlmo_to_vlp.py.
_base_ = ['../_base_/models/vlmo.py', '../_base_/datasets/coco_retrieval_finetune.py',
          '../_base_/schedules/vlmo_adamw_linear_10e.py', '../_base_/default_runtime.py']
train_dataloader = dict(batch_size=96, dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
model = dict(itm_head=None, mlm_head=None, mim_head=None, visual_tokenizer=None)
load_from = 'work_dirs/vlmo_base/iter_200000.pth'  # or tools/convert/vlmo_to_vlp.py output
# ITC ranking (dual encoder): coco_retrieval.py's RetrievalMetric
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')

optim_wrapper = dict(optimizer=dict(lr=2e-05))
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1, save_best='retrieval/r_mean', rule='greater'))
auto_scale_lr = dict(base_batch_size=3072, enable=False)
