"""Exact resume with the shipped worker settings: DataLoader workers (persistent), captions
drawn at random per fetch, random crops and flips, and mid-epoch checkpoints.

A small CLIP demo (the shipped config with tiny sizes) trains 2 epochs of 6 iterations with
``num_workers=2, persistent_workers=True`` and a checkpoint every 3 iterations (iteration 6
ends epoch 1 but is saved before the epoch's end hooks, iteration 9 is inside epoch 2).
Resuming from either gives the uninterrupted
run's per-iteration losses, bitwise on CPU, with the batch after the checkpoint first (not
the epoch's first batch again): on 1 process, on 2-rank DDP and on 2-rank DeepSpeed ZeRO-2.
A control with mmengine's sampler (plain int indices: the workers' own RNGs draw the
captions) shows that the comparison catches the fault the issue reported.
"""
import pytest

import vlp_toy

CLIP_DEMO = vlp_toy.REPO + '/configs/clip/clip_tiny_demo.py'
AUGMENT = [dict(type='RandomResizedCrop', size=32, scale=(0.5, 1.0)),
           dict(type='RandomHorizontalFlip', prob=0.5),
           dict(type='ToTensor'),
           dict(type='Tokenize', tokenizer=dict(type='DemoTokenizer', style='clip', max_length=32))]
OPTIONS = {
    'train_dataloader.dataset.num_images': 48,
    'train_dataloader.dataset.image_size': 32,
    'train_dataloader.dataset.pipeline': AUGMENT,
    'train_dataloader.num_workers': 2,
    'train_dataloader.persistent_workers': True,
    'model.vision.img_size': 32, 'model.vision.embed_dim': 32, 'model.vision.depth': 1,
    'model.vision.num_heads': 2, 'model.text.width': 32, 'model.text.layers': 1,
    'model.text.heads': 2, 'model.vision_proj.in_dim': 32, 'model.text_proj.in_dim': 32,
    'param_scheduler': [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4),
                        dict(type='CosineAnnealingLR', by_epoch=False, begin=4, end=12)],
    'test_after_train': False,
}


def _config(tmp_path, batch_size, strategy=None, options=None):
    path = vlp_toy.prepare_config(CLIP_DEMO, str(tmp_path / 'clip.py'), max_iters=None,
                                  max_epochs=2, batch_size=batch_size,
                                  deepspeed_stage=strategy, options=dict(OPTIONS, **(options or {})))
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    # epoch-based loop, checkpoints every 3 iterations: iter_6 after the last batch of epoch 1
    # (before its end-of-epoch hooks), iter_9 in the middle of epoch 2
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=3, by_epoch=False,
                                        max_keep_ckpts=-1, save_last=False)
    cfg.dump(path)
    return path


def _assert_exact(full, resumed, first):
    assert sorted(full) == list(range(12)), full
    assert sorted(resumed) == list(range(first, 12)), resumed
    for i in resumed:
        assert resumed[i] == full[i], (i, full, resumed)  # bitwise: same batches, same RNG


@pytest.mark.parametrize('ckpt', [6, 9])
def test_single_process_mid_epoch_resume_is_exact(tmp_path, ckpt):
    cfg = _config(tmp_path, batch_size=8)
    vlp_toy.train_in_process(cfg, str(tmp_path / 'full'))
    full = vlp_toy.read_losses(str(tmp_path / 'full'))
    assert len({round(v, 5) for v in full.values()}) == 12  # the loss moves
    vlp_toy.copy_checkpoint(str(tmp_path / 'full' / f'iter_{ckpt}.pth'), str(tmp_path / 'resumed'))
    vlp_toy.train_in_process(cfg, str(tmp_path / 'resumed'), resume='auto')
    _assert_exact(full, vlp_toy.read_losses(str(tmp_path / 'resumed')), ckpt)


def test_control_worker_rng_breaks_resume(tmp_path):
    """mmengine's own sampler yields plain ints: captions and crops come from the persistent
    workers' RNGs, which no checkpoint holds, so the resumed run sees other data."""
    cfg = _config(tmp_path, batch_size=8,
                  options={'train_dataloader.sampler.type': 'mmengine.DefaultSampler'})
    vlp_toy.train_in_process(cfg, str(tmp_path / 'full'))
    full = vlp_toy.read_losses(str(tmp_path / 'full'))
    # iteration 9 is in epoch 2: the uninterrupted run's workers have been drawing since
    # epoch 1, the resumed run's start afresh
    vlp_toy.copy_checkpoint(str(tmp_path / 'full' / 'iter_9.pth'), str(tmp_path / 'resumed'))
    vlp_toy.train_in_process(cfg, str(tmp_path / 'resumed'), resume='auto')
    resumed = vlp_toy.read_losses(str(tmp_path / 'resumed'))
    assert sorted(resumed) == list(range(9, 12))
    assert any(resumed[i] != full[i] for i in resumed)


@pytest.mark.parametrize('stage', [None, 2], ids=['ddp', 'zero2'])
def test_two_rank_mid_epoch_resume_is_exact(tmp_path, stage):
    cfg = _config(tmp_path, batch_size=4, strategy=stage)  # 2 ranks x 4 = the same 6 iters/epoch
    vlp_toy.cli_train(cfg, str(tmp_path / 'full'), nproc=2)
    full = vlp_toy.read_losses(str(tmp_path / 'full'))
    ckpt = 'iter_9.pth'
    vlp_toy.copy_checkpoint(str(tmp_path / 'full' / ckpt), str(tmp_path / 'resumed'))
    vlp_toy.cli_train(cfg, str(tmp_path / 'resumed'), '--resume', nproc=2)
    _assert_exact(full, vlp_toy.read_losses(str(tmp_path / 'resumed')), 9)
