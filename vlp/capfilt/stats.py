"""CapFilt's statistics: per unit (written with the unit when it is committed) and in total
(the run's summary, added up from the units' files, so a resumed run counts what earlier
runs did).

Counts: records read, images processed, samples skipped (per reason, with examples) and
captions skipped (a null / empty / non-string web caption: the image is still captioned),
web captions and how many were kept, synthetic captions generated, dropped as duplicates
or empty, kept; images kept and dropped (no caption left), samples written. Per stage: how
many web / synthetic captions it scored and removed, and the histogram of its scores per
source (fixed bins, so histograms add up across units and ranks). ``timing`` (seconds per
stage, decoding, writing; images per second) is the only part that differs between two
runs of the same data.
"""
from typing import Dict, List, Optional

from .items import SOURCES, Item

__all__ = ['UnitStats', 'Histogram', 'merge_stats', 'derived']

MAX_EXAMPLES = 5      # per reason and unit
MAX_SUMMARY_EXAMPLES = 20  # per reason in the summary

COUNTS = ('records', 'images', 'images_kept', 'images_dropped', 'samples_written',
          'captions_written',
          'web_captions', 'web_kept', 'web_removed', 'synthetic_captions', 'synthetic_kept',
          'synthetic_removed', 'synthetic_duplicates', 'synthetic_empty', 'samples_skipped',
          'captions_skipped')


class Histogram:
    """Counts of scores in ``bins`` equal bins over ``[low, high]`` (values outside go to
    the end bins)."""

    def __init__(self, low: float, high: float, bins: int, counts: Optional[List[int]] = None):
        self.low, self.high, self.bins = float(low), float(high), int(bins)
        self.counts = list(counts) if counts is not None else [0] * self.bins

    def add(self, x: float) -> None:
        i = int((x - self.low) / (self.high - self.low) * self.bins)
        self.counts[min(max(i, 0), self.bins - 1)] += 1

    def to_dict(self) -> dict:
        return dict(low=self.low, high=self.high, bins=self.bins, counts=self.counts)


class UnitStats:
    """Statistics of one unit, filled as its batches go."""

    def __init__(self, unit_name: str, source: str, stages: list):
        self.unit, self.source = unit_name, source
        self.counts: Dict[str, int] = dict.fromkeys(COUNTS, 0)
        self.skipped: Dict[str, int] = {}
        self.skipped_captions: Dict[str, int] = {}
        self.examples: Dict[str, List[dict]] = {}
        self.stages = {}
        for s in stages:
            entry = dict(type=type(s).__name__,
                         scored=dict.fromkeys(SOURCES, 0), removed=dict.fromkeys(SOURCES, 0))
            if s.score_range is not None:
                entry['histogram'] = {src: Histogram(*s.score_range) for src in SOURCES}
            self.stages[s.name] = entry
        self.timing: Dict[str, float] = {}

    def skip(self, reason: str, message: str, where: str, count: int = 1,
             caption: bool = False) -> None:
        table = self.skipped_captions if caption else self.skipped
        table[reason] = table.get(reason, 0) + count
        self.counts['captions_skipped' if caption else 'samples_skipped'] += count
        ex = self.examples.setdefault(reason, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(dict(where=where, message=message,
                           level='caption' if caption else 'sample'))

    def add_item(self, item: Item, written: int, captions: int) -> None:
        c = self.counts
        c['images'] += 1
        c['images_kept' if captions else 'images_dropped'] += 1
        c['samples_written'] += written
        c['captions_written'] += captions
        for cand in item.candidates:
            src = cand.source
            c[f'{src}_captions'] += 1
            c[f'{src}_kept' if cand.kept else f'{src}_removed'] += 1
            for name, score in cand.scores.items():
                st = self.stages.get(name)
                if st is None:
                    continue
                st['scored'][src] += 1
                if 'histogram' in st:
                    st['histogram'][src].add(score)
            if cand.removed_by in self.stages:
                self.stages[cand.removed_by]['removed'][src] += 1
        for k, v in item.counts.items():
            c[k] = c.get(k, 0) + v

    def time(self, name: str, seconds: float) -> None:
        self.timing[name] = self.timing.get(name, 0.0) + seconds

    def to_dict(self) -> dict:
        stages = {}
        for name, st in self.stages.items():
            d = dict(type=st['type'], scored=st['scored'], removed=st['removed'])
            if 'histogram' in st:
                d['histogram'] = {src: h.to_dict() for src, h in st['histogram'].items()}
            stages[name] = d
        return dict(unit=self.unit, source=self.source, **self.counts,
                    skipped=dict(sorted(self.skipped.items())),
                    skipped_captions=dict(sorted(self.skipped_captions.items())),
                    examples=self.examples, stages=stages,
                    timing=dict(seconds={k: round(v, 4) for k, v in self.timing.items()}))


def _add_dicts(into: dict, other: dict) -> None:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


def merge_stats(units: List[dict]) -> dict:
    """Totals of unit statistics (as :meth:`UnitStats.to_dict` wrote them)."""
    total = dict.fromkeys(COUNTS, 0)
    skipped, skipped_captions, examples, stages, timing = {}, {}, {}, {}, {}
    for u in units:
        for k in COUNTS:
            total[k] += u.get(k, 0)
        _add_dicts(skipped, u.get('skipped', {}))
        _add_dicts(skipped_captions, u.get('skipped_captions', {}))
        for reason, ex in u.get('examples', {}).items():
            have = examples.setdefault(reason, [])
            have += ex[:max(0, MAX_SUMMARY_EXAMPLES - len(have))]
        for name, st in u.get('stages', {}).items():
            into = stages.setdefault(name, dict(type=st['type'], scored={}, removed={}))
            _add_dicts(into['scored'], st['scored'])
            _add_dicts(into['removed'], st['removed'])
            if 'histogram' in st:
                hists = into.setdefault('histogram', {})
                for src, h in st['histogram'].items():
                    if src not in hists:
                        hists[src] = dict(h, counts=list(h['counts']))
                    else:
                        hists[src]['counts'] = [a + b for a, b in
                                                zip(hists[src]['counts'], h['counts'])]
        _add_dicts(timing, u.get('timing', {}).get('seconds', {}))
    total.update(skipped=dict(sorted(skipped.items())),
                 skipped_captions=dict(sorted(skipped_captions.items())),
                 examples=examples, stages=stages)
    total['timing'] = {k: round(v, 3) for k, v in timing.items()}
    return total


def derived(total: dict) -> dict:
    """The fractions a reader wants first."""
    def frac(a, b):
        return round(a / b, 6) if b else None
    t = total
    return dict(
        web_removed=frac(t['web_removed'], t['web_captions']),
        web_kept=frac(t['web_kept'], t['web_captions']),
        synthetic_kept=frac(t['synthetic_kept'], t['synthetic_captions']),
        synthetic_added_per_web_caption=frac(t['synthetic_kept'], t['web_captions']),
        images_dropped=frac(t['images_dropped'], t['images']),
        samples_skipped=frac(t['samples_skipped'], t['records']),
        captions_per_kept_image=frac(t['web_kept'] + t['synthetic_kept'], t['images_kept']))
