"""TimmTower: output contract for a tiny ViT, a tiny CNN and an NHWC model, checkpoint
loading, grad checkpointing and the timm API passthroughs."""
import pytest
import torch
from safetensors.torch import save_file
from timm.models import group_parameters

from vlp.models.backbones.timm_tower import TimmTower
from vlp.registry import MODELS

VIT = dict(type='TimmTower', model_name='vit_base_patch16_clip_224', img_size=32,
           patch_size=8, embed_dim=32, depth=2, num_heads=2)
CNN = dict(type='TimmTower', model_name='test_efficientnet')  # timm's tiny EfficientNet


def _vit(**kw):
    torch.manual_seed(0)
    return MODELS.build({**VIT, **kw})


def test_vit_shapes_and_pooling():
    tower = _vit()
    assert isinstance(tower, TimmTower) and tower.out_dim == 32
    x = torch.randn(2, 3, 32, 32)
    out = tower(x)
    assert out['image_embeds'].shape == (2, 1 + 16, 32)  # class token + (32/8)^2 patches
    assert out['image_pooled'].shape == (2, 32)
    # CLIP pooling: the class token after the final norm
    torch.testing.assert_close(out['image_pooled'], out['image_embeds'][:, 0])
    torch.testing.assert_close(out['image_embeds'], tower.model.forward_features(x))
    assert not any('head' in n for n, _ in tower.named_parameters())  # num_classes=0
    with pytest.raises(ValueError):
        MODELS.build({**VIT, 'num_classes': 10})


def test_vit_global_pool_avg():
    tower = _vit(global_pool='avg', class_token=False, fc_norm=False)
    out = tower(torch.randn(2, 3, 32, 32))
    assert out['image_embeds'].shape == (2, 16, 32)
    torch.testing.assert_close(out['image_pooled'], out['image_embeds'].mean(1))


def test_cnn_feature_map_flattened_to_tokens():
    torch.manual_seed(0)
    tower = MODELS.build(CNN)
    x = torch.randn(2, 3, 64, 64)
    out = tower(x)
    fmap = tower.model.forward_features(x)  # (B, C, 2, 2)
    C = fmap.shape[1]
    assert tower.out_dim == C and out['image_embeds'].shape == (2, 4, C)
    assert out['image_pooled'].shape == (2, C)
    # token n = spatial position (n // W, n % W)
    torch.testing.assert_close(out['image_embeds'][:, 3], fmap[:, :, 1, 1])
    torch.testing.assert_close(out['image_embeds'][:, 1], fmap[:, :, 0, 1])
    torch.testing.assert_close(out['image_pooled'], out['image_embeds'].mean(1))  # avg pool


def test_nhwc_feature_map():
    torch.manual_seed(0)
    tower = MODELS.build(dict(type='TimmTower', model_name='swin_tiny_patch4_window7_224',
                              img_size=32, embed_dim=16, depths=(1, 1), num_heads=(1, 2),
                              window_size=4))
    x = torch.randn(2, 3, 32, 32)
    out = tower(x)
    fmap = tower.model.forward_features(x)  # (B, 4, 4, C) channels-last
    assert out['image_embeds'].shape == (2, 16, tower.out_dim)
    torch.testing.assert_close(out['image_embeds'][:, 5], fmap[:, 1, 1])
    torch.testing.assert_close(out['image_pooled'], out['image_embeds'].mean(1))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_pth_with_prefix_and_classifier(tmp_path):
    src = _vit()
    sd = {f'visual.trunk.{k}': v for k, v in src.model.state_dict().items()}
    sd['visual.trunk.head.weight'] = torch.randn(10, 32)  # a classifier: skipped
    sd['visual.trunk.head.bias'] = torch.randn(10)
    sd['text.other'] = torch.randn(3)  # outside the prefix: ignored
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': sd}, path)
    torch.manual_seed(1)
    dst = MODELS.build({**VIT, 'checkpoint': str(path), 'checkpoint_prefix': 'visual.trunk.'})
    assert _same_weights(src.model, dst.model)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(src(x)['image_pooled'], dst(x)['image_pooled'])


def test_checkpoint_safetensors(tmp_path):
    src = _vit()
    path = tmp_path / 'model.safetensors'
    save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, str(path))
    torch.manual_seed(1)
    dst = MODELS.build({**VIT, 'checkpoint': str(path)})
    assert _same_weights(src.model, dst.model)


def test_checkpoint_mismatch_is_reported(tmp_path):
    src = _vit()
    sd = dict(src.model.state_dict())
    sd.pop('blocks.1.mlp.fc2.weight')
    sd['blocks.7.extra'] = torch.zeros(1)
    path = tmp_path / 'bad.pth'
    torch.save(sd, path)
    with pytest.raises(KeyError, match=r'blocks\.1\.mlp\.fc2\.weight.*blocks\.7\.extra'):
        MODELS.build({**VIT, 'checkpoint': str(path)})
    tower = MODELS.build({**VIT, 'checkpoint': str(path), 'strict': False})
    torch.testing.assert_close(tower.model.blocks[0].attn.qkv.weight,
                               src.model.blocks[0].attn.qkv.weight)
    missing, unexpected = tower.load_checkpoint(str(path), strict=False)
    assert missing == ['blocks.1.mlp.fc2.weight'] and unexpected == ['blocks.7.extra']
    with pytest.raises(KeyError, match='no key'):
        tower.load_checkpoint(str(path), prefix='nothing.')
    with pytest.raises(FileNotFoundError):
        tower.load_checkpoint(str(tmp_path / 'absent.pth'))


def test_checkpoint_position_embeddings_resampled(tmp_path):
    src = _vit()  # 32 px: 4 x 4 patches
    path = tmp_path / 'vit32.pth'
    torch.save(src.model.state_dict(), path)
    dst = MODELS.build({**VIT, 'img_size': 48, 'checkpoint': str(path)})  # 6 x 6 patches
    assert dst.model.pos_embed.shape == (1, 1 + 36, 32)
    torch.testing.assert_close(dst.model.pos_embed[:, 0], src.model.pos_embed[:, 0])
    assert torch.equal(dst.model.blocks[1].mlp.fc1.weight, src.model.blocks[1].mlp.fc1.weight)
    assert dst(torch.randn(1, 3, 48, 48))['image_embeds'].shape == (1, 37, 32)


def test_grad_checkpointing_only_while_training():
    ref, ckpt = _vit(), _vit()
    ckpt.set_grad_checkpointing(True)
    x = torch.randn(2, 3, 32, 32)
    ref(x)['image_pooled'].square().sum().backward()
    ckpt(x)['image_pooled'].square().sum().backward()
    assert ckpt.model.grad_checkpointing  # active in a training forward
    for (n, p), (_, q) in zip(ref.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)
    ckpt.eval()
    with torch.no_grad():
        ckpt(x)
    assert not ckpt.model.grad_checkpointing  # off in evaluation
    ckpt.train()
    ckpt(x)
    assert ckpt.model.grad_checkpointing
    ckpt.set_grad_checkpointing(False)
    ckpt(x)
    assert not ckpt.model.grad_checkpointing


def test_group_matcher_and_no_weight_decay_are_tower_relative():
    tower = _vit()
    inner = group_parameters(tower.model, tower.model.group_matcher())
    outer = group_parameters(tower, tower.group_matcher())
    # stem, block 0, block 1 (+ the final norm, which timm merges into the last group)
    assert len(outer) == len(inner) == 3
    assert {g: [f'model.{n}' for n in names] for g, names in inner.items()} == outer
    assert 'model.pos_embed' in outer[0] and 'model.norm.weight' in outer[2]
    names = {n for n, _ in tower.named_parameters()}
    nwd = tower.no_weight_decay()
    assert nwd == {'model.pos_embed', 'model.cls_token'} and nwd <= names
    cnn = MODELS.build(CNN)
    assert cnn.no_weight_decay() == set()
    groups = group_parameters(cnn, cnn.group_matcher())
    assert sum(len(v) for v in groups.values()) == len(list(cnn.parameters()))
    assert 'model.conv_stem.weight' in groups[0]


def test_head_conv_removed_gives_pooled_last_stage():
    """ALIGN's image embedding: EfficientNet's pooled last stage, no 1x1 head conv."""
    tower = TimmTower('tinynet_e', head_conv=False)
    assert tower.out_dim == tower.embed_dim == 160
    assert not any('conv_head' in n for n, _ in tower.named_parameters())
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    out = tower(x)
    blocks = tower.model.blocks(tower.model.bn1(tower.model.conv_stem(x)))  # (B, 160, h, w)
    torch.testing.assert_close(out['image_pooled'], blocks.mean((2, 3)))
    assert out['image_embeds'].shape[-1] == 160
    with pytest.raises(ValueError, match='conv_head'):
        TimmTower('vit_tiny_patch16_224', head_conv=False, img_size=32, patch_size=8)
