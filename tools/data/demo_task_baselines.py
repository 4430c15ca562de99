"""Reference scores of the demo downstream tasks that no model needs to beat by looking at
the image: the majority label of the test split, and the **text-only prior**: for each
test question / statement / hypothesis, the most frequent training label of the same text
(the overall training majority for a text never seen in training).

A model that scores near the text-only prior answers from the question alone; docs/tasks.md
compares every task demo with both figures.

    python tools/data/demo_task_baselines.py [--json out.json]
"""
import argparse
import json
from collections import Counter, defaultdict
from typing import Callable, Dict, Sequence


def text_prior(train: Sequence[dict], test: Sequence[dict], text_key: str, label_key: str,
               score: Callable[[object, dict], float]) -> Dict[str, float]:
    """``dict(text_prior=..., majority=...)`` in percent over ``test``."""
    by_text, overall = defaultdict(Counter), Counter()
    for d in train:
        by_text[d[text_key]][d[label_key]] += 1
        overall[d[label_key]] += 1
    majority = overall.most_common(1)[0][0]
    prior = sum(score((by_text[d[text_key]] or overall).most_common(1)[0][0], d)
                for d in test)
    return dict(text_prior=100.0 * prior / len(test),
                majority=100.0 * sum(score(majority, d) for d in test) / len(test))


def demo_baselines(num_images: Dict[str, int] = None) -> Dict[str, Dict[str, float]]:
    from vlp.datasets.demo.tasks import DemoNLVR2, DemoSNLIVE, DemoVQA
    from vlp.evaluation.metrics.vqa import vqa_accuracy
    tasks = [('vqa', DemoVQA, 'question', 'answer',
              lambda p, d: vqa_accuracy(p, d['answers'])),
             ('nlvr2', DemoNLVR2, 'text', 'label', lambda p, d: float(p == d['label'])),
             ('snli_ve', DemoSNLIVE, 'text', 'label', lambda p, d: float(p == d['label']))]
    out = {}
    for name, cls, text_key, label_key, score in tasks:
        splits = {}
        for split in ('train', 'test'):
            kw = {} if num_images is None else dict(num_images=num_images[split])
            ds = cls(split=split, pipeline=[], **kw)
            splits[split] = [ds.get_data_info(i) for i in range(len(ds))]
        out[name] = text_prior(splits['train'], splits['test'], text_key, label_key, score)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--json', help='also write the figures to this file')
    args = parser.parse_args(argv)
    results = demo_baselines()
    print('| task | majority | text-only prior |\n|---|---|---|')
    for name, r in results.items():
        print(f"| {name} | {r['majority']:.1f}% | {r['text_prior']:.1f}% |")
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
