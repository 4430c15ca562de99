"""Masked image modelling parts: BEiT's block-wise masking, the frozen visual tokenizers
(BEST-RQ random projection, MAE's pixel target), the per-stage schedule."""
import pytest
import torch

import vlp.engine  # noqa: F401  (registers the schedulers)
import vlp.models  # noqa: F401
from vlp.models.backbones.visual_tokenizers import RandomProjectionTokenizer, patchify
from vlp.models.losses.mim import PixelTarget
from vlp.models.utils.masking import block_wise_mask
from vlp.registry import MODELS, PARAM_SCHEDULERS


def test_block_wise_mask_counts_and_blocks():
    g = torch.Generator().manual_seed(0)
    m = block_wise_mask(64, (14, 14), 75, min_num_patches=16, generator=g)
    assert m.shape == (64, 196) and m.dtype == torch.bool
    counts = m.sum(1)
    # BEiT's 40%: never more than the target, and a few short of it where no block fits
    assert counts.max() <= 75 and counts.float().mean() > 72 and counts.min() >= 60
    # masks are blocks, not scattered patches: most masked patches have a masked neighbour
    grid = m.view(64, 14, 14)
    right = grid[:, :, :-1] & grid[:, :, 1:]
    assert right.sum() > 0.5 * m.sum()
    again = block_wise_mask(64, (14, 14), 75, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m, again)  # deterministic given the generator
    assert block_wise_mask(2, (4, 4), 0).sum() == 0
    with pytest.raises(ValueError):
        block_wise_mask(1, (4, 4), 17)


def test_patchify_order():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float).view(2, 3, 4, 4)
    p = patchify(x, 2)
    assert p.shape == (2, 4, 12)
    # patch 1 is the top-right 2x2 block; pixels (row, col, channel)
    assert torch.equal(p[0, 1, :3], x[0, :, 0, 2])


def test_random_projection_tokenizer_is_frozen_and_reproducible(tmp_path):
    tok = RandomProjectionTokenizer(patch_size=4, num_classes=32, code_dim=8, seed=3)
    images = torch.randn(2, 3, 8, 8)
    codes = tok(images)
    assert codes.shape == (2, 4) and codes.dtype == torch.long and codes.max() < 32
    assert torch.equal(codes, RandomProjectionTokenizer(patch_size=4, num_classes=32,
                                                        code_dim=8, seed=3)(images))
    assert not torch.equal(RandomProjectionTokenizer(patch_size=4, num_classes=32, code_dim=8,
                                                     seed=4).codebook, tok.codebook)
    tok.train()
    assert not tok.training and all(not p.requires_grad for p in tok.parameters())
    # a nearest-code tokenizer: a patch equal to a code direction maps to it
    path = tmp_path / 'tok.pth'
    torch.save(tok.state_dict(), path)
    loaded = MODELS.build(dict(type='RandomProjectionTokenizer', patch_size=4, num_classes=32,
                               code_dim=8, seed=99, checkpoint=str(path)))
    assert torch.equal(loaded(images), codes)


def test_pixel_target_normalised_per_patch():
    t = PixelTarget(patch_size=4)
    y = t(torch.randn(2, 3, 8, 8) * 5 + 3)
    assert y.shape == (2, 4, 48)
    assert torch.allclose(y.mean(-1), torch.zeros(2, 4), atol=1e-5)
    assert torch.allclose(y.var(-1), torch.ones(2, 4), atol=1e-3)
    assert t.num_classes is None and t.target_dim == 48


def test_warmup_cosine_restarts_per_stage():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheds = [PARAM_SCHEDULERS.build(dict(type='WarmupCosineLR', optimizer=opt, begin=b,
                                          end=b + 10, warmup_iters=2, by_epoch=False,
                                          warmup_start_factor=0.1, eta_min_ratio=0.0))
              for b in (0, 10)]
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]['lr'])
        opt.step()
        for s in scheds:
            s.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[2] == pytest.approx(1.0)
    assert lrs[9] < 0.05  # decayed by the end of the stage
    assert lrs[10] == pytest.approx(0.1) and lrs[12] == pytest.approx(1.0)  # restarts
