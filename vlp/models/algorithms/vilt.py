"""ViLT (Kim et al. 2021, "ViLT: Vision-and-Language Transformer Without Convolution or
Region Supervision"): one single-stream transformer over word embeddings and linear patch
projections (:class:`~vlp.models.fusion.single_stream.SingleStreamTransformer`), trained with

- **ITM** (Sec. 3.2): each aligned image is replaced by a different image with probability
  0.5 (as ViLT's code: exactly ``ceil(B / 2)`` rows of a batch, drawn at random); a linear head on the
  pooled first token classifies matched / unmatched. Random negatives, NOT ALBEF's hard ones;
- **WPA** (Sec. 3.2, word-patch alignment, weight 0.1): the optimal-transport distance,
  by the inexact proximal point method (IPOT), between the text and the image token states
  of the ITM pass, pulled down for matched and up for unmatched pairs;
- **MLM** with **whole-word masking** (Sec. 3.3): 15% of the words, all their subword
  tokens together (80% ``[MASK]``, 10% random, 10% kept per token), predicted from the
  masked text and the aligned image.

Simplifications: the ITM negative image is another image of the batch (ViLT draws one from
the dataset); words are chosen independently with probability 0.15 (HF's whole-word
collator picks words until 15% of the tokens are covered). Retrieval scores every pair by
the matched-class ITM logit (ViLT has no ITC); see :meth:`ViLT.predict`.
"""
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from vlp.registry import MODELS
from ..losses.mlm import masked_token_loss
from ..utils.masking import MLMTokenIds, mask_tokens, mask_whole_words
from .base import VLPModel, build_part, caption_lists, split_meta


@MODELS.register_module()
class ViLT(VLPModel):
    """ViLT pre-training (ITM + WPA + whole-word MLM) and ITM retrieval.

    Args:
        backbone: :class:`SingleStreamTransformer` config (with its pooler for ITM).
        itm_head: ITM classifier on the pooled state (``None``: no ITM, no WPA).
        mlm_head: :class:`MLMHead` (``None``: no MLM); tied to the word embeddings when
            ``tie_mlm_decoder``.
        wpa: WPA loss config (``None``: off), e.g. ``dict(type='WordPatchAlignmentLoss')``.
        itm_neg_prob: share of a batch whose image is replaced (0.5).
        mlm_probability: share of words (tokens without word ids) masked (0.15).
        whole_word_masking: mask whole words when ``word_ids`` come with the batch
            (``Tokenize(return_word_ids=True)``; read from ``inputs`` or ``data_samples``).
            **Without word ids the model falls back to token-level masking**
            (:func:`~vlp.models.utils.masking.mask_tokens`), which is BERT's original MLM.
        mask_token_id / special_token_ids / vocab_size: MLM ids; ``None`` takes them from
            the tokenizer (``[MASK]``; ``[PAD]``, ``[CLS]``, ``[SEP]`` never masked).
        loss_weights: ``dict(itm=1, mlm=1, wpa=0.1)`` (ViLT: WPA 0.1).
    """
    capabilities = frozenset({'loss', 'predict', 'extract_feat', 'itm_score',
                              'rerank_scores', 'fused_features'})

    def __init__(self, backbone: dict, itm_head: Optional[dict] = None,
                 mlm_head: Optional[dict] = None, wpa: Optional[dict] = None,
                 itm_neg_prob: float = 0.5, mlm_probability: float = 0.15,
                 whole_word_masking: bool = True, mask_token_id: Optional[int] = None,
                 special_token_ids: Optional[List[int]] = None,
                 vocab_size: Optional[int] = None, tie_mlm_decoder: bool = True,
                 loss_weights: Optional[Dict[str, float]] = None,
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 grad_checkpointing: bool = False, init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        if not 0.0 <= itm_neg_prob <= 1.0:
            raise ValueError(f'itm_neg_prob must be in [0, 1], got {itm_neg_prob}')
        self.backbone = build_part(backbone)
        self.itm_head = build_part(itm_head)
        self.mlm_head = build_part(mlm_head)
        if self.mlm_head is not None and tie_mlm_decoder:
            self.mlm_head.tie_weights(self.backbone.word_embeddings)
        self.wpa = build_part(wpa)
        self.itm_neg_prob = itm_neg_prob
        self.mlm_probability = mlm_probability
        self.whole_word_masking = whole_word_masking
        self.mlm_ids = MLMTokenIds(mask_token_id, special_token_ids, vocab_size,
                                   ('pad_token_id', 'cls_token_id', 'sep_token_id'))
        self.loss_weights = {**dict(itm=1.0, mlm=1.0, wpa=0.1), **(loss_weights or {})}
        self.set_grad_checkpointing(grad_checkpointing)

    # -- the fused pass ---------------------------------------------------------------------
    def fuse(self, images: torch.Tensor, input_ids: torch.Tensor,
             text_mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        return self.backbone(images=images, input_ids=input_ids, attention_mask=text_mask)

    def fused_features(self, images: torch.Tensor, input_ids: torch.Tensor,
                       attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """ViLT's pooled first state ``[B, C]`` (the backbone's pooler), which its VQA and
        NLVR2 classifiers read."""
        out = self.fuse(images, input_ids, attention_mask)
        if 'pooled' not in out:
            raise RuntimeError('this ViLT backbone has no pooler: the task heads read it')
        return out['pooled']

    def itm_logits(self, images, input_ids, text_mask=None) -> torch.Tensor:
        """ITM logits ``[B, 2]`` of image-text pairs (class 1 = matched)."""
        if self.itm_head is None:
            raise RuntimeError('this ViLT has no itm_head')
        return self.itm_head(self.fuse(images, input_ids, text_mask)['pooled'])

    def rerank_scores(self, image_embeds, text_embeds, text_mask, itc_scores=None):
        """Pair scores for :class:`ITMRetrievalMetric`: ``image_embeds`` are the images and
        ``text_embeds`` the token ids (see :meth:`predict`); the matched-class logit ``[B]``."""
        return self.itm_logits(image_embeds, text_embeds, text_mask)[:, 1].float()

    # -- training ---------------------------------------------------------------------------
    def itm_pairs(self, images: torch.Tensor, generator: Optional[torch.Generator] = None
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(images', matched [B] bool)``: ``B - floor((1 - itm_neg_prob) B)`` random rows
        (ViLT's code: ``B - B // 2``) get another row's image (a uniformly drawn different
        index of the batch; a batch holding one image twice can pair it with itself)."""
        B, device = images.shape[0], images.device
        num_neg = B - int((1.0 - self.itm_neg_prob) * B + 1e-6) if B > 1 else 0
        neg = torch.randperm(B, device=device, generator=generator)[:num_neg]
        src = torch.arange(B, device=device)
        shift = torch.randint(1, max(B, 2), (num_neg,), device=device, generator=generator)
        src[neg] = (neg + shift) % B  # never the row itself
        matched = torch.ones(B, dtype=torch.bool, device=device)
        matched[neg] = False
        return images[src], matched

    @staticmethod
    def _word_ids(inputs: dict, data_samples) -> Optional[torch.Tensor]:
        if inputs.get('word_ids') is not None:
            return inputs['word_ids']
        if isinstance(data_samples, dict) and data_samples.get('word_ids') is not None:
            return torch.as_tensor(data_samples['word_ids'])
        return None

    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """ITM (+ WPA) on half-swapped pairs and MLM on the aligned pairs: ``images [B, 3,
        H, W]``, ``input_ids`` / ``attention_mask [B, L]``, optional ``word_ids [B, L]``."""
        images, input_ids = inputs['images'], inputs['input_ids']
        text_mask = inputs.get('attention_mask')
        if text_mask is None:
            text_mask = torch.ones_like(input_ids)
        losses = {}
        if self.itm_head is not None:
            itm_images, matched = self.itm_pairs(images)
            out = self.fuse(itm_images, input_ids, text_mask)
            logits = self.itm_head(out['pooled']).float()
            labels = matched.long()
            losses['loss_itm'] = self.loss_weights['itm'] * F.cross_entropy(logits, labels)
            losses['itm_acc'] = (logits.detach().argmax(1) == labels).float().mean()
            if self.wpa is not None:
                wpa = self.wpa(out['text_embeds'], text_mask, out['image_embeds'],
                               out['image_mask'], matched)
                losses['loss_wpa'] = self.loss_weights['wpa'] * wpa['loss_wpa']
        if self.mlm_head is not None:
            mask_id, special, vocab = self.mlm_ids.resolve(self.tokenizer, self.mlm_head,
                                                            'ViLT')
            word_ids = self._word_ids(inputs, data_samples) if self.whole_word_masking \
                else None
            if word_ids is not None:
                masked, labels = mask_whole_words(input_ids, word_ids, mask_id, vocab,
                                                  self.mlm_probability, special, text_mask)
            else:  # token-level fallback (no word boundaries in the batch)
                masked, labels = mask_tokens(input_ids, mask_id, vocab, self.mlm_probability,
                                             special_ids=special, attention_mask=text_mask)
            hidden = self.fuse(images, masked, text_mask)['text_embeds']
            loss_mlm, acc = masked_token_loss(self.mlm_head, hidden, labels)
            losses['loss_mlm'] = self.loss_weights['mlm'] * loss_mlm
            losses['mlm_acc'] = acc
        return losses

    # -- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def itm_score(self, images: torch.Tensor, texts: Union[str, List[str], torch.Tensor],
                  attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Probability that each image matches its text (pairs, ``[B]``)."""
        tok = self.tokenize(texts, attention_mask)
        mask = tok.get('attention_mask')
        logits = self.itm_logits(self.preprocess_images(images), tok['input_ids'], mask)
        return logits.softmax(dim=-1)[:, 1]

    def extract_feat(self, inputs: dict) -> Dict[str, torch.Tensor]:
        """The fused states of paired ``images`` and ``input_ids`` (ViLT has no unimodal
        features)."""
        return self.fuse(inputs['images'], inputs['input_ids'], inputs.get('attention_mask'))

    def predict(self, inputs: dict, data_samples: Optional[dict] = None) -> List[dict]:
        """One dict per image for :class:`ITMRetrievalMetric`. ViLT has no ITC space: the
        ``image_feat`` / ``text_feat`` are one constant feature, so every candidate ties in the
        ITC stage (``itc_*`` recalls read 0: ties count against the positive) and, with the
        metric's ``k`` at least the gallery size, EVERY pair is scored by the ITM head, as
        ViLT's evaluation does. ``image_embeds`` are the images ``[3, H, W]`` and
        ``text_embeds`` the token ids ``[K, L]`` (re-encoded with each image)."""
        images, ids = inputs.get('images'), inputs.get('input_ids')
        mask = inputs.get('attention_mask')
        if images is None or ids is None:
            raise ValueError('ViLT.predict needs images and input_ids')
        ids_list, masks = caption_lists(ids, mask)
        one = images.new_ones(1)
        results = []
        for i, meta in enumerate(split_meta(data_samples, images.shape[0])):
            res = dict(meta)
            res.update(image_feat=one, image_embeds=images[i],
                       text_feat=one.expand(ids_list[i].shape[0], 1), text_embeds=ids_list[i],
                       text_mask=masks[i])
            results.append(res)
        return results
