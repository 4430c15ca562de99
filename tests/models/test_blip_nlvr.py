"""BLIP's NLVR2 two-image fusion (two_image_fusion=True): twin cross-attention over the
left and the right image in every cross layer, averaged in the lower half and merged by a
linear layer in the upper half; a pre-training checkpoint starts both twins."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from vlp.models.algorithms.base import without_weights
from vlp.models.algorithms.blip import TwinCrossAttention
from vlp.models.algorithms.downstream import VLClassifier
from vlp.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]


def blip_cfg(**kw):
    init_default_scope('vlp')
    cfg = Config.fromfile(str(ROOT / 'configs/blip/blip_tiny_demo.py'))
    model = without_weights(cfg.model.to_dict())
    model.update(lm_head=None, queue_size=0, **kw)
    return model


def pair_batch(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(B, 2, 3, 64, 64, generator=g)
    ids = torch.randint(5, 50, (B, 8), generator=g)
    return images, ids, torch.ones_like(ids)


def test_twin_layers_and_pair_encoding():
    torch.manual_seed(0)
    model = MODELS.build(blip_cfg(two_image_fusion=True)).eval()
    blocks = model.text.blocks
    twins = [b.cross_attn for b in blocks]
    assert all(isinstance(t, TwinCrossAttention) for t in twins)
    n = len(blocks)
    assert [t.merge is not None for t in twins] == [i >= n // 2 for i in range(n)]
    assert twins[0].a is not twins[0].b
    images, ids, mask = pair_batch()
    with torch.no_grad():
        f = model.fused_features_pair(images, ids, mask)
        right = images.clone()
        right[:, 1] = torch.randn_like(right[:, 1])
        g = model.fused_features_pair(right, ids, mask)
        # the first layer's twin outputs average: swapping the images, with a and b
        # equal (copies), leaves the averaging layers symmetric
        t = twins[0]
        x = torch.randn(2, 8, t.a.proj.out_features)
        c0, c1 = torch.randn(2, 5, 96), torch.randn(2, 5, 96)
        torch.testing.assert_close(t(x, (c0, c1)), t(x, (c1, c0)))
    assert f.shape == (2, model.text.hidden_size)
    assert not torch.allclose(f, g)  # the right image is read
    with pytest.raises(ValueError, match='two images'):
        twins[0](x, c0)
    with pytest.raises(ValueError, match='lm_head'):
        cfg = blip_cfg(two_image_fusion=True)
        cfg['lm_head'] = dict(type='MLMHead', hidden_size=96, vocab_size=55)
        MODELS.build(cfg)


def test_pretraining_checkpoint_starts_both_twins_and_trains(tmp_path):
    torch.manual_seed(0)
    pre = MODELS.build(blip_cfg())
    torch.save(dict(state_dict=pre.state_dict()), tmp_path / 'blip.pth')
    clf = VLClassifier(blip_cfg(two_image_fusion=True),
                       dict(type='ClassifierHead', in_channels=96, num_classes=2,
                            hidden_channels=96, norm=False, act='relu'),
                       num_images=2, pair_encoding='joint', pretrained=str(tmp_path / 'blip.pth'),
                       drop_parts=('vision_proj', 'text_proj', 'itm_head', 'vision_m',
                                   'vision_proj_m', 'text_m', 'text_proj_m'))
    for i, blk in enumerate(clf.model.text.blocks):
        src = pre.text.blocks[i].cross_attn.state_dict()
        for twin in (blk.cross_attn.a, blk.cross_attn.b):
            for k, v in src.items():
                torch.testing.assert_close(twin.state_dict()[k], v)
    images, ids, mask = pair_batch()
    losses = clf.loss(dict(images=images, input_ids=ids, attention_mask=mask),
                      dict(label=torch.tensor([0, 1])))
    losses['loss_cls'].backward()
    blk = clf.model.text.blocks[-1].cross_attn
    assert blk.merge.weight.grad.abs().sum() > 0
    assert blk.b.q.weight.grad.abs().sum() > 0
    assert clf.model.vision.state_dict() and all(
        p.grad is not None for p in clf.model.vision.parameters() if p.requires_grad)
