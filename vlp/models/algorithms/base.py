"""VLPModel: the base of every algorithm (CLIP, ALBEF, BLIP, ...).

An algorithm is a thin composition: it builds its parts (towers, necks, heads, losses)
from config dicts through the registry and wires them in ``loss`` and ``predict``.
mmengine (and its DeepSpeed wrapper) calls ``forward(inputs, data_samples, mode)``
with the output of :class:`~vlp.models.utils.VLPDataPreprocessor`.

Output contract of the parts: ``image_embeds [B, N, C]``, ``image_feat [B, D]``,
``text_embeds [B, L, C]``, ``text_mask [B, L]``, ``text_feat [B, D]``.

**Capabilities.** The public methods of the families (:data:`CAPABILITIES`: ``loss``,
``predict``, ``encode_image``, ``itm_score``, ``generate``, ...) are declared here; a family
lists the ones it implements in its ``capabilities`` class attribute (checked against the
methods it defines when the class is created), and calling any other raises a
``NotImplementedError`` naming the family and the method. A model built without a part
(no ITM head, no decoder) drops the methods that need it (:meth:`VLPModel.drop_capabilities`).
"""
from typing import Dict, FrozenSet, List, Optional, Union

import torch
from mmengine.model import BaseModel

from vlp.registry import MODELS, TOKENIZERS
# batch helpers of the families (re-exported: ``from .base import caption_lists``)
from ..utils.batch import caption_lists, pair_batch, replace_first_token, split_meta  # noqa: F401
from ..utils.pretrained import without_weights  # noqa: F401  (re-exported)


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


def token_id_property(token: str) -> property:
    """``enc_token_id = token_id_property('[ENC]')``: the id given to the constructor (kept
    in ``_enc_token_id``), else the tokenizer's (:meth:`VLPModel.special_token_id`)."""
    attr = f"_{token.strip('[]').lower()}_token_id"

    def get(self) -> int:
        setattr(self, attr, self.special_token_id(token, getattr(self, attr, None)))
        return getattr(self, attr)
    return property(get, doc=f"id of {token}: the one given, else the tokenizer's")


#: the public methods a family may declare in ``capabilities`` (see the module docstring)
CAPABILITIES = ('loss', 'predict', 'extract_feat', 'encode_image', 'encode_text', 'itm_score',
                'rerank_scores', 'fused_features', 'fused_features_pair', 'generate', 'answer',
                'query_features')


def supports(model, name: str) -> bool:
    """Whether ``model`` implements the public method ``name`` (a :class:`VLPModel`'s
    declared capabilities; any other module: it has the attribute)."""
    check = getattr(model, 'supports', None)
    return check(name) if callable(check) else callable(getattr(model, name, None))


def _stub(name: str):
    def method(self, *args, **kwargs):
        raise NotImplementedError(self._unsupported_message(name))
    method.__name__ = method.__qualname__ = name
    method.__doc__ = f'``{name}``: not implemented by this family (see ``capabilities``).'
    method._capability_stub = True
    return method


class VLPModel(BaseModel):
    """Base class: mode dispatch, capabilities, tokenizer for the inference API,
    checkpointing switch.

    Args:
        data_preprocessor: config of the preprocessor (``VLPDataPreprocessor`` by default).
        tokenizer: optional tokenizer config (``TOKENIZERS``) or object; only the inference API
            (``encode_text(list_of_str)``, ``generate``) tokenises — training data is
            tokenised in the data pipeline.
        init_cfg: mmengine init config.

    Class attributes:
        capabilities: the names of :data:`CAPABILITIES` the family implements (inferred
            from the methods it defines when a subclass leaves it out).
        unsupported_reasons: ``{method: why}`` added to the error of an unsupported call.
    """
    capabilities: FrozenSet[str] = frozenset()
    unsupported_reasons: Dict[str, str] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        defined = {n for n in CAPABILITIES
                   if not getattr(getattr(cls, n), '_capability_stub', False)}
        if 'capabilities' not in cls.__dict__:  # an outside plugin: what it defines
            cls.capabilities = frozenset(defined)
            return
        declared = frozenset(cls.capabilities)
        unknown = declared - set(CAPABILITIES)
        if unknown:
            raise TypeError(f'{cls.__name__}.capabilities: unknown {sorted(unknown)}; '
                            f'expected names of {CAPABILITIES}')
        if declared - defined:
            raise TypeError(f'{cls.__name__} declares {sorted(declared - defined)} in '
                            'capabilities but does not define them')
        if defined - declared:
            raise TypeError(f'{cls.__name__} defines {sorted(defined - declared)} but does '
                            'not declare them in capabilities')
        cls.capabilities = declared

    def supports(self, name: str) -> bool:
        """Whether this model implements the public method ``name``."""
        return name in self.capabilities

    def drop_capabilities(self, reason: str, *names: str) -> None:
        """Mark ``names`` unsupported by this instance (a part it needs was not built),
        with the ``reason`` their calls report."""
        self.capabilities = frozenset(self.capabilities) - set(names)
        self.__dict__.setdefault('_dropped_reasons', {}).update(dict.fromkeys(names, reason))

    def require(self, name: str) -> None:
        """Raise ``NotImplementedError`` naming the family and ``name`` unless supported."""
        if name not in self.capabilities:
            raise NotImplementedError(self._unsupported_message(name))

    def _unsupported_message(self, name: str) -> str:
        family = type(self).__name__
        reason = (self.__dict__.get('_dropped_reasons', {}).get(name)
                  or self.unsupported_reasons.get(name))
        supported = ', '.join(n for n in CAPABILITIES if n in self.capabilities)
        return (f'{family} does not support {name}()' + (f': {reason}' if reason else '')
                + f' ({family} supports: {supported or "nothing"})')

    def __init__(self,
                 data_preprocessor: Optional[dict] = None,
                 tokenizer: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='VLPDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        # a config is built on first use: it may name tokenizer files that only the machine
        # running inference has (training tokenises in the data pipeline); an object is kept
        built = tokenizer is not None and not isinstance(tokenizer, dict)
        self._tokenizer_cfg, self._tokenizer = (None, tokenizer) if built else (tokenizer, None)

    @property
    def tokenizer(self):
        if self._tokenizer is None and self._tokenizer_cfg is not None:
            self._tokenizer = build_part(self._tokenizer_cfg, TOKENIZERS)
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, value) -> None:
        self._tokenizer, self._tokenizer_cfg = value, None

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

    # the public methods; each family overrides the ones it declares in ``capabilities``
    loss = _stub('loss')
    predict = _stub('predict')
    extract_feat = _stub('extract_feat')
    encode_image = _stub('encode_image')
    encode_text = _stub('encode_text')
    itm_score = _stub('itm_score')
    rerank_scores = _stub('rerank_scores')
    fused_features = _stub('fused_features')
    fused_features_pair = _stub('fused_features_pair')
    generate = _stub('generate')
    answer = _stub('answer')
    query_features = _stub('query_features')

    def momentum_pairs(self) -> List[tuple]:
        """``[(online, momentum twin), ...]`` module pairs that
        :class:`~vlp.engine.hooks.MomentumUpdateHook` updates (none by default)."""
        return []

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

    def special_token_id(self, token: str, given: Optional[int] = None) -> int:
        """``given``, else the tokenizer's id of ``token`` (BLIP's ``'[ENC]'`` /
        ``'[DEC]'``); raises naming what to set when neither exists."""
        if given is not None:
            return int(given)
        tok = self.tokenizer
        tid = tok.token_to_id(token) if tok is not None else None
        if tid is None:
            name = token.strip('[]').lower()
            raise ValueError(f'{type(self).__name__} needs {name}_token_id (or a tokenizer '
                             f"holding {token!r}: add it with additional_special_tokens)")
        return int(tid)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Switch activation checkpointing on every part that supports it."""
        for module in self.modules():
            if module is not self and hasattr(module, 'set_grad_checkpointing'):
                module.set_grad_checkpointing(enable)

