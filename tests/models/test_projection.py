"""Projection necks."""
import torch

from vlp.registry import MODELS


def test_projection_shapes_and_bias():
    p = MODELS.build(dict(type='Projection', in_dim=32, out_dim=16))
    assert p.proj.bias is None and p.out_dim == 16
    assert p(torch.randn(3, 32)).shape == (3, 16)
    assert p(torch.randn(3, 5, 32)).shape == (3, 5, 16)
    # linear without bias: p(0) = 0, p(2x) = 2 p(x)
    x = torch.randn(3, 32)
    assert torch.equal(p(torch.zeros(1, 32)), torch.zeros(1, 16))
    torch.testing.assert_close(p(2 * x), 2 * p(x))
    pb = MODELS.build(dict(type='Projection', in_dim=32, out_dim=16, bias=True, init_std=0.02))
    assert pb.proj.bias.shape == (16,)
    assert abs(pb.proj.weight.std().item() - 0.02) < 0.005


def test_projection_default_init_is_clip():
    torch.manual_seed(0)
    p = MODELS.build(dict(type='Projection', in_dim=256, out_dim=256))
    assert abs(p.proj.weight.std().item() - 256 ** -0.5) < 0.005


def test_mlp_projection():
    torch.manual_seed(0)
    m = MODELS.build(dict(type='MLPProjection', in_dim=32, out_dim=48, hidden_dim=40))
    assert m.fc1.weight.shape == (40, 32) and m.fc2.weight.shape == (48, 40)
    x = torch.randn(2, 7, 32)
    y = m(x)
    assert y.shape == (2, 7, 48)
    torch.testing.assert_close(y, m.fc2(torch.nn.functional.gelu(m.fc1(x))))
    # non-linear: not additive
    assert not torch.allclose(m(x + x) - m(x), m(x) - m(torch.zeros_like(x)), atol=1e-4)
    assert MODELS.build(dict(type='MLPProjection', in_dim=8, out_dim=16)).fc1.out_features == 16
