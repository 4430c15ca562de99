"""ALBEF's hooks under the engine: the feature queue is identical on every rank, the
momentum update works under DDP and on ZeRO-3 partitions, and a resumed run restores
queue, pointer and momentum weights and continues the same losses.

The runs use ``configs/albef/albef_tiny_demo.py`` shortened to a global batch of 8 and a
queue of 20 rows (not a multiple of 8: the ring buffer wraps mid-batch).
"""
import pytest
import torch

import vlp_toy
from conftest import ROOT
from vlp.engine.checkpoint import safe_load

CONFIG = str(ROOT / 'configs' / 'albef' / 'albef_tiny_demo.py')
GLOBAL_BATCH = 8
QUEUE = 20


def _options(momentum: float) -> dict:
    return {
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'model.queue_size': QUEUE,
        'test_after_train': False,
        'custom_hooks': [
            dict(type='MomentumUpdateHook', momentum=momentum),
            dict(type='FeatureQueueHook'),
            dict(type='DistillAlphaHook', warmup_iters=2),
            dict(type='LossRecorderHook'),
            dict(type='ModelStateRecorderHook'),
        ],
    }


def _state(work_dir: str, rank: int) -> dict:
    return torch.load(f'{work_dir}/model_state_rank{rank}.pt', weights_only=True)


def _twin_keys(state: dict):
    """(online key, momentum key) of every parameter with a twin."""
    twins = {'vision_m': 'vision', 'vision_proj_m': 'vision_proj', 'text_m': 'text',
             'text_proj_m': 'text_proj', 'fusion_m': 'fusion', 'mlm_head_m': 'mlm_head'}
    for key in state:
        head, _, rest = key.partition('.')
        if head in twins:
            yield f'{twins[head]}.{rest}', key


@pytest.mark.parametrize('engine', ['ddp', 'zero3'])
def test_two_ranks_queue_identical_and_momentum_updated(engine, tmp_path):
    iters = 4
    # ZeRO-3 runs with momentum 0 (twin := online after each step): the EMA on the local
    # partitions must then reproduce the full online weights exactly
    momentum = 0.0 if engine == 'zero3' else 0.9
    cfg = vlp_toy.prepare_config(CONFIG, str(tmp_path / 'albef.py'), max_iters=iters,
                                 ckpt_interval=iters, batch_size=GLOBAL_BATCH // 2,
                                 deepspeed_stage=3 if engine == 'zero3' else None,
                                 options=_options(momentum))
    work = str(tmp_path / 'work')
    vlp_toy.cli_train(cfg, work, nproc=2)
    s0, s1 = _state(work, 0), _state(work, 1)
    for name in ('queue.image_queue', 'queue.text_queue', 'queue.ptr', 'queue.filled'):
        assert torch.equal(s0[name], s1[name]), name  # identical on both ranks
    assert int(s0['queue.ptr']) == iters * GLOBAL_BATCH % QUEUE
    assert int(s0['queue.filled']) == QUEUE
    # enqueued rows are unit vectors of the momentum encoders
    assert torch.allclose(s0['queue.image_queue'].norm(dim=1), torch.ones(QUEUE), atol=1e-5)
    pairs = list(_twin_keys(s0))
    assert len(pairs) > 50
    for online, twin in pairs:
        assert torch.equal(s0[twin], s1[twin]), twin
        if momentum == 0.0:
            assert torch.equal(s0[twin], s0[online]), twin
    if momentum > 0:
        moved = [k for k, t in pairs if not torch.equal(s0[k], s0[t])]
        assert len(moved) > len(pairs) // 2  # the twins lag behind the online weights
    losses = vlp_toy.read_losses(work)
    assert sorted(losses) == list(range(iters))
    for key in ('loss_itc', 'loss_itm', 'loss_mlm'):  # each loss logged separately
        assert len(vlp_toy.read_losses(work, key)) == iters


def test_resume_restores_queue_momentum_and_losses(tmp_path):
    cfg = vlp_toy.prepare_config(CONFIG, str(tmp_path / 'albef.py'), max_iters=6,
                                 ckpt_interval=3, batch_size=GLOBAL_BATCH,
                                 options=_options(0.9))
    full_dir, resumed_dir = str(tmp_path / 'full'), str(tmp_path / 'resumed')
    vlp_toy.train_in_process(cfg, full_dir)
    full = vlp_toy.read_losses(full_dir)
    ckpt = safe_load(f'{full_dir}/iter_3.pth', map_location='cpu')
    assert int(ckpt['state_dict']['queue.ptr']) == 3 * GLOBAL_BATCH % QUEUE
    vlp_toy.copy_checkpoint(f'{full_dir}/iter_3.pth', resumed_dir)
    vlp_toy.train_in_process(cfg, resumed_dir, resume='auto')
    resumed = vlp_toy.read_losses(resumed_dir)
    assert sorted(resumed) == [3, 4, 5]
    for key in ('loss', 'loss_itc', 'loss_itm', 'loss_mlm'):
        a, b = vlp_toy.read_losses(full_dir, key), vlp_toy.read_losses(resumed_dir, key)
        for i in (3, 4, 5):
            assert b[i] == pytest.approx(a[i], abs=1e-6), (key, a, b)
    s_full, s_res = _state(full_dir, 0), _state(resumed_dir, 0)
    assert s_full.keys() == s_res.keys()
    for key in s_full:
        assert torch.allclose(s_full[key], s_res[key], atol=1e-6), key
