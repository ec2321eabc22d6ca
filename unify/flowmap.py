"""The two-time flow map X_{s,t}(x) = x + (t - s) v(x, s, t) and its derivatives by forward-mode AD.

X_{s,s} = id holds by construction, and the tangent condition lim_{s->t} d/dt X_{s,t} = b_t gives
the velocity b_t(x) = v(x, t, t). All derivatives of the map are one ``torch.func.jvp`` each (no
double backward): d/dt X (Lagrangian), d/ds X + grad X . u (Eulerian, one jvp with tangent
(u, 1, 0)), and the mean-flow total derivative of v.

Every jvp here runs in float32 (or the caller's float64) with autocast off: tangents overflow or
lose their digits in bf16/fp16 (the official MeanFlow code disables autocast around its jvp, and
edm2_sCM trains CIFAR-10 in FP32 for that reason), while the harness wraps ``method.loss`` in bf16
autocast on CUDA. ``full_precision`` does it once for every method and for the teachers.

With ``FlowMap.compile_jvp`` set (``train.compile``), each jvp is compiled as a whole: a compiled
net called inside an eager ``torch.func.jvp`` is skipped by dynamo and runs eagerly.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from unify.interpolant import bcast

Fn = TypeVar("Fn", bound=Callable[..., Any])
_LOW = (torch.float16, torch.bfloat16)


def _up(x: Any) -> Any:
    """float16/bfloat16 tensors as float32 (tuples element-wise); anything else unchanged."""
    if isinstance(x, tuple):
        return tuple(_up(y) for y in x)
    return x.float() if isinstance(x, Tensor) and x.dtype in _LOW else x


def _device_type(args: tuple) -> str:
    for a in args:
        if isinstance(a, tuple):
            a = next((y for y in a if isinstance(y, Tensor)), None)
        if isinstance(a, Tensor):
            return a.device.type
    return "cpu"


def full_precision(fn: Fn) -> Fn:
    """Run ``fn`` with autocast off for the device of its tensor arguments, low-precision floating
    tensors (also inside tuples) cast to float32 first: its output is float32 (float64 stays)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        args, kwargs = _up(args), {k: _up(v) for k, v in kwargs.items()}
        with torch.autocast(device_type=_device_type(args), enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class FlowMap(nn.Module):
    """X_{s,t}(x) = x + (t - s) * net(x, s, t), for any net(x, s, t) -> tensor shaped like x."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.compile_jvp = False  # compile the derivatives below (set with train.compile)

    def forward(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """The map X_{s,t}(x); s and t have shape (B,)."""
        return x + bcast(t - s, x) * self.net(x, s, t)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """Tangent condition: b_t(x) = d/dt X_{s,t}(x) at t = s = v(x, t, t)."""
        return self.net(x, t, t)

    def avg_velocity(self, x: Tensor, s: Tensor, t: Tensor) -> Tensor:
        """v(x, s, t) = (X_{s,t}(x) - x) / (t - s), the mean velocity along the path."""
        return self.net(x, s, t)


def _ones(t: Tensor) -> Tensor:
    return torch.ones_like(t)


@functools.cache
def _forward_ad_ready() -> None:
    """Run one tiny jvp, once, with torch's own deprecation notice silenced: torch 2.14 builds its
    forward-AD decomposition table with ``torch.jit.script`` on the first jvp of a process and
    warns about it (a FutureWarning on every run, from torch's internals, not from this code)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
        torch.func.jvp(torch.sin, (torch.zeros(1),), (torch.ones(1),))


@functools.cache
def _compiled_jvp() -> Callable:
    return torch.compile(lambda f, primals, tangents: torch.func.jvp(f, primals, tangents))


@full_precision
def _jvp(flow_map: FlowMap, f: Callable, primals: tuple, tangents: tuple) -> tuple[Tensor, Tensor]:
    """``torch.func.jvp(f, primals, tangents)``, compiled as a whole when ``flow_map.compile_jvp``, in
    float32 with autocast off (``full_precision``).

    Where dynamo cannot trace the jvp (torch 2.14: GroupNorm under ``torch.func.jvp``, so the
    U-Nets, raise an internal assert, cf. pytorch/pytorch#197090, #139756), it warns once per
    model and the jvp runs eagerly; a genuine error then re-raises from the eager jvp.
    """
    _forward_ad_ready()
    if getattr(flow_map, "compile_jvp", False):
        try:
            return _compiled_jvp()(f, primals, tangents)
        except RuntimeError as e:
            flow_map.compile_jvp = False
            warnings.warn(f"compiled jvp failed, running it eagerly: {str(e)[:200]}", stacklevel=3)
    return torch.func.jvp(f, primals, tangents)


@full_precision
def map_dt(flow_map: FlowMap, x: Tensor, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """(X_{s,t}(x), d/dt X_{s,t}(x)) by one jvp with tangent (0, 0, 1): the Lagrangian derivative."""
    return _jvp(flow_map, flow_map, (x, s, t), (torch.zeros_like(x), torch.zeros_like(s), _ones(t)))


@full_precision
def map_ds(flow_map: FlowMap, x: Tensor, s: Tensor, t: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """(X_{s,t}(x), d/ds X_{s,t}(x) + grad X_{s,t}(x) u) by one jvp with tangent (u, 1, 0).

    With u = b_s(x) this is the Eulerian residual of the Flow Map Matching paper (Prop. 3.3).
    """
    return _jvp(flow_map, flow_map, (x, s, t), (u, _ones(s), torch.zeros_like(t)))


@full_precision
def avg_velocity_total_derivative(
    flow_map: FlowMap, x: Tensor, s: Tensor, t: Tensor, u: Tensor
) -> tuple[Tensor, Tensor]:
    """(v(x, s, t), d/ds v + grad_x v . u) by one jvp with tangent (u, 1, 0) (MeanFlow identity)."""
    return _jvp(flow_map, flow_map.avg_velocity, (x, s, t), (u, _ones(s), torch.zeros_like(t)))


@full_precision
def eulerian_tangent(
    flow_map: FlowMap, x: Tensor, s: Tensor, t: Tensor, u: Tensor, r: float = 1.0
) -> tuple[Tensor, Tensor]:
    """(v(x, s, t), T) with T = (u - v) + r (t - s)(d/ds v + grad_x v . u), the shared Eulerian
    tangent (docs/methods.md, Conventions and translations).

    At r = 1, T = d/ds X_{s,t}(x) + grad X_{s,t}(x) u (the value of ``map_ds``): the Eulerian
    tangent of the map along the velocity u, zero on the exact map for u = b_s. One jvp with tangent
    (u, 1, 0) (``avg_velocity_total_derivative``); v keeps its graph, T is what the jvp gives (the
    semi-gradient methods detach it). r < 1 is the tangent warm-up of sCM / AYF. Used by MeanFlow
    (target v + T, u = dI/ds), ESD, sCT / sCD (s = tau, t = 1) and AYF-EMD.
    """
    v, dv = avg_velocity_total_derivative(flow_map, x, s, t, u)
    return v, (u - v) + r * bcast(t - s, v) * dv
