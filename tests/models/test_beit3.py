"""BEiT-3 masked data modelling: masking ratios, targets at masked positions only, the tied
MLM head, one loss per mode, expert routing of the gradients, the pixel target."""
import pytest
import torch
import torch.nn.functional as F

import vlp.models  # noqa: F401
from vlp.registry import MODELS

V = 53
SPECIAL = [0, 2, 3]  # [PAD], [CLS], [SEP]; [MASK] = 4


def tiny_beit3(target='tokens', **kw):
    torch.manual_seed(0)
    if target == 'tokens':
        tokenizer = dict(type='RandomProjectionTokenizer', patch_size=4, num_classes=32,
                         code_dim=8, seed=0)
        out_dim = 32
    else:
        tokenizer = dict(type='PixelTarget', patch_size=4)
        out_dim = 4 * 4 * 3
    cfg = dict(
        type='BEiT3',
        backbone=dict(type='BEiT3Transformer', img_size=16, patch_size=4, vocab_size=V,
                      max_text_len=14, embed_dim=32, depth=2, num_heads=2),
        mlm_head=dict(type='MLMHead', hidden_size=32, vocab_size=V),
        mim_head=dict(type='MIMHead', hidden_size=32, out_dim=out_dim),
        visual_tokenizer=tokenizer,
        mim_mask=dict(num_masking_patches=6, min_num_patches=2, min_aspect=0.3),
        mask_token_id=4, special_token_ids=SPECIAL)
    cfg.update(kw)
    return MODELS.build(cfg).train()


def batch(B=4, L=12):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (B, L), generator=g)
    ids[:, 0] = 2
    ids[:, -1] = 3
    mask = torch.ones(B, L, dtype=torch.long)
    mask[0, 7:] = 0
    ids[0, 7:] = 0
    return dict(images=torch.randn(B, 3, 16, 16, generator=g), input_ids=ids,
                attention_mask=mask)


def test_text_masking_ratios():
    model = tiny_beit3()
    torch.manual_seed(1)
    b = batch(B=512)
    ids, mask = b['input_ids'], b['attention_mask']
    maskable = mask.bool() & ~torch.isin(ids, torch.tensor(SPECIAL))
    for prob in (model.mlm_probability, model.pair_mlm_probability):
        _, labels = model.mask_text(ids, mask, prob)
        chosen = labels != -100
        assert not (chosen & ~maskable).any()  # never pad / [CLS] / [SEP]
        assert abs(chosen.sum().item() / maskable.sum().item() - prob) < 0.02
    assert (model.mlm_probability, model.pair_mlm_probability) == (0.15, 0.5)


def test_image_masks_the_configured_count():
    model = tiny_beit3()
    torch.manual_seed(0)
    mask = model.mask_image(64, 'cpu')
    assert mask.shape == (64, 16) and (mask.sum(1) == 6).all()
    # BEiT's setting on 14 x 14: 75 patches (block placement may stop a little short)
    torch.manual_seed(0)
    from vlp.models.utils.masking import block_wise_mask
    m = block_wise_mask(64, (14, 14), 75, 16, min_aspect=0.3)
    assert m.sum(1).max() == 75 and m.sum(1).float().mean() > 72


def test_mlm_head_tied_and_losses_finite():
    model = tiny_beit3()
    assert model.mlm_head.decoder.weight is model.backbone.word_embeddings.weight
    torch.manual_seed(0)
    out = model.loss(batch())
    assert set(out) == {'loss_mim', 'acc_mim', 'loss_mlm', 'acc_mlm', 'loss_pair_mlm',
                        'acc_pair_mlm'}
    assert all(torch.isfinite(v) for v in out.values())
    with_pair_mim = tiny_beit3(pair_mim=True).loss(batch())
    assert {'loss_pair_mim', 'acc_pair_mim'} <= set(with_pair_mim)
    # a batch runs the modes whose inputs it holds
    b = batch()
    assert set(model.loss(dict(images=b['images']))) == {'loss_mim', 'acc_mim'}
    assert set(model.loss(dict(input_ids=b['input_ids'],
                               attention_mask=b['attention_mask']))) == {'loss_mlm', 'acc_mlm'}
    with pytest.raises(ValueError):
        tiny_beit3(modes=('pair',)).loss(dict(images=b['images']))


def test_targets_only_at_masked_positions(monkeypatch):
    model = tiny_beit3(modes=('image', 'pair'))
    b = batch()
    patch_mask = torch.zeros(4, 16, dtype=torch.bool)
    patch_mask[:, [1, 5, 6]] = True
    labels = torch.full_like(b['input_ids'], -100)
    labels[:, 2] = b['input_ids'][:, 2]
    masked = b['input_ids'].clone()
    masked[:, 2] = 4
    monkeypatch.setattr(model, 'mask_image', lambda n, device: patch_mask)
    monkeypatch.setattr(model, 'mask_text', lambda ids, m, p: (masked, labels))
    out = model.loss(b)
    bb = model.backbone
    with torch.no_grad():
        states = bb(images=b['images'], vision_masked_position=patch_mask)['image_embeds']
        tokens = model.visual_tokenizer(b['images'])
        ref_mim = F.cross_entropy(model.mim_head(states[:, 1:][patch_mask]),
                                  tokens[patch_mask])
        text = bb(images=b['images'], input_ids=masked,
                  attention_mask=b['attention_mask'])['text_embeds']
        ref_mlm = F.cross_entropy(model.mlm_head(text[:, 2]), b['input_ids'][:, 2])
    assert torch.allclose(out['loss_mim'], ref_mim, atol=1e-5)
    # the reference fuses the whole image: by default a pair's patches are not masked
    assert torch.allclose(out['loss_pair_mlm'], ref_mlm, atol=1e-5)


def _grads(model, losses):
    model.zero_grad(set_to_none=True)
    sum(v for k, v in losses.items() if k.startswith('loss_')).backward()
    blk = model.backbone.blocks[0]
    return {e: getattr(blk.ffn, e).fc1.weight.grad is not None
            and getattr(blk.ffn, e).fc1.weight.grad.abs().sum() > 0 for e in ('v', 'l')}


def test_gradients_reach_the_right_experts():
    b = batch()
    model = tiny_beit3(modes=('image',))
    assert _grads(model, model.loss(b)) == {'v': True, 'l': False}
    assert model.backbone.word_embeddings.weight.grad is None  # no language part at all
    assert model.backbone.blocks[1].attn.qkv.l.weight.grad is None
    model = tiny_beit3(modes=('text',))
    assert _grads(model, model.loss(b)) == {'v': False, 'l': True}
    assert model.backbone.patch_embed.weight.grad is None
    model = tiny_beit3(modes=('pair',))
    assert _grads(model, model.loss(b)) == {'v': True, 'l': True}
    assert model.mim_head.fc.weight.grad is None  # pairs predict text only by default
    for p in model.visual_tokenizer.buffers():
        assert not p.requires_grad


def test_pixel_target():
    model = tiny_beit3(target='pixels', modes=('image',))
    out = model.loss(batch())
    assert set(out) == {'loss_mim'} and torch.isfinite(out['loss_mim'])
    out['loss_mim'].backward()
    assert model.mim_head.fc.weight.grad is not None
    with pytest.raises(ValueError):
        tiny_beit3(visual_tokenizer=None)


def test_features_and_predict():
    model = tiny_beit3().eval()
    b = batch()
    feats = model(dict(images=b['images']), mode='tensor')
    assert feats['image_pooled'].shape == (4, 32)
    with pytest.raises(NotImplementedError):
        model(b, mode='predict')
