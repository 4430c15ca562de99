"""tools/dist_train.sh with 2 CPU ranks under the DeepSpeed strategy (gloo, fp32).

Comparison: the reference is a single-process run (world size 1, DeepSpeed ZeRO-2, same
config, seed and global batch B); the 2-rank runs use B/2 per rank, ZeRO-2 and ZeRO-3
(``--cfg-options strategy.zero_optimization.stage=3``). Each rank records its loss every
iteration; the per-iteration losses averaged over the two ranks must match the reference
for all 8 iterations within ``|a - b| <= 1e-5 * max(1, |b|)`` (the runs differ only in the
order of floating-point reductions; observed differences are ~1e-7). The ZeRO-3 run is
then resumed on 2 ranks from its iteration-4 checkpoint (partitioned optimizer states) and
must reproduce its iterations 4-7 within 1e-6.

The first 2-rank DeepSpeed start of a fresh machine compiles DeepSpeed's CPU shared-memory
op (cached in ~/.cache/torch_extensions), which takes ~30 s once.
"""
import pytest

import vlp_toy

ITERS = 8


@pytest.fixture(scope='module')
def single_process(base_config, tmp_path_factory):
    base, _, deterministic = base_config
    tmp = tmp_path_factory.mktemp('ds_single')
    cfg = vlp_toy.prepare_config(base, str(tmp / 'ds.py'), max_iters=ITERS, ckpt_interval=4,
                                 deepspeed_stage=2, options=deterministic)
    try:
        vlp_toy.train_in_process(cfg, str(tmp / 'work'))
    finally:
        vlp_toy.reset_process_group()
    return cfg, vlp_toy.read_losses(str(tmp / 'work'))


@pytest.fixture(scope='module')
def two_ranks(single_process, tmp_path_factory):
    """stage -> (work_dir, per-iteration losses averaged over the 2 ranks)."""
    cfg, _ = single_process
    half = vlp_toy.batch_size_of(cfg) // 2
    runs = {}
    for stage in (2, 3):
        work = str(tmp_path_factory.mktemp(f'zero{stage}') / 'work')
        vlp_toy.cli_train(cfg, work, '--cfg-options',
                          f'strategy.zero_optimization.stage={stage}',
                          f'train_dataloader.batch_size={half}', nproc=2)
        runs[stage] = work, vlp_toy.read_losses(work)
    return runs


@pytest.mark.parametrize('stage', [2, 3])
def test_two_ranks_match_single_process(single_process, two_ranks, stage):
    _, reference = single_process
    work, losses = two_ranks[stage]
    assert sorted(reference) == sorted(losses) == list(range(ITERS))
    for i in range(ITERS):
        assert abs(losses[i] - reference[i]) <= 1e-5 * max(1.0, abs(reference[i])), \
            (stage, i, losses, reference)
    assert len({round(v, 5) for v in reference.values()}) == ITERS  # it trains


def test_zero3_two_rank_resume(single_process, two_ranks, tmp_path):
    cfg, _ = single_process
    work, full = two_ranks[3]
    resumed_dir = str(tmp_path / 'resumed')
    vlp_toy.copy_checkpoint(f'{work}/iter_4.pth', resumed_dir)
    half = vlp_toy.batch_size_of(cfg) // 2
    vlp_toy.cli_train(cfg, resumed_dir, '--resume', '--cfg-options',
                      'strategy.zero_optimization.stage=3',
                      f'train_dataloader.batch_size={half}', nproc=2)
    resumed = vlp_toy.read_losses(resumed_dir)
    assert sorted(resumed) == [4, 5, 6, 7]
    for i in resumed:
        assert resumed[i] == pytest.approx(full[i], abs=1e-6), (full, resumed)
