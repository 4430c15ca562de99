"""Nothing lost on a kill during a save, a full disk or a NaN.

- A kill -9 at each moment of a save (half the bytes written; the file complete but not
  renamed; renamed but old checkpoints not removed; ``last_checkpoint`` truncated) with
  ``max_keep_ckpts=1``: ``--resume`` picks the newest complete checkpoint and the resumed
  run's losses equal the uninterrupted run's.
- A full disk (a real ``EFBIG`` from ``RLIMIT_FSIZE``, and ``ENOSPC`` raised by the file
  write during training): the error names the file and the bytes needed, the previous
  file is intact, no temporary file is left, the old checkpoint is kept.
- Truncated or partial checkpoints are never picked by ``--resume``.
- The non-finite guard: a NaN step is skipped and counted, the run continues; NaN at every
  step stops the run with the iteration and the loss terms; no checkpoint is written with
  NaN weights; the controls (guard off) show what the guard prevents.
"""
import errno
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

import vlp_toy
from vlp.engine import safe_io
from vlp.engine.hooks.checkpoint import (checkpoint_problem, find_resumable_checkpoint,
                                         non_finite_tensors)
from vlp.engine.optim.nonfinite import NonFiniteError


@pytest.fixture
def toy_base(tmp_path):
    return vlp_toy.write_toy_config(str(tmp_path / 'toy.py'))


def _short_run(tmp_path, base, max_iters=6, keep=1, hooks=(), options=None):
    cfg = vlp_toy.prepare_config(base, str(tmp_path / 'run.py'), max_iters=max_iters,
                                 ckpt_interval=2, options=options)
    from mmengine.config import Config
    c = Config.fromfile(cfg)
    c.default_hooks.checkpoint.max_keep_ckpts = keep
    c.custom_hooks = list(c.custom_hooks) + list(hooks)
    c.dump(cfg)
    return cfg


# ----------------------------------------------------------------------------- atomic files
def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / 'a.bin'
    safe_io.atomic_write_bytes(path, b'old')
    safe_io.atomic_write_bytes(path, b'new' * 10)
    assert path.read_bytes() == b'new' * 10
    assert os.listdir(tmp_path) == ['a.bin']  # no temporary left


def test_failed_write_keeps_the_old_file_and_names_the_bytes(tmp_path, monkeypatch):
    path = tmp_path / 'ckpt.pth'
    safe_io.atomic_torch_save({'w': torch.ones(4)}, path)
    before = path.read_bytes()

    def failing(f):
        f.write(b'x' * 100)  # some bytes reach the disk, then it is full
        raise OSError(errno.ENOSPC, 'No space left on device')
    with pytest.raises(OSError) as info:
        safe_io._write(str(path), failing, lambda: 12345)
    assert info.value.errno == errno.ENOSPC
    msg = str(info.value)
    assert str(path) in msg and '12,345 bytes needed' in msg and 'bytes free' in msg
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ['ckpt.pth']


def test_real_file_size_limit_is_reported_with_the_size(tmp_path):
    """A real failing write (RLIMIT_FSIZE makes the kernel refuse with EFBIG, as a full disk
    refuses with ENOSPC), in a subprocess."""
    code = f'''
import os, resource, signal, torch
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from vlp.engine import safe_io
safe_io.atomic_torch_save({{"w": torch.zeros(10)}}, {str(tmp_path / "c.pth")!r})
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
try:
    safe_io.atomic_torch_save({{"w": torch.zeros(1 << 16)}}, {str(tmp_path / "c.pth")!r})
except OSError as e:
    print("ERRNO", e.errno, str(e))
'''
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=vlp_toy.REPO, timeout=120)
    assert 'ERRNO 27' in out.stdout, out.stdout + out.stderr
    assert str(tmp_path / 'c.pth') in out.stdout and 'bytes needed' in out.stdout
    size = safe_io.serialized_size({'w': torch.zeros(1 << 16)})
    assert f'{size:,} bytes needed' in out.stdout
    assert sorted(os.listdir(tmp_path)) == ['c.pth']
    assert torch.load(tmp_path / 'c.pth')['w'].numel() == 10  # the old file, whole


# ------------------------------------------------------------- picking checkpoints to resume
def test_incomplete_checkpoints_are_never_picked(tmp_path):
    good = tmp_path / 'iter_2.pth'
    torch.save({'state_dict': {'w': torch.ones(3)}}, good)
    data = good.read_bytes()
    truncated = tmp_path / 'iter_4.pth'
    truncated.write_bytes(data[:len(data) // 2])
    (tmp_path / '.iter_6.pth.partial123').write_bytes(data)
    os.utime(good, (1, 1))  # the oldest
    assert checkpoint_problem(str(good)) is None
    assert 'truncated' in checkpoint_problem(str(truncated))
    assert 'temporary' in checkpoint_problem(str(tmp_path / '.iter_6.pth.partial123'))
    (tmp_path / 'last_checkpoint').write_text(str(truncated))
    assert find_resumable_checkpoint(str(tmp_path)) == str(good)
    (tmp_path / 'last_checkpoint').write_text('')
    assert find_resumable_checkpoint(str(tmp_path)) == str(good)
    good.unlink()
    with pytest.raises(FileNotFoundError, match='no complete checkpoint'):
        find_resumable_checkpoint(str(tmp_path))
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert find_resumable_checkpoint(str(empty)) is None
    ds_dir = tmp_path / 'iter_8.pth'
    ds_dir.mkdir()
    assert 'without DeepSpeed model states' in checkpoint_problem(str(ds_dir))


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    """(config, per-iteration losses) of the uninterrupted 6-iteration CLI run."""
    tmp = tmp_path_factory.mktemp('uninterrupted')
    cfg = _short_run(tmp, vlp_toy.write_toy_config(str(tmp / 'toy.py')), keep=1)
    vlp_toy.cli_train(cfg, str(tmp / 'full'))
    return cfg, vlp_toy.read_losses(str(tmp / 'full'))


@pytest.mark.parametrize('point', ['mid_write', 'before_rename', 'after_rename',
                                   'last_checkpoint'])
def test_kill_during_save_then_resume_is_exact(tmp_path, toy_base, uninterrupted, point):
    """kill -9 during the 2nd save (iteration 4) with max_keep_ckpts=1; --resume continues
    from the newest complete checkpoint and reproduces the uninterrupted losses."""
    cfg, full = uninterrupted

    (tmp_path / 'k').mkdir()
    killed = _short_run(tmp_path / 'k', toy_base, keep=1,
                        hooks=[dict(type='KillDuringSaveHook', at=2, point=point)])
    work = str(tmp_path / 'killed')
    with pytest.raises(AssertionError, match='failed'):  # the SIGKILL
        vlp_toy.cli_train(killed, work)
    os.rename(osp.join(work, 'losses_rank0.jsonl'), osp.join(work, 'killed_run_losses.jsonl'))
    complete = find_resumable_checkpoint(work)
    expected = 'iter_4.pth' if point in ('after_rename', 'last_checkpoint') else 'iter_2.pth'
    assert osp.basename(complete) == expected
    # the resumed run (same config without the kill) finishes and matches
    out = vlp_toy.cli_train(cfg, work, '--resume')
    assert 'Resum' in out
    resumed = vlp_toy.read_losses(work)
    start = int(expected.split('_')[1].split('.')[0])
    for i in range(start, 6):
        assert resumed[i] == full[i], (i, full, resumed)
    # max_keep_ckpts=1 holds again and nothing temporary is left
    names = sorted(n for n in os.listdir(work) if n.endswith('.pth') or '.partial' in n)
    assert names == ['iter_6.pth'], names


def test_disk_full_during_training_keeps_the_old_checkpoint(tmp_path, toy_base, monkeypatch):
    cfg = _short_run(tmp_path, toy_base, keep=1)
    real = safe_io._write
    calls = []

    def full_disk_on_second(path, write, size_hint=None):
        calls.append(path)
        if len([c for c in calls if c.endswith('.pth')]) == 2 and path.endswith('.pth'):
            def partial(f):
                f.write(b'0' * 1000)
                raise OSError(errno.ENOSPC, 'No space left on device')
            return real(path, partial, size_hint)
        return real(path, write, size_hint)
    monkeypatch.setattr(safe_io, '_write', full_disk_on_second)
    with pytest.raises(OSError) as info:
        vlp_toy.train_in_process(cfg, str(tmp_path / 'w'))
    assert 'iter_4.pth' in str(info.value) and 'bytes needed' in str(info.value)
    assert sorted(n for n in os.listdir(tmp_path / 'w') if n.endswith('.pth')) == ['iter_2.pth']
    assert find_resumable_checkpoint(str(tmp_path / 'w')).endswith('iter_2.pth')
    assert not [n for n in os.listdir(tmp_path / 'w') if '.partial' in n]


# ---------------------------------------------------------------------------- non-finite
def _skips_logged(work_dir):
    vals = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            vals += [json.loads(line).get('nonfinite_skips') for line in f]
    return [v for v in vals if v is not None]


def test_a_nan_step_is_skipped_counted_and_training_goes_on(tmp_path, toy_base):
    cfg = _short_run(tmp_path, toy_base, max_iters=6,
                     hooks=[dict(type='NaNInjectHook', iters=[2]),
                            dict(type='ModelStateRecorderHook')])
    runner = vlp_toy.train_in_process(cfg, str(tmp_path / 'w'))
    state = torch.load(tmp_path / 'w' / 'model_state_rank0.pt')
    assert all(torch.isfinite(v).all() for v in state.values())
    assert runner.optim_wrapper.nonfinite_guard.skipped == 1
    assert max(_skips_logged(str(tmp_path / 'w'))) == 1
    # the control: without the step guard the one NaN step destroys the weights, and the
    # checkpoint guard refuses the next save
    with pytest.raises(RuntimeError, match=r'Refusing to save iter_4.pth .* hold NaN/inf'):
        vlp_toy.train_in_process(cfg, str(tmp_path / 'off'),
                                 cfg_options={'optim_wrapper.nonfinite': None})
    assert sorted(n for n in os.listdir(tmp_path / 'off') if n.endswith('.pth')) == ['iter_2.pth']


def test_nan_at_every_step_stops_the_run_naming_iteration_and_terms(tmp_path, toy_base):
    cfg = _short_run(tmp_path, toy_base, max_iters=12,
                     hooks=[dict(type='NaNInjectHook', iters=list(range(3, 12)))],
                     options={'optim_wrapper.nonfinite': dict(action='skip', max_consecutive=3)})
    with pytest.raises(NonFiniteError) as info:
        vlp_toy.train_in_process(cfg, str(tmp_path / 'w'))
    msg = str(info.value)
    assert 'iteration 6' in msg and 'loss_itc=nan' in msg and '3 step(s) in a row' in msg
    for ckpt in glob.glob(str(tmp_path / 'w' / 'iter_*.pth')):
        state = torch.load(ckpt, weights_only=False)['state_dict']
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_huge_learning_rate_exits_non_zero(tmp_path, toy_base):
    """The issue's reproduction: lr=1e4 used to give NaN losses, exit code 0 and NaN
    checkpoints. Now tools/train.py fails, and no checkpoint holds NaN."""
    cfg = _short_run(tmp_path, toy_base, max_iters=30,
                     options={'optim_wrapper.clip_grad': None})
    with pytest.raises(AssertionError, match='non-finite'):
        vlp_toy.cli_train(cfg, str(tmp_path / 'w'), '--cfg-options',
                          'optim_wrapper.optimizer.lr=1e4')
    for ckpt in glob.glob(str(tmp_path / 'w' / 'iter_*.pth')):
        state = torch.load(ckpt, weights_only=False)['state_dict']
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_checkpoint_with_nan_weights_is_refused(tmp_path, toy_base):
    model = torch.nn.Linear(2, 2)
    assert non_finite_tensors(model) == (0, [])
    with torch.no_grad():
        model.bias[0] = float('inf')
    assert non_finite_tensors(model) == (1, ['bias'])
    # in a run: weights made NaN behind the optimizer's back, the guard cannot see it
    cfg = _short_run(tmp_path, toy_base, max_iters=4,
                     options={'optim_wrapper.nonfinite': None,
                              'optim_wrapper.optimizer.lr': 1e6,
                              'optim_wrapper.clip_grad': None})
    with pytest.raises(RuntimeError, match='Refusing to save iter_'):
        vlp_toy.train_in_process(cfg, str(tmp_path / 'w'))


def test_deepspeed_nan_on_one_rank_is_skipped_by_both(tmp_path, toy_base):
    """ZeRO-2 on 2 ranks, the loss NaN on rank 1 only at iteration 2: both ranks skip that
    micro-step (no rank waits in a collective the other skipped), training goes on, the
    weights stay finite; checkpoint directories appear whole (no temporary left)."""
    cfg = vlp_toy.prepare_config(toy_base, str(tmp_path / 'ds.py'), max_iters=4,
                                 ckpt_interval=2, deepspeed_stage=2)
    from mmengine.config import Config
    c = Config.fromfile(cfg)
    c.custom_hooks = list(c.custom_hooks) + [dict(type='NaNInjectHook', iters=[2], ranks=[1]),
                                             dict(type='ModelStateRecorderHook')]
    c.dump(cfg)
    out = vlp_toy.cli_train(cfg, str(tmp_path / 'w'), '--cfg-options',
                            'train_dataloader.batch_size=4', nproc=2)
    # rank 0 logs (mmengine's logger prints on the main process): its own loss was finite
    assert 'non-finite loss on another rank at iteration 3' in out, out[-3000:]
    assert out.count('step skipped (1 in a row, 1 in total') == 1
    for r in (0, 1):
        state = torch.load(tmp_path / 'w' / f'model_state_rank{r}.pt')
        assert all(torch.isfinite(v).all() for v in state.values())
    names = sorted(os.listdir(tmp_path / 'w'))
    assert 'iter_2.pth' in names and 'iter_4.pth' in names
    assert not [n for n in names if '.partial' in n]
    assert checkpoint_problem(str(tmp_path / 'w' / 'iter_4.pth')) is None
