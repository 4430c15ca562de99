# VQA v2 (Goyal et al. 2017) in the official VQA API format (visualqa.org/download.html):
#   questions  {"questions": [{"image_id", "question", "question_id"}], "data_subtype": ...}
#   annotations {"annotations": [{"question_id", "image_id", "answers": [10 x {"answer",
#                "answer_confidence", "answer_id"}], "multiple_choice_answer",
#                "answer_type", "question_type"}]}
# Expected layout (not downloaded by vlp):
#   data/vqav2/train2014/COCO_train2014_000000000009.jpg ...   (COCO 2014 train images)
#   data/vqav2/val2014/COCO_val2014_000000000042.jpg ...       (COCO 2014 val images)
#   data/vqav2/test2015/COCO_test2015_000000000001.jpg ...     (COCO 2015 test images)
#   data/vqav2/v2_OpenEnded_mscoco_{train2014,val2014,test-dev2015,test2015}_questions.json
#   data/vqav2/v2_mscoco_{train2014,val2014}_annotations.json
#   data/vqav2/answer_list.json   (classifier models' answer vocabulary, built with
#       python tools/data/vqa_answer_list.py data/vqav2/answer_list.json \
#           data/vqav2/v2_mscoco_train2014_annotations.json \
#           data/vqav2/v2_mscoco_val2014_annotations.json
#       -> the 3,129 majority answers seen >= 9 times, ViLT's vocabulary)
# Splits: train on train2014, validate on val2014 (official VQA accuracy, VQAAccuracy), test
# on test-dev2015 (no answers: VQAAccuracy only writes the submission file
# [{"question_id", "answer"}] for the EvalAI server; test-std: the test2015 question file).
#
# Final models train on more (the papers' test-dev numbers):
# - train + val in the official format (ViLT / VLMo / BEiT-3; ViLT keeps 1k val images out
#   for validation, which needs a filtered question file):
#     dataset=dict(question_file=['v2_OpenEnded_mscoco_train2014_questions.json',
#                                 'v2_OpenEnded_mscoco_val2014_questions.json'],
#                  annotation_file=['v2_mscoco_train2014_annotations.json',
#                                   'v2_mscoco_val2014_annotations.json'],
#                  img_prefix=['train2014', 'val2014'])
# - train + val + Visual Genome QA (ALBEF / BLIP) in their JSON list format
#   ([{"question_id", "question", "answer": [str], "image": path}], BLIP's
#   vqa_train.json / vqa_val.json / vg_qa.json; "image" is relative to the COCO image root
#   ("train2014/COCO_train2014_...jpg") or the VG root ("image/2345.jpg")):
#     dataset=dict(question_file=None, annotation_file=None,
#                  ann_file=['vqa_train.json', 'vqa_val.json', 'vg_qa.json'],
#                  img_prefix=['.', '.', 'vg'])  # data/vqav2/vg/image/*.jpg
# The model's config supplies the pipelines (its tokenizer, image size; the question is
# tokenised with Tokenize(key='question')):
#   train_dataloader = dict(dataset=dict(pipeline=train_pipeline)), val / test likewise.
_base_ = ['./finetune_loader.py', './eval_loaders.py']
__vqav2 = dict(type='VQAv2Dataset', data_root='data/vqav2', pipeline=[])
train_dataloader = dict(
    dataset=dict(__vqav2, mode='train',
                 question_file='v2_OpenEnded_mscoco_train2014_questions.json',
                 annotation_file='v2_mscoco_train2014_annotations.json', img_prefix='train2014'))
val_dataloader = dict(
    dataset=dict(__vqav2, mode='eval', question_file='v2_OpenEnded_mscoco_val2014_questions.json',
                 annotation_file='v2_mscoco_val2014_annotations.json', img_prefix='val2014'))
# data_subtype 'test-dev2015' -> the images of test2015
test_dataloader = dict(
    dataset=dict(__vqav2, mode='eval',
                 question_file='v2_OpenEnded_mscoco_test-dev2015_questions.json',
                 img_prefix='test2015'))
val_evaluator = dict(type='VQAAccuracy')
# the model config names its own submission file
test_evaluator = dict(type='VQAAccuracy',
                      output_file='work_dirs/vqav2_test-dev2015_submission.json')
