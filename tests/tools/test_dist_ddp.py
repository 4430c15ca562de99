"""Plain DDP (mmengine's Runner) on 2 CPU ranks through tools/dist_train.sh and
tools/dist_test.sh.

Comparison: per-iteration losses averaged over the 2 ranks (batch B/2 each) against a
single-process Runner run (batch B, same seed): ``|a - b| <= 1e-5 * max(1, |b|)`` for all
8 iterations. Then ``--resume`` on 2 ranks from the iteration-4 checkpoint must reproduce
iterations 4-7 within 1e-6, and dist_test.sh on 2 ranks must give the single-process
tools/test.py metrics.
"""
import pytest

import vlp_toy

ITERS = 8


@pytest.fixture(scope='module')
def runs(base_config, tmp_path_factory):
    base, _, deterministic = base_config
    tmp = tmp_path_factory.mktemp('ddp')
    cfg = vlp_toy.prepare_config(base, str(tmp / 'plain.py'), max_iters=ITERS, ckpt_interval=4,
                                 options=deterministic)
    vlp_toy.train_in_process(cfg, str(tmp / 'single'))
    half = vlp_toy.batch_size_of(cfg) // 2
    vlp_toy.cli_train(cfg, str(tmp / 'ddp'), '--cfg-options',
                      f'train_dataloader.batch_size={half}', nproc=2)
    return dict(cfg=cfg, tmp=tmp, half=half,
                single=vlp_toy.read_losses(str(tmp / 'single')),
                ddp=vlp_toy.read_losses(str(tmp / 'ddp')))


def test_ddp_two_ranks_match_single_process(runs):
    reference, losses = runs['single'], runs['ddp']
    assert sorted(reference) == sorted(losses) == list(range(ITERS))
    for i in range(ITERS):
        assert abs(losses[i] - reference[i]) <= 1e-5 * max(1.0, abs(reference[i])), \
            (i, losses, reference)


def test_ddp_resume(runs, tmp_path):
    resumed_dir = str(tmp_path / 'resumed')
    vlp_toy.copy_checkpoint(str(runs['tmp'] / 'ddp' / 'iter_4.pth'), resumed_dir)
    vlp_toy.cli_train(runs['cfg'], resumed_dir, '--resume', '--cfg-options',
                      f'train_dataloader.batch_size={runs["half"]}', nproc=2)
    resumed = vlp_toy.read_losses(resumed_dir)
    assert sorted(resumed) == [4, 5, 6, 7]
    for i in resumed:
        assert resumed[i] == pytest.approx(runs['ddp'][i], abs=1e-6)


def test_dist_test_matches_single_process(runs, tmp_path):
    ckpt = str(runs['tmp'] / 'ddp' / 'iter_8.pth')
    two = vlp_toy.cli_test(runs['cfg'], ckpt, str(tmp_path / 'two'), nproc=2)
    one = vlp_toy.test_in_process(runs['cfg'], ckpt, str(tmp_path / 'one'))
    assert two and set(one) <= set(two)
    for key, value in one.items():
        assert two[key] == pytest.approx(value, abs=1e-6), (key, one, two)
