"""What flows through CapFilt's stages: an :class:`Item` per image with its candidate
captions (:class:`Candidate`), the web ones read from the data and the synthetic ones a
captioner adds. Stages score candidates (``scores[stage_name]``) and remove them
(``removed_by = stage_name``); nothing is deleted, so the statistics and the optional
per-caption scores of the output see every decision."""
from typing import Any, Dict, List, Optional

import torch

__all__ = ['Candidate', 'Item', 'SOURCES']

SOURCES = ('web', 'synthetic')


class Candidate:
    """One caption of an image: its ``text``, ``source`` (``'web'`` or ``'synthetic'``),
    the scores the stages gave it and the stage that removed it (``None``: kept)."""
    __slots__ = ('text', 'source', 'scores', 'removed_by')

    def __init__(self, text: str, source: str):
        self.text = text
        self.source = source
        self.scores: Dict[str, float] = {}
        self.removed_by: Optional[str] = None

    @property
    def kept(self) -> bool:
        return self.removed_by is None

    def to_dict(self) -> dict:
        out = dict(text=self.text, source=self.source, scores=dict(self.scores))
        if self.removed_by is not None:
            out['removed_by'] = self.removed_by
        return out

    def __repr__(self) -> str:
        state = 'kept' if self.kept else f'removed by {self.removed_by}'
        return f'Candidate({self.text!r}, {self.source}, {self.scores}, {state})'


class Item:
    """One image of a batch.

    Attributes:
        key: the sample's key within its unit (shard member key, entry index).
        record: the format's raw record (a JSON entry, a CSV row, a shard sample's
            members), written back with the kept captions.
        images: ``{transform key: uint8 [3, H, W]}`` (one per distinct model transform).
        candidates: web captions first (in their order), then synthetic ones.
        rank_by: the stage whose scores order the synthetic captions of the output (the
            last stage that kept a top-k of them), or ``None`` (generation order).
        counts: per-item counters the statistics add up (``synthetic_duplicates``, ...).
    """
    __slots__ = ('key', 'record', 'images', 'candidates', 'rank_by', 'counts')

    def __init__(self, key: str, record: Any, images: Dict[str, torch.Tensor],
                 web: List[str]):
        self.key = key
        self.record = record
        self.images = images
        self.candidates: List[Candidate] = [Candidate(t, 'web') for t in web]
        self.rank_by: Optional[str] = None
        self.counts: Dict[str, int] = {}

    def active(self, apply_to: str = 'all') -> List[Candidate]:
        """The kept candidates of ``apply_to`` (``'all'``, ``'web'``, ``'synthetic'``)."""
        return [c for c in self.candidates
                if c.kept and (apply_to == 'all' or c.source == apply_to)]

    def of(self, source: str) -> List[Candidate]:
        return [c for c in self.candidates if c.source == source]

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def output_captions(self, web: str = 'kept') -> List[str]:
        """The captions to write: the web ones (``'kept'``: those no stage removed,
        ``'all'``: every one, ``'none'``: none) in their order, then the kept synthetic
        ones, best first when a ranking stage ordered them."""
        if web == 'kept':
            out = [c.text for c in self.of('web') if c.kept]
        elif web == 'all':
            out = [c.text for c in self.of('web')]
        else:
            out = []
        syn = [c for c in self.of('synthetic') if c.kept]
        if self.rank_by is not None:
            # stable: ties keep generation order
            syn = sorted(syn, key=lambda c: -c.scores.get(self.rank_by, float('-inf')))
        return out + [c.text for c in syn]
