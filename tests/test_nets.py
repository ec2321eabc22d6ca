"""Networks: shapes, jvp against finite differences, gradients through the jvp, presets."""

import pytest
import torch
from torch.func import jvp

from benchmarks.training.nets import MLP, UNet, count_params, make_net, unet


def _tiny_unet() -> UNet:
    """Tiny U-Net with attention at 16x16 (and in the bottleneck), randomised weights."""
    torch.manual_seed(0)
    net = unet("tiny", channels=3, resolution=32)
    with torch.no_grad():  # the output conv starts at zero; make the map non-trivial
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


def _inputs(shape: tuple[int, ...], dtype: torch.dtype = torch.float32):
    """Random ``(x, s, t)`` with ``s < t`` and matching tangents."""
    g = torch.Generator().manual_seed(1)
    b = shape[0]
    x = torch.randn(shape, generator=g, dtype=dtype)
    s = 0.4 * torch.rand(b, generator=g, dtype=dtype)
    t = s + 0.5 * torch.rand(b, generator=g, dtype=dtype)
    tangents = (
        torch.randn(shape, generator=g, dtype=dtype),
        torch.randn(b, generator=g, dtype=dtype),
        torch.randn(b, generator=g, dtype=dtype),
    )
    return (x, s, t), tangents


NETS = {
    "mlp": (lambda: MLP(2, hidden=32, depth=3, time_emb=16), (5, 2)),
    "tiny_unet": (_tiny_unet, (2, 3, 32, 32)),
}


@pytest.mark.parametrize("name", NETS)
def test_output_shape(name: str) -> None:
    build, shape = NETS[name]
    (x, s, t), _ = _inputs(shape)
    assert build()(x, s, t).shape == x.shape


def test_unet_shapes_other_resolution_and_channels() -> None:
    net = unet("tiny", channels=1, resolution=64)
    x = torch.randn(2, 1, 64, 64)
    assert net(x, torch.zeros(2), torch.ones(2)).shape == x.shape
    # a fresh U-Net has a zero output conv
    assert net(x, torch.zeros(2), torch.ones(2)).abs().max() == 0


def test_scalar_times_broadcast() -> None:
    net = MLP(2, hidden=16, time_emb=8)
    x = torch.randn(4, 2)
    out = net(x, torch.tensor(0.2), torch.tensor(0.7))
    torch.testing.assert_close(out, net(x, torch.full((4,), 0.2), torch.full((4,), 0.7)))


@pytest.mark.parametrize("name", NETS)
def test_jvp_matches_finite_difference(name: str) -> None:
    build, shape = NETS[name]
    net = build().double()
    primals, tangents = _inputs(shape, torch.float64)
    _, tangent_out = jvp(net, primals, tangents)
    eps = 1e-6
    plus = net(*(p + eps * v for p, v in zip(primals, tangents)))
    minus = net(*(p - eps * v for p, v in zip(primals, tangents)))
    fd = (plus - minus) / (2 * eps)
    rel = (tangent_out - fd).norm() / fd.norm()
    assert fd.norm() > 0
    assert rel < 1e-4, f"jvp vs finite difference: relative error {rel:.2e}"


@pytest.mark.parametrize("name", NETS)
def test_backward_through_jvp(name: str) -> None:
    build, shape = NETS[name]
    net = build()
    primals, tangents = _inputs(shape)
    out, tangent_out = jvp(net, primals, tangents)
    (out.square().mean() + tangent_out.square().mean()).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    # the first layer is reached only through the whole network
    first = next(net.parameters())
    assert first.grad.abs().sum() > 0


def test_tiny_unet_small() -> None:
    net = unet("tiny")
    assert 10_000 < count_params(net) < 200_000
    x = torch.randn(8, 3, 32, 32)
    out = net(x, torch.rand(8), torch.rand(8))
    out.square().mean().backward()
    assert out.shape == x.shape and all(p.grad is not None for p in net.parameters())


def test_presets_sizes() -> None:
    small = count_params(unet("small"))
    assert 1_000_000 < small < 20_000_000
    paper = unet("paper", dropout=0.1)
    assert count_params(paper) > 20_000_000


def test_make_net() -> None:
    assert isinstance(make_net("mlp", (2,), hidden=16), MLP)
    net = make_net("tiny", (1, 32, 32))
    assert net(torch.randn(1, 1, 32, 32), torch.zeros(1), torch.ones(1)).shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match="allowed: mlp, tiny, small, paper"):
        make_net("resnet", (3, 32, 32))
    with pytest.raises(ValueError, match="shape"):
        make_net("mlp", (3, 32, 32))
    with pytest.raises(ValueError, match="allowed"):
        unet("huge")


def test_unet_bad_resolution() -> None:
    with pytest.raises(ValueError, match="divisible"):
        UNet(resolution=30, base=8, mults=(1, 2, 2), blocks=1)
