"""Image captioning metrics: BLEU-1..4 and CIDEr-D with the coco-caption conventions.

The scorers are coco-caption's own, from ``pycocoevalcap`` (pure Python: ``Bleu(4)`` and
``Cider``); only the text normalisation is re-done here, because coco-caption runs the
Stanford PTB tokenizer in Java:

- **BLEU-n** (``BLEU_1`` .. ``BLEU_4``): corpus-level (clipped n-gram counts summed over
  all images, geometric mean of the modified precisions 1..n), brevity penalty
  ``exp(1 - r / c)`` when ``c < r`` with ``r`` summing, per image, the reference length
  closest to the candidate's (ties: the shorter) -- coco-caption's ``'closest'`` option;
- **CIDEr** (coco-caption's ``Cider``, i.e. CIDEr-D): TF-IDF vectors of 1..4-grams with
  document frequencies over the *evaluated set's* references, candidate weights clipped
  to the reference's, a Gaussian length penalty (``sigma = 6``), averaged over the
  references and n, times 10. Document frequencies come from the set itself, so CIDEr of a
  single image is 0 and scores depend on the set evaluated (as in coco-caption).

Values are coco-caption's fractions (papers print them x100, e.g. ``CIDEr 1.367 ->
136.7``).

:func:`ptb_tokenize` is a Python stand-in for coco-caption's ``PTBTokenizer``
(``stanford-corenlp-3.4.1 PTBTokenizer -preserveLines -lowerCase`` followed by dropping the
tokens in :data:`PTB_PUNCTUATIONS`). It reproduces what that pipeline does to captions:
lower-casing; splitting off punctuation (``.`` ``,`` ``;`` ``:`` ``!`` ``?`` quotes,
dashes, ``...``) and dropping it; splitting clitics (``dog's -> dog 's``, ``don't -> do
n't``, ``can't -> ca n't``, ``gonna -> gon na``, ``cannot -> can not``); keeping
``3.5``, ``1,000``, ``10:30``, ``t-shirt``, ``1/2``, ``u.s.``, ``mr.``; and -- a
coco-caption quirk kept on purpose -- writing brackets as ``-lrb-`` / ``-rrb-`` (and
``-lsb-``, ``-lcb-``...) that survive, since coco-caption's drop list spells them in upper
case after lower-casing (``!!`` and ``?!``, not on the list, stay too). On 5,000 random
punctuation-heavy strings built from caption words, clitics, numbers, abbreviations and
every symbol above, it gives the Java tokens for all but a few where the Java lexer decides
from context: a single letter with a period (``a.`` before a capitalised word), ``no.``
not followed by a number, ``-2-3``; also not reproduced: its full abbreviation list (here
the common ones), emoticons, ``'90s``, ``y'all``, ``.5`` and Unicode beyond curly quotes
and dashes. ``tests/evaluation/test_caption_metric.py`` compares the two where Java is
installed.
"""
import logging
import re
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.fileio import dump
from mmengine.logging import print_log

from vlp.registry import METRICS

__all__ = ['PTB_PUNCTUATIONS', 'ptb_tokenize', 'caption_scores', 'CaptionMetric']

# coco-caption's pycocoevalcap/tokenizer/ptbtokenizer.py, verbatim
PTB_PUNCTUATIONS = ("''", "'", "``", "`", '-LRB-', '-RRB-', '-LCB-', '-RCB-',
                    '.', '?', '!', ',', ':', '-', '--', '...', ';')
_DROP = frozenset(PTB_PUNCTUATIONS) | {'"'}  # PTB turns " into `` or ''

_UNICODE = str.maketrans({'\u2018': "'", '\u2019': "'", '\u201c': '"', '\u201d': '"',
                          '\u2013': '--', '\u2014': '--', '\u2026': '...'})
_BRACKETS = {'(': '-lrb-', ')': '-rrb-', '[': '-lsb-', ']': '-rsb-', '{': '-lcb-',
             '}': '-rcb-'}
# abbreviations the PTB lexer keeps with their period (checked against 3.4.1)
_ABBREVIATIONS = ('mrs', 'mr', 'ms', 'dr', 'prof', 'gen', 'sen', 'rev', 'gov', 'capt', 'sgt',
                  'lt', 'col', 'st', 'jr', 'sr', 'etc', 'vs', 'inc', 'co', 'corp', 'ltd',
                  'mt', 'ave', 'rd', 'blvd', 'ct', 'dept', 'sq', 'ft', 'cf', 'al', 'bros',
                  'assn', 'univ', 'mfg', 'intl', 'natl', 'tel', 'ext', 'est', 'calif', 'fla',
                  'jan', 'feb', 'mar', 'apr', 'jun', 'jul', 'aug', 'sept', 'sep', 'oct',
                  'nov', 'dec')
_L = r'[^\W\d_]'  # a letter
_TOKEN = re.compile(rf"""
    (?P<num>\d+(?:[.,:]\d+)+(?:[-./]\w+)*)               # 3.5  10:30  1,000-piece
  | (?P<abbr>(?:(?:{_L}\.)+|(?:{'|'.join(_ABBREVIATIONS)})\.|nos?\.(?=\s*\d))(?!\w))
                                                         # u.s.  a.  mr.  no. 5
  | (?P<word>[@#]?\w+(?:(?:[-./]|(?<={_L})'(?={_L}))\w+)*)  # t-shirt 1/2 o'clock don't
  | (?P<clitic>'(?:s|re|ve|ll|d|m)(?!\w))               # pre-tokenised "man 's"
  | (?P<signed>(?<!\S)-\d+(?:[.,:]\d+)*)                # -3
  | (?P<dots>\.+)
  | (?P<dashes>-+)
  | (?P<bang>[!?]+)                                      # PTB keeps '!!', '?!' whole
  | (?P<quotes>``|'')
  | (?P<other>\S)
""", re.VERBOSE | re.IGNORECASE)
_CLITIC = re.compile(r"^(.+?)('s|'re|'ve|'ll|'d|'m)$")
_SPLIT_WORDS = {'gonna': ('gon', 'na'), 'wanna': ('wan', 'na'), 'gotta': ('got', 'ta'),
                'cannot': ('can', 'not'), 'lemme': ('lem', 'me'), 'gimme': ('gim', 'me')}


def _split_word(word: str) -> List[str]:
    """PTB clitic splitting: ``dog's -> dog 's``, ``don't -> do n't``, ``gonna -> gon na``."""
    m = _CLITIC.match(word)
    if m:
        return _split_word(m.group(1)) + [m.group(2)]
    if word.endswith("n't") and len(word) > 3:
        return [word[:-3], "n't"]
    return list(_SPLIT_WORDS.get(word, (word, )))


def ptb_tokenize(caption: str) -> str:
    """coco-caption's normalisation in Python: PTB-tokenise, lower-case, drop punctuation.

    Returns the tokens joined by single spaces (what coco-caption's scorers split).
    """
    text = str(caption).translate(_UNICODE)
    tokens = []
    for m in _TOKEN.finditer(text):
        kind, tok = m.lastgroup, m.group().lower()
        if kind == 'word':
            tokens.extend(_split_word(tok))
        elif kind == 'dots':
            tokens.append('...' if len(tok) >= 3 else '.')
        elif kind == 'dashes':
            tokens.append('-' if len(tok) == 1 else '--')
        else:
            tokens.append(_BRACKETS.get(tok, tok))
    return ' '.join(t for t in tokens if t not in _DROP)


def _whitespace(caption: str) -> str:
    return ' '.join(str(caption).split())


def _tokenizer(tokenize: Union[str, None, Callable]) -> Callable[[str], str]:
    if callable(tokenize):
        return lambda s: _as_text(tokenize(s))
    if tokenize in (None, 'none', 'whitespace'):
        return _whitespace
    if tokenize == 'ptb':
        return ptb_tokenize
    raise ValueError(f"tokenize must be 'ptb', None (captions as they are) or a callable, "
                     f'got {tokenize!r}')


def _as_text(tokens) -> str:
    return ' '.join(tokens) if isinstance(tokens, (list, tuple)) else _whitespace(tokens)


def _scorers():
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
    except ImportError as e:  # pragma: no cover - a runtime requirement
        raise ImportError('caption metrics need pycocoevalcap (requirements/runtime.txt): '
                          'pip install pycocoevalcap') from e
    return Bleu, Cider


METRIC_NAMES = ('bleu', 'cider')


def caption_scores(references: Sequence[Sequence[str]], predictions: Sequence[str],
                   metrics: Sequence[str] = METRIC_NAMES) -> Dict[str, float]:
    """coco-caption's BLEU-1..4 / CIDEr-D of *already tokenised* captions.

    Args:
        references: per image, its reference captions (space-separated tokens).
        predictions: per image, the candidate caption.
        metrics: any of ``'bleu'``, ``'cider'``.

    Returns:
        ``BLEU_1`` .. ``BLEU_4`` and/or ``CIDEr`` (fractions, as coco-caption).
    """
    if len(references) != len(predictions):
        raise ValueError(f'{len(references)} reference lists for {len(predictions)} '
                         'predictions')
    if not predictions:
        raise ValueError('no captions to evaluate')
    gts = {i: list(refs) for i, refs in enumerate(references)}
    res = {i: [pred] for i, pred in enumerate(predictions)}
    Bleu, Cider = _scorers()
    out: Dict[str, float] = OrderedDict()
    if 'bleu' in metrics:
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        for n, value in enumerate(bleu, start=1):
            out[f'BLEU_{n}'] = float(value)
    if 'cider' in metrics:
        cider, _ = Cider().compute_score(gts, res)
        out['CIDEr'] = float(cider)
    return out


def _as_id(value):
    """A hashable, JSON-friendly id from an int / str / 0-dim tensor or array."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else tuple(value.tolist())
    if isinstance(value, (np.ndarray, np.generic)):
        return value.item() if value.size == 1 else tuple(value.tolist())
    return value


@METRICS.register_module()
class CaptionMetric(BaseMetric):
    """BLEU-1..4 and CIDEr-D of generated captions (coco-caption conventions).

    Consumes the model's ``predict`` output, one dict per image with the generated caption
    (``pred_key``), ``image_id`` and the image's reference captions (``ref_key``: a list of
    str, what an image-text dataset in ``mode='eval'`` gives). An image seen more than once
    (the padding of a distributed sampler, a refetched sample) is counted once, its first
    prediction kept.

    Args:
        ref_key: key of the references (list of str) in each prediction.
        pred_key: key of the generated caption (str).
        metrics: ``'bleu'`` (``BLEU_1`` .. ``BLEU_4``) and/or ``'cider'`` (``CIDEr``).
        outfile_prefix: if set, the predictions are written to ``{outfile_prefix}.json`` in
            the COCO results format ``[{"image_id": ..., "caption": ...}]`` (the captions as
            generated, before tokenisation; written by the rank computing the metrics).
        tokenize: ``'ptb'`` (:func:`ptb_tokenize`, coco-caption's normalisation without
            Java), ``None`` (captions used as they are, split on whitespace) or a callable
            ``str -> str | list of str``.
        collect_device, prefix, collect_dir: see mmengine's ``BaseMetric``; metric names
            are ``{prefix}/BLEU_1``... (default prefix ``'caption'``).
    """
    default_prefix = 'caption'

    def __init__(self, ref_key: str = 'text', pred_key: str = 'pred_caption',
                 metrics: Union[str, Sequence[str]] = METRIC_NAMES,
                 outfile_prefix: Optional[str] = None,
                 tokenize: Union[str, None, Callable] = 'ptb',
                 collect_device: str = 'cpu', prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix,
                         collect_dir=collect_dir)
        metrics = (metrics, ) if isinstance(metrics, str) else tuple(metrics)
        metrics = tuple(m.lower() for m in metrics)
        unknown = [m for m in metrics if m not in METRIC_NAMES]
        if not metrics or unknown:
            raise ValueError(f'metrics must be a non-empty subset of {METRIC_NAMES}, got '
                             f'{metrics}')
        self.metrics = metrics
        self.ref_key = ref_key
        self.pred_key = pred_key
        self.outfile_prefix = outfile_prefix
        self.tokenize = tokenize
        self._tokenize = _tokenizer(tokenize)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            missing = [k for k in (self.pred_key, 'image_id') if k not in sample]
            if missing:
                raise KeyError(f'{type(self).__name__} needs {missing} in each prediction '
                               f'(got keys {sorted(sample)})')
            if sample.get(self.ref_key) is None:
                raise KeyError(
                    f'{type(self).__name__}: no reference captions under {self.ref_key!r} '
                    f'for image_id {_as_id(sample["image_id"])!r} (got keys '
                    f'{sorted(sample)}); use the dataset in mode=\'eval\' (every caption of '
                    "an image) and keep its metadata in the model's predict output")
            refs, pred = sample[self.ref_key], sample[self.pred_key]
            if isinstance(refs, str) or not isinstance(refs, (list, tuple)) or not refs \
                    or not all(isinstance(r, str) for r in refs):
                raise ValueError(
                    f'{type(self).__name__}: {self.ref_key!r} must be a non-empty list of '
                    f'str (all captions of the image), got {refs!r}' +
                    ('; a single str is what a dataset in mode=\'train\' gives'
                     if isinstance(refs, str) else ''))
            if not isinstance(pred, str):
                raise TypeError(f'{type(self).__name__}: {self.pred_key!r} must be a str, '
                                f'got {type(pred).__name__}')
            self.results.append(dict(image_id=_as_id(sample['image_id']), pred=pred,
                                     refs=list(refs)))

    def deduplicate(self, results: List[dict]) -> List[dict]:
        """First occurrence of each ``image_id``, in order."""
        seen, kept = set(), []
        for r in results:
            if r['image_id'] not in seen:
                seen.add(r['image_id'])
                kept.append(r)
        if len(kept) < len(results):
            print_log(f'{type(self).__name__}: {len(results) - len(kept)} repeated images '
                      '(same image_id) counted once', logger='current')
        return kept

    def dump_results(self, results: List[dict]) -> str:
        """Write ``{outfile_prefix}.json`` in the COCO captioning results format."""
        path = f'{self.outfile_prefix}.json'
        dump([dict(image_id=r['image_id'], caption=r['pred']) for r in results], path,
             file_format='json')
        print_log(f'{type(self).__name__}: captions written to {path}', logger='current')
        return path

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        results = self.deduplicate(results)
        if not results:
            raise ValueError(f'{type(self).__name__}: no results to evaluate')
        if self.outfile_prefix is not None:
            self.dump_results(results)
        references, predictions = [], []
        for r in results:
            refs = [self._tokenize(c) for c in r['refs']]
            if not any(refs):
                raise ValueError(f'{type(self).__name__}: the references of image_id '
                                 f'{r["image_id"]!r} are empty after tokenisation: '
                                 f'{r["refs"]!r}')
            references.append(refs)
            predictions.append(self._tokenize(r['pred']))
        if 'cider' in self.metrics and len(results) < 2:
            print_log(f'{type(self).__name__}: CIDEr takes its document frequencies from '
                      'the evaluated set; with one image it is 0', logger='current',
                      level=logging.WARNING)
        return dict(caption_scores(references, predictions, self.metrics))
