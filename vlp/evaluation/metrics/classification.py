"""Classification accuracy for the vision-language classification tasks: NLVR2 (Suhr et al.
2019; accuracy on dev / test-P, the protocol of ALBEF, ViLT, VLMo), SNLI-VE (Xie et al. 2019;
3-way accuracy on val / test) and fine-tuned image classification.

Per sample the model's prediction gives ``pred_label`` (int; or ``logits``, arg-maxed) and
the ground truth ``label``. Reported (percent):

- ``accuracy``: the fraction of correct predictions;
- ``accuracy_{class_name}``: the accuracy over the samples of each ground-truth class
  present in the evaluated set (the per-class recall), when class names are known;
- ``majority_baseline``: the accuracy of always predicting the most frequent ground-truth
  label of the evaluated set (for reference: NLVR2 is near 50, SNLI-VE near 33).
"""
from collections import Counter
from typing import Dict, List, Optional, Sequence

from mmengine.evaluator import BaseMetric

from vlp.registry import METRICS

__all__ = ['ClassificationAccuracy']


def _to_int(v) -> int:
    if hasattr(v, 'item'):
        v = v.item()
    return int(v)


@METRICS.register_module()
class ClassificationAccuracy(BaseMetric):
    """Top-1 accuracy (%) with per-class accuracy and the majority-class baseline.

    Args:
        classes: class names indexed by label; ``None``: ``dataset_meta['classes']`` when
            the evaluator has a dataset with it, else no per-class results.
        collect_device, prefix, collect_dir: mmengine ``BaseMetric`` (default prefix
            ``'classification'``; e.g. ``prefix='nlvr2'``).
    """
    default_prefix = 'classification'

    def __init__(self, classes: Optional[Sequence[str]] = None, collect_device: str = 'cpu',
                 prefix: Optional[str] = None, collect_dir: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix,
                         collect_dir=collect_dir)
        self.classes = None if classes is None else [str(c) for c in classes]

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            if 'pred_label' in s:
                pred = _to_int(s['pred_label'])
            elif 'logits' in s:
                pred = _to_int(s['logits'].reshape(-1).argmax())
            else:
                raise KeyError(f"{type(self).__name__}: no 'pred_label' (or 'logits') in the "
                               f'prediction (keys {sorted(s)})')
            if 'label' not in s:
                raise KeyError(f"{type(self).__name__}: no 'label' in the prediction")
            self.results.append(dict(pred=pred, label=_to_int(s['label'])))

    def _class_names(self) -> Optional[List[str]]:
        if self.classes is not None:
            return self.classes
        meta = self.dataset_meta or {}
        classes = meta.get('classes')
        return None if classes is None else [str(c) for c in classes]

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        if not results:
            raise ValueError(f'{type(self).__name__}: no results to evaluate')
        n = len(results)
        correct = sum(r['pred'] == r['label'] for r in results)
        counts = Counter(r['label'] for r in results)
        out = {'accuracy': 100.0 * correct / n,
               'majority_baseline': 100.0 * max(counts.values()) / n}
        classes = self._class_names()
        if classes is not None:
            for label in sorted(counts):
                if not 0 <= label < len(classes):
                    raise ValueError(f'{type(self).__name__}: label {label} outside the '
                                     f'{len(classes)} classes {classes}')
                hit = sum(r['pred'] == label for r in results if r['label'] == label)
                out[f'accuracy_{classes[label]}'] = 100.0 * hit / counts[label]
        return out
