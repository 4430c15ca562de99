"""Resume continues the same loss curve (mmengine Runner, one process): optimizer,
schedulers, sampler position and the RNG states of RNGStateHook.

The toy run uses dropout (torch RNG) and a main-process augmentation drawing from
python's ``random`` and numpy, restarts its DataLoader mid-run (32 samples, batch 8) and
validates at the checkpoint (a validation that itself draws random numbers). Controls
show the test would catch a broken hook: without it, or without the validation
isolation, the resumed losses differ.
"""
import random

import numpy as np
import pytest
import torch

import vlp_toy
from vlp.engine.hooks.rng_state import capture_rng_state, restore_rng_state

RANDOM = {'model.drop': 0.1, 'train_dataloader.dataset.augment': True}
RESTART = {'train_dataloader.dataset.num': 32}  # 4 iterations per pass over the data


def _draw():
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist())


def test_capture_restore_roundtrip():
    state = capture_rng_state()
    first = _draw()
    _draw()
    restore_rng_state(state)
    assert _draw() == first


def _resume_losses(tmp_path, base, ckpt_name, hook_options=None, restart=False, **prepare):
    options = dict(RANDOM, **(RESTART if restart else {}))
    cfg = vlp_toy.prepare_config(base, str(tmp_path / 'run.py'), options=options, **prepare)
    extra = hook_options or {}
    vlp_toy.train_in_process(cfg, str(tmp_path / 'full'), cfg_options=extra)
    full = vlp_toy.read_losses(str(tmp_path / 'full'))
    vlp_toy.copy_checkpoint(str(tmp_path / 'full' / ckpt_name), str(tmp_path / 'resumed'))
    vlp_toy.train_in_process(cfg, str(tmp_path / 'resumed'), cfg_options=extra, resume='auto')
    resumed = vlp_toy.read_losses(str(tmp_path / 'resumed'))
    return full, resumed


@pytest.fixture
def toy_base(tmp_path):
    return vlp_toy.write_toy_config(str(tmp_path / 'toy.py'))


def test_iter_based_resume_reproduces_losses(tmp_path, toy_base):
    full, resumed = _resume_losses(tmp_path, toy_base, 'iter_4.pth', max_iters=8,
                                   ckpt_interval=4, val=True, restart=True)
    assert sorted(full) == list(range(8)) and sorted(resumed) == [4, 5, 6, 7]
    for i in resumed:
        assert resumed[i] == pytest.approx(full[i], abs=1e-6), (i, full, resumed)
    assert len({round(v, 6) for v in full.values()}) == 8  # the loss does move


def test_epoch_based_resume_reproduces_losses(tmp_path, toy_base):
    full, resumed = _resume_losses(tmp_path, toy_base, 'epoch_2.pth', max_iters=None,
                                   max_epochs=3, ckpt_interval=1, restart=True)
    assert sorted(full) == list(range(12)) and sorted(resumed) == list(range(8, 12))
    for i in resumed:
        assert resumed[i] == pytest.approx(full[i], abs=1e-6), (i, full, resumed)


@pytest.mark.parametrize('options', [
    {'default_hooks.rng_state': None},  # no RNG states at all
    {'default_hooks.rng_state.isolate_val': False},  # validation shifts the streams
], ids=['without_hook', 'without_val_isolation'])
def test_controls_diverge(tmp_path, toy_base, options):
    full, resumed = _resume_losses(tmp_path, toy_base, 'iter_4.pth', hook_options=options,
                                   max_iters=8, ckpt_interval=4, val=True)
    assert any(abs(resumed[i] - full[i]) > 1e-4 for i in resumed), (full, resumed)
