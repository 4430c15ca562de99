"""ClassificationAccuracy (NLVR2 / SNLI-VE / image classification accuracy): overall,
per class and the majority-class baseline."""
import pytest
import torch

from vlp.evaluation.metrics.classification import ClassificationAccuracy
from vlp.registry import METRICS

# labels: 0 x3, 1 x2, 2 x1; correct: two of class 0, one of class 1, none of class 2
PREDS = [0, 0, 1, 1, 0, 0]
LABELS = [0, 0, 0, 1, 1, 2]


def _samples():
    return [dict(pred_label=p, label=torch.tensor(l)) for p, l in zip(PREDS, LABELS)]


def test_accuracy_per_class_and_majority():
    metric = METRICS.build(dict(type='ClassificationAccuracy',
                                classes=['contradiction', 'neutral', 'entailment'],
                                prefix='snli_ve'))
    assert isinstance(metric, ClassificationAccuracy)
    metric.process(None, _samples())
    res = metric.evaluate(6)
    assert res == pytest.approx({
        'snli_ve/accuracy': 100 * 3 / 6,
        'snli_ve/majority_baseline': 100 * 3 / 6,
        'snli_ve/accuracy_contradiction': 100 * 2 / 3,
        'snli_ve/accuracy_neutral': 100 * 1 / 2,
        'snli_ve/accuracy_entailment': 0.0})


def test_classes_from_dataset_meta_and_logits():
    metric = ClassificationAccuracy()
    metric.dataset_meta = dict(classes=('False', 'True'))
    metric.process(None, [dict(logits=torch.tensor([0.1, 0.9]), label=1),
                          dict(logits=torch.tensor([0.8, 0.2]), label=1),
                          dict(pred_label=torch.tensor(1), label=1),
                          dict(pred_label=0, label=0)])
    res = metric.evaluate(4)
    assert res == pytest.approx({'classification/accuracy': 75.0,
                                 'classification/majority_baseline': 75.0,
                                 'classification/accuracy_True': 100 * 2 / 3,
                                 'classification/accuracy_False': 100.0})


def test_no_classes_no_per_class_and_errors():
    metric = ClassificationAccuracy()
    metric.process(None, [dict(pred_label=3, label=3), dict(pred_label=1, label=2)])
    assert metric.evaluate(2) == {'classification/accuracy': 50.0,
                                  'classification/majority_baseline': 50.0}
    with pytest.raises(KeyError):
        metric.process(None, [dict(label=1)])
    with pytest.raises(ValueError):
        ClassificationAccuracy().compute_metrics([])
