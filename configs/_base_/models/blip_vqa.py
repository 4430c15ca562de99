# BLIP's VQA model (Li et al. 2022, Sec. 5.3 / Fig. 5; salesforce/BLIP models/blip_vqa.py):
# BLIPVQA (vlp/models/algorithms/blip_vqa.py) built from BLIP's parts: the question, led by
# [ENC], cross-attends to the image in the image-grounded text encoder; a separate causal
# answer decoder (a copy of the text encoder's config, initialised from the pre-trained
# captioning decoder) cross-attends to the question states. Training loss: each unique
# answer's NLL weighted by its share of the human answers, label smoothing 0.1 (BLIP's
# released BertLMHeadModel hard-codes it; the paper states none). Answers ranked as BLIP's
# evaluation (`inference: 'rank'`, `k_test: 128`): the decoder's first-token probabilities
# pick the 128 best candidates of the answer list, re-ranked by their full log-likelihood.
# The weights come from load_from (the task config): no ImageNet / BERT initialisation.
_base_ = ['./blip.py']
__blip = _base_.model
model = dict(
    _delete_=True,
    type='BLIPVQA',
    data_preprocessor=__blip.data_preprocessor,
    # stochastic depth 0.1 in the ViT (BLIP's models/blip_vqa.py create_vit)
    vision=dict(__blip.vision, pretrained=False, drop_path_rate=0.1),
    text=dict(__blip.text, pretrained=None),  # question encoder; the answer decoder
    lm_head=__blip.lm_head,                     # copies this config
    tie_lm_head=True,
    label_smoothing=0.1,
    inference='rank',
    answer_list='data/vqav2/answer_list_blip.json',  # BLIP's answer_list.json
    k_test=128,
    # inference='generate': BLIP's beam search (3 beams, at most 10 tokens)
    generation_cfg=dict(num_beams=3, max_length=10, min_length=1),
    tokenizer=__blip.tokenizer,
    grad_checkpointing=False)
custom_hooks = []  # no momentum encoders, queue or distillation in fine-tuning
