"""``tools/dist_train.sh configs/clip/clip_tiny_demo.py 2`` on CPU under DeepSpeed ZeRO-2
and ZeRO-3, against a single-process run with the same seed and global batch.

The CLIP demo's real model (ViT + causal text transformer + InfoNCE over features gathered
from all ranks with gradient) on its real data, shortened to 4 iterations of a global batch
of 32 (16 per rank) and made deterministic (``train_sampling='pairs'``: every image with
each of its captions, instead of one caption drawn at random per sample). The reference is
one process (ZeRO-2, world size 1, batch 32). The per-iteration losses averaged over the two
ranks must equal the reference's within ``|a - b| <= 1e-5 * max(1, |b|)``: the runs differ
only in the order of floating-point reductions (observed: ~1e-7).
"""
import pytest

import vlp_toy
from conftest import ROOT

CONFIG = str(ROOT / 'configs' / 'clip' / 'clip_tiny_demo.py')
ITERS = 4
GLOBAL_BATCH = 32
OPTIONS = {'train_dataloader.dataset.train_sampling': 'pairs',
           'train_dataloader.num_workers': 0,
           'train_dataloader.persistent_workers': False,
           'test_after_train': False}


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('clip_single')
    cfg = vlp_toy.prepare_config(CONFIG, str(tmp / 'clip.py'), max_iters=ITERS,
                                 ckpt_interval=ITERS, batch_size=GLOBAL_BATCH,
                                 deepspeed_stage=2, options=OPTIONS)
    try:
        vlp_toy.train_in_process(cfg, str(tmp / 'work'))
    finally:
        vlp_toy.reset_process_group()
    return cfg, vlp_toy.read_losses(str(tmp / 'work'))


@pytest.mark.parametrize('stage', [2, 3])
def test_clip_demo_two_ranks_match_single_process(reference, stage, tmp_path):
    cfg, expected = reference
    work = str(tmp_path / 'work')
    vlp_toy.cli_train(cfg, work, '--cfg-options', f'strategy.zero_optimization.stage={stage}',
                      f'train_dataloader.batch_size={GLOBAL_BATCH // 2}', nproc=2)
    losses = vlp_toy.read_losses(work)
    assert sorted(expected) == sorted(losses) == list(range(ITERS))
    for i in range(ITERS):
        assert abs(losses[i] - expected[i]) <= 1e-5 * max(1.0, abs(expected[i])), \
            (stage, i, losses, expected)
    # the model trains: the loss moves from ~log(32) at initialisation
    assert len({round(v, 4) for v in expected.values()}) == ITERS
