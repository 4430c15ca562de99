"""VQA accuracy: the official metric of the VQA benchmark (Antol et al. 2015; VQA v2,
Goyal et al. 2017), as computed by ``vqaEval.py`` of the VQA API (GT-Vision-Lab/VQA,
``PythonEvaluationTools/vqaEvaluation``), plus the answer vocabulary and soft targets that
classifier VQA models (BUTD, ViLT, VLMo...) train on.

The protocol, step by step (what :func:`vqa_accuracy` does with ``normalize='official'``):

1. every human answer and the prediction: newlines and tabs become spaces, then ``strip``;
2. only when the human answers are not all identical (``len(set(gts)) > 1``), the human
   answers AND the prediction are normalised by :func:`process_punctuation` then
   :func:`process_digit_article` (together :func:`normalize_answer`). When the ten humans
   agree, neither side is normalised (the official script's behaviour: then "Yes" does not
   match ten "yes");
3. for each of the N (10) human answers, the other N-1 are kept and
   ``acc_i = min(1, #(others equal to the prediction) / 3)``; the accuracy of the question
   is the mean of the N ``acc_i``.

``normalize='always'`` normalises both sides on every question (what most re-implementations
do); ``'none'`` compares the stripped strings.

The normalisation (:func:`normalize_answer`), faithful to the official script including its
quirks:

- punctuation: for each character of :data:`PUNCTUATION` in turn, if it is followed or
  preceded by a space in the ORIGINAL answer, or the original answer contains a
  digit-comma-digit pattern (``"1,000"``), every occurrence is deleted; otherwise every
  occurrence becomes a space (so ``"1,000"`` -> ``"1000"``, ``"red,blue"`` -> ``"red blue"``);
- periods: the official regex ``(?!<=\\d)(\\.)(?!\\d)`` (its first group is a typo for a
  look-behind and never fires) deletes every ``.`` not followed by a digit (``"2.5"`` is
  kept, ``"yes."`` -> ``"yes"``), at most 32 of them (the script passes ``re.UNICODE`` as the
  ``count`` argument);
- words: lower case, whitespace split, number words mapped to digits (:data:`NUMBER_MAP`:
  ``none``/``zero`` -> ``0`` ... ``ten`` -> ``10``), articles ``a an the`` dropped,
  contractions written without apostrophe restored (:data:`CONTRACTIONS`, ``dont`` ->
  ``don't``), words re-joined by one space.
"""
import json
import logging
import os
import os.path as osp
import re
from collections import Counter, defaultdict
from typing import Dict, Iterable, List, Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from vlp.registry import METRICS

__all__ = ['CONTRACTIONS', 'NUMBER_MAP', 'ARTICLES', 'PUNCTUATION', 'process_punctuation',
           'process_digit_article', 'normalize_answer', 'vqa_accuracy', 'answer_scores',
           'build_answer_list', 'load_answer_list', 'save_answer_list', 'VQAAccuracy']

# The official contractions map (vqaEval.py), verbatim as data. Keys with capitals
# ("Im", "Ive", "Id've") can never match after lower-casing; "somebody'd" -> "somebodyd"
# is the official entry as well.
CONTRACTIONS: Dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's",
    "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't",
    "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock",
    "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd",
    "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}

# The official ``manualMap`` (number words -> digits; note 'none' -> '0').
NUMBER_MAP: Dict[str, str] = {
    'none': '0', 'zero': '0', 'one': '1', 'two': '2', 'three': '3', 'four': '4',
    'five': '5', 'six': '6', 'seven': '7', 'eight': '8', 'nine': '9', 'ten': '10'}

ARTICLES = ('a', 'an', 'the')

# The official ``punct`` list, in its order (the period is handled by the regex below).
PUNCTUATION = (';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-',
               '>', '<', '@', '`', ',', '?', '!')

_COMMA_STRIP = re.compile(r'(\d)(,)(\d)')
# verbatim official pattern (its "(?!<=\d)" is a look-ahead typo that always succeeds)
_PERIOD_STRIP = re.compile(r'(?!<=\d)(\.)(?!\d)')
_PERIOD_STRIP_COUNT = int(re.UNICODE)  # the official call passes re.UNICODE (32) as count
_BUTD_SCORES = {0: 0.0, 1: 0.3, 2: 0.6, 3: 0.9}


def _clean(ans: str) -> str:
    return ans.replace('\n', ' ').replace('\t', ' ').strip()


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation`` (see the module docstring)."""
    out = text
    digit_comma = _COMMA_STRIP.search(text) is not None
    for p in PUNCTUATION:
        if (p + ' ' in text or ' ' + p in text) or digit_comma:
            out = out.replace(p, '')
        else:
            out = out.replace(p, ' ')
    return _PERIOD_STRIP.sub('', out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """The official ``processDigitArticle``: lower case, number words -> digits, articles
    dropped, contractions restored, words joined by single spaces."""
    words = []
    for word in text.lower().split():
        word = NUMBER_MAP.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return ' '.join(CONTRACTIONS.get(w, w) for w in words)


def normalize_answer(ans: str) -> str:
    """Newlines/tabs -> spaces and strip, then :func:`process_punctuation` and
    :func:`process_digit_article` (the official order)."""
    return process_digit_article(process_punctuation(_clean(ans)))


def _leave_one_out(pred: str, answers: Sequence[str]) -> float:
    n = len(answers)
    matches = sum(a == pred for a in answers)
    # removing answer i leaves `matches - (answers[i] == pred)` matching others
    total = 0.0
    for a in answers:
        total += min(1.0, (matches - (a == pred)) / 3.0)
    return total / n


def vqa_accuracy(pred: str, answers: Sequence[str], normalize: str = 'official') -> float:
    """Official VQA accuracy (in [0, 1]) of ``pred`` against the human ``answers``.

    Args:
        pred: the predicted answer.
        answers: the human answers (10 in VQA v1/v2; any N >= 1 gets the same
            leave-one-out average over N).
        normalize: ``'official'`` (normalise both sides only when the human answers are not
            all identical, as ``vqaEval.py``), ``'always'`` or ``'none'`` (strip only).
    """
    if normalize not in ('official', 'always', 'none'):
        raise ValueError(f"normalize must be 'official', 'always' or 'none', got {normalize!r}")
    answers = [_clean(a) for a in answers]
    if not answers:
        raise ValueError('vqa_accuracy: no human answers')
    pred = _clean(pred)
    if normalize == 'always' or (normalize == 'official' and len(set(answers)) > 1):
        answers = [normalize_answer(a) for a in answers]
        pred = normalize_answer(pred)
    return _leave_one_out(pred, answers)


def answer_scores(answers: Sequence[str], mode: str = 'vqa') -> Dict[str, float]:
    """Soft training targets: ``{normalised answer: score}`` for the unique normalised
    human answers of one question (every answer is normalised here).

    ``mode='vqa'``: the official accuracy the answer would get (the leave-one-out average);
    ``mode='butd'``: the soft score of BUTD / ViLT (``get_score``) of the answer's count
    ``c``: 0, 0.3, 0.6, 0.9 for c = 0..3 and 1.0 for c >= 4. With 10 answers both agree.
    """
    if mode not in ('vqa', 'butd'):
        raise ValueError(f"mode must be 'vqa' or 'butd', got {mode!r}")
    norm = [normalize_answer(a) for a in answers]
    counts = Counter(norm)
    if mode == 'butd':
        return {a: _BUTD_SCORES.get(c, 1.0) for a, c in counts.items()}
    return {a: _leave_one_out(a, norm) for a in counts}


def build_answer_list(answers_per_question: Iterable[Sequence[str]], min_count: int = 9,
                      top_k: Optional[int] = None) -> List[str]:
    """Answer vocabulary from the human answers of many questions.

    Every answer is normalised (:func:`normalize_answer`); a question counts each of its
    distinct normalised answers ONCE (so the count is the number of questions the answer
    was given to). Answers with ``count >= min_count`` are kept, sorted by count
    (descending) then alphabetically, and cut to the first ``top_k``. Empty answers are
    ignored.
    """
    counts: Counter = Counter()
    for answers in answers_per_question:
        if isinstance(answers, str):
            answers = [answers]
        counts.update({a for a in (normalize_answer(x) for x in answers) if a})
    kept = sorted((a for a, c in counts.items() if c >= min_count),
                  key=lambda a: (-counts[a], a))
    return kept if top_k is None else kept[:top_k]


def load_answer_list(path: str) -> List[str]:
    """An answer vocabulary: a JSON list (ALBEF/BLIP ``answer_list.json``), a JSON dict
    ``answer -> index`` (ViLT's ``label2ans`` inverse; returned in index order) or a text
    file with one answer per line (blank lines skipped)."""
    if path.endswith('.json'):
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
        if isinstance(data, dict):
            items = sorted(data.items(), key=lambda kv: int(kv[1]))
            idx = [int(v) for _, v in items]
            if idx != list(range(len(idx))):
                raise ValueError(f'{path}: the answer indices are not 0..{len(idx) - 1}')
            return [str(a) for a, _ in items]
        if isinstance(data, list):
            return [str(a) for a in data]
        raise ValueError(f'{path}: expected a JSON list or dict, got {type(data).__name__}')
    with open(path, encoding='utf-8') as f:
        return [line.rstrip('\n') for line in f if line.strip()]


def save_answer_list(answers: Sequence[str], path: str) -> None:
    """Write a JSON list (``.json``) or one answer per line (any other suffix)."""
    d = osp.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        if path.endswith('.json'):
            json.dump(list(answers), f)
        else:
            f.write(''.join(f'{a}\n' for a in answers))


@METRICS.register_module()
class VQAAccuracy(BaseMetric):
    """Official VQA accuracy (%) over a split, overall and per answer type.

    Each prediction dict (a model's ``predict`` output) holds ``pred_answer`` (str),
    ``answers`` (the human answers; ``[]`` on test-dev/test-std), ``question_id`` and
    optionally ``answer_type`` (``'yes/no'``, ``'number'``, ``'other'``).

    Returns ``accuracy`` and ``accuracy_{answer_type}`` for every type present, over the
    questions that have answers. With ``output_file``, the predictions of every question
    are written (rank 0) in the official submission format
    ``[{"question_id": int, "answer": str}]``; when no question has answers only the file
    is written and ``{}`` is returned.

    Args:
        output_file: where to write the submission JSON (``None``: not written).
        normalize: see :func:`vqa_accuracy` (default ``'official'``).
        collect_device, prefix, collect_dir: mmengine ``BaseMetric`` (prefix ``'vqa'``).
    """
    default_prefix = 'vqa'

    def __init__(self, output_file: Optional[str] = None, normalize: str = 'official',
                 collect_device: str = 'cpu', prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix,
                         collect_dir=collect_dir)
        if normalize not in ('official', 'always', 'none'):
            raise ValueError(f'bad normalize {normalize!r}')
        self.output_file = output_file
        self.normalize = normalize

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            if 'pred_answer' not in s:
                raise KeyError(f"{type(self).__name__}: no 'pred_answer' in the prediction "
                               f'(keys {sorted(s)})')
            qid = s.get('question_id')
            if hasattr(qid, 'item'):
                qid = qid.item()
            answers = s.get('answers') or []
            self.results.append(dict(question_id=qid, pred_answer=str(s['pred_answer']),
                                     answers=[str(a) for a in answers],
                                     answer_type=str(s.get('answer_type') or '')))

    def _dump(self, results: List[dict]) -> None:
        sub = []
        for r in results:
            qid = r['question_id']
            try:
                qid = int(qid)
            except (TypeError, ValueError):
                pass
            sub.append(dict(question_id=qid, answer=r['pred_answer']))
        d = osp.dirname(self.output_file)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(self.output_file, 'w', encoding='utf-8') as f:
            json.dump(sub, f)
        print_log(f'{type(self).__name__}: wrote {len(sub)} answers to {self.output_file}',
                  logger='current')

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        # compute_metrics runs on rank 0 only (mmengine's BaseMetric.evaluate)
        if self.output_file:
            self._dump(results)
        scored = [r for r in results if r['answers']]
        if not scored:
            print_log(f'{type(self).__name__}: no question has answers; nothing to score',
                      logger='current', level=logging.WARNING)
            return {}
        by_type: Dict[str, List[float]] = defaultdict(list)
        accs = []
        for r in scored:
            acc = vqa_accuracy(r['pred_answer'], r['answers'], self.normalize)
            accs.append(acc)
            if r['answer_type']:
                by_type[r['answer_type']].append(acc)
        out = {'accuracy': 100.0 * sum(accs) / len(accs)}
        for t in sorted(by_type):
            out[f'accuracy_{t}'] = 100.0 * sum(by_type[t]) / len(by_type[t])
        return out
