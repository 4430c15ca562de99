"""Anchor implementations for ``tools/benchmark.py --compare``: the same architecture and
shapes as a vlp model, built with open_clip or HF transformers (random weights, built from
config objects: nothing is downloaded), with a training loss of the same batch.

Every builder returns an :class:`Anchor`: the anchor module, its loss closure, optionally a
replacement of vlp's loss (when vlp computes objectives the anchor has no counterpart
for, vlp runs only those the anchor has), the parameter sets that must agree and a
description of what each side computes.

Compared parameters: the *trainable* parameters of both sides (each tensor once), less
the parts named in ``excluded`` (objectives the other side does not have). Totals
(every parameter: frozen encoders, momentum twins) are reported beside them.

================  =================================================================
vlp model         anchor
================  =================================================================
CLIP              open_clip ``CLIP`` (ClipLoss) | HF ``CLIPModel(return_loss=True)``
CoCa              open_clip ``CoCa`` (``CoCaLoss``: contrastive + 2 x caption)
BLIP              BLIP's pre-training step from HF modules (``BlipVisionModel``,
                  ``BlipTextModel`` as ``BlipForImageTextRetrieval`` builds it,
                  ``BlipTextLMHeadModel`` of ``BlipForConditionalGeneration``)
BLIP2 (stage 1)   HF ``Blip2ForImageTextRetrieval``'s modules: ITC + ITM
ViLT              HF ``ViltForMaskedLM`` + a 2-way ITM head: ITM + MLM
================  =================================================================
"""
import copy
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Anchor:
    name: str  # the row's name: 'open_clip' or 'hf'
    impl: str  # what was built, e.g. 'transformers.CLIPModel'
    model: nn.Module
    loss_fn: Callable[[], torch.Tensor]
    objectives: Dict[str, str]  # side -> what its timed step computes
    vlp_loss_fn: Optional[Callable[[], torch.Tensor]] = None  # replaces vlp's full loss
    excluded: Dict[str, List[str]] = field(default_factory=lambda: dict(vlp=[], anchor=[]))
    notes: List[str] = field(default_factory=list)


# -- parameter counting ------------------------------------------------------------------------
def count_params(module: nn.Module, trainable_only: bool = False,
                 exclude: Tuple[str, ...] = ()) -> int:
    """Parameters of ``module`` (each tensor once), optionally only ``requires_grad`` ones,
    less those whose name starts with one of ``exclude``."""
    seen, n = set(), 0
    for name, p in module.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        if trainable_only and not p.requires_grad:
            continue
        if any(name == e or name.startswith(e + '.') for e in exclude):
            continue
        n += p.numel()
    return n


def param_report(model: nn.Module, anchor: Anchor) -> dict:
    """``{'total': {vlp, anchor}, 'compared': {vlp, anchor}, 'excluded': ..., 'agree'}``."""
    ex = anchor.excluded
    total = dict(vlp=count_params(model), anchor=count_params(anchor.model))
    compared = dict(vlp=count_params(model, True, tuple(ex.get('vlp', ()))),
                    anchor=count_params(anchor.model, True, tuple(ex.get('anchor', ()))))
    return dict(total=total, compared=compared, excluded=ex,
                agree=compared['vlp'] == compared['anchor'])


# -- helpers -----------------------------------------------------------------------------------
def _loss_sum(model, inputs, samples, drop=()):
    losses = model(inputs, samples, mode='loss')
    return sum(v for k, v in losses.items() if 'loss' in k and k not in drop)


def _hard_negatives(sim: torch.Tensor) -> torch.Tensor:
    """One index per row drawn from ``softmax(sim)`` with the diagonal excluded (BLIP)."""
    w = F.softmax(sim.float(), dim=1) + 1e-5
    w.fill_diagonal_(0)
    return torch.multinomial(w, 1).squeeze(1)


def _hf_dropout(block) -> dict:
    """HF's ``hidden_dropout_prob`` / ``attention_probs_dropout_prob`` of a vlp transformer
    block (its attention's output and probability dropouts): the anchor drops out what vlp
    drops out (BERT's 0.1 in the BLIP / BLIP-2 base configs, ViT's 0.1 in ViLT's)."""
    attn = block.attn
    return dict(hidden_dropout_prob=float(attn.proj_drop.p),
                attention_probs_dropout_prob=float(attn.attn_drop))


def _vit_sizes(vit) -> dict:
    """Sizes of a timm ``VisionTransformer``."""
    width = vit.embed_dim
    return dict(width=width, layers=len(vit.blocks), heads=vit.blocks[0].attn.num_heads,
                mlp=vit.blocks[0].mlp.fc1.out_features,
                patch=vit.patch_embed.patch_size[0], image=vit.patch_embed.img_size[0],
                eps=vit.blocks[0].norm1.eps,
                quick='quick' in type(vit.blocks[0].mlp.act).__name__.lower())


def _hf_act(quick: bool) -> str:
    return 'quick_gelu' if quick else 'gelu'


# -- open_clip -------------------------------------------------------------------------------------
def open_clip_clip(model, inputs, samples, device) -> Anchor:
    """open_clip ``CLIP`` with the sizes of a vlp CLIP (timm ViT + TextTransformer)."""
    import open_clip
    from open_clip.loss import ClipLoss
    v = _vit_sizes(model.vision.model)
    text = model.text
    t_block = text.blocks[0]
    vision_cfg = open_clip.CLIPVisionCfg(
        layers=v['layers'], width=v['width'], head_width=v['width'] // v['heads'],
        mlp_ratio=v['mlp'] / v['width'], patch_size=v['patch'], image_size=v['image'])
    text_cfg = open_clip.CLIPTextCfg(
        context_length=text.context_length, vocab_size=text.token_embedding.num_embeddings,
        width=text.width, heads=t_block.attn.num_heads, layers=len(text.blocks),
        mlp_ratio=t_block.mlp.fc1.out_features / text.width)
    twin = open_clip.CLIP(model.vision_proj.out_dim, vision_cfg, text_cfg,
                          quick_gelu=v['quick']).to(device)
    clip_loss = ClipLoss()

    def loss():
        img, txt, scale = twin(inputs['images'], inputs['input_ids'])
        return clip_loss(img, txt, scale)

    both = 'ITC (symmetric InfoNCE, in-batch)'
    return Anchor('open_clip', 'open_clip.CLIP', twin, loss, dict(vlp=both, anchor=both))


def open_clip_coca(model, inputs, samples, device) -> Anchor:
    """open_clip ``CoCa`` with the sizes of a vlp CoCa; ``CoCaLoss`` (contrastive weight and
    caption weight of the vlp model)."""
    import open_clip
    from open_clip.coca_model import MultimodalCfg
    from open_clip.loss import CoCaLoss
    v = _vit_sizes(model.vision.model)
    text, dec = model.text, model.decoder
    no_proj = [isinstance(getattr(model, k, None), (nn.Identity, type(None)))
               for k in ('vision_proj', 'text_proj')]
    cap = model.cap_pooler
    parallel = model.pooler_layout == 'parallel'
    n_queries = cap.query.shape[-2]
    embed_dim = cap.query.shape[-1]
    vision_cfg = open_clip.CLIPVisionCfg(
        layers=v['layers'], width=v['width'], head_width=v['width'] // v['heads'],
        mlp_ratio=v['mlp'] / v['width'], patch_size=v['patch'], image_size=v['image'],
        attentional_pool='parallel' if parallel else True,
        attn_pooler_queries=n_queries, attn_pooler_heads=cap.attn.num_heads
        if hasattr(cap.attn, 'num_heads') else cap.num_heads,
        output_tokens=True)
    t_block = text.blocks[0]
    text_cfg = open_clip.CLIPTextCfg(
        context_length=text.context_length, vocab_size=text.token_embedding.num_embeddings,
        width=text.width, heads=t_block.attn.num_heads, layers=len(text.blocks),
        mlp_ratio=t_block.mlp.fc1.out_features / text.width, embed_cls=True,
        output_tokens=True)
    d_block = dec.blocks[0]
    mm_cfg = MultimodalCfg(
        context_length=text.context_length, vocab_size=dec.head.out_features,
        width=dec.width if hasattr(dec, 'width') else d_block.attn.proj.in_features,
        heads=d_block.attn.num_heads, layers=len(dec.blocks),
        mlp_ratio=d_block.mlp.fc1.out_features / d_block.mlp.fc1.in_features)
    twin = open_clip.CoCa(embed_dim, mm_cfg, text_cfg, vision_cfg,
                          quick_gelu=v['quick']).to(device)
    with torch.no_grad():  # open_clip leaves the decoder's projection uninitialised
        nn.init.normal_(twin.text_decoder.text_projection, std=mm_cfg.width ** -0.5)
    if no_proj[0]:  # vlp's config has no image projection (Identity): neither here
        twin.visual.proj = None
    if no_proj[1]:
        twin.text.text_projection = None
    coca_loss = CoCaLoss(caption_loss_weight=model.caption_weight,
                         clip_loss_weight=model.contrastive_weight, pad_id=0)
    ids = inputs['input_ids']

    def loss():
        out = twin(inputs['images'], ids)
        return sum(coca_loss(out['image_features'], out['text_features'], out['logits'],
                             out['labels'], out['logit_scale']))

    objective = ('ITC (in-batch) x {:g} + captioning cross-entropy x {:g}'.format(
        model.contrastive_weight, model.caption_weight))
    excluded, notes = dict(vlp=[], anchor=[]), []
    if parallel:
        excluded = dict(vlp=['vision.model.norm', 'con_pooler.norm_out', 'cap_pooler.norm_out'],
                        anchor=['visual.ln_post'])
        notes.append("open_clip's attentional_pool='parallel' (its WIP paper layout) has one "
                     'LayerNorm (ln_post) before both poolers where vlp has the ViT\'s final '
                     'norm and one output norm per pooler: these LayerNorms are left out of '
                     'the compared parameters')
    return Anchor('open_clip', 'open_clip.CoCa', twin, loss,
                  dict(vlp=objective, anchor=objective), excluded=excluded, notes=notes)


# -- HF transformers ------------------------------------------------------------------------------
def hf_clip(model, inputs, samples, device) -> Anchor:
    from transformers import CLIPConfig, CLIPModel
    v = _vit_sizes(model.vision.model)
    text = model.text
    t_block = text.blocks[0]
    t_quick = 'quick' in type(t_block.mlp.act).__name__.lower()
    cfg = CLIPConfig(
        text_config=dict(vocab_size=text.token_embedding.num_embeddings,
                         hidden_size=text.width, intermediate_size=t_block.mlp.fc1.out_features,
                         num_hidden_layers=len(text.blocks),
                         num_attention_heads=t_block.attn.num_heads,
                         max_position_embeddings=text.context_length,
                         hidden_act=_hf_act(t_quick), layer_norm_eps=t_block.norm1.eps,
                         eos_token_id=2),  # 2: HF's legacy argmax pooling
        vision_config=dict(hidden_size=v['width'], intermediate_size=v['mlp'],
                           num_hidden_layers=v['layers'], num_attention_heads=v['heads'],
                           image_size=v['image'], patch_size=v['patch'],
                           hidden_act=_hf_act(v['quick']), layer_norm_eps=v['eps']),
        projection_dim=model.vision_proj.out_dim)
    twin = CLIPModel(cfg).to(device).train()

    def loss():
        return twin(input_ids=inputs['input_ids'], pixel_values=inputs['images'],
                    attention_mask=inputs.get('attention_mask'), return_loss=True).loss

    both = 'ITC (symmetric InfoNCE, in-batch)'
    return Anchor('hf', 'transformers.CLIPModel', twin, loss, dict(vlp=both, anchor=both))


class HFBlipPretrain(nn.Module):
    """BLIP's pre-training step (``blip_pretrain.py``: ITC with momentum encoders, a
    feature queue and momentum distillation; ITM on the positives and one hard negative
    per image and per text; LM with label smoothing 0.1) written over HF transformers'
    BLIP modules: ``BlipVisionModel``, the ``BlipTextModel`` of
    ``BlipForImageTextRetrieval`` (encoder) and the ``BlipTextLMHeadModel`` of
    ``BlipForConditionalGeneration`` (decoder; with ``share_decoder`` it shares all but its
    self-attention with the encoder, as BLIP ties them), the projections and ITM head."""

    def __init__(self, config, queue_size: int, alpha: float, queue_init: str,
                 share_decoder: bool, with_itm: bool, with_lm: bool, enc_token_id: int,
                 dec_token_id: int):
        super().__init__()
        from transformers.models.blip.modeling_blip import BlipVisionModel
        from transformers.models.blip.modeling_blip_text import (BlipTextLMHeadModel,
                                                                 BlipTextModel)
        vc, tc = config.vision_config, config.text_config
        embed = config.image_text_hidden_size
        self.vision_model = BlipVisionModel(vc)
        self.text_encoder = BlipTextModel(tc, add_pooling_layer=False)
        self.vision_proj = nn.Linear(vc.hidden_size, embed)
        self.text_proj = nn.Linear(tc.hidden_size, embed)
        self.itm_head = nn.Linear(tc.hidden_size, 2) if with_itm else None
        self.temp = nn.Parameter(torch.tensor(0.07))
        self.text_decoder = BlipTextLMHeadModel(tc) if with_lm else None
        if with_lm and share_decoder:  # BLIP: tie_encoder_decoder_weights(skip '/attention')
            enc, dec = self.text_encoder, self.text_decoder.bert
            dec.embeddings = enc.embeddings
            for le, ld in zip(enc.encoder.layer, dec.encoder.layer):
                ld.crossattention, ld.intermediate, ld.output = \
                    le.crossattention, le.intermediate, le.output
        if with_lm:
            self.text_decoder.cls.predictions.decoder.weight = \
                self.text_decoder.bert.embeddings.word_embeddings.weight
        self.vision_m = copy.deepcopy(self.vision_model)
        self.vision_proj_m = copy.deepcopy(self.vision_proj)
        self.text_m = copy.deepcopy(self.text_encoder)
        self.text_proj_m = copy.deepcopy(self.text_proj)
        for m in (self.vision_m, self.vision_proj_m, self.text_m, self.text_proj_m):
            m.requires_grad_(False)
        self.queue_size, self.alpha = queue_size, alpha
        self.enc_token_id, self.dec_token_id = enc_token_id, dec_token_id
        # BLIP's queue: [D, K] random unit columns from the first step, a ring pointer
        self.register_buffer('image_queue', F.normalize(torch.randn(embed, queue_size), dim=0),
                             persistent=False)
        self.register_buffer('text_queue', F.normalize(torch.randn(embed, queue_size), dim=0),
                             persistent=False)
        self.queue_ptr = 0
        # vlp's queue_init='empty' (the toy demos): only the columns written so far count
        self.queue_filled = queue_size if queue_init == 'random' else 0

    def forward(self, images, input_ids, attention_mask):
        B = images.shape[0]
        image_embeds = self.vision_model(pixel_values=images).last_hidden_state
        image_feat = F.normalize(self.vision_proj(image_embeds[:, 0]), dim=-1)
        text_out = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask)
        text_feat = F.normalize(self.text_proj(text_out.last_hidden_state[:, 0]), dim=-1)
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
            img_m = self.vision_m(pixel_values=images).last_hidden_state
            image_feat_m = F.normalize(self.vision_proj_m(img_m[:, 0]), dim=-1)
            txt_m = self.text_m(input_ids=input_ids, attention_mask=attention_mask)
            text_feat_m = F.normalize(self.text_proj_m(txt_m.last_hidden_state[:, 0]), dim=-1)
            # as blip_pretrain.py: [D, B + K] columns, the queue cloned and concatenated
            n = self.queue_filled
            image_all = torch.cat([image_feat_m.t(), self.image_queue[:, :n].clone().detach()], 1)
            text_all = torch.cat([text_feat_m.t(), self.text_queue[:, :n].clone().detach()], 1)
            targets = torch.zeros(B, image_all.shape[1], device=images.device)
            targets[:, :B].fill_diagonal_(1)
            t_i2t = self.alpha * F.softmax(image_feat_m @ text_all / self.temp, 1) + \
                (1 - self.alpha) * targets
            t_t2i = self.alpha * F.softmax(text_feat_m @ image_all / self.temp, 1) + \
                (1 - self.alpha) * targets
        sim_i2t = image_feat @ text_all / self.temp
        sim_t2i = text_feat @ image_all / self.temp
        loss = 0.5 * (-(F.log_softmax(sim_i2t, 1) * t_i2t).sum(1).mean()
                      - (F.log_softmax(sim_t2i, 1) * t_t2i).sum(1).mean())
        if self.queue_size:  # _dequeue_and_enqueue: write at the pointer, wrap around
            K = self.queue_size
            with torch.no_grad():
                cols = (torch.arange(B, device=images.device) + self.queue_ptr) % K
                # (bf16 autocast: the features are bf16, the queues fp32 as in vlp)
                self.image_queue[:, cols] = image_feat_m.t().to(self.image_queue.dtype)
                self.text_queue[:, cols] = text_feat_m.t().to(self.text_queue.dtype)
            self.queue_ptr = (self.queue_ptr + B) % K
            self.queue_filled = min(K, self.queue_filled + B)
        if self.itm_head is not None:
            enc_ids = input_ids.clone()
            enc_ids[:, 0] = self.enc_token_id
            with torch.no_grad():
                neg_img = _hard_negatives(text_feat @ image_feat.t() / self.temp)
                neg_txt = _hard_negatives(image_feat @ text_feat.t() / self.temp)
            ids_all = torch.cat([enc_ids, enc_ids, enc_ids[neg_txt]])
            mask_all = torch.cat([attention_mask, attention_mask, attention_mask[neg_txt]])
            img_all = torch.cat([image_embeds, image_embeds[neg_img], image_embeds])
            out = self.text_encoder(input_ids=ids_all, attention_mask=mask_all,
                                    encoder_hidden_states=img_all).last_hidden_state
            logits = self.itm_head(out[:, 0])
            labels = torch.cat([torch.ones(B), torch.zeros(2 * B)]).long().to(images.device)
            loss = loss + F.cross_entropy(logits, labels)
        if self.text_decoder is not None:
            dec_ids = input_ids.clone()
            dec_ids[:, 0] = self.dec_token_id
            labels = dec_ids.masked_fill(attention_mask == 0, -100)
            loss = loss + self.text_decoder(
                input_ids=dec_ids, attention_mask=attention_mask,
                encoder_hidden_states=image_embeds, labels=labels, reduction='mean').loss
        return loss


def hf_blip(model, inputs, samples, device) -> Anchor:
    from transformers import BlipConfig
    v = _vit_sizes(model.vision.model)
    text = model.text
    blk = text.blocks[0]
    tc = dict(vocab_size=text.word_embeddings.num_embeddings, hidden_size=text.hidden_size
              if hasattr(text, 'hidden_size') else text.word_embeddings.embedding_dim,
              intermediate_size=blk.mlp.fc1.out_features, num_hidden_layers=len(text.blocks),
              num_attention_heads=blk.attn.num_heads,
              max_position_embeddings=text.position_embeddings.num_embeddings,
              **_hf_dropout(blk), layer_norm_eps=blk.norm1.eps, label_smoothing=0.1,
              bos_token_id=model.dec_token_id, pad_token_id=0, sep_token_id=1,
              tie_word_embeddings=True)
    vc = dict(hidden_size=v['width'], intermediate_size=v['mlp'],
              num_hidden_layers=v['layers'], num_attention_heads=v['heads'],
              image_size=v['image'], patch_size=v['patch'], layer_norm_eps=v['eps'],
              hidden_act=_hf_act(v['quick']))
    config = BlipConfig(text_config=tc, vision_config=vc,
                        image_text_hidden_size=model.vision_proj.out_dim)
    queue = model.queue
    queue_size = 0 if queue is None else int(queue.size)
    twin = HFBlipPretrain(config, queue_size, model.alpha if model.momentum_distill else 0.0,
                          'random' if queue is None else queue.init, model.share_decoder,
                          model.itm_head is not None, model.decoder is not None,
                          model.enc_token_id, model.dec_token_id).to(device).train()

    def loss():
        return twin(inputs['images'], inputs['input_ids'], inputs['attention_mask'])

    both = ('ITC (momentum encoders forward, queue of {}, distillation alpha {:g}) + ITM '
            '(positives + 2 hard negatives per pair, image-grounded encoder on 3B rows) + LM '
            '(image-grounded decoder, label smoothing 0.1)'.format(queue_size, twin.alpha))
    notes = ['BLIP has no HF training step: the anchor is BLIP\'s pre-training loss written '
             'over HF\'s BlipVisionModel / BlipTextModel (BlipForImageTextRetrieval\'s '
             'encoder) / BlipTextLMHeadModel (BlipForConditionalGeneration\'s decoder)'
             + (', the decoder sharing all but its self-attention with the encoder'
                if model.share_decoder else '')]
    return Anchor('hf', 'BLIP pre-training step over transformers BLIP modules', twin, loss,
                  dict(vlp=both, anchor=both), notes=notes)


class HFBlip2Stage1(nn.Module):
    """The modules of HF ``Blip2ForImageTextRetrieval`` (frozen vision model whose
    ``post_layernorm`` is BLIP-2's trainable ``ln_vision``, queries, text embeddings,
    ``Blip2QFormerModel``, projections, ITM head) plus a learnable ITC temperature, running
    BLIP-2's ITC (max over queries, label smoothing) and ITM (hard negatives)."""

    def __init__(self, config, itc_label_smoothing: float):
        super().__init__()
        from transformers import Blip2ForImageTextRetrieval
        self.hf = Blip2ForImageTextRetrieval(config)
        self.hf.vision_model.requires_grad_(False)
        self.hf.vision_model.post_layernorm.requires_grad_(True)  # LAVIS's ln_vision
        self.temp = nn.Parameter(torch.tensor(0.07))
        self.ls = itc_label_smoothing

    def forward(self, images, input_ids, attention_mask):
        hf = self.hf
        vm = hf.vision_model
        with torch.no_grad():
            x = vm.encoder(inputs_embeds=vm.embeddings(images)).last_hidden_state
        image_embeds = vm.post_layernorm(x)
        B = images.shape[0]
        img_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=images.device)
        queries = hf.query_tokens.expand(B, -1, -1)
        q = hf.qformer(query_embeds=queries, encoder_hidden_states=image_embeds,
                       encoder_attention_mask=img_mask).last_hidden_state
        image_feat = F.normalize(hf.vision_projection(q), dim=-1)  # (B, Q, D)
        t = hf.qformer(query_embeds=hf.embeddings(input_ids=input_ids), query_length=0,
                       attention_mask=attention_mask).last_hidden_state
        text_feat = F.normalize(hf.text_projection(t[:, 0]), dim=-1)  # (B, D)
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
        sim_i2t = torch.einsum('iqd,jd->ijq', image_feat, text_feat).amax(-1) / self.temp
        labels = torch.arange(B, device=images.device)
        loss = 0.5 * (F.cross_entropy(sim_i2t, labels, label_smoothing=self.ls)
                      + F.cross_entropy(sim_i2t.t(), labels, label_smoothing=self.ls))
        with torch.no_grad():
            neg_img = _hard_negatives(sim_i2t.t())
            neg_txt = _hard_negatives(sim_i2t)
        ids_all = torch.cat([input_ids, input_ids, input_ids[neg_txt]])
        mask_all = torch.cat([attention_mask, attention_mask, attention_mask[neg_txt]])
        img_all = torch.cat([image_embeds, image_embeds[neg_img], image_embeds])
        Q = queries.shape[1]
        q3 = hf.query_tokens.expand(3 * B, -1, -1)
        emb = hf.embeddings(input_ids=ids_all, query_embeds=q3)
        att = torch.cat([torch.ones(3 * B, Q, dtype=mask_all.dtype, device=images.device),
                         mask_all], dim=1)
        out = hf.qformer(query_embeds=emb, query_length=Q, attention_mask=att,
                         encoder_hidden_states=img_all,
                         encoder_attention_mask=torch.cat([img_mask] * 3)).last_hidden_state
        logits = hf.itm_head(out[:, :Q]).mean(1)
        itm_labels = torch.cat([torch.ones(B), torch.zeros(2 * B)]).long().to(images.device)
        return loss + F.cross_entropy(logits, itm_labels)


def hf_blip2(model, inputs, samples, device) -> Anchor:
    from transformers import Blip2Config
    if getattr(model, 'llm', None) is not None or type(model).__name__ != 'BLIP2':
        raise SystemExit('--compare hf (BLIP-2): stage-1 configs only (type=BLIP2)')
    if model.vision_dtype is not None:
        raise SystemExit('--compare hf (BLIP-2): vision_dtype must be None')
    v = _vit_sizes(model.vision.model)
    qf = model.qformer
    blk = qf.blocks[0]
    cross = [i for i, b in enumerate(qf.blocks) if getattr(b, 'cross_attn', None) is not None]
    freq = cross[1] - cross[0] if len(cross) > 1 else len(qf.blocks)
    hidden = qf.word_embeddings.embedding_dim
    qc = dict(vocab_size=qf.word_embeddings.num_embeddings, hidden_size=hidden,
              num_hidden_layers=len(qf.blocks), num_attention_heads=blk.attn.num_heads,
              intermediate_size=blk.mlp.fc1.out_features,
              max_position_embeddings=qf.position_embeddings.num_embeddings,
              **_hf_dropout(blk), layer_norm_eps=blk.norm1.eps,
              cross_attention_frequency=freq,
              encoder_hidden_size=v['width'], pad_token_id=0,
              use_qformer_text_input=True)  # the text FFNs (vlp's blocks.i.mlp)
    vc = dict(hidden_size=v['width'], intermediate_size=v['mlp'],
              num_hidden_layers=v['layers'], num_attention_heads=v['heads'],
              image_size=v['image'], patch_size=v['patch'], layer_norm_eps=v['eps'],
              hidden_act=_hf_act(v['quick']), qkv_bias=True)
    config = Blip2Config(vision_config=vc, qformer_config=qc,
                         text_config=dict(model_type='opt', hidden_size=32,
                                          num_hidden_layers=1, ffn_dim=64,
                                          num_attention_heads=2, vocab_size=64,
                                          word_embed_proj_dim=32),
                         num_query_tokens=qf.num_query_tokens,
                         image_text_hidden_size=model.vision_proj.out_dim)
    twin = HFBlip2Stage1(config, model.itc_label_smoothing).to(device).train()

    def loss():
        return twin(inputs['images'], inputs['input_ids'], inputs['attention_mask'])

    itg = model.lm_head is not None

    def vlp_loss():  # BLIP2.loss without ITG (HF has no Q-Former LM head): not computed
        lm_head = model.lm_head
        model.lm_head = None
        try:
            return _loss_sum(model, inputs, samples)
        finally:
            model.lm_head = lm_head
    both = ('frozen ViT forward (no grad) + ln_vision + ITC (Q-Former query pass and text '
            'pass, max over queries) + ITM (positives + 2 hard negatives, 3B rows)')
    notes = ['HF has no BLIP-2 stage-1 loss: the anchor runs BLIP-2\'s ITC + ITM over the '
             'modules of transformers Blip2ForImageTextRetrieval']
    excluded = dict(vlp=[], anchor=[])
    if itg:
        notes.append('ITG (the Q-Former LM head) is not in HF: vlp runs ITC + ITM only; its '
                     'lm_head is left out of the compared parameters')
        excluded['vlp'] = ['lm_head']
    return Anchor('hf', 'transformers.Blip2ForImageTextRetrieval (modules)', twin, loss,
                  dict(vlp=both, anchor=both), vlp_loss_fn=vlp_loss, excluded=excluded,
                  notes=notes)


class HFViltPretrain(nn.Module):
    """ViLT's ITM + MLM step over HF ``ViltForMaskedLM`` (its ``vilt`` with the pooler and
    the ``mlm_score`` head) and a 2-way ITM head on the pooled output (ViLT's ``ITMHead``;
    HF's ``ViltForImageAndTextRetrieval`` has a 1-way ``rank_output`` instead)."""

    def __init__(self, config):
        super().__init__()
        from transformers import ViltForMaskedLM
        self.mlm = ViltForMaskedLM(config)
        self.itm_head = nn.Linear(config.hidden_size, 2)

    def forward(self, images, input_ids, attention_mask, swapped, masked_ids, mlm_labels):
        B = images.shape[0]
        itm_images = torch.where(swapped.view(B, 1, 1, 1), images.roll(1, 0), images)
        pooled = self.mlm.vilt(input_ids=input_ids, attention_mask=attention_mask,
                               pixel_values=itm_images).pooler_output
        loss = F.cross_entropy(self.itm_head(pooled), (~swapped).long())
        return loss + self.mlm(input_ids=masked_ids, attention_mask=attention_mask,
                               pixel_values=images, labels=mlm_labels).loss


def hf_vilt(model, inputs, samples, device) -> Anchor:
    from transformers import ViltConfig
    bb = model.backbone
    blk = bb.blocks[0]
    width = bb.embed_dim
    if model.itm_head is None or model.mlm_head is None:
        raise SystemExit('--compare hf (ViLT): needs both the ITM and the MLM head')
    patch = bb.patch_embed.kernel_size[0] if isinstance(bb.patch_embed, nn.Conv2d) \
        else bb.patch_embed.proj.kernel_size[0]
    n_patches = bb.pos_embed.shape[1] - 1
    grid = int(round(n_patches ** 0.5))
    config = ViltConfig(
        vocab_size=bb.word_embeddings.num_embeddings,
        type_vocab_size=bb.token_type_embed.num_embeddings,
        modality_type_vocab_size=bb.modality_embed.num_embeddings, hidden_size=width,
        num_hidden_layers=len(bb.blocks), num_attention_heads=blk.attn.num_heads,
        intermediate_size=blk.mlp.fc1.out_features,
        max_position_embeddings=bb.text_pos_embed.num_embeddings,
        **_hf_dropout(blk), layer_norm_eps=blk.norm1.eps, image_size=grid * patch, patch_size=patch,
        qkv_bias=blk.attn.qkv.bias is not None, max_image_length=-1, tie_word_embeddings=True)
    twin = HFViltPretrain(config).to(device).train()
    ids, mask = inputs['input_ids'], inputs['attention_mask']
    B = ids.shape[0]
    g = torch.Generator().manual_seed(1)
    swapped = (torch.rand(B, generator=g) < model.itm_neg_prob).to(device)
    sel = (torch.rand(ids.shape, generator=g) < model.mlm_probability).to(device) & \
        (mask > 0)
    sel[:, 0] = False
    sel[0, 1] = True  # at least one masked token
    masked = ids.masked_fill(sel, 4)  # [MASK] of the BERT-style demo vocabulary
    labels = ids.masked_fill(~sel, -100)

    def loss():
        return twin(inputs['images'], ids, mask, swapped, masked, labels)

    wpa = model.wpa
    model.wpa = None  # no parameters; HF has no word-patch alignment

    def vlp_loss():
        return _loss_sum(model, inputs, samples)

    both = 'ITM (half the images swapped) + MLM (15% masked, second forward)'
    notes = ['HF has no ViLT pre-training step: the anchor is ViltForMaskedLM (vilt + pooler '
             '+ mlm_score) with a 2-way ITM head on the pooled output']
    if wpa is not None:
        notes.append('vlp\'s WPA (IPOT word-patch alignment, no parameters) is switched off: '
                     'HF has no counterpart')
    if model.whole_word_masking:
        notes.append('masking differs in kind only: vlp masks whole words, the anchor '
                     'tokens at the same rate')
    return Anchor('hf', 'transformers.ViltForMaskedLM + ITM head', twin, loss,
                  dict(vlp=both, anchor=both), vlp_loss_fn=vlp_loss, notes=notes)


BUILDERS = {
    ('open_clip', 'CLIP'): open_clip_clip,
    ('open_clip', 'CoCa'): open_clip_coca,
    ('hf', 'CLIP'): hf_clip,
    ('hf', 'BLIP'): hf_blip,
    ('hf', 'BLIP2'): hf_blip2,
    ('hf', 'ViLT'): hf_vilt,
}


def build_anchor(kind: str, model, inputs, samples, device) -> Anchor:
    name = type(model).__name__
    builder = BUILDERS.get((kind, name))
    if builder is None:
        have = sorted(m for k, m in BUILDERS if k == kind)
        raise SystemExit(f'--compare {kind} has no anchor for {name} (it has: '
                         f'{", ".join(have)})')
    return builder(model, inputs, samples, device)
