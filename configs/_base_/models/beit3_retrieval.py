# BEiT-3 as a DUAL ENCODER for retrieval (Wang et al. 2022, Sec. 3.2, Fig. 3(d);
# BEiT3Retrieval): the multiway encoder's image-only and text-only passes, [CLS] states,
# linear projections without bias, L2-normalised, trained with ITC only (InfoNCE, learnable
# temperature initialised at 0.07, negatives from every rank), ranked by cosine similarity.
# Starting from a BEiT-3 pre-training checkpoint (load_from), its MLM / MIM heads are
# dropped; only the projections and the temperature start fresh.
_base_ = ['./beit3.py']
__beit3 = _base_.model
model = dict(
    _delete_=True,
    type='BEiT3Retrieval',
    data_preprocessor=__beit3.data_preprocessor,
    backbone=__beit3.backbone,
    vision_proj=dict(type='Projection', in_dim=768, out_dim=768, bias=False, init_std=0.02),
    text_proj=dict(type='Projection', in_dim=768, out_dim=768, bias=False, init_std=0.02),
    itc=dict(type='ContrastiveLoss', temperature=0.07, max_logit_scale=100.0),
    tokenizer=__beit3.tokenizer,
    grad_checkpointing=False)
