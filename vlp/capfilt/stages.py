"""CapFilt's stages, registered in ``CAPFILT_STAGES`` (vlp/registry.py).

A stage works on a batch of :class:`~vlp.capfilt.items.Item` (one per image) and the
batch's images as its model's test pipeline makes them (``uint8 [B, 3, H, W]``):

- :class:`Captioner` adds synthetic captions with the model's public ``generate`` (any
  family that declares it: BLIP, BLIPCaption, CoCa, BLIP-2's ``BLIP2LM``), by nucleus sampling;
- scoring stages score the kept candidates of ``apply_to`` (``'all'``, ``'web'`` or
  ``'synthetic'``) and keep those with a score ``>= threshold`` and then, with ``top_k``,
  the ``top_k`` best of each image (which also orders the synthetic captions of the
  output, best first):
  :class:`ITMFilter` (the ITM match probability, ``itm_score``: ALBEF, BLIP, BLIP-2,
  VLMo, ViLT), :class:`DualEncoderRanker` (the cosine similarity of ``encode_image`` and
  ``encode_text``: CLIP, ALIGN, converted open_clip CLIP, and the ITC space of ALBEF /
  BLIP / BLIP-2, whose multi-query image features take the best query) and
  :class:`SimilarityFilter` (the same score with a required threshold, LAION's CLIP-score
  rule);
- :class:`CaptionRules` removes captions by length and duplicates, without a model.

BLIP's rule (Li et al. 2022, Sec. 3.3) is ``[Captioner(num_captions=1),
ITMFilter(threshold=0.5)]``; the recaptioning recipe of LAION-scale work is
``[Captioner(num_captions=40), DualEncoderRanker(top_k=5, apply_to='synthetic'),
ITMFilter(top_k=1, apply_to='synthetic')]`` (configs/capfilt/).

A plugin stage subclasses :class:`CapFiltStage` (or :class:`ScoringStage`, implementing
``score``), registers with ``@CAPFILT_STAGES.register_module()`` and is loaded with the
config's ``custom_imports``. A stage computes first and changes the items last: when it
raises on a batch, the engine runs it again image by image and skips only the images
that fail.
"""
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from vlp.registry import CAPFILT_STAGES
from .items import Item
from .models import ModelPool, ModelSpec, image_transform_for, text_transform_for

__all__ = ['CapFiltStage', 'Captioner', 'ScoringStage', 'ITMFilter', 'DualEncoderRanker',
           'SimilarityFilter', 'CaptionRules', 'derive_seed', 'build_stages']

_APPLY_TO = ('all', 'web', 'synthetic')


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (numpy's ``SeedSequence``): the same parts give the same
    seed in every process, rank and run."""
    a, b = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2)
    return ((int(a) << 32) | int(b)) & ((1 << 63) - 1)


def _snake(name: str) -> str:
    return re.sub(r'(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])', '_', name).lower()


def _supports(model, name: str) -> bool:
    from vlp.models.algorithms.base import supports
    return supports(model, name)


class CapFiltStage:
    """Base of the stages.

    Args:
        model: an ``nn.Module`` or ``dict(config, checkpoint, cfg_options)`` (None for
            stages without a model).
        name: the stage's name in scores, statistics and the summary (default: the type
            in snake case, numbered when it repeats).
        batch_size: images per model call (default: the engine's batch).
    """
    #: public model methods the stage calls (checked with the model's capabilities)
    requires: Tuple[str, ...] = ()
    #: (low, high, bins) of the score histograms; None: the stage gives no scores
    score_range: Optional[Tuple[float, float, int]] = None

    def __init__(self, model=None, name: Optional[str] = None,
                 batch_size: Optional[int] = None):
        self.model_spec = None if model is None else ModelSpec(model)
        self.name = name
        self.batch_size = batch_size
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f'{type(self).__name__}: batch_size must be >= 1, got '
                             f'{batch_size}')
        self.model = None
        self.image_key: Optional[str] = None
        self.image_transform = None
        self.clean = lambda text: text

    def setup(self, pool: ModelPool) -> None:
        """Build the model (shared through ``pool``), check that it can do what the stage
        asks, and take its image transform and caption cleaning."""
        if self.model_spec is None:
            return
        self.model = pool.get(self.model_spec)
        missing = [m for m in self.requires if not _supports(self.model, m)]
        if missing:
            raise ValueError(
                f'CapFilt stage {self.name!r} ({type(self).__name__}) needs a model with '
                f'{", ".join(m + "()" for m in missing)}; {type(self.model).__name__} '
                f'{self._model_name()} does not support it'
                + self._why(missing[0]))
        self.image_transform = image_transform_for(self.model)
        self.image_key = self.image_transform.key
        self.clean = text_transform_for(self.model)

    def _model_name(self) -> str:
        spec = self.model_spec
        return f'({spec.config})' if spec is not None and spec.config else ''

    def _why(self, method: str) -> str:
        reasons = getattr(self.model, '__dict__', {}).get('_dropped_reasons', {})
        return f' ({reasons[method]})' if method in reasons else ''

    def _chunks(self, n: int, size: Optional[int]):
        size = size or n or 1
        for s in range(0, n, size):
            yield s, min(n, s + size)

    def run(self, items: List[Item], images: Optional[torch.Tensor], seed: int) -> None:
        raise NotImplementedError

    def describe(self) -> dict:
        out = dict(type=type(self).__name__, name=self.name)
        if self.model_spec is not None:
            out['model'] = self.model_spec.describe()
        return out


@CAPFILT_STAGES.register_module()
class Captioner(CapFiltStage):
    """Synthetic captions by the model's ``generate``.

    Args:
        num_captions: captions sampled per image (BLIP: 1; LAION-style recaptioning: 40).
        prompt: what captions start with (not part of them); ``None``: the model's own
            (BLIP: ``'a picture of '``).
        decoding: ``generate`` options over :attr:`DEFAULT_DECODING` (BLIP's nucleus
            sampling: top-p 0.9, top-k 50, repetition penalty 1.1, lengths 5-30 counting
            the start token and the prompt; BLIP-2's LM counts generated tokens only).
        dedupe: drop repeated captions of an image (counted as ``synthetic_duplicates``).

    Sampling is seeded per batch from (run seed, unit, batch, stage): a unit's captions
    do not depend on which rank writes it or on how often the run was resumed.
    """
    requires = ('generate',)
    DEFAULT_DECODING = dict(do_sample=True, num_beams=1, top_p=0.9, top_k=50,
                            repetition_penalty=1.1, max_length=30, min_length=5)

    def __init__(self, model, num_captions: int = 1, prompt: Optional[str] = None,
                 decoding: Optional[dict] = None, dedupe: bool = True,
                 name: Optional[str] = None, batch_size: Optional[int] = None):
        super().__init__(model, name, batch_size)
        if int(num_captions) < 1:
            raise ValueError(f'Captioner: num_captions must be >= 1, got {num_captions}')
        self.num_captions = int(num_captions)
        self.prompt = prompt
        self.decoding = dict(self.DEFAULT_DECODING)
        self.decoding.update(decoding or {})
        for key in ('num_return_sequences', 'generator'):
            if key in self.decoding:
                raise ValueError(f'Captioner: set num_captions, not decoding.{key} (the '
                                 'engine seeds the draws)')
        self.dedupe = dedupe

    def _generate(self, images: torch.Tensor, seed: int) -> List[str]:
        model = self.model
        x = model.preprocess_images(images) if hasattr(model, 'preprocess_images') else \
            images.float()
        opts = dict(self.decoding, num_return_sequences=self.num_captions)
        if self.prompt is not None:
            opts['prompt'] = self.prompt
        devices = [x.device.index or 0] if x.device.type == 'cuda' else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            caps = model.generate(x, **opts)
        if len(caps) != images.shape[0] * self.num_captions:
            raise RuntimeError(f'{type(model).__name__}.generate returned {len(caps)} '
                               f'captions for {images.shape[0]} images x '
                               f'{self.num_captions}')
        return list(caps)

    def run(self, items: List[Item], images: torch.Tensor, seed: int) -> None:
        caps: List[str] = []
        with torch.no_grad():
            for s, e in self._chunks(len(items), self.batch_size):
                caps += self._generate(images[s:e], derive_seed(seed, s))
        n = self.num_captions
        from .items import Candidate
        for b, item in enumerate(items):
            seen = set()
            for text in caps[b * n:(b + 1) * n]:
                text = (text or '').strip()
                if not text:
                    item.count('synthetic_empty')
                    continue
                if self.dedupe and text in seen:
                    item.count('synthetic_duplicates')
                    continue
                seen.add(text)
                item.candidates.append(Candidate(text, 'synthetic'))

    def describe(self) -> dict:
        return dict(super().describe(), num_captions=self.num_captions, prompt=self.prompt,
                    decoding=dict(self.decoding), dedupe=self.dedupe)


class ScoringStage(CapFiltStage):
    """Scores the kept candidates of ``apply_to`` and keeps those with a score
    ``>= threshold``, then the ``top_k`` best per image (either may be None; neither:
    the stage only scores).

    Args:
        threshold: the lowest score kept.
        top_k: how many of an image's candidates (of ``apply_to``) survive, best first;
            it also orders the synthetic captions of the output.
        apply_to: ``'all'``, ``'web'`` or ``'synthetic'``; the others pass unscored.
        text_batch_size: texts (or image-text pairs) per model call.
    """

    def __init__(self, model, threshold: Optional[float] = None,
                 top_k: Optional[int] = None, apply_to: str = 'all',
                 text_batch_size: int = 256, name: Optional[str] = None,
                 batch_size: Optional[int] = None):
        super().__init__(model, name, batch_size)
        if apply_to not in _APPLY_TO:
            raise ValueError(f'{type(self).__name__}: apply_to must be one of {_APPLY_TO}, '
                             f'got {apply_to!r}')
        if top_k is not None and int(top_k) < 1:
            raise ValueError(f'{type(self).__name__}: top_k must be >= 1, got {top_k}')
        if int(text_batch_size) < 1:
            raise ValueError(f'{type(self).__name__}: text_batch_size must be >= 1')
        self.threshold = None if threshold is None else float(threshold)
        self.top_k = None if top_k is None else int(top_k)
        self.apply_to = apply_to
        self.text_batch_size = int(text_batch_size)

    def score(self, images: torch.Tensor, texts: List[List[str]]) -> List[List[float]]:
        """Scores of ``texts[b]`` (cleaned) against image ``images[b]``."""
        raise NotImplementedError

    def run(self, items: List[Item], images: Optional[torch.Tensor], seed: int) -> None:
        pools = [item.active(self.apply_to) for item in items]
        texts = [[self.clean(c.text) for c in pool] for pool in pools]
        if any(texts):
            with torch.no_grad():
                scores = self.score(images, texts)
        else:
            scores = [[] for _ in texts]
        if len(scores) != len(items) or any(len(s) != len(p) for s, p in zip(scores, pools)):
            raise RuntimeError(f'{self.name}: {type(self).__name__}.score returned scores of '
                               'another shape than the captions it was given')
        for item, pool, sc in zip(items, pools, scores):
            for c, s in zip(pool, sc):
                c.scores[self.name] = float(s)
            keep = [c for c in pool if self.threshold is None
                    or c.scores[self.name] >= self.threshold]
            if self.top_k is not None:
                keep = sorted(keep, key=lambda c: -c.scores[self.name])[:self.top_k]
                if self.apply_to != 'web':
                    item.rank_by = self.name
            kept = set(map(id, keep))
            for c in pool:
                if id(c) not in kept:
                    c.removed_by = self.name

    def describe(self) -> dict:
        return dict(super().describe(), threshold=self.threshold, top_k=self.top_k,
                    apply_to=self.apply_to)


@CAPFILT_STAGES.register_module()
class ITMFilter(ScoringStage):
    """The ITM match probability (``model.itm_score``: ALBEF, BLIP, BLIP-2, VLMo, ViLT);
    BLIP's filter keeps a caption when it is ``>= 0.5`` (``threshold=0.5``), the last
    stage of a recaptioning recipe takes the best one (``top_k=1``)."""
    requires = ('itm_score',)
    score_range = (0.0, 1.0, 20)

    def __init__(self, model, threshold: Optional[float] = 0.5, **kwargs):
        super().__init__(model, threshold=threshold, **kwargs)

    def score(self, images, texts):
        pairs = [(b, t) for b, ts in enumerate(texts) for t in ts]
        probs: List[float] = []
        for s, e in self._chunks(len(pairs), self.text_batch_size):
            rows = torch.tensor([b for b, _ in pairs[s:e]])
            p = self.model.itm_score(images[rows], [t for _, t in pairs[s:e]])
            probs += p.float().reshape(-1).tolist()
        out: List[List[float]] = [[] for _ in texts]
        for (b, _), p in zip(pairs, probs):
            out[b].append(p)
        return out


@CAPFILT_STAGES.register_module()
class DualEncoderRanker(ScoringStage):
    """The cosine similarity of ``encode_image`` and ``encode_text`` (CLIP, ALIGN,
    converted open_clip CLIP, and the ITC space of ALBEF / BLIP / BLIP-2; multi-query
    image features ``[B, Q, D]`` score with their best query). Each image is encoded once
    and the texts of the batch together. By default it ranks the synthetic captions."""
    requires = ('encode_image', 'encode_text')
    score_range = (-1.0, 1.0, 40)

    def __init__(self, model, threshold: Optional[float] = None,
                 top_k: Optional[int] = None, apply_to: str = 'synthetic', **kwargs):
        super().__init__(model, threshold=threshold, top_k=top_k, apply_to=apply_to,
                         **kwargs)

    def score(self, images, texts):
        feats = [self.model.encode_image(images[s:e]).float()
                 for s, e in self._chunks(images.shape[0], self.batch_size)]
        img = F.normalize(torch.cat(feats), dim=-1)  # (B, D) or (B, Q, D)
        flat = [t for ts in texts for t in ts]
        txt = F.normalize(torch.cat([self.model.encode_text(flat[s:e]).float()
                                     for s, e in self._chunks(len(flat),
                                                              self.text_batch_size)]), dim=-1)
        out, start = [], 0
        for b, ts in enumerate(texts):
            t = txt[start:start + len(ts)]  # (n, D)
            start += len(ts)
            sim = img[b] @ t.T  # (n,) or (Q, n)
            if sim.dim() == 2:
                sim = sim.max(dim=0).values
            out.append(sim.tolist())
        return out


@CAPFILT_STAGES.register_module()
class SimilarityFilter(DualEncoderRanker):
    """A dual encoder's cosine similarity ``>= threshold`` (LAION's CLIP-score filter:
    0.28 with ViT-B/32), on every caption by default."""

    def __init__(self, model, threshold: float, apply_to: str = 'all', **kwargs):
        if threshold is None:
            raise ValueError('SimilarityFilter needs a threshold')
        super().__init__(model, threshold=threshold, apply_to=apply_to, **kwargs)


@CAPFILT_STAGES.register_module()
class CaptionRules(CapFiltStage):
    """Rules without a model: remove captions with fewer than ``min_words`` or more than
    ``max_words`` words, and (``dedupe``) repeats of an earlier kept caption of the same
    image (compared lower case, spaces collapsed), among ``apply_to``."""

    def __init__(self, min_words: int = 1, max_words: Optional[int] = None,
                 dedupe: bool = True, apply_to: str = 'all', name: Optional[str] = None):
        super().__init__(None, name)
        if apply_to not in _APPLY_TO:
            raise ValueError(f'CaptionRules: apply_to must be one of {_APPLY_TO}')
        self.min_words, self.max_words = int(min_words), max_words
        self.dedupe, self.apply_to = dedupe, apply_to

    def run(self, items, images, seed):
        for item in items:
            seen = set()
            for c in item.active(self.apply_to):
                words = c.text.split()
                norm = ' '.join(w.lower() for w in words)
                if len(words) < self.min_words or (self.max_words is not None
                                                   and len(words) > self.max_words):
                    c.removed_by = self.name
                elif self.dedupe and norm in seen:
                    c.removed_by = self.name
                seen.add(norm)

    def describe(self) -> dict:
        return dict(super().describe(), min_words=self.min_words, max_words=self.max_words,
                    dedupe=self.dedupe, apply_to=self.apply_to)


def build_stages(cfgs: Sequence) -> List[CapFiltStage]:
    """Stages from their configs (or built stages), with unique names."""
    if not cfgs:
        raise ValueError('a CapFilt config needs stages=[...] (a Captioner and/or scoring '
                         'stages)')
    stages, used = [], {}
    for i, cfg in enumerate(cfgs):
        if isinstance(cfg, CapFiltStage):
            stage = cfg
        else:
            if not isinstance(cfg, dict) or 'type' not in cfg:
                raise ValueError(f'stages[{i}] must be a dict with a type, got {cfg!r}')
            cfg = dict(cfg)
            if CAPFILT_STAGES.get(cfg['type']) is None:
                known = sorted(CAPFILT_STAGES.module_dict)
                raise ValueError(f'stages[{i}]: unknown CapFilt stage type {cfg["type"]!r} '
                                 f'(registered: {known}; a plugin registers with '
                                 'CAPFILT_STAGES and is loaded through custom_imports)')
            stage = CAPFILT_STAGES.build(cfg)
        if stage.name is None:
            base = _snake(type(stage).__name__)
            stage.name = base if base not in used else f'{base}_{i}'
        if stage.name in used:
            raise ValueError(f'two CapFilt stages are named {stage.name!r}')
        used[stage.name] = stage
        stages.append(stage)
    return stages
