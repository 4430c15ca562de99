"""ZeroShotAccuracy, the prompt-ensemble classifier and ZeroShotClassifierHook."""
import hashlib
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vlp.engine.hooks import ZeroShotClassifierHook
from vlp.engine.hooks.zero_shot import unwrap_model
from vlp.evaluation.metrics.zero_shot import (OPENAI_IMAGENET_SELECTED_TEMPLATES,
                                              OPENAI_IMAGENET_TEMPLATES, TEMPLATE_PRESETS,
                                              ZeroShotAccuracy, get_templates,
                                              zero_shot_classifier)
from vlp.registry import HOOKS, METRICS

D = 8


def _vec(text: str) -> torch.Tensor:
    """A fixed, unnormalised vector per string (norm varies with the string)."""
    seed = int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(D, generator=g) * (1 + len(text) % 5)


class StandIn(nn.Module):
    """Dual-encoder stand-in: ``encode_text`` returns a fixed vector per string."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.calls, self.modes, self.classifier = [], [], 'unset'

    def encode_text(self, texts):
        self.calls.append(list(texts))
        self.modes.append(self.training)
        return torch.stack([_vec(t) for t in texts])

    def set_zero_shot_classifier(self, weights):
        self.classifier = weights


def _direct(classnames, templates):
    out = []
    for c in classnames:
        e = torch.stack([F.normalize(_vec(t.format(c)), dim=0) for t in templates])
        out.append(F.normalize(e.mean(0), dim=0))
    return torch.stack(out)


# -- accuracy -------------------------------------------------------------------------------
def test_registered():
    assert METRICS.get('ZeroShotAccuracy') is ZeroShotAccuracy
    assert HOOKS.get('ZeroShotClassifierHook') is ZeroShotClassifierHook


def _logits_with_label_rank(rank: int, num_classes: int, label: int) -> torch.Tensor:
    """Logits where ``label`` is the ``rank``-th best (0-based)."""
    order = [c for c in range(num_classes) if c != label]
    order.insert(rank, label)
    logits = torch.empty(num_classes)
    logits[torch.tensor(order)] = torch.arange(num_classes, 0, -1).float()
    return logits


def test_topk_accuracy_known():
    ranks, labels = [0, 2, 5, 4, 0], [3, 0, 7, 1, 9]
    samples = [dict(logits=_logits_with_label_rank(r, 10, y), label=y, image_id=i)
               for i, (r, y) in enumerate(zip(ranks, labels))]
    metric = ZeroShotAccuracy(topk=(1, 3, 5, 6))
    metric.process(None, samples[:2])
    metric.process(None, samples[2:])
    m = metric.evaluate(5)
    assert m == pytest.approx({'zero_shot/top1': 40.0, 'zero_shot/top3': 60.0,
                               'zero_shot/top5': 80.0, 'zero_shot/top6': 100.0})


def test_topk_clipped_to_classes_and_tensor_labels():
    metric = ZeroShotAccuracy(prefix='cifar')
    metric.process(None, [dict(logits=torch.tensor([0.1, 0.9, 0.0]), label=torch.tensor(2)),
                          dict(logits=torch.tensor([0.1, 0.9, 0.0]), label=1)])
    assert metric.evaluate(2) == {'cifar/top1': 50.0, 'cifar/top5': 100.0}


def test_missing_logits_has_a_hint():
    with pytest.raises(KeyError, match='ZeroShotClassifierHook'):
        ZeroShotAccuracy().process(None, [dict(label=1, image_feat=torch.ones(4))])


# -- templates and the classifier -------------------------------------------------------------
def test_openai_templates_match_open_clip():
    zsm = pytest.importorskip('open_clip.zero_shot_metadata')
    assert len(OPENAI_IMAGENET_TEMPLATES) == 80
    assert [t('{}') for t in zsm.OPENAI_IMAGENET_TEMPLATES] == list(OPENAI_IMAGENET_TEMPLATES)
    assert ([t('{}') for t in zsm.SIMPLE_IMAGENET_TEMPLATES]
            == list(OPENAI_IMAGENET_SELECTED_TEMPLATES))


def test_get_templates():
    assert get_templates('openai_imagenet') == list(OPENAI_IMAGENET_TEMPLATES)
    assert all('{}' in t for name in TEMPLATE_PRESETS for t in get_templates(name))
    assert get_templates(['a {} here']) == ['a {} here']
    with pytest.raises(KeyError, match='simple'):
        get_templates('nope')
    with pytest.raises(ValueError, match='no "{}"'):
        get_templates(['a photo'])


def test_prompt_ensemble_equals_direct_computation():
    classes = ['cat', 'dog', 'red circle']
    templates = ['a photo of a {}.', 'a {}.', 'art of the {}.']
    model = StandIn().train()
    got = zero_shot_classifier(model, classes, templates, batch_size=4)
    want = _direct(classes, templates)
    assert got.shape == (3, D)
    torch.testing.assert_close(got, want)
    # normalising before averaging matters here (the stand-in's norms differ)
    naive = F.normalize(torch.stack([torch.stack([_vec(t.format(c)) for t in templates]
                                                 ).mean(0) for c in classes]), dim=-1)
    assert not torch.allclose(got, naive, atol=1e-3)
    # batched: 9 prompts in batches of 4; encoded in eval mode, training mode restored
    assert [len(c) for c in model.calls] == [4, 4, 1]
    assert model.modes == [False] * 3 and model.training
    # batch size does not change the result; callables work like '{}' strings
    torch.testing.assert_close(
        zero_shot_classifier(model, classes, [lambda c, t=t: t.format(c) for t in templates],
                             batch_size=100), want)
    # a preset
    torch.testing.assert_close(zero_shot_classifier(model, ['cat'], 'simple'),
                               _direct(['cat'], TEMPLATE_PRESETS['simple']))


def test_classifier_progress_bar(capsys):
    zero_shot_classifier(StandIn(), ['a', 'b'], 'openai_imagenet', batch_size=8, progress=True)
    assert '20/20' in capsys.readouterr().out


# -- the hook -------------------------------------------------------------------------------
class Wrapper(nn.Module):
    """Like DDP / DeepSpeed: the model is ``.module``."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def _runner(model, metainfo):
    dataset = SimpleNamespace(metainfo=metainfo)
    loop = SimpleNamespace(dataloader=SimpleNamespace(dataset=dataset))
    return SimpleNamespace(model=Wrapper(Wrapper(model)), val_loop=loop, test_loop=loop)


def test_unwrap_model():
    m = StandIn()
    assert unwrap_model(Wrapper(Wrapper(m))) is m and unwrap_model(m) is m


def test_hook_uses_dataset_classes_and_templates():
    model = StandIn()
    runner = _runner(model, dict(classes=['cat', 'dog'], templates=['a {}.', 'the {}.']))
    hook = ZeroShotClassifierHook()
    hook.before_val_epoch(runner)
    torch.testing.assert_close(model.classifier, _direct(['cat', 'dog'], ['a {}.', 'the {}.']))
    model.classifier = 'unset'
    hook.before_test_epoch(runner)
    torch.testing.assert_close(model.classifier, _direct(['cat', 'dog'], ['a {}.', 'the {}.']))


def test_hook_arguments_override_dataset():
    model = StandIn()
    runner = _runner(model, dict(classes=['cat', 'dog'], templates=['a {}.']))
    hook = ZeroShotClassifierHook(templates='simple', classnames=['bird', 'fish', 'ant'])
    hook.before_val_epoch(runner)
    torch.testing.assert_close(model.classifier,
                               _direct(['bird', 'fish', 'ant'], TEMPLATE_PRESETS['simple']))


def test_hook_default_templates_are_openai():
    model = StandIn()
    ZeroShotClassifierHook(batch_size=1000).before_val_epoch(
        _runner(model, dict(classes=['cat'])))
    torch.testing.assert_close(model.classifier, _direct(['cat'], OPENAI_IMAGENET_TEMPLATES))


def test_hook_without_classes_clears_and_flags():
    model = StandIn()
    model.classifier = torch.ones(2, D)
    ZeroShotClassifierHook().before_val_epoch(_runner(model, dict(dataset_name='coco')))
    assert model.classifier is None
    ZeroShotClassifierHook(on_test=False).before_test_epoch(
        _runner(model, dict(classes=['x'])))
    assert model.classifier is None  # on_test=False: untouched
    with pytest.raises(KeyError):
        ZeroShotClassifierHook(templates='imagenet_typo')
