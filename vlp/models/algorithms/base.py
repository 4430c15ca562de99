"""VLPModel: the base of every algorithm (CLIP, ALBEF, BLIP, ...).

An algorithm is a thin composition: it builds its parts (towers, necks, heads, losses)
from config dicts through the registry and wires them in ``loss`` and ``predict``.
mmengine (and its DeepSpeed wrapper) calls ``forward(inputs, data_samples, mode)``
with the output of :class:`~vlp.models.utils.VLPDataPreprocessor`.

Output contract of the parts: ``image_embeds [B, N, C]``, ``image_feat [B, D]``,
``text_embeds [B, L, C]``, ``text_mask [B, L]``, ``text_feat [B, D]``.
"""
from typing import Dict, List, Optional, Union

import torch
from mmengine.model import BaseModel

from vlp.registry import MODELS, TOKENIZERS


_LAST_LOSS_TERMS: Dict[str, torch.Tensor] = {}


def last_loss_terms() -> Dict[str, torch.Tensor]:
    """The loss terms of the latest training step of any :class:`VLPModel` in this
    process (detached), as ``parse_losses`` computed them."""
    return dict(_LAST_LOSS_TERMS)


def build_part(cfg, registry=MODELS):
    """Build a part from a config dict; pass modules and ``None`` through."""
    if cfg is None or isinstance(cfg, torch.nn.Module):
        return cfg
    return registry.build(cfg)


class VLPModel(BaseModel):
    """Base class: mode dispatch, tokenizer for the inference API, checkpointing switch.

    Args:
        data_preprocessor: config of the preprocessor (``VLPDataPreprocessor`` by default).
        tokenizer: optional tokenizer config (``TOKENIZERS``); only the inference API
            (``encode_text(list_of_str)``, ``generate``) tokenises — training data is
            tokenised in the data pipeline.
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 data_preprocessor: Optional[dict] = None,
                 tokenizer: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='VLPDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        # built on first use: a config may name tokenizer files that only the machine
        # running inference has (training tokenises in the data pipeline)
        self._tokenizer_cfg = tokenizer
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None and self._tokenizer_cfg is not None:
            self._tokenizer = build_part(self._tokenizer_cfg, TOKENIZERS)
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, value) -> None:
        self._tokenizer, self._tokenizer_cfg = value, None

    # -- MLM masking ids (models with an ``mlm_head``) -----------------------------------
    #: tokenizer attributes whose ids MLM never masks (padding positions never are either)
    mlm_special_tokens = ('pad_token_id', 'cls_token_id')

    def _mlm_ids(self):
        """``(mask_token_id, special_ids, vocab_size)`` of MLM masking: the model's
        ``mask_token_id`` / ``special_token_ids`` / ``vocab_size`` arguments, else the
        tokenizer's ``[MASK]`` and :attr:`mlm_special_tokens` (``[0]`` without a tokenizer)
        and the MLM head's output size; resolved once."""
        tok = self.tokenizer
        mask_id = self._mask_token_id
        if mask_id is None:
            mask_id = getattr(tok, 'mask_token_id', None)
            if mask_id is None:
                raise ValueError(f'{type(self).__name__} MLM needs mask_token_id (or a '
                                 'tokenizer with [MASK])')
        special = self._special_token_ids
        if special is None:
            special = [0] if tok is None else [
                i for i in (getattr(tok, n, None) for n in self.mlm_special_tokens)
                if i is not None]
        vocab = self._vocab_size or self.mlm_head.decoder.out_features
        self._mask_token_id, self._special_token_ids, self._vocab_size = mask_id, special, vocab
        return mask_id, special, vocab

    # -- mmengine entry point -------------------------------------------------------
    def parse_losses(self, losses):
        """mmengine's; the step's terms are also kept for the non-finite guard's messages
        (:func:`last_loss_terms`)."""
        loss, log_vars = super().parse_losses(losses)
        _LAST_LOSS_TERMS.clear()
        _LAST_LOSS_TERMS.update((k, v.detach() if torch.is_tensor(v) else v)
                                for k, v in log_vars.items())
        return loss, log_vars

    def forward(self, inputs: Dict[str, torch.Tensor], data_samples: Optional[dict] = None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.extract_feat(inputs)
        raise ValueError(f'Invalid mode {mode!r}: expected loss, predict or tensor')

    def loss(self, inputs: dict, data_samples: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        raise NotImplementedError(f'{type(self).__name__} does not define a training loss')

    def predict(self, inputs: dict, data_samples: Optional[dict] = None) -> List[dict]:
        raise NotImplementedError(f'{type(self).__name__} does not define predict')

    def extract_feat(self, inputs: dict) -> dict:
        raise NotImplementedError(f'{type(self).__name__} does not define extract_feat')

    # -- inference helpers ----------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tokenize(self, texts: Union[str, List[str], torch.Tensor],
                 attention_mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Token ids (and mask) for the inference API, on the model's device; tensors pass
        through. A given ``attention_mask`` replaces the tokenizer's."""
        if isinstance(texts, torch.Tensor):
            ids = texts if texts.dim() == 2 else texts.unsqueeze(0)
            out = dict(input_ids=ids)
        else:
            if isinstance(texts, str):
                texts = [texts]
            if self.tokenizer is None:
                raise RuntimeError(
                    f'{type(self).__name__} has no tokenizer: set model.tokenizer in the '
                    'config or pass token ids as a LongTensor')
            out = dict(self.tokenizer(texts))
        if attention_mask is not None:
            out['attention_mask'] = attention_mask
        return {k: v.to(self.device) for k, v in out.items()}

    def preprocess_images(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise raw ``uint8``/0-255 images with the data preprocessor's statistics;
        float images in another range are taken as already normalised."""
        images = images.to(self.device)
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dtype == torch.uint8:
            return self.data_preprocessor.normalize(images)
        return images.float()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Switch activation checkpointing on every part that supports it."""
        for module in self.modules():
            if module is not self and hasattr(module, 'set_grad_checkpointing'):
                module.set_grad_checkpointing(enable)


def caption_lists(input_ids, attention_mask=None):
    """Per-image caption tensors of a retrieval batch: ``input_ids`` ``[B, K, L]`` /
    ``[B, L]`` or a list of ``[K_i, L]`` / ``[L]`` tensors (images with different numbers
    of captions) -> ``(ids, masks)``, two lists of ``[K_i, L]`` tensors (masks all ones
    when ``attention_mask`` is ``None``)."""
    if isinstance(input_ids, torch.Tensor):
        ids = list(input_ids if input_ids.dim() == 3 else input_ids.unsqueeze(1))
        if attention_mask is not None:
            masks = list(attention_mask if attention_mask.dim() == 3
                         else attention_mask.unsqueeze(1))
    else:
        ids = [t if t.dim() == 2 else t.unsqueeze(0) for t in input_ids]
        if attention_mask is not None:
            masks = [m if m.dim() == 2 else m.unsqueeze(0) for m in attention_mask]
    if attention_mask is None:
        masks = [torch.ones_like(t) for t in ids]
    return ids, masks


def without_weights(cfg):
    """A model config with pretrained-weight loading switched off (``pretrained`` -> False /
    None, ``checkpoint`` -> None; tokenizers kept: their files are configuration, not
    weights): paper configs name hub weights or local files a test or benchmark machine
    does not have."""
    if isinstance(cfg, dict):
        out = {}
        for k, v in cfg.items():
            if k == 'pretrained':
                out[k] = False if isinstance(v, bool) else None
            elif k == 'checkpoint':
                out[k] = None
            elif k == 'tokenizer':
                out[k] = v
            else:
                out[k] = without_weights(v)
        return out
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(without_weights(v) for v in cfg)
    return cfg
