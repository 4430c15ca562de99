"""Resume on 2 CPU ranks under DeepSpeed ZeRO-2 with per-rank randomness.

The run draws random numbers everywhere a real one does (the toy: dropout, python/numpy
augmentation in the main process, a DataLoader restart, a validation at the checkpoint)
with ``randomness.diff_rank_seed=True``, so each rank has its own RNG streams. Train 8
iterations uninterrupted; separately put the iteration-4 checkpoint in a fresh work dir
and ``tools/dist_train.sh ... --resume``: iterations 4-7 (losses averaged over the ranks)
must match the uninterrupted run within 1e-6, and the checkpoint must hold one RNG state
per rank.
"""
import os.path as osp

import pytest
import torch

import vlp_toy
from vlp.engine.checkpoint import safe_load
from vlp.engine.strategies.deepspeed import WeightsOnlyCheckpointEngine


def test_deepspeed_two_rank_resume_continues_the_loss_curve(base_config, tmp_path):
    base, random_options, _ = base_config
    from mmengine.config import Config
    has_val = Config.fromfile(base).get('val_dataloader') is not None
    cfg = vlp_toy.prepare_config(
        base, str(tmp_path / 'ds.py'), max_iters=8, ckpt_interval=4, deepspeed_stage=2,
        val=has_val, options=dict(random_options, **{'randomness.diff_rank_seed': True}))
    half = vlp_toy.batch_size_of(cfg) // 2
    args = ('--cfg-options', f'train_dataloader.batch_size={half}')
    vlp_toy.cli_train(cfg, str(tmp_path / 'full'), *args, nproc=2)
    full = vlp_toy.read_losses(str(tmp_path / 'full'))

    ckpt = str(tmp_path / 'full' / 'iter_4.pth')
    client = safe_load(osp.join(ckpt, 'mp_rank_00_model_states.pt'),
                       extra_safe_globals=WeightsOnlyCheckpointEngine().extra_safe_globals)
    rng = client['rng_state']
    assert rng['world_size'] == 2 and rng['iter'] == 4 and len(rng['states']) == 2
    assert not torch.equal(rng['states'][0]['torch'], rng['states'][1]['torch'])

    vlp_toy.copy_checkpoint(ckpt, str(tmp_path / 'resumed'))
    vlp_toy.cli_train(cfg, str(tmp_path / 'resumed'), '--resume', *args, nproc=2)
    resumed = vlp_toy.read_losses(str(tmp_path / 'resumed'))
    assert sorted(resumed) == [4, 5, 6, 7]
    for i in resumed:
        assert resumed[i] == pytest.approx(full[i], abs=1e-6), (full, resumed)
