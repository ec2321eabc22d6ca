"""FLOPs of a training step and of a whole run (a cell's ``train_flops``), counted (not timed) with ``torch.utils.flop_counter.FlopCounterMode``.

What is counted is what that counter knows (torch 2.14): matrix products (``mm``, ``addmm``,
``bmm``, ``baddbmm``, ``_scaled_mm``), convolutions and their backward, and scaled-dot-product /
flex attention, at 2 FLOPs per multiply-add. Every other op counts 0: activations, norms, softmax,
``cdist`` without mm, reductions, the loss's arithmetic, gradient clipping, the Adam update and the
EMA. The count is therefore the step's matmul/conv/attention work, which dominates on the nets
here, and is hardware-independent: the same on CPU and GPU, with or without autocast.

Forward-mode AD is counted: ``torch.func.jvp`` (``unify.flowmap``) dispatches the tangent's
products as ordinary aten ops, and the counter sees them. In torch 2.14 the jvp of ``addmm`` (and of
a convolution) runs three products: the primal, tangent_x @ W and x @ (the weights' zero tangent),
the last one executed, not skipped; a jvp of a linear or conv layer counts (and costs) 3x its
forward. Teacher solves count as far as they call a network (a trained fm teacher); an oracle's
closed-form velocity (gmm, cifar-gmm) counts almost nothing, so a cell's count charges its teacher
calls at a stand-in network's forward pass instead (``charged_teacher``).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.base.schema import RunConfig, TrainCfg
from benchmarks.training import factory
from benchmarks.training.factory import Parts, optimizer
from benchmarks.training.loop import autocast_for, train_step
from unify import Interpolant
from unify.teacher import FlowMapTeacher, Teacher, VelocityTeacher


def copy_parts(parts: Parts, cfg: TrainCfg) -> Parts:
    """An independent copy of ``parts``: model, EMA and method deep-copied together, optimiser and
    schedule rebuilt on the copy's parameters with the originals' state (a deep-copied optimiser
    drops the lr schedule's wrapper of ``step``, and the schedule warns on its first step)."""
    fm, ema, method = copy.deepcopy((parts.fm, parts.ema, parts.method))
    opt, sched = optimizer([*fm.parameters(), *method.parameters()], cfg, method.lr_scale)
    opt.load_state_dict(copy.deepcopy(parts.opt.state_dict()))
    sched.load_state_dict(copy.deepcopy(parts.sched.state_dict()))
    fm.compile_jvp = False
    return Parts(fm, ema, method, opt, sched, parts.ema_law)


def _count(p: Parts, x1: Tensor, steps: range, cfg: TrainCfg) -> float:
    """Total FLOPs of ``train_step`` at the step indices ``steps``, in order."""
    autocast = autocast_for(x1.device)
    with FlopCounterMode(display=False) as counter:
        for k in steps:
            train_step(p, x1, k, cfg, autocast)
    return float(counter.get_total_flops())


@contextlib.contextmanager
def _isolated(parts: Parts, cfg: TrainCfg, x1: Tensor, seed: int) -> Iterator[Parts]:
    """``copy_parts(parts, cfg)`` under a forked RNG seeded with ``seed``: the caller's parts and
    random state are untouched, and the same arguments give the same count."""
    devices = [x1.device] if x1.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield copy_parts(parts, cfg)


def step_flops(
    parts: Parts,
    x1: Tensor,
    step: int,
    cfg: TrainCfg,
    n: int = 3,
    warmup: int = 1,
    every: int = 1,
    seed: int = 0,
) -> float:
    """Mean FLOPs of ``n`` training steps (``benchmarks.training.loop.train_step`` on batch ``x1``:
    loss with its teacher solves and jvps, backward, clip, optimiser, EMA) at step indices
    ``step + warmup + i * every`` (i < n), after ``warmup`` uncounted steps from ``step`` (one-time
    work, e.g. ``no``'s trajectory pool, falls there).

    The mean covers methods whose step varies: random solve lengths (``ctm``) and, with ``every``
    spreading the counted steps over the run, training stages (``pd``, ``pfmm``, pipelines,
    curricula), which the step index selects. The steps run on ``copy_parts(parts, cfg)`` (its jvps
    eager; count an uncompiled model, as ``benchmarks.perf`` does) under a forked RNG seeded with
    ``seed``: ``parts`` and the caller's random state are untouched, and two calls with the same
    arguments give the same count.
    """
    with _isolated(parts, cfg, x1, seed) as p:
        _count(p, x1, range(step, step + warmup), cfg)  # uncounted warm-up
        total = _count(p, x1, range(step + warmup, step + warmup + n * every, every), cfg)
    return total / n


def run_flops(
    parts: Parts, x1: Tensor, cfg: TrainCfg, n: int = 8, seed: int = 0
) -> tuple[float, float]:
    """(total, once): FLOPs of a whole run of ``cfg.steps`` steps, and the one-time part of it.
    Step 0 is counted on its own (it holds one-time work, e.g. ``no``'s trajectory pool); the
    other steps are (steps - 1) times the mean of ``n`` steps spread evenly over them
    (``step_flops`` with no warm-up; stages are counted in proportion); ``once`` = step 0's
    excess over step 0 run again with the same random draws (0 when it has none), so training
    to step k costs about once + (total - once) * k / steps; isolated as ``step_flops``."""
    rest = cfg.steps - 1
    with _isolated(parts, cfg, x1, seed) as p:
        first = _count(p, x1, range(1), cfg)
        torch.manual_seed(seed)  # step 0 again, same random draws: its one-time work is done
        once = first - _count(p, x1, range(1), cfg)
        if rest < 1:
            return first, once
        n = min(n, rest)
        every = rest // n
        mean = _count(p, x1, range(1, 1 + n * every, every), cfg) / n
    return first + rest * mean, once


def charged_teacher(
    teacher: Teacher | None, cfg: RunConfig, shape: tuple[int, ...], device: torch.device
) -> Teacher | None:
    """The teacher a FLOP count charges: a trained (network) teacher as it is; an oracle's
    closed-form velocity, which the counter sees as almost free, replaced by a frozen, untrained
    net of the run's architecture under the same solver and step size, so that every teacher call
    costs what a trained fm teacher's forward pass would. (The teacher's own training is not in
    the count; its fm cell's ``train_flops`` gives it.)"""
    if not isinstance(teacher, VelocityTeacher) or isinstance(teacher, FlowMapTeacher):
        return teacher
    stand_in = factory.model(cfg, shape).to(device).requires_grad_(False).eval()
    return FlowMapTeacher(stand_in, teacher.method, teacher.substeps, teacher.max_dt)


def cell_flops(
    cfg: RunConfig,
    name: str,
    shape: tuple[int, ...],
    teacher: Teacher | None,
    device: torch.device,
    interp: Interpolant,
    x1: Tensor,
    n: int = 8,
) -> tuple[float, float]:
    """``train_flops`` and ``train_flops_once`` of a cell: ``run_flops`` of method ``name`` on fresh parts built like the
    run's, with the ``charged_teacher``, on one training batch ``x1``. Builds a model, so it draws
    from the global RNG: call it before the run seeds its initial weights."""
    p = factory.parts(
        cfg, name, shape, charged_teacher(teacher, cfg, shape, device), device, interp
    )
    return run_flops(p, x1, cfg.train, n=n)
