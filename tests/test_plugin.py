"""An outside package adds a backbone, neck, head, loss, dataset and hook to vlp's
registries through ``custom_imports``, without touching vlp."""
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from vlp.registry import DATASETS, HOOKS, MODELS

PLUGIN = Path(__file__).resolve().parents[1] / 'projects' / 'example_plugin'


@pytest.fixture
def plugin_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN))
    yield
    for name in [m for m in sys.modules if m.startswith('vlp_example_plugin')]:
        del sys.modules[name]


def test_plugin_registers_through_custom_imports(plugin_on_path):
    # not imported by anything in vlp: only the config's custom_imports loads it
    assert 'vlp_example_plugin' not in sys.modules
    cfg = Config.fromfile(str(PLUGIN / 'configs' / 'clip_convtower_demo.py'))
    assert 'vlp_example_plugin' in sys.modules
    init_default_scope('vlp')
    for registry, name in [(MODELS, 'ConvTower'), (MODELS, 'MeanPoolNeck'),
                           (MODELS, 'ScaledDotHead'), (MODELS, 'CosineMarginLoss'),
                           (DATASETS, 'NoiseImageText'), (HOOKS, 'LossSpikeHook')]:
        assert registry.get(name) is not None, name

    model = MODELS.build(cfg.model)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = {k: torch.stack([dataset[i][k] for i in range(4)])
             for k in ('image', 'input_ids', 'attention_mask')}
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_margin'}
    losses['loss_margin'].backward()
    assert model.vision.body[0].weight.grad is not None
    hook = HOOKS.build(cfg.custom_hooks[0])
    assert type(hook).__name__ == 'LossSpikeHook'
    head = MODELS.build(dict(type='ScaledDotHead', dim=8))
    assert head(torch.ones(2, 8), torch.ones(2, 8)).shape == (2,)
    neck = MODELS.build(dict(type='MeanPoolNeck', in_dim=8, out_dim=4))
    assert neck(torch.ones(2, 3, 8)).shape == (2, 4)
