"""TransformerBlock and the mask helpers."""
import pytest
import torch

from vlp.models.layers.transformer import (TransformerBlock, add_causal, build_attn_mask,
                                           maybe_checkpoint)


def test_build_attn_mask_padding_and_causal():
    key_mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    m = build_attn_mask(key_mask)
    assert m.shape == (2, 1, 1, 3) and m.dtype == torch.bool
    assert m[0, 0, 0].tolist() == [True, True, False]
    assert m[1, 0, 0].tolist() == [True, True, True]  # all-padding row: no empty softmax
    c = build_attn_mask(torch.tensor([[0, 1, 1]]), causal=True)[0, 0]
    # row 0 is padding with nothing before it: attends to itself only
    assert c.tolist() == [[True, False, False], [False, True, False], [False, True, True]]
    assert build_attn_mask(None, causal=True) is None


def test_add_causal_bool_and_additive():
    b = add_causal(torch.ones(1, 1, 3, 3, dtype=torch.bool), 3, 3)[0, 0]
    assert torch.equal(b, torch.ones(3, 3, dtype=torch.bool).tril())
    f = add_causal(torch.zeros(3, 3), 3, 3)
    assert (f.triu(1) < -1e30).sum() == 3 and f.tril().abs().sum() == 0


@pytest.mark.parametrize('norm_first', [True, False])
def test_cross_attention_depends_on_context(norm_first):
    torch.manual_seed(0)
    blk = TransformerBlock(32, 4, norm_first=norm_first, cross_attention_dim=24).eval()
    x = torch.randn(2, 5, 32)
    ctx = torch.randn(2, 7, 24)
    out = blk(x, context=ctx)
    assert out.shape == (2, 5, 32)
    assert not torch.allclose(out, blk(x, context=torch.randn(2, 7, 24)), atol=1e-4)
    # masked context tokens have no influence
    ctx_mask = build_attn_mask(torch.tensor([[1] * 4 + [0] * 3] * 2))
    ctx2 = ctx.clone()
    ctx2[:, 4:] = torch.randn(2, 3, 24)
    torch.testing.assert_close(blk(x, context=ctx, context_mask=ctx_mask),
                               blk(x, context=ctx2, context_mask=ctx_mask))
    # no context: the cross-attention sub-layer is skipped (BLIP unimodal mode)
    assert not torch.allclose(blk(x), out, atol=1e-4)


def test_block_without_cross_attention_rejects_context():
    blk = TransformerBlock(32, 4)
    with pytest.raises(ValueError):
        blk(torch.randn(1, 3, 32), context=torch.randn(1, 2, 32))


def test_pre_and_post_ln_structure():
    """Pre-LN keeps the residual stream unnormalised; post-LN outputs are normalised."""
    torch.manual_seed(0)
    x = 5 * torch.randn(2, 4, 32) + 3
    post = TransformerBlock(32, 4, norm_first=False, ln_eps=1e-12).eval()(x)
    torch.testing.assert_close(post.mean(-1), torch.zeros(2, 4), atol=1e-5, rtol=0)
    pre = TransformerBlock(32, 4, norm_first=True).eval()(x)
    assert pre.mean(-1).abs().min() > 0.5


def test_is_causal_with_mask_stays_causal():
    torch.manual_seed(0)
    blk = TransformerBlock(32, 4).eval()
    x = torch.randn(1, 5, 32)
    pad = build_attn_mask(torch.ones(1, 5))  # non-causal padding mask
    y = x.clone()
    y[:, -1] += 1.0
    a = blk(x, attn_mask=pad, is_causal=True)
    b = blk(y, attn_mask=pad, is_causal=True)
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    torch.testing.assert_close(a, blk(x, is_causal=True))


def test_maybe_checkpoint_only_when_training(monkeypatch):
    calls = []
    orig = torch.utils.checkpoint.checkpoint

    def spy(*args, **kwargs):
        calls.append(kwargs.get('use_reentrant'))
        return orig(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', spy)
    blk = TransformerBlock(32, 4)
    x = torch.randn(1, 3, 32)
    maybe_checkpoint(blk, x, enabled=True)
    assert calls == [False]
    blk.eval()
    maybe_checkpoint(blk, x, enabled=True)
    blk.train()
    with torch.no_grad():
        maybe_checkpoint(blk, x, enabled=True)
    maybe_checkpoint(blk, x, enabled=False)
    assert calls == [False]


def test_sdpa_mask_is_the_boolean_mask_as_an_additive_one():
    """Converted once for a stack of layers: same attention as the boolean mask, in the
    dtype attention runs in (autocast's), float masks and None untouched."""
    from vlp.models.layers.transformer import sdpa_mask
    torch.manual_seed(0)
    key_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    mask = build_attn_mask(key_mask, causal=True)  # bool (B, 1, 5, 5)
    x = torch.randn(2, 5, 8)
    add = sdpa_mask(mask, x)
    assert add.dtype == torch.float32 and add.shape == mask.shape
    assert torch.equal(add == 0, mask) and (add[~mask] == torch.finfo(torch.float32).min).all()
    q, k, v = (torch.randn(2, 2, 5, 4) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=add)
    assert torch.allclose(out, ref, atol=1e-6)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert sdpa_mask(mask, x).dtype == torch.bfloat16
    assert sdpa_mask(add, x) is add and sdpa_mask(None, x) is None


def test_text_tower_hands_its_layers_one_float_mask():
    """The causal + padding mask is converted once; every layer gets the same tensor."""
    from vlp.models.backbones.text_transformer import TextTransformer
    tower = TextTransformer(vocab_size=50, width=16, layers=3, heads=2, context_length=8)
    seen = []
    for blk in tower.blocks:
        blk.register_forward_pre_hook(
            lambda m, a, kw: seen.append(kw.get('attn_mask')), with_kwargs=True)
    ids = torch.randint(1, 50, (2, 8))
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    tower(ids, mask)
    assert len(seen) == 3 and seen[0].dtype == torch.float32
    assert all(m is seen[0] for m in seen)
