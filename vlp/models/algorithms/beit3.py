"""BEiT-3 (Wang et al. 2022, "Image as a Foreign Language: BEiT Pretraining for All Vision
and Vision-Language Tasks", Sec. 2.2-2.3): one objective, **masked data modelling**, on one
multiway transformer (:class:`~vlp.models.backbones.beit3.BEiT3Transformer`):

- ``'image'`` (monomodal images, "Imglish"): 40% of the patches masked block-wise (BEiT) and
  their visual tokens predicted (a frozen, pluggable tokenizer; the paper: BEiT v2's VQ-KD);
- ``'text'`` (monomodal texts): 15% of the tokens masked and predicted (MLM);
- ``'pair'`` (image-text pairs, "parallel sentences"): 50% of the text tokens masked and
  predicted from the fused ``[image; text]`` sequence. The paper masks only the text of a
  pair (Sec. 2.2 gives the pair's text ratio and no image ratio for pairs; the pretraining
  code is unreleased): the pair's image stays whole by default; ``pair_mim=True`` also masks
  its patches block-wise and predicts their tokens (``loss_pair_mim``), our extension.

Simplification: the paper draws images, texts and pairs from separate corpora in each batch
(2048 + 2048 + 2048); here a batch runs each of ``modes`` whose inputs it holds, so a batch
of pairs trains all three (its images alone, its captions alone, and the pair).
"""
from typing import Dict, List, Optional, Sequence

import torch

from vlp.registry import MODELS
from ..losses.mim import mim_loss
from ..losses.mlm import masked_token_loss
from ..utils.masking import MLMTokenIds, block_wise_mask, mask_tokens
from .base import VLPModel, build_part

MODES = ('image', 'text', 'pair')


@MODELS.register_module()
class BEiT3(VLPModel):
    """BEiT-3's masked data modelling.

    Args:
        backbone: :class:`BEiT3Transformer` config.
        mlm_head: :class:`MLMHead` (its decoder tied to ``backbone.word_embeddings``); serves
            the ``'text'`` and ``'pair'`` modes.
        mim_head: :class:`MIMHead` (``out_dim``: the tokenizer's ``num_classes``, or its
            ``target_dim`` for a regression target); serves ``'image'`` (and ``pair_mim``).
        visual_tokenizer: the frozen MIM target, required: any registered target module
            (a VQ-KD / dVAE port with ``checkpoint=``, ``RandomProjectionTokenizer``), or
            ``PixelTarget`` (MAE's normalised pixels, mean-squared error) when no visual
            tokenizer is at hand.
        mim_mask: :func:`~vlp.models.utils.masking.block_wise_mask` settings (BEiT's 40%:
            ``num_masking_patches=75`` of 14 x 14, ``min_num_patches=16``, ``min_aspect=0.3``).
        mlm_probability: masking rate of monomodal texts (0.15).
        pair_mlm_probability: masking rate of the texts of pairs (0.5).
        pair_mim: also mask and predict the image patches of pairs (default ``False``, see
            the module docstring).
        modes: the objectives trained, a subset of ``('image', 'text', 'pair')``; each runs
            on every batch that holds its inputs (``images``; ``input_ids``; both), and a
            batch that can run none of them is an error.
        mask_token_id, special_token_ids, vocab_size: MLM masking (from the tokenizer when
            ``None``: its ``[MASK]``; its pad, ``[CLS]`` / bos and ``[SEP]`` / eos are never
            masked; random replacements from the MLM head's vocabulary). Chosen tokens are
            replaced BERT's way (80% ``[MASK]``, 10% random, 10% kept; the paper is silent).
        loss_weights: ``dict(mim=1, mlm=1, pair_mlm=1, pair_mim=1)``.

    Losses: ``loss_mim`` / ``acc_mim`` (no accuracy for a regression target), ``loss_mlm``
    / ``acc_mlm``, ``loss_pair_mlm`` / ``acc_pair_mlm`` (and ``loss_pair_mim`` /
    ``acc_pair_mim``).
    """
    capabilities = frozenset({'loss', 'extract_feat', 'fused_features'})
    unsupported_reasons = {'predict': (
        'BEiT3 is the masked-data-modelling pre-training model: it has no retrieval, VQA or '
        "classification head. Fine-tune it with a task model: VQAClassifier / VLClassifier "
        "(model=dict(type='BEiT3', ...)) or BEiT3Retrieval; the [CLS] states are available "
        "from forward(mode='tensor') / extract_feat")}

    def __init__(self, backbone: dict, mlm_head: dict, mim_head: dict, visual_tokenizer: dict,
                 mim_mask: Optional[dict] = None, mlm_probability: float = 0.15,
                 pair_mlm_probability: float = 0.5, pair_mim: bool = False,
                 modes: Sequence[str] = MODES, mask_token_id: Optional[int] = None,
                 special_token_ids: Optional[List[int]] = None,
                 vocab_size: Optional[int] = None,
                 loss_weights: Optional[Dict[str, float]] = None,
                 data_preprocessor: Optional[dict] = None, tokenizer: Optional[dict] = None,
                 grad_checkpointing: bool = False, init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor, tokenizer=tokenizer,
                         init_cfg=init_cfg)
        bad = [m for m in modes if m not in MODES]
        if bad or not modes:
            raise ValueError(f'modes must be a non-empty subset of {MODES}, got {modes}')
        if visual_tokenizer is None:
            raise ValueError("BEiT3 needs visual_tokenizer (use dict(type='PixelTarget') for "
                             'the tokenizer-free normalised-pixel target)')
        self.modes = tuple(modes)
        self.backbone = build_part(backbone)
        self.mlm_head = build_part(mlm_head)
        self.mlm_head.tie_weights(self.backbone.word_embeddings)
        self.mim_head = build_part(mim_head)
        self.visual_tokenizer = build_part(visual_tokenizer)
        self.mim_mask = dict(num_masking_patches=75, min_num_patches=16, min_aspect=0.3)
        self.mim_mask.update(mim_mask or {})
        self.mlm_probability = mlm_probability
        self.pair_mlm_probability = pair_mlm_probability
        self.pair_mim = pair_mim
        self.mlm_ids = MLMTokenIds(mask_token_id, special_token_ids, vocab_size, (
            'pad_token_id', 'cls_token_id', 'sep_token_id', 'bos_token_id', 'eos_token_id'))
        self.loss_weights = {**dict(mim=1.0, mlm=1.0, pair_mlm=1.0, pair_mim=1.0),
                             **(loss_weights or {})}
        self.set_grad_checkpointing(grad_checkpointing)

    # -- masking -------------------------------------------------------------------------------
    def mask_text(self, input_ids: torch.Tensor, text_mask: torch.Tensor,
                  probability: float):
        """``(masked_ids, labels)``; labels ``-100`` where not chosen."""
        mask_id, special, vocab = self.mlm_ids.resolve(self.tokenizer, self.mlm_head, 'BEiT3')
        return mask_tokens(input_ids, mask_id, vocab, probability, special_ids=special,
                           attention_mask=text_mask)

    def mask_image(self, batch_size: int, device) -> torch.Tensor:
        """Block-wise mask ``[B, N_patches]`` (True = masked)."""
        grid = int(round(self.backbone.num_patches ** 0.5))
        return block_wise_mask(batch_size, (grid, grid), **self.mim_mask).to(device)

    # -- objectives ----------------------------------------------------------------------------
    def _predict_tokens(self, states: torch.Tensor, labels: torch.Tensor, name: str):
        """MLM cross-entropy and accuracy over the chosen positions of ``states``."""
        loss, acc = masked_token_loss(self.mlm_head, states, labels)
        return {f'loss_{name}': self.loss_weights[name] * loss, f'acc_{name}': acc}

    def _predict_patches(self, patch_states: torch.Tensor, mask: torch.Tensor,
                         targets: torch.Tensor, name: str):
        """MIM loss (and accuracy) over the masked patches: ``patch_states [B, N, C]``."""
        logits = self.mim_head(patch_states[mask])
        loss, acc = mim_loss(logits, targets[mask], self.visual_tokenizer.num_classes)
        out = {f'loss_{name}': self.loss_weights[name] * loss}
        if acc is not None:
            out[f'acc_{name}'] = acc
        return out

    def _image_mdm(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        mask = self.mask_image(images.shape[0], images.device)
        targets = self.visual_tokenizer(images)  # (B, N) tokens or (B, N, D) pixels
        out = self.backbone(images=images, vision_masked_position=mask)
        return self._predict_patches(out['image_embeds'][:, 1:], mask, targets, 'mim')

    def _text_mdm(self, input_ids: torch.Tensor, text_mask: torch.Tensor):
        masked, labels = self.mask_text(input_ids, text_mask, self.mlm_probability)
        out = self.backbone(input_ids=masked, attention_mask=text_mask)
        return self._predict_tokens(out['text_embeds'], labels, 'mlm')

    def _pair_mdm(self, images: torch.Tensor, input_ids: torch.Tensor,
                  text_mask: torch.Tensor) -> Dict[str, torch.Tensor]:
        masked, labels = self.mask_text(input_ids, text_mask, self.pair_mlm_probability)
        patch_mask = self.mask_image(images.shape[0], images.device) if self.pair_mim else None
        out = self.backbone(images=images, input_ids=masked, attention_mask=text_mask,
                            vision_masked_position=patch_mask)
        losses = self._predict_tokens(out['text_embeds'], labels, 'pair_mlm')
        if self.pair_mim:
            losses.update(self._predict_patches(out['image_embeds'][:, 1:], patch_mask,
                                                self.visual_tokenizer(images), 'pair_mim'))
        return losses

    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """Masked data modelling of a batch: ``images [B, 3, H, W]`` and / or ``input_ids
        [B, L]`` with ``attention_mask [B, L]``; each configured mode whose inputs are
        present runs."""
        images, input_ids = inputs.get('images'), inputs.get('input_ids')
        text_mask = inputs.get('attention_mask')
        if input_ids is not None and text_mask is None:
            text_mask = torch.ones_like(input_ids)
        losses = {}
        if 'image' in self.modes and images is not None:
            losses.update(self._image_mdm(images))
        if 'text' in self.modes and input_ids is not None:
            losses.update(self._text_mdm(input_ids, text_mask))
        if 'pair' in self.modes and images is not None and input_ids is not None:
            losses.update(self._pair_mdm(images, input_ids, text_mask))
        if not losses:
            raise ValueError(f'BEiT3 modes {self.modes} cannot run on a batch with keys '
                             f'{sorted(inputs)}')
        return losses

    # -- features ------------------------------------------------------------------------------
    def extract_feat(self, inputs: dict) -> dict:
        """The backbone's outputs for ``images`` and / or ``input_ids`` (fused when both):
        ``image_embeds``, ``image_pooled`` (image ``[CLS]``), ``text_embeds``,
        ``text_pooled`` (text ``[CLS]``), ``text_mask``; no projection, no masking."""
        return self.backbone(images=inputs.get('images'), input_ids=inputs.get('input_ids'),
                             attention_mask=inputs.get('attention_mask'))

    def fused_features(self, images: torch.Tensor, input_ids: torch.Tensor,
                       attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The first state of the joint ``[image; text]`` encoding ``[B, C]`` (the image
        ``[CLS]``), which BEiT-3's task ``Pooler`` reads (``x[:, 0]``)."""
        out = self.backbone(images=images, input_ids=input_ids, attention_mask=attention_mask)
        return out['image_pooled']
