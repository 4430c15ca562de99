"""CaptionMetric (BLEU-1..4, CIDEr-D; coco-caption conventions) on cases whose answer is
known: hand-computed BLEU, CIDEr-D re-implemented here in plain Python, the PTB-style
normalisation, de-duplication, the results file, registry and Evaluator use."""
import json
import math
import os
import shutil
import subprocess
from collections import Counter

import pytest
import torch
from mmengine.evaluator import Evaluator

from vlp.evaluation.metrics.caption import (PTB_PUNCTUATIONS, CaptionMetric, caption_scores,
                                            ptb_tokenize)
from vlp.registry import METRICS

BLEU = [f'BLEU_{n}' for n in range(1, 5)]


def _evaluate(preds, batch=2, **kwargs):
    metric = CaptionMetric(**kwargs)
    for s in range(0, len(preds), batch):
        metric.process(None, preds[s:s + batch])
    return metric.evaluate(len(preds))


def _preds(cands, refs, ids=None):
    """What a captioning model's predict returns: one dict per image."""
    ids = range(len(cands)) if ids is None else ids
    return [dict(image_id=i, pred_caption=c, text=list(r)) for i, c, r in zip(ids, cands, refs)]


# -- independent references -----------------------------------------------------------------
def _ngrams(tokens, k):
    return Counter(tuple(tokens[i:i + k]) for i in range(len(tokens) - k + 1))


def bleu_reference(cands, refs, max_n=4):
    """Corpus BLEU (Papineni et al.) with coco-caption's 'closest' reference length."""
    correct, guess, c_len, r_len = [0] * max_n, [0] * max_n, 0, 0
    for cand, rs in zip(cands, refs):
        cand, rs = cand.split(), [r.split() for r in rs]
        c_len += len(cand)
        r_len += min((abs(len(r) - len(cand)), len(r)) for r in rs)[1]
        for k in range(1, max_n + 1):
            cand_counts = _ngrams(cand, k)
            max_ref = Counter()
            for r in rs:
                max_ref |= _ngrams(r, k)  # element-wise max
            correct[k - 1] += sum(min(c, max_ref[g]) for g, c in cand_counts.items())
            guess[k - 1] += max(0, len(cand) - k + 1)
    bp = 1.0 if c_len >= r_len else math.exp(1 - r_len / c_len)
    out, log_p = [], 0.0
    for k in range(max_n):
        log_p += math.log(correct[k] / guess[k]) if correct[k] else -math.inf
        out.append(bp * math.exp(log_p / (k + 1)))
    return out


def cider_d_reference(cands, refs, n=4, sigma=6.0):
    """CIDEr-D (Vedantam et al., as coco-caption computes it) in plain Python."""
    num = len(cands)
    df = Counter()
    for rs in refs:  # document = the references of one image
        df.update({g for r in rs for k in range(1, n + 1) for g in _ngrams(r.split(), k)})

    def vec(tokens):
        return [{g: tf * (math.log(num) - math.log(max(1.0, df[g])))
                 for g, tf in _ngrams(tokens, k).items()} for k in range(1, n + 1)]

    def norm(v):
        return math.sqrt(sum(x * x for x in v.values()))

    scores = []
    for cand, rs in zip(cands, refs):
        h = cand.split()
        vh = vec(h)
        per_n = [0.0] * n
        for r in rs:
            vr = vec(r.split())
            penalty = math.exp(-(len(h) - len(r.split())) ** 2 / (2 * sigma ** 2))
            for k in range(n):
                dot = sum(min(x, vr[k].get(g, 0.0)) * vr[k].get(g, 0.0)
                          for g, x in vh[k].items())
                denom = norm(vh[k]) * norm(vr[k])
                per_n[k] += (dot / denom if denom else dot) * penalty
        scores.append(10.0 * sum(per_n) / n / len(rs))
    return sum(scores) / num


# -- tokenisation -------------------------------------------------------------------------
@pytest.mark.parametrize('caption, expected', [
    ('A Man, riding a HORSE!', 'a man riding a horse'),
    ('The dog\'s ball; "quoted" -- text... ok?', "the dog 's ball quoted text ok"),
    ("Don't worry, it can't be.", "do n't worry it ca n't be"),
    ('a man \'s hat , on a table .', "a man 's hat on a table"),  # pre-tokenised input
    ('A 3.5 inch T-shirt: 1,000 at 10:30, 50% off', 'a 3.5 inch t-shirt 1,000 at 10:30 50 % off'),
    ('Mr. Smith in the U.S. cannot go.', 'mr. smith in the u.s. can not go'),
    ('a cat (black) on a mat', 'a cat -lrb- black -rrb- on a mat'),  # coco-caption's quirk
    ('\u201cCurly\u201d quotes \u2013 dash\u2026', 'curly quotes dash'),
    ('  spaces\tand\nnewlines  ', 'spaces and newlines'),
    ('Platform No. 5, not no.', 'platform no. 5 not no'),
    ('...', ''),
])
def test_ptb_tokenize(caption, expected):
    assert ptb_tokenize(caption) == expected


JAR = None
try:
    import pycocoevalcap.tokenizer as _tok

    _jar = os.path.join(list(_tok.__path__)[0], 'stanford-corenlp-3.4.1.jar')
    JAR = _jar if os.path.isfile(_jar) else None
except ImportError:  # pragma: no cover
    pass


@pytest.mark.skipif(shutil.which('java') is None or JAR is None,
                    reason="needs java and pycocoevalcap's Stanford CoreNLP jar")
def test_ptb_tokenize_matches_coco_caption_java_tokenizer():
    """Same output as coco-caption's PTBTokenizer (Java) + punctuation removal."""
    captions = [
        'A man riding a wave on top of a surfboard.',
        'Two dogs playing with a frisbee in the park, while people watch.',
        "A woman's hand holding a cell phone that doesn't work.",
        'A RED double-decker bus driving down a street in London!!',
        'There are 3 people at the table; one is eating pizza...',
        'A kitchen with a stove, a sink, and a refrigerator (white).',
        'a giraffe standing next to a tree -- in the zoo',
        'A sign that says "STOP" at 10:30 on 5th Ave.',
        "They're looking at a 1,000-piece puzzle, aren't they?",
        'A plate of food: broccoli, rice & chicken.',
        'Mr. and Mrs. Smith pose in front of the U.S. capitol.',
        "a man 's shirt is blue .",
        'An elephant walking - slowly - through tall grass',
        'I\'d say it\'s a 3.5" screen; we\'ll see [maybe].',
        'the cat cannot reach the toy on the shelf.',
        'A surfer, wearing a wet-suit, rides a huge wave',
        "Platform No. 5 at -3 degrees; a sign reads: 'Don't Walk'!!",
        'Two men (one in a T-shirt) gonna play 1 1/2 games at St. James Park',
        'A close-up of a hot dog with ketchup & mustard; yum!?',
        'a woman\u2019s \u201cvintage\u201d bike \u2013 parked outside.',
    ]
    out = subprocess.run(['java', '-cp', JAR, 'edu.stanford.nlp.process.PTBTokenizer',
                          '-preserveLines', '-lowerCase'], input='\n'.join(captions),
                         capture_output=True, text=True, timeout=60, check=True).stdout
    # coco-caption drops punctuation from the ' '-split line; its scorers then str.split()
    # (which also splits the U+00A0 PTB puts inside '1 1/2')
    java = [' '.join(w for w in line.rstrip().split(' ') if w not in PTB_PUNCTUATIONS).split()
            for line in out.split('\n')[:len(captions)]]
    assert [ptb_tokenize(c).split() for c in captions] == java


# -- BLEU ---------------------------------------------------------------------------------
def test_bleu_hand_computed():
    """Two images; n-gram counts written out by hand.

    image 0: 'the cat sat on the mat' vs 'the cat is on the mat' / 'there is a cat on the
    mat' -- clipped matches 1-gram: the x2, cat, on, mat = 5 of 6; 2-gram: the cat, on the,
    the mat = 3 of 5; 3-gram: on the mat = 1 of 4; 4-gram: 0 of 3. Closest ref length 6.
    image 1: 'a dog' vs 'a dog runs' / 'the big dog runs fast': 2 of 2, 1 of 1, no 3/4-grams;
    closest ref length 3. Corpus: p = 7/8, 4/6, 1/4, 0/3; c = 8, r = 9 -> BP = exp(1 - 9/8).
    """
    cands = ['the cat sat on the mat', 'a dog']
    refs = [['the cat is on the mat', 'there is a cat on the mat'],
            ['a dog runs', 'the big dog runs fast']]
    bp = math.exp(1 - 9 / 8)
    p1, p2, p3 = 7 / 8, 4 / 6, 1 / 4
    expected = [bp * p1, bp * (p1 * p2) ** 0.5, bp * (p1 * p2 * p3) ** (1 / 3), 0.0]
    got = caption_scores(refs, cands, metrics=('bleu', ))
    assert list(got) == BLEU
    for name, e in zip(BLEU, expected):
        assert got[name] == pytest.approx(e, abs=1e-6 if e else 1e-3), name
    # the same numbers through the metric, from raw (cased, punctuated) captions
    res = _evaluate(_preds(['The cat sat on the mat.', 'A dog!'],
                           [['The cat is on the mat.', 'There is a cat on the mat.'],
                            ['A dog runs.', 'The big dog runs fast.']]), metrics='bleu')
    for name, e in zip(BLEU, expected):
        assert res[f'caption/{name}'] == pytest.approx(e, abs=1e-6 if e else 1e-3), name
    assert 'caption/CIDEr' not in res


def test_bleu_closest_reference_length():
    """Candidate length 2, references of length 1 and 3: the tie goes to the shorter one
    (r = 1 -> no brevity penalty); 'shortest'/'average' conventions would differ."""
    got = caption_scores([['dog', 'a dog runs']], ['a dog'], metrics=['bleu'])
    assert got['BLEU_1'] == pytest.approx(1.0, abs=1e-6)
    assert got['BLEU_2'] == pytest.approx(1.0, abs=1e-6)
    # a short candidate is penalised: c = 1, closest r = 1 ('dog') vs r = 3 alone
    got = caption_scores([['a dog runs']], ['dog'], metrics=['bleu'])
    assert got['BLEU_1'] == pytest.approx(math.exp(1 - 3 / 1), abs=1e-6)


def test_bleu_matches_independent_corpus_bleu():
    words = 'a the cat dog on mat'.split()  # small: every n-gram order has matches
    g = torch.Generator().manual_seed(0)

    def sentence():
        n = int(torch.randint(3, 10, (1, ), generator=g))
        return ' '.join(words[int(i)] for i in torch.randint(len(words), (n, ), generator=g))

    refs = [[sentence() for _ in range(1 + i % 4)] for i in range(12)]
    cands = [sentence() for _ in range(12)]
    got = caption_scores(refs, cands, metrics=['bleu'])
    expected = bleu_reference(cands, refs)
    assert min(expected) > 0.05
    assert [got[n] for n in BLEU] == pytest.approx(expected, abs=1e-6)


# -- CIDEr --------------------------------------------------------------------------------
REFS = [['a man riding a horse on a beach', 'a person rides a brown horse along the sea',
         'man on horseback near the ocean waves'],
        ['two dogs play with a red frisbee', 'a pair of dogs chasing a frisbee on grass'],
        ['a plate of pasta with tomato sauce', 'a bowl of spaghetti on a wooden table',
         'pasta with red sauce and basil on a plate']]


def test_cider_closed_form():
    """Image 0: candidate = its only reference, whose n-grams (n = 1..4) are not all shared
    with image 1 -> cosine 1 for every n, no length penalty -> 10. Image 1: a candidate with
    no n-gram of its references -> 0. CIDEr = (10 + 0) / 2."""
    refs = [['a red bus parked outside'], ['a cat on a sofa']]
    got = caption_scores(refs, ['a red bus parked outside', 'zebra'], metrics=['cider'])
    assert got['CIDEr'] == pytest.approx(5.0, abs=1e-9)


def test_cider_matches_independent_cider_d():
    cands = ['a man riding a horse on the beach', 'two dogs chasing a frisbee',
             'a plate of pasta with sauce on a table']
    got = caption_scores(REFS, cands, metrics=['cider'])
    expected = cider_d_reference(cands, REFS)
    assert got['CIDEr'] == pytest.approx(expected, rel=1e-9)
    assert 0.5 < expected < 10  # a non-degenerate case
    # clipping: repeating a matched word does not raise the score
    padded = ['a man man man riding a horse on the beach'] + cands[1:]
    assert cider_d_reference(padded, REFS) == pytest.approx(
        caption_scores(REFS, padded, metrics=['cider'])['CIDEr'], rel=1e-9)
    assert caption_scores(REFS, padded, metrics=['cider'])['CIDEr'] < got['CIDEr']


def test_cider_orders_and_degenerates():
    exact = [r[0] for r in REFS]
    wrong = [REFS[1][0], REFS[2][0], REFS[0][0]]  # every caption of another image
    garbage = ['qwerty zxcv asdf', 'lorem ipsum', '']
    s_exact = _evaluate(_preds(exact, REFS))['caption/CIDEr']
    s_wrong = _evaluate(_preds(wrong, REFS))['caption/CIDEr']
    s_garbage = _evaluate(_preds(garbage, REFS))
    assert s_exact > 1.0 > s_wrong
    assert s_exact > s_wrong + 1.0
    assert s_garbage['caption/CIDEr'] == pytest.approx(0.0, abs=1e-9)
    assert s_garbage['caption/BLEU_1'] == pytest.approx(0.0, abs=1e-6)
    assert s_exact == pytest.approx(cider_d_reference(exact, REFS), rel=1e-9)


# -- the metric ---------------------------------------------------------------------------
def test_tokenisation_applied_to_predictions_and_references():
    clean = _preds([r[0] for r in REFS], REFS)
    noisy = _preds([r[0].upper() + ' .' for r in REFS],
                   [[f'{c.capitalize()}!' for c in r] for r in REFS])
    assert _evaluate(noisy) == _evaluate(clean)
    raw = _evaluate(noisy, tokenize=None)  # no normalisation: casing/punctuation count
    assert raw['caption/CIDEr'] < _evaluate(clean)['caption/CIDEr']


def test_duplicate_image_ids_counted_once():
    cands = ['a man on a horse', 'dogs with a frisbee', 'pasta on a plate']
    base = _evaluate(_preds(cands, REFS))
    # a padded distributed sampler repeats the first images at the end (tensor ids too)
    repeated = _preds(cands + cands[:2], REFS + REFS[:2],
                      ids=[0, 1, 2, torch.tensor(0), torch.tensor(1)])
    assert _evaluate(repeated) == base
    # the first prediction of an image is the one kept
    other = _preds(cands + ['something else entirely'], REFS + REFS[:1], ids=[0, 1, 2, 0])
    assert _evaluate(other) == base


def test_outfile_dump(tmp_path):
    prefix = str(tmp_path / 'sub' / 'captions')
    cands = ['A man on a horse.', 'Dogs with a frisbee', 'pasta on a plate']
    preds = _preds(cands + cands[:1], REFS + REFS[:1], ids=[11, 'x', 13, 11])
    res = _evaluate(preds, outfile_prefix=prefix)
    assert set(res) == {f'caption/{n}' for n in BLEU + ['CIDEr']}
    with open(prefix + '.json') as f:
        dumped = json.load(f)
    assert dumped == [dict(image_id=11, caption='A man on a horse.'),
                      dict(image_id='x', caption='Dogs with a frisbee'),
                      dict(image_id=13, caption='pasta on a plate')]


def test_missing_or_bad_references_raise():
    metric = CaptionMetric()
    with pytest.raises(KeyError, match="no reference captions under 'text'"):
        metric.process(None, [dict(image_id=0, pred_caption='a dog')])
    with pytest.raises(KeyError, match='pred_caption'):
        metric.process(None, [dict(image_id=0, text=['a dog'])])
    with pytest.raises(KeyError, match='image_id'):
        metric.process(None, [dict(pred_caption='a dog', text=['a dog'])])
    with pytest.raises(ValueError, match="mode='train'"):
        metric.process(None, [dict(image_id=0, pred_caption='a dog', text='a dog')])
    with pytest.raises(ValueError, match='non-empty list'):
        metric.process(None, [dict(image_id=0, pred_caption='a dog', text=[])])
    with pytest.raises(TypeError, match='must be a str'):
        metric.process(None, [dict(image_id=0, pred_caption=['a', 'dog'], text=['a dog'])])
    metric = CaptionMetric(ref_key='refs')
    with pytest.raises(KeyError, match="'refs'"):
        metric.process(None, [dict(image_id=0, pred_caption='a dog', text=['a dog'])])
    with pytest.raises(ValueError, match='empty after tokenisation'):
        _evaluate(_preds(['a dog', 'a cat'], [['a dog'], ['...', '!']]))
    with pytest.raises(ValueError, match='metrics'):
        CaptionMetric(metrics=('bleu', 'meteor'))


def test_build_from_registry():
    metric = METRICS.build(dict(type='CaptionMetric'))
    assert isinstance(metric, CaptionMetric)
    assert (metric.ref_key, metric.pred_key, metric.metrics, metric.prefix) == \
        ('text', 'pred_caption', ('bleu', 'cider'), 'caption')
    metric = METRICS.build(dict(type='CaptionMetric', metrics=['CIDEr'], prefix='coco',
                                tokenize=None, pred_key='caption'))
    assert metric.metrics == ('cider', ) and metric.prefix == 'coco'


def test_evaluator_two_batches(tmp_path):
    cands = ['a man riding a horse on a beach', 'two dogs chasing a frisbee',
             'a plate of pasta with sauce']
    evaluator = Evaluator([METRICS.build(dict(type='CaptionMetric',
                                              outfile_prefix=str(tmp_path / 'res')))])
    preds = _preds(cands, REFS)
    evaluator.process(preds[:2], data_batch=dict(image=torch.zeros(2, 3, 4, 4)))
    evaluator.process(preds[2:], data_batch=dict(image=torch.zeros(1, 3, 4, 4)))
    res = evaluator.evaluate(3)
    assert set(res) == {f'caption/{n}' for n in BLEU + ['CIDEr']}
    assert res['caption/CIDEr'] == pytest.approx(
        cider_d_reference([ptb_tokenize(c) for c in cands], REFS), rel=1e-9)
    expected_bleu = bleu_reference(cands, REFS)
    assert [res[f'caption/{n}'] for n in BLEU] == pytest.approx(expected_bleu, abs=1e-6)
    assert len(json.load(open(tmp_path / 'res.json'))) == 3
