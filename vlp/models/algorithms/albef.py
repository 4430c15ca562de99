"""ALBEF (Li et al. 2021, "Align before Fuse: Vision and Language Representation Learning
with Momentum Distillation").

An image encoder (ViT), a text encoder (the first 6 BERT layers) and a fusion encoder (the
last 6 BERT layers, each with cross-attention to the image tokens), trained with

- **ITC** (Sec. 3.2): InfoNCE between the normalised 256-d projections of the image and
  text ``[CLS]`` states, with a learnable temperature (clamped to [0.001, 0.5]); the
  negatives are the momentum encoders' features of the batch plus a queue of 65,536 past
  momentum features (MoCo-style);
- **ITM** (Sec. 3.2): a linear head on the fusion ``[CLS]`` classifies the positive pairs
  and, per image, one hard negative text and, per text, one hard negative image sampled
  from the ITC similarities of the whole batch (all ranks), never the positive;
- **MLM** (Sec. 3.2): 15% of the text tokens masked (80/10/10), predicted by the fusion
  encoder from the masked text and the image;
- **momentum distillation** (Sec. 3.3): momentum (EMA, m = 0.995) twins of all encoders
  give soft targets for ITC (their similarity distribution) and MLM (their token
  distribution), mixed with the one-hot targets by ``alpha`` = 0.4, ramped up linearly
  over the first epoch.

The momentum update and the queue update run in hooks after each optimizer step
(:class:`~vlp.engine.hooks.MomentumUpdateHook`, :class:`~vlp.engine.hooks.FeatureQueueHook`,
ramp: :class:`~vlp.engine.hooks.DistillAlphaHook`), as ALBEF's reference code runs them at
the start / end of the step. Retrieval evaluation (Sec. 5) ranks by ITC and re-ranks the
top-k candidates with the ITM score (:class:`~vlp.evaluation.ITMRetrievalMetric`).

Differences from the reference code (also in docs/models.md):

- the temperature is learned as ``logit_scale = log(1 / T)`` (clamped to [2, 1000]),
  not as ``T`` itself: the same bounds, a different parametrisation of the gradient;
- ITM negatives are drawn from the batch of every rank (as BLIP's code), not only the
  local batch (ALBEF's pretraining code); ``itm_negatives='local'`` restores the latter;
- with ``queue_ids=True`` (ALBEF's retrieval fine-tuning, BLIP) samples sharing an image
  id are positives of each other in ITC and never sampled as ITM negatives.
"""
import re
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.dist import get_rank, get_world_size

from vlp.registry import MODELS
from ..losses.contrastive import all_gather_features
from ..losses.matching import itm_loss, sample_hard_negatives
from ..utils.feature_queue import FeatureQueue, concat_all_gather
from ..utils.masking import mask_tokens
from ..utils.momentum import copy_params, make_momentum_twins
from .base import VLPModel, build_part, caption_lists
from .clip import _split_meta


def _pad_seq(x: torch.Tensor, length: int) -> torch.Tensor:
    """Right-pad ``x [B, L, ...]`` with zeros (the [PAD] id / a masked state) to
    ``length`` along dim 1."""
    if x.shape[1] == length:
        return x
    pad = x.new_zeros(x.shape[0], length - x.shape[1], *x.shape[2:])
    return torch.cat([x, pad], dim=1)


@MODELS.register_module()
class ALBEF(VLPModel):
    # what ITM re-ranking receives as ``text_embeds``: the unimodal text states (ALBEF) or
    # the token ids, re-encoded with the image (BLIP, BLIP-2)
    itm_text_ids = False
    # re-ranking score: the ITM logit (ALBEF), or plus the ITC similarity (BLIP, BLIP-2)
    rerank_add_itc = False

    """ALBEF pretraining / retrieval model.

    Args:
        vision: image encoder config (returns ``image_embeds [B, N, C]`` and
            ``image_pooled [B, C]``; the ``[CLS]`` state for a ViT).
        text: text encoder config (a :class:`BertEncoder` with embeddings, no
            cross-attention; returns ``text_embeds``/``text_pooled``).
        fusion: fusion encoder config (a :class:`BertEncoder` with
            ``with_embeddings=False`` and cross-attention in every layer).
        vision_proj / text_proj: projections to the ITC space (256-d, with bias).
        itm_head: ITM classifier config (``None``: no ITM objective).
        mlm_head: MLM head config (``None``: no MLM objective); its decoder is tied to the
            text encoder's word embeddings when ``tie_mlm_decoder``.
        itc: contrastive loss config (``ContrastiveLoss``; ALBEF: temperature 0.07 clamped
            to [0.001, 0.5], i.e. ``min_logit_scale=2, max_logit_scale=1000``).
        queue_size: feature-queue length (0: no queue; negatives are then the momentum
            features of the batch of every rank).
        queue_ids: keep image ids in the queue; samples of the same image are positives
            (``data_samples['image_id']`` must be given).
        queue_init: ``'random'`` (ALBEF: the queue starts as random unit vectors) or
            ``'empty'`` (rows not written yet are no negatives; with
            ``FeatureQueueHook(start_iter=N)`` the first ``N`` steps use the batch's
            momentum features only -- a from-scratch warm-up, not in the paper).
        momentum_distill: use the momentum twins' soft targets (with ``alpha``); without
            it the twins still provide the queue features.
        alpha: distillation weight once ramped up (ALBEF: 0.4); the current value is
            ``self.alpha`` (set by :class:`DistillAlphaHook`, else the full value).
        mlm_probability: share of text tokens chosen for MLM (0.15).
        mask_token_id / special_token_ids / vocab_size: MLM token ids; ``None`` takes them
            from ``tokenizer`` (``[MASK]``; ``[PAD]``, ``[CLS]`` are never masked, as
            ALBEF) and from the MLM head's output size.
        itm_negatives: ``'global'`` (from the batch of every rank) or ``'local'``.
        loss_weights: ``dict(itc=1, itm=1, mlm=1)`` (ALBEF sums them unweighted).
        data_preprocessor, tokenizer, init_cfg: see :class:`VLPModel`.
        grad_checkpointing: activation checkpointing in all encoders.
        two_image_fusion: ALBEF's NLVR2 model (Sec. 5.3, Fig. 3b): ``fusion`` has twice the
            pre-trained number of layers (``num_layers = 2 * N``, cross-attention in every
            layer); layers ``2k`` and ``2k + 1`` (both initialised from pre-trained layer
            ``k``, see :meth:`expand_fusion_state_dict`) cross-attend to image 0 and image 1
            and share their cross-attention key/value projection (tied here, before the
            momentum twins are made). Enables :meth:`fused_features_pair`.
    """

    def __init__(self, vision: dict, text: dict, fusion: dict, vision_proj: dict,
                 text_proj: dict, itm_head: Optional[dict] = None,
                 mlm_head: Optional[dict] = None, itc: Optional[dict] = None,
                 queue_size: int = 65536, queue_ids: bool = False, queue_init: str = 'random',
                 momentum_distill: bool = True, alpha: float = 0.4,
                 mlm_probability: float = 0.15, mask_token_id: Optional[int] = None,
                 special_token_ids: Optional[Sequence[int]] = None,
                 vocab_size: Optional[int] = None, tie_mlm_decoder: bool = True,
                 itm_negatives: str = 'global',
                 loss_weights: Optional[Dict[str, float]] = None,
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 grad_checkpointing: bool = False, init_cfg: Optional[dict] = None,
                 two_image_fusion: bool = False):
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        self.vision = build_part(vision)
        self.text = build_part(text)
        self.fusion = build_part(fusion)
        self.two_image_fusion = two_image_fusion
        if two_image_fusion:
            self._tie_pair_layers(self.fusion)
        self.vision_proj = build_part(vision_proj)
        self.text_proj = build_part(text_proj)
        self.itm_head = build_part(itm_head)
        self.mlm_head = build_part(mlm_head)
        if self.mlm_head is not None and tie_mlm_decoder:
            self.mlm_head.tie_weights(self.text.word_embeddings)
        self.itc = build_part(itc if itc is not None else dict(
            type='ContrastiveLoss', temperature=0.07, min_logit_scale=2.0,
            max_logit_scale=1000.0))
        embed_dim = self.vision_proj.out_dim
        # momentum twins: one deep copy, so the MLM decoder stays tied in the copy
        (self.vision_m, self.vision_proj_m, self.text_m, self.text_proj_m, self.fusion_m,
         self.mlm_head_m) = make_momentum_twins(self.vision, self.vision_proj, self.text,
                                                self.text_proj, self.fusion, self.mlm_head)
        self._init_matching(itm_negatives, queue_size, embed_dim, queue_ids, queue_init,
                            momentum_distill, alpha)
        self.mlm_probability = mlm_probability
        self._mask_token_id = mask_token_id
        self._special_token_ids = special_token_ids
        self._vocab_size = vocab_size
        self.loss_weights = {**dict(itc=1.0, itm=1.0, mlm=1.0), **(loss_weights or {})}
        self.set_grad_checkpointing(grad_checkpointing)

    def _init_matching(self, itm_negatives: str, queue_size: int = 0,
                       embed_dim: Optional[int] = None, queue_ids: bool = False,
                       queue_init: str = 'random', momentum_distill: bool = False,
                       alpha: float = 0.0) -> None:
        """The ITC / ITM state shared by ALBEF, BLIP, BLIP-2 and VLMo: the feature queue
        (none when ``queue_size`` is 0), momentum distillation and its ``alpha``, where
        ITM negatives come from, and ``itm_hard`` (False: negatives drawn uniformly, set
        by :class:`ITMNegativeWarmupHook`; the papers: True)."""
        if itm_negatives not in ('global', 'local'):
            raise ValueError(f"itm_negatives must be 'global' or 'local', got {itm_negatives!r}")
        self.queue = (FeatureQueue(queue_size, dict(image=embed_dim, text=embed_dim),
                                   id_names=('idx',) if queue_ids else (), init=queue_init)
                      if queue_size > 0 else None)
        self.queue_ids = queue_ids
        self.momentum_distill = momentum_distill
        self.alpha_max = self.alpha = float(alpha)
        self.itm_negatives = itm_negatives
        self.itm_hard = True

    # -- momentum twins (used by MomentumUpdateHook) --------------------------------------
    def momentum_pairs(self) -> List[tuple]:
        pairs = [(self.vision, self.vision_m), (self.vision_proj, self.vision_proj_m),
                 (self.text, self.text_m), (self.text_proj, self.text_proj_m),
                 (self.fusion, self.fusion_m)]
        if self.mlm_head is not None:
            pairs.append((self.mlm_head, self.mlm_head_m))
        return pairs

    def init_weights(self) -> None:
        """mmengine's weight init, then the twins start equal to the online modules."""
        super().init_weights()
        copy_params(self.momentum_pairs())

    # -- encoders -------------------------------------------------------------------------
    def _image(self, images: torch.Tensor, momentum: bool = False):
        """``(image_embeds [B, N, C], image_feat [B, D])``. Videos ``[B, T, 3, H, W]``: each
        frame through the image encoder, the frames' tokens concatenated ``[B, T * N, C]``
        for the fusion encoder / decoder, and the normalised frame features averaged and
        normalised again for ITC (CLIP4Clip's mean pooling)."""
        vision = self.vision_m if momentum else self.vision
        proj = self.vision_proj_m if momentum else self.vision_proj
        if images.dim() == 5:
            B, T = images.shape[:2]
            out = vision(images.flatten(0, 1))
            tokens = out['image_embeds']  # (B*T, N, C)
            frames = F.normalize(proj(out['image_pooled']), dim=-1).view(B, T, -1)
            return (tokens.reshape(B, T * tokens.shape[1], tokens.shape[2]),
                    F.normalize(frames.mean(1), dim=-1))
        out = vision(images)
        return out['image_embeds'], F.normalize(proj(out['image_pooled']), dim=-1)

    def _text(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor],
              momentum: bool = False):
        text = self.text_m if momentum else self.text
        proj = self.text_proj_m if momentum else self.text_proj
        out = text(input_ids, attention_mask)
        return out['text_embeds'], F.normalize(proj(out['text_pooled']), dim=-1)

    def fuse(self, text_embeds: torch.Tensor, text_mask: Optional[torch.Tensor],
             image_embeds: torch.Tensor, momentum: bool = False) -> torch.Tensor:
        """Fusion encoder: text states ``[B, L, C]`` attending to ``image_embeds
        [B, N, C_img]`` -> ``[B, L, C]``."""
        fusion = self.fusion_m if momentum else self.fusion
        return fusion(hidden_states=text_embeds, attention_mask=text_mask,
                      image_embeds=image_embeds)['text_embeds']

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return self._image(images)[1]

    def fused_features(self, images: torch.Tensor, input_ids: torch.Tensor,
                       attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The multimodal representation ``[B, C]`` the downstream heads read (ALBEF's
        SNLI-VE / NLVR2 / VQA-classifier ``cls_head``): the fusion encoder's ``[CLS]``
        state (no projection, no momentum encoder)."""
        image_embeds = self.vision(images)['image_embeds']
        text_embeds = self.text(input_ids, attention_mask)['text_embeds']
        return self.fuse(text_embeds, attention_mask, image_embeds)[:, 0]

    def text_features(self, input_ids: torch.Tensor,
                      attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self._text(input_ids, attention_mask)[1]

    # -- NLVR2: two-image fusion (Sec. 5.3, Fig. 3b) ----------------------------------------
    @staticmethod
    def _tie_pair_layers(fusion) -> None:
        """Share the cross-attention key/value of fusion layers ``(2k, 2k + 1)``."""
        n = getattr(fusion, 'num_layers', None)
        cross = getattr(fusion, 'cross_layers', None)
        if not hasattr(fusion, 'share_cross_attention_kv') or n is None or n % 2:
            raise ValueError('two_image_fusion needs a BertEncoder fusion with an even '
                             f'num_layers (twice the pre-trained layers), got {n}')
        if set(cross) != set(range(n)):
            raise ValueError('two_image_fusion needs cross-attention in every fusion layer '
                             "(cross_attention_layers='all')")
        fusion.share_cross_attention_kv([(2 * k, 2 * k + 1) for k in range(n // 2)])

    def fused_features_pair(self, images: torch.Tensor, input_ids: torch.Tensor,
                            attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """ALBEF's NLVR2 representation ``[B, C]`` of ``images [B, 2, 3, H, W]`` and one
        statement: both images through the image encoder in one batch, the text encoder
        once, then the fusion encoder with ``image_embeds=[image0, image1]`` (layer ``2k``
        attends to image 0, ``2k + 1`` to image 1); the last layer's ``[CLS]`` state.
        Needs ``two_image_fusion=True``."""
        if not getattr(self, 'two_image_fusion', False):
            raise RuntimeError(f'{type(self).__name__}.fused_features_pair needs '
                               'two_image_fusion=True (a fusion encoder of 2 x the '
                               'pre-trained layers); or use pair_encoding=\'separate\'')
        if images.dim() != 5 or images.shape[1] != 2:
            raise ValueError(f'expected image pairs [B, 2, 3, H, W], got {tuple(images.shape)}')
        B = images.shape[0]
        # image 0 of every sample, then image 1: (2B, 3, H, W)
        tokens = self.vision(images.transpose(0, 1).reshape(2 * B, *images.shape[2:]))
        tokens = tokens['image_embeds']  # (2B, N, C)
        text_embeds = self.text(input_ids, attention_mask)['text_embeds']
        return self.fuse(text_embeds, attention_mask, [tokens[:B], tokens[B:]])[:, 0]

    @staticmethod
    def expand_fusion_state_dict(state_dict: Dict[str, torch.Tensor],
                                 prefix: str = 'fusion.') -> Dict[str, torch.Tensor]:
        """A pre-training state dict (``N`` fusion layers) in the NLVR2 layout (``2N``):
        ``{prefix}blocks.k.*`` is copied to ``blocks.2k.*`` and ``blocks.(2k+1).*`` (ALBEF's
        NLVR2 initialisation), and so are the momentum twin's keys (``fusion_m.`` for
        ``fusion.``) if present. Other keys are kept; a new dict is returned."""
        base = prefix[:-1] if prefix.endswith('.') else prefix
        pattern = re.compile(rf'^({re.escape(base)}|{re.escape(base)}_m)\.blocks\.(\d+)\.(.+)$')
        out = {}
        for key, val in state_dict.items():
            m = pattern.match(key)
            if m is None:
                out[key] = val
                continue
            head, k, rest = m.group(1), int(m.group(2)), m.group(3)
            for new in (2 * k, 2 * k + 1):
                out[f'{head}.blocks.{new}.{rest}'] = val
        return out

    def adapt_pretrained_state_dict(
            self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Hook for loading a family checkpoint (keys as this model's, no ``model.``
        prefix): unchanged, except with ``two_image_fusion`` a checkpoint whose fusion
        encoder has half this model's layers (pre-training) is expanded by
        :meth:`expand_fusion_state_dict`; one already in the NLVR2 layout is kept."""
        if not getattr(self, 'two_image_fusion', False):
            return state_dict
        layers = {int(m.group(1)) for m in
                  (re.match(r'^fusion\.blocks\.(\d+)\.', k) for k in state_dict) if m}
        if not layers:
            return state_dict
        n_ckpt, n = max(layers) + 1, self.fusion.num_layers
        if n_ckpt == n:
            return state_dict
        if 2 * n_ckpt != n:
            raise ValueError(f'checkpoint fusion encoder has {n_ckpt} layers; this '
                             f'two_image_fusion model takes {n // 2} (pre-training) or {n}')
        return self.expand_fusion_state_dict(state_dict)

    def itm_logits(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                   text_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """ITM logits ``[B, 2]`` of paired image tokens and unimodal text states."""
        if self.itm_head is None:
            raise RuntimeError(f'this {type(self).__name__} has no itm_head')
        return self.itm_head(self.fuse(text_embeds, text_mask, image_embeds)[:, 0])

    def rerank_scores(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                      text_mask: Optional[torch.Tensor],
                      itc_scores: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Score of each pair for ITM re-ranking: the matched-class ITM logit (ALBEF's
        ``itm_head(...)[:, 1]``), plus the ITC cosine similarity when ``rerank_add_itc``
        (BLIP's and BLIP-2's evaluation). ``[B]``."""
        score = self.itm_logits(image_embeds, text_embeds, text_mask)[:, 1].float()
        if self.rerank_add_itc and itc_scores is not None:
            score = score + itc_scores.to(score)
        return score

    # -- training ---------------------------------------------------------------------------
    def _positive_mask(self, idx: Optional[torch.Tensor], cols_idx: Optional[torch.Tensor],
                       rows: int, cols: int, offset: int, device) -> torch.Tensor:
        """``[rows, cols]`` bool: column ``offset + i`` for row ``i``, or equal image ids."""
        if idx is not None and cols_idx is not None:
            return idx.view(-1, 1) == cols_idx.view(1, -1)
        mask = torch.zeros(rows, cols, dtype=torch.bool, device=device)
        r = torch.arange(rows, device=device)
        mask[r, r + offset] = True
        return mask

    def _unpack(self, inputs: dict, data_samples: Optional[dict]):
        images, input_ids = inputs['images'], inputs['input_ids']
        text_mask = inputs.get('attention_mask')
        if text_mask is None:
            text_mask = torch.ones_like(input_ids)
        idx = None
        if self.queue_ids:
            if data_samples is None or 'image_id' not in data_samples:
                raise KeyError('queue_ids=True needs data_samples["image_id"]')
            idx = torch.as_tensor(data_samples['image_id'], device=images.device).long().view(-1)
        return images, input_ids, text_mask, idx

    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """ITC + ITM + MLM of a batch: ``images [B, 3, H, W]``, ``input_ids [B, L]``,
        ``attention_mask [B, L]``; ``data_samples['image_id']`` with ``queue_ids``."""
        images, input_ids, text_mask, idx = self._unpack(inputs, data_samples)
        alpha = self.alpha if self.momentum_distill else 0.0
        image_embeds, image_feat = self._image(images)  # (B, N, C), (B, D)
        text_embeds, text_feat = self._text(input_ids, text_mask)  # (B, L, C), (B, D)
        losses, image_embeds_m = self._itc_loss(images, input_ids, text_mask, image_feat,
                                                text_feat, idx, alpha)
        if self.itm_head is not None:
            losses.update(self._itm_loss(image_embeds, image_feat, text_embeds, text_feat,
                                         text_mask, idx, losses['logit_scale']))
        if self.mlm_head is not None:
            losses['loss_mlm'] = self.loss_weights['mlm'] * self._mlm_loss(
                input_ids, text_mask, image_embeds, image_embeds_m, alpha)
        losses['alpha'] = torch.tensor(float(alpha), device=images.device)
        return losses

    def _itc_loss(self, images, input_ids, text_mask, image_feat, text_feat, idx,
                  alpha: float):
        """ITC against the momentum features of the batch and the queue, with momentum
        distillation; stages this step's momentum features for the queue. Returns the
        losses (``loss_itc``, ``logit_scale``) and the momentum image tokens."""
        B = images.shape[0]
        with torch.no_grad():
            image_embeds_m, image_feat_m = self._image(images, momentum=True)
            _, text_feat_m = self._text(input_ids, text_mask, momentum=True)
            if self.queue is None:  # negatives: momentum features of every rank
                img_cols = concat_all_gather(image_feat_m)
                txt_cols = concat_all_gather(text_feat_m)
                cols_idx = concat_all_gather(idx) if idx is not None else None
                offset = get_rank() * B
            else:  # this rank's momentum features, then the queue (ALBEF), as two column
                # blocks the loss scores one after the other: the queue is not copied
                img_cols = [image_feat_m, self.queue.rows('image').to(image_feat_m)]
                txt_cols = [text_feat_m, self.queue.rows('text').to(text_feat_m)]
                cols_idx = (torch.cat([idx, self.queue.rows('idx').to(idx)])
                            if idx is not None else None)
                offset = 0
            n_cols = (img_cols.shape[0] if torch.is_tensor(img_cols)
                      else sum(c.shape[0] for c in img_cols))
            pos = self._positive_mask(idx, cols_idx, B, n_cols, offset, images.device).float()
            targets = pos / pos.sum(dim=1, keepdim=True)  # (B, M)
        # the soft targets (momentum distillation) are mixed in by the loss, which owns the
        # temperature
        itc = self.itc(image_feat, text_feat, image_feat_all=img_cols, text_feat_all=txt_cols,
                       targets_i2t=targets, targets_t2i=targets,
                       distill_image_feat=image_feat_m, distill_text_feat=text_feat_m,
                       distill_alpha=alpha)
        losses = dict(loss_itc=self.loss_weights['itc'] * itc['loss_itc'],
                      logit_scale=itc['logit_scale'])
        if self.training and self.queue is not None:
            rows = dict(image=image_feat_m, text=text_feat_m)
            if self.queue_ids:
                rows['idx'] = idx
            self.queue.stage(**rows)
        return losses, image_embeds_m

    @staticmethod
    def itc_similarity(image_feat: torch.Tensor, text_feat: torch.Tensor) -> torch.Tensor:
        """Cosine similarities ``[N_img, N_txt]`` of normalised features (BLIP-2 overrides
        it with the maximum over its query features)."""
        return image_feat.float() @ text_feat.float().t()

    def _itm_loss(self, image_embeds, image_feat, text_x, text_feat, text_mask, idx,
                  scale) -> Dict[str, torch.Tensor]:
        """ITM on the positives and one hard negative per image and per text.

        ``text_x [B, L, ...]`` is what :meth:`itm_logits` takes for the text side: the
        unimodal text states ``[B, L, C]`` (ALBEF: they carry gradient to the negatives'
        rank) or token ids ``[B, L]`` (BLIP re-encodes the text with the image)."""
        B = image_embeds.shape[0]
        glob = self.itm_negatives == 'global' and get_world_size() > 1
        with torch.no_grad():
            img_world = concat_all_gather(image_feat) if glob else image_feat.detach()
            txt_world = concat_all_gather(text_feat) if glob else text_feat.detach()
            idx_world = (concat_all_gather(idx) if glob else idx) if idx is not None else None
            offset = get_rank() * B if glob else 0
            sim_i2t = scale * self.itc_similarity(image_feat, txt_world)  # (B, W*B)
            sim_t2i = scale * self.itc_similarity(img_world, text_feat).t()  # (B, W*B)
            if not self.itm_hard:  # warm-up: every negative equally likely
                sim_i2t, sim_t2i = torch.zeros_like(sim_i2t), torch.zeros_like(sim_t2i)
            pos = self._positive_mask(idx, idx_world, B, txt_world.shape[0], offset,
                                      image_embeds.device)
            neg_img = sample_hard_negatives(sim_t2i, pos)  # (B,) an image per text
            neg_txt = sample_hard_negatives(sim_i2t, pos)  # (B,) a text per image
        if glob:  # negatives from every rank; float states keep gradient to their rank
            image_embeds_w = all_gather_features(image_embeds)
            # texts may be padded to different lengths on different ranks
            L = text_x.shape[1]
            L_max = torch.tensor(L, device=text_x.device)
            torch.distributed.all_reduce(L_max, op=torch.distributed.ReduceOp.MAX)
            L_max = int(L_max)
            text_x = _pad_seq(text_x, L_max)
            text_mask = _pad_seq(text_mask, L_max)
            text_x_w = (all_gather_features(text_x) if text_x.is_floating_point()
                        else concat_all_gather(text_x))
            text_mask_w = concat_all_gather(text_mask)
        else:
            image_embeds_w, text_x_w, text_mask_w = image_embeds, text_x, text_mask
        # positives, (text, hard negative image), (hard negative text, image): ALBEF's order
        text_all = torch.cat([text_x, text_x, text_x_w[neg_txt]])
        mask_all = torch.cat([text_mask, text_mask, text_mask_w[neg_txt]])
        image_all = torch.cat([image_embeds, image_embeds_w[neg_img], image_embeds])
        logits = self.itm_logits(image_all, text_all, mask_all)  # (3B, 2)
        out = itm_loss(logits, num_positive=B)
        out['loss_itm'] = self.loss_weights['itm'] * out['loss_itm']
        return out

    def _mlm_loss(self, input_ids, text_mask, image_embeds, image_embeds_m,
                  alpha: float) -> torch.Tensor:
        mask_id, special, vocab = self._mlm_ids()
        masked_ids, labels = mask_tokens(input_ids, mask_id, vocab, self.mlm_probability,
                                         special_ids=special, attention_mask=text_mask)
        sel = labels != -100  # (B, L)
        hidden = self.fuse(self.text(masked_ids, text_mask)['text_embeds'], text_mask,
                           image_embeds)
        if not bool(sel.any()):  # nothing masked in this batch: a zero that keeps the graph
            return hidden.sum() * 0.0
        logits = self.mlm_head(hidden[sel]).float()  # (M, V)
        target = labels[sel]
        loss = F.cross_entropy(logits, target)
        if alpha > 0:
            with torch.no_grad():
                hidden_m = self.fuse(self.text_m(masked_ids, text_mask)['text_embeds'],
                                     text_mask, image_embeds_m, momentum=True)
                soft = self.mlm_head_m(hidden_m[sel]).float().softmax(dim=-1)
            distill = -(soft * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
            loss = (1 - alpha) * loss + alpha * distill
        return loss

    # -- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """``uint8`` or normalised images ``[B, 3, H, W]`` -> normalised ``[B, D]``."""
        return self.image_features(self.preprocess_images(images))

    @torch.no_grad()
    def encode_text(self, texts: Union[str, List[str], torch.Tensor],
                    attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Strings or token ids ``[B, L]`` -> normalised ``[B, D]``."""
        tok = self.tokenize(texts, attention_mask)
        mask = tok.get('attention_mask')
        return self.text_features(tok['input_ids'], mask)

    @torch.no_grad()
    def itm_score(self, images: torch.Tensor, texts: Union[str, List[str], torch.Tensor],
                  attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Probability that each image matches its text (pairs, ``[B]``)."""
        tok = self.tokenize(texts, attention_mask)
        mask = tok.get('attention_mask')
        image_embeds, _ = self._image(self.preprocess_images(images))
        text_embeds, _ = self._text(tok['input_ids'], mask)
        return self.itm_logits(image_embeds, text_embeds, mask).softmax(dim=-1)[:, 1]

    def extract_feat(self, inputs: dict) -> Dict[str, torch.Tensor]:
        out = {}
        if inputs.get('images') is not None:
            out['image_embeds'], out['image_feat'] = self._image(inputs['images'])
        if inputs.get('input_ids') is not None:
            ids = inputs['input_ids']
            mask = inputs.get('attention_mask')
            out['text_embeds'], out['text_feat'] = self._text(ids, mask)
        return out

    def predict(self, inputs: dict, data_samples: Optional[dict] = None) -> List[dict]:
        """One dict per image for retrieval evaluation: ``image_feat [D]`` (``[Q, D]``
        for BLIP-2), ``image_embeds [N, C]``, and for its ``K`` captions ``text_feat
        [K, D]``, ``text_embeds`` (the states ``[K, L, C]`` the ITM re-ranking needs, or the
        ids ``[K, L]`` with ``itm_text_ids``), ``text_mask [K, L]``, plus the sample's
        metadata."""
        images, ids = inputs.get('images'), inputs.get('input_ids')
        mask = inputs.get('attention_mask')
        if images is None or ids is None:
            raise ValueError(f'{type(self).__name__}.predict needs images and input_ids')
        image_embeds, image_feat = self._image(images)
        ids_list, masks = caption_lists(ids, mask)
        counts = [t.shape[0] for t in ids_list]
        same_len = all(t.shape[1] == ids_list[0].shape[1] for t in ids_list)
        if same_len:
            cat_mask = torch.cat(masks)
            t_embeds, t_feat = self._text(torch.cat(ids_list), cat_mask)
            t_embeds, t_feat = t_embeds.split(counts), t_feat.split(counts)
            t_masks = cat_mask.split(counts)
        else:
            pairs = [self._text(t, m) for t, m in zip(ids_list, masks)]
            t_embeds, t_feat, t_masks = [p[0] for p in pairs], [p[1] for p in pairs], masks
        metas = _split_meta(data_samples, images.shape[0])
        results = []
        for i in range(images.shape[0]):
            res = dict(metas[i])
            res.update(image_feat=image_feat[i], image_embeds=image_embeds[i],
                       text_feat=t_feat[i], text_mask=t_masks[i],
                       text_embeds=ids_list[i] if self.itm_text_ids else t_embeds[i])
            results.append(res)
        return results
