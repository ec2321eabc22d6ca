"""Networks with the flow-map signature ``net(x, s, t)``.

Both networks condition on ``s`` and ``t - s`` through smooth sinusoidal embeddings, and every
operation (linear, conv, GroupNorm, SiLU, hand-written attention, nearest upsampling) supports
forward-mode AD, so ``torch.func.jvp`` with respect to ``(x, s, t)`` works on CPU and GPU.

Shapes: ``x`` is ``(B, D)`` for :class:`MLP` and ``(B, C, H, W)`` for :class:`UNet`; ``s`` and
``t`` are ``(B,)`` (0-d tensors are broadcast to the batch); the output has the shape of ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SKIP_SCALE = 1 / math.sqrt(2)


def _batch_times(t: Tensor, x: Tensor) -> Tensor:
    """Return ``t`` as a ``(B,)`` tensor in the dtype of ``x`` (0-d times are broadcast)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.expand(x.shape[0]) if t.ndim == 0 else t.reshape(x.shape[0])


class TimeEmbedding(nn.Module):
    """Sinusoidal time embedding ``[cos(w t), sin(w t)]``, ``w_i = scale * max_period^(-i/half)``.

    The defaults (scale 30, period 30) span 1 to 30 rad per unit time. Flow-map losses differentiate
    the network in s and t (jvp), so the embedding must be smooth on the unit interval: the DDPM
    range (up to 1000 rad) makes d/dt of the map huge at initialisation and slowed LMD on the 2D
    ring about 5x in our measurements.
    """

    def __init__(self, dim: int, scale: float = 30.0, max_period: float = 30.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"time embedding dim must be even, got {dim}")
        half = dim // 2
        freqs = scale * max_period ** (-torch.arange(half, dtype=torch.float64) / half)
        self.register_buffer("freqs", freqs.float(), persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """Map times ``(B,)`` to embeddings ``(B, dim)``."""
        arg = t[:, None] * self.freqs.to(t.dtype)
        return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)


class MLP(nn.Module):
    """MLP for low-dimensional data.

    Input ``[x, emb(s), emb(t - s)]``, then ``depth`` x (Linear, SiLU), then Linear to ``dim``.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 3,
        time_emb: int = 64,
        time_scale: float = 30.0,
    ) -> None:
        super().__init__()
        self.emb = TimeEmbedding(time_emb, scale=time_scale)
        layers: list[nn.Module] = [nn.Linear(dim + 2 * time_emb, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, dim))
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """``x`` (B, dim), ``s`` and ``t`` (B,) -> (B, dim)."""
        s, t = _batch_times(s, x), _batch_times(t, x)
        return self.body(torch.cat([x, self.emb(s), self.emb(t - s)], dim=1))


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of at least 4 channels (EDM's rule), dividing ``channels``."""
    groups = max(1, min(32, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResBlock(nn.Module):
    """Pre-activation residual block; the embedding is added after the first conv (EDM/DDPM++)."""

    def __init__(
        self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0, attention: bool = False
    ) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.attn = SelfAttention(cout) if attention else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """``x`` (B, cin, H, W), ``emb`` (B, emb_dim) -> (B, cout, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        h = (h + self.skip(x)) * SKIP_SCALE
        return h if self.attn is None else self.attn(h)


class SelfAttention(nn.Module):
    """Multi-head self-attention over pixels, written out as ``softmax(QK^T / sqrt(d)) V``.

    ``F.scaled_dot_product_attention`` is avoided on purpose: its CPU flash kernel has no
    forward-mode AD, so ``torch.func.jvp`` through it fails.
    """

    def __init__(self, channels: int, head_dim: int = 64) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        if channels % self.heads:
            self.heads = 1
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        logits = torch.einsum("bhdq,bhdk->bhqk", q, k) / math.sqrt(c // self.heads)
        out = torch.einsum("bhqk,bhdk->bhdq", logits.softmax(dim=-1), v)
        return (x + self.proj(out.reshape(b, c, h, w))) * SKIP_SCALE


class Downsample(nn.Module):
    """Stride-2 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Halve the resolution; ``emb`` is unused (uniform block signature)."""
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling followed by a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """Double the resolution; ``emb`` is unused (uniform block signature)."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """DDPM++/EDM-style U-Net conditioned on ``s`` and ``t - s``.

    Each time goes through a sinusoidal embedding of width ``base``; the two are concatenated and
    mapped by ``Linear -> SiLU -> Linear -> SiLU`` to ``4 * base`` channels, which every residual
    block projects and adds to its features. Level ``i`` has ``base * mults[i]`` channels and
    ``blocks`` residual blocks on the way down (``blocks + 1`` on the way up, with skip
    concatenation); self-attention follows each block whose resolution is in ``attn_res``, and
    the bottleneck is ``ResBlock, attention, ResBlock``. The output conv is zero-initialised, so a
    fresh network returns zeros.
    """

    def __init__(
        self,
        channels: int = 3,
        resolution: int = 32,
        base: int = 128,
        mults: Sequence[int] = (2, 2, 2),
        blocks: int = 4,
        attn_res: Sequence[int] = (16,),
        dropout: float = 0.0,
        time_scale: float = 30.0,
    ) -> None:
        super().__init__()
        if resolution % 2 ** (len(mults) - 1):
            raise ValueError(f"resolution {resolution} not divisible by 2^{len(mults) - 1}")
        emb_dim = 4 * base
        self.time_emb = TimeEmbedding(base, scale=time_scale)
        self.emb_mlp = nn.Sequential(
            nn.Linear(2 * base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim), nn.SiLU()
        )
        self.conv_in = nn.Conv2d(channels, base * mults[0], 3, padding=1)
        ch, res = base * mults[0], resolution
        skips = [ch]
        self.down = nn.ModuleList()
        for level, mult in enumerate(mults):
            for _ in range(blocks):
                self.down.append(ResBlock(ch, base * mult, emb_dim, dropout, res in attn_res))
                ch = base * mult
                skips.append(ch)
            if level < len(mults) - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)
                res //= 2
        self.mid = nn.ModuleList(
            [ResBlock(ch, ch, emb_dim, dropout, attention=True), ResBlock(ch, ch, emb_dim, dropout)]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for _ in range(blocks + 1):
                cin = ch + skips.pop()
                self.up.append(ResBlock(cin, base * mult, emb_dim, dropout, res in attn_res))
                ch = base * mult
            if level > 0:
                self.up.append(Upsample(ch))
                res *= 2
        self.norm_out = _norm(ch)
        self.conv_out = nn.Conv2d(ch, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """``x`` (B, C, H, W), ``s`` and ``t`` (B,) -> (B, C, H, W)."""
        s, t = _batch_times(s, x), _batch_times(t, x)
        emb = self.emb_mlp(torch.cat([self.time_emb(s), self.time_emb(t - s)], dim=1))
        h = self.conv_in(x)
        hs = [h]
        for block in self.down:
            h = block(h, emb)
            hs.append(h)
        for block in self.mid:
            h = block(h, emb)
        for block in self.up:
            if isinstance(block, ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            h = block(h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))


UNET_PRESETS: dict[str, dict] = {
    "tiny": dict(base=16, mults=(1, 1), blocks=1, attn_levels=(1,)),
    "small": dict(base=64, mults=(1, 2, 2), blocks=2, attn_levels=(1,)),
    "paper": dict(base=128, mults=(2, 2, 2), blocks=4, attn_levels=(1,)),
}
"""U-Net sizes. ``attn_levels`` are level indices (level ``i`` has resolution ``res / 2^i``),
so attention sits at 16x16 for 32x32 inputs and at 32x32 for 64x64 inputs. "paper" is the
CIFAR-10 DDPM++/NCSN++ scale (base 128, mults (2, 2, 2), 4 blocks, attention at 16x16)."""


def unet(size: str, channels: int = 3, resolution: int = 32, dropout: float = 0.0) -> UNet:
    """Build a preset U-Net: ``size`` in ``UNET_PRESETS`` ("tiny", "small", "paper")."""
    if size not in UNET_PRESETS:
        raise ValueError(f"unknown U-Net size {size!r}; allowed: {sorted(UNET_PRESETS)}")
    cfg = dict(UNET_PRESETS[size])
    attn_res = tuple(resolution // 2**level for level in cfg.pop("attn_levels"))
    return UNet(channels, resolution, attn_res=attn_res, dropout=dropout, **cfg)


NET_KINDS = ("mlp", *UNET_PRESETS)


def make_net(kind: str, shape: tuple[int, ...], **kw) -> nn.Module:
    """Build a network for data of per-sample ``shape``.

    ``kind`` is "mlp" (``shape == (dim,)``, ``kw`` passed to :class:`MLP`) or a U-Net preset
    (``shape == (C, H, W)`` with ``H == W``, ``kw`` passed to :func:`unet`, e.g. ``dropout``).
    """
    if kind not in NET_KINDS:
        raise ValueError(f"unknown net kind {kind!r}; allowed: {', '.join(NET_KINDS)}")
    shape = tuple(shape)
    if kind == "mlp":
        if len(shape) != 1:
            raise ValueError(f"net 'mlp' needs a shape (dim,), got {shape}")
        return MLP(shape[0], **kw)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"net {kind!r} needs a square image shape (C, H, H), got {shape}")
    return unet(kind, channels=shape[0], resolution=shape[1], **kw)


def count_params(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
