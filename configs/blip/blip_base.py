# BLIP (Li et al. 2022) pretraining, ViT-B/16 setting of the paper (Sec. 4.1): ViT-B/16
# image encoder initialised from ImageNet weights, a BERT-base text transformer (12
# layers, cross-attention to the image in every layer) initialised from bert-base-uncased
# and run as unimodal encoder ([CLS]), image-grounded encoder ([ENC], ITM) and
# image-grounded decoder ([DEC], LM; shares all but the self-attention with the encoder),
# ITC with momentum encoders (EMA 0.995), a 57,600-feature queue and momentum distillation
# (alpha 0.4), ITM with hard negatives, LM with label smoothing 0.1; 20 epochs, AdamW
# (weight decay 0.05), lr warmed up to 3e-4 then decayed by 0.85 per epoch, 224 px random
# crops, batch 2880 (e.g. 90 x 32 GPUs).
# The layers: the model (configs/_base_/models/blip.py), BLIP's 14M set (CapFilt output
# files have the same format, see tools/capfilt.py), COCO Karpathy test for the retrieval
# evaluation, the schedule; each names the files it reads.
_base_ = ['../_base_/models/blip.py', '../_base_/datasets/blip_pretrain_14m.py',
          '../_base_/datasets/coco_retrieval.py', '../_base_/schedules/blip_adamw_step_20e.py',
          '../_base_/default_runtime.py']
train_dataloader = dict(dataset=dict(pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.test_pipeline}}))
# ITC ranking, then the top-256 candidates of every query re-scored by ITM (+ ITC)
val_evaluator = dict(type='ITMRetrievalMetric', k=256, batch_size=128)
test_evaluator = val_evaluator
val_cfg = dict(type='RetrievalValLoop')
test_cfg = dict(type='RetrievalTestLoop')
