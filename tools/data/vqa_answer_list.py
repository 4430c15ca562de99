"""Build the VQA answer vocabulary (the classes of a classifier VQA model, or the candidate
list of a generative model's ranking) from VQAv2 annotation files.

Usage::

    python tools/data/vqa_answer_list.py OUT.json ANN [ANN ...]
        [--field multiple_choice_answer|answers] [--min-count 9] [--top-k 3129]

``ANN`` files, in either format (detected from the content):

- official VQAv2 annotations (``v2_mscoco_{train,val}2014_annotations.json``:
  ``{"annotations": [{"question_id", "multiple_choice_answer", "answers": [{"answer", ...}],
  ...}]}``);
- the ALBEF / BLIP JSON list (``vqa_train.json`` ...: ``[{"question_id", "question",
  "answer": [str] or str, "image"}]``; only ``--field answers`` applies to it).

``--field multiple_choice_answer`` (the default, ViLT's ``write_vqa.py``): each question
contributes its majority answer; ``--field answers``: each question contributes each of its
distinct human answers once. Answers are normalised as the official VQA evaluation does
(:func:`vlp.evaluation.metrics.vqa.normalize_answer`), answers seen at least
``--min-count`` times are kept, sorted by count (descending, ties alphabetically), cut to
``--top-k`` (:func:`~vlp.evaluation.metrics.vqa.build_answer_list`) and written by
:func:`~vlp.evaluation.metrics.vqa.save_answer_list` (a JSON list for ``.json``, else one
answer per line).

ViLT / VLMo / BEiT-3: the majority answers of VQAv2 train + val with at least 9 occurrences,
3,129 answers (ViLT's ``vqav2_label_size``)::

    python tools/data/vqa_answer_list.py data/vqav2/answer_list.json \\
        data/vqav2/v2_mscoco_train2014_annotations.json \\
        data/vqav2/v2_mscoco_val2014_annotations.json

The ORDER differs from ViLT's ``ans2label`` (first occurrence): a head trained on this list
matches it, but a converted official VQA head needs its own label order.
"""
import argparse
import json
import os.path as osp
import sys
from typing import Iterator, List, Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from vlp.evaluation.metrics.vqa import build_answer_list, save_answer_list  # noqa: E402

FIELDS = ('multiple_choice_answer', 'answers')


def iter_answers(path: str, field: str = 'multiple_choice_answer') -> Iterator[List[str]]:
    """The answers of each question of one annotation file (see the module docstring)."""
    if field not in FIELDS:
        raise ValueError(f'field must be one of {FIELDS}, got {field!r}')
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    if isinstance(data, dict):
        if 'annotations' not in data:
            raise ValueError(f'{path}: a JSON object without "annotations": not a VQAv2 '
                             'annotation file (a question file has no answers)')
        for ann in data['annotations']:
            if field == 'multiple_choice_answer':
                yield [str(ann['multiple_choice_answer'])]
            else:
                yield [str(a['answer']) for a in ann['answers']]
    elif isinstance(data, list):
        if field != 'answers':
            raise ValueError(f'{path}: an ALBEF/BLIP list has no multiple_choice_answer; '
                             'use --field answers')
        for i, entry in enumerate(data):
            if 'answer' not in entry:
                raise KeyError(f'{path}: entry {i} has no "answer" (a test file?)')
            ans = entry['answer']
            yield [ans] if isinstance(ans, str) else [str(a) for a in ans]
    else:
        raise ValueError(f'{path}: expected a JSON object or list, got {type(data).__name__}')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Build the VQA answer vocabulary from VQAv2 annotation files')
    parser.add_argument('out', help='output file (.json: a JSON list; else one per line)')
    parser.add_argument('annotations', nargs='+', help='annotation files (official or '
                        'ALBEF/BLIP list)')
    parser.add_argument('--field', choices=FIELDS, default='multiple_choice_answer',
                        help='which answers count (default: the majority answer, as ViLT)')
    parser.add_argument('--min-count', type=int, default=9,
                        help='keep answers seen at least this often (default 9, as ViLT)')
    parser.add_argument('--top-k', type=int, default=3129,
                        help='keep at most this many answers (default 3129, as ViLT; '
                             '0: no limit)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    args = parse_args(argv)
    if args.min_count < 1:
        raise SystemExit('--min-count must be >= 1')
    per_question: List[List[str]] = []
    for path in args.annotations:
        if not osp.exists(path):
            raise SystemExit(f'annotation file not found: {path}')
        n = len(per_question)
        per_question.extend(iter_answers(path, args.field))
        print(f'{path}: {len(per_question) - n} questions')
    answers = build_answer_list(per_question, min_count=args.min_count,
                                top_k=args.top_k or None)
    if not answers:
        raise SystemExit(f'no answer occurs {args.min_count} times or more: nothing written')
    save_answer_list(answers, args.out)
    print(f'{len(answers)} answers (min count {args.min_count}'
          f'{f", top {args.top_k}" if args.top_k else ""}) written to {args.out}')
    return answers


if __name__ == '__main__':
    main()
