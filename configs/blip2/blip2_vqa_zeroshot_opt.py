# BLIP-2 (Li et al. 2023) zero-shot VQA (Sec. 4.1, Table 2) with the stage-2 OPT-2.7B model:
# open-ended answering, the frozen LLM prompted with "Question: {} Short answer:" after the
# visual prompts (BLIP2LM(predict_mode='vqa')); beam search 5, at most 10 generated tokens,
# length penalty -1 (LAVIS's VQA evaluation settings, favouring short answers); scored with
# the official VQA accuracy on VQAv2 val2014 (VQAAccuracy; the test split writes the
# test-dev submission file). TEST ONLY, no training:
#   python tools/test.py configs/blip2/blip2_vqa_zeroshot_opt.py CHECKPOINT
# with a checkpoint of configs/blip2/blip2_stage2_opt.py (or the official weights converted
# with tools/convert/hf_blip2_to_vlp.py). Files: data/opt-2.7b/ (as the stage-2 config),
# data/vqav2/ (configs/_base_/datasets/vqav2.py).
# Not implemented: the paper's VQA fine-tuning, which also feeds the question to the
# Q-Former and trains the image encoder (Sec. 4.1); answer ranking over a candidate list
# (BLIP-2 generates open-ended answers).
_base_ = ['./blip2_stage2_opt.py']
# the VQAv2 evaluation splits of configs/_base_/datasets/vqav2.py, read here (the stage-2
# config's COCO captioning splits are replaced); images only: the model prompts the LLM
vqa_pipeline = {{_base_.test_pipeline}}
val_dataloader = dict(
    batch_size=16,
    dataset=dict(_delete_=True, type='VQAv2Dataset', mode='eval', data_root='data/vqav2',
                 question_file='v2_OpenEnded_mscoco_val2014_questions.json',
                 annotation_file='v2_mscoco_val2014_annotations.json',
                 img_prefix='val2014', pipeline=vqa_pipeline))
test_dataloader = dict(
    batch_size=16,
    dataset=dict(_delete_=True, type='VQAv2Dataset', mode='eval', data_root='data/vqav2',
                 question_file='v2_OpenEnded_mscoco_test-dev2015_questions.json',
                 img_prefix='test2015', pipeline=vqa_pipeline))
val_evaluator = dict(type='VQAAccuracy')
test_evaluator = dict(type='VQAAccuracy',
                      output_file='work_dirs/blip2_vqa_zeroshot_opt/test-dev2015.json')
model = dict(predict_mode='vqa', vqa_prompt='Question: {} Short answer:',
             stage1=dict(checkpoint=None),
             generation_cfg=dict(num_beams=5, max_length=10, min_length=1,
                                 length_penalty=-1.0))
load_from = None  # tools/test.py CONFIG CHECKPOINT
