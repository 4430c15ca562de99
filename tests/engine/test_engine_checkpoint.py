"""Weights-only loading of mmengine checkpoints (vlp.engine.checkpoint)."""
import os.path as osp
import pickle

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

import vlp.engine  # noqa: F401  (installs the loader)
import vlp_toy
from vlp.engine.checkpoint import MMENGINE_SAFE_GLOBALS, load_from_local


@pytest.fixture(scope='module')
def mmengine_checkpoint(tmp_path_factory):
    """A real training checkpoint written by mmengine's Runner (3 iterations)."""
    tmp = tmp_path_factory.mktemp('ckpt')
    base = vlp_toy.write_toy_config(str(tmp / 'toy.py'))
    cfg = vlp_toy.prepare_config(base, str(tmp / 'run.py'), max_iters=3, ckpt_interval=3)
    vlp_toy.train_in_process(cfg, str(tmp / 'work'))
    return str(tmp / 'work' / 'iter_3.pth')


class _Evil:
    def __reduce__(self):
        return (print, ('arbitrary code ran',))


class _SneakyGetattr:
    """Pickles as getattr(HistoryBuffer, '__init__'): not a statistics method."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


def test_plain_weights_only_load_fails_and_ours_works(mmengine_checkpoint):
    # torch >= 2.6 refuses mmengine's checkpoint: this is what the loader fixes
    with pytest.raises(pickle.UnpicklingError):
        torch.load(mmengine_checkpoint, weights_only=True)
    assert CheckpointLoader._get_checkpoint_loader(mmengine_checkpoint) is load_from_local
    ckpt = _load_checkpoint(mmengine_checkpoint, map_location='cpu')
    assert {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers',
            'rng_state'} <= set(ckpt)
    loss_buffer = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss_buffer, HistoryBuffer) and len(loss_buffer.data[0]) == 3
    assert loss_buffer.statistics('mean') == pytest.approx(loss_buffer.mean())
    assert ckpt['meta']['iter'] == 3


def test_allow_list_is_scoped(mmengine_checkpoint):
    # torch keeps the allow-list in a set: compare contents (its iteration order may change
    # once entries were added and removed again)
    before = set(torch.serialization.get_safe_globals())
    _load_checkpoint(mmengine_checkpoint, map_location='cpu')
    assert set(torch.serialization.get_safe_globals()) == before
    assert HistoryBuffer not in torch.serialization.get_safe_globals()
    assert HistoryBuffer in MMENGINE_SAFE_GLOBALS


@pytest.mark.parametrize('payload', [_Evil(), _SneakyGetattr()], ids=['reduce', 'getattr'])
def test_arbitrary_objects_are_refused(tmp_path, payload):
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict={}, message_hub=payload), path)
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(path, map_location='cpu')


def test_weights_file_loads(tmp_path):
    path = str(tmp_path / 'w.pth')
    torch.save(dict(state_dict=dict(w=torch.ones(2))), path)
    assert torch.equal(_load_checkpoint(path)['state_dict']['w'], torch.ones(2))
    with pytest.raises(FileNotFoundError):
        load_from_local(osp.join(str(tmp_path), 'missing.pth'), None)
