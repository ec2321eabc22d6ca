"""Speed benchmark: training-step time and memory of every method, sampling throughput.

    python -m benchmarks.perf [--device cpu|cuda] [--net mlp,tiny] [--batch N] [--out results/perf]

A training step is ``benchmarks.training.loop.train_step`` itself (loss -> backward -> clip -> optimiser
step -> schedule -> EMA -> after_step, data fetch included) on a model prepared by
``benchmarks.training.loop.prepare_model``, for every method on one network and batch. Methods with a
teacher carry it, and its cost is part of their step: the exact mixture velocity on the 2D MLP, a
frozen fm net of the same architecture on images (Heun with ``TEACHER_MAX_DT``, as the harness).
Its FLOPs are counted by ``benchmarks.training.flops.step_flops``. Sampling times the flow-map
composition at NFE 1..16 and the fm velocity with Euler, Heun and adaptive dopri5 (the harness's
tolerances), with the counted NFE. ``benchmarks.perf.report`` writes ``perf.csv`` and ``perf.md``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import unify
from benchmarks.base.cli import OneLineParser
from benchmarks.config import NetCfg, RunConfig, TrainCfg, apply_updates, load_config
from benchmarks.data.batches import BatchSampler
from benchmarks.data.registry import Problem
from benchmarks.evaluation.evaluate import run_sampler, sample_batch_for
from benchmarks.perf.probe import exact_rss, host_syncs, interleaved, peak_mem_mb, timings
from benchmarks.perf.report import write_outputs
from benchmarks.training import factory
from benchmarks.training.factory import Parts
from benchmarks.training.flops import charged_teacher, step_flops
from benchmarks.training.loop import autocast_for, prepare_model, to_device, train_step
from methods import METHODS
from unify.flowmap import FlowMap
from unify.ode import solve

BATCH = {"mlp": 512, "tiny": 32, "small": 64, "paper": 128}
# defaults of the CLI's 0-valued options per (net kind, device): reps, warm-up, sampling reps,
# samples per sampling run, fm steps for the sampled velocity
AUTO = {
    ("mlp", "cpu"): (10, 3, 3, 4096, 500),
    ("mlp", "cuda"): (20, 5, 3, 65536, 500),
    ("image", "cpu"): (3, 1, 2, 16, 50),
    ("image", "cuda"): (10, 3, 3, 1024, 200),
}
PRESETS = {  # benchmarks/perf/gpu.sh: the paper U-Net in bf16, without and with torch.compile
    "gpu": dict(
        device="cuda",
        net="paper",
        batch=128,
        methods="fm,lmd,emd,meanflow",
        nfe="1,8",
        compile="both",
        out="results/perf/gpu",
    ),
}


@dataclass
class Bench:
    """What every measurement on one network shares."""

    net: str
    cfg: RunConfig
    problem: Problem
    teacher: unify.Teacher | None = None  # of the distillation methods
    velocity_fm: FlowMap | None = None  # a briefly trained fm: sampled flow map and velocity
    teacher_note: str = ""
    velocity_note: str = ""
    flops: dict[str, float] = field(default_factory=dict)  # per method: FLOPs of one step


def synthetic_images(n: int, seed: int = 0) -> Tensor:
    """(n, 3, 32, 32) in [-1, 1]: ten smooth random prototypes plus noise (nothing to download)."""
    g = torch.Generator().manual_seed(seed)
    protos = F.interpolate(torch.randn(10, 3, 4, 4, generator=g), size=(32, 32), mode="bilinear")
    k = torch.randint(0, 10, (n,), generator=g)
    return (protos[k] + 0.1 * torch.randn(n, 3, 32, 32, generator=g)).clamp(-1, 1)


def make_stepper(
    b: Bench, name: str, device: torch.device, compiled: bool
) -> tuple[Callable[[], None], Parts]:
    """(step, parts): ``step()`` runs the real training step of ``name`` on fresh ``parts``."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(b.cfg.train, compile=compiled)
    p = factory.parts(b.cfg, name, b.problem.shape, b.teacher, device)
    prepare_model(p, cfg, device)
    p.fm.train()
    batches, autocast = BatchSampler(b.problem.train, cfg.batch), autocast_for(device)
    count = itertools.count()

    def step() -> None:
        train_step(p, to_device(batches.next(), device), next(count), cfg, autocast)

    return step, p


def make_bench(net: str, batch: int, device: torch.device, velocity_steps: int) -> Bench:
    """Problem, teacher and briefly trained fm velocity of ``net`` (gmm for mlp, else images)."""
    if net == "mlp":
        cfg = load_config("gmm", "small", {"train": {"batch": batch}}, [])
        problem = factory.load_problem(cfg, 0)
        b = Bench(net, cfg, problem, teacher_note="exact gmm velocity")
    else:  # the DSNO pool is built once in the warm-up; a batch-sized one keeps that short
        no = {"method": {"no": {"pool_size": batch, "chunk": batch}}}
        cfg = RunConfig(dataset="synthetic", net=NetCfg(kind=net), train=TrainCfg(batch=batch))
        cfg = apply_updates(cfg, no)
        data = synthetic_images(max(8 * batch, 512))
        b = Bench(net, cfg, Problem("synthetic", data, None, None), teacher_note="frozen fm net")
    fm_step, fm_parts = make_stepper(b, "fm", device, False)
    for _ in range(velocity_steps):
        fm_step()
    b.velocity_fm = copy.deepcopy(fm_parts.fm).requires_grad_(False).eval()
    b.velocity_note = f"the fm net trained {velocity_steps} steps is flow map and velocity"
    b.teacher = factory.teacher(cfg, b.problem, factory.interpolant(cfg), b.velocity_fm)
    b.teacher_note += f", heun max_dt 1/{round(1 / factory.TEACHER_MAX_DT)}"
    return b


def row(kind: str, b: Bench, device: torch.device, secs: list[float], **kw) -> dict:
    """One perf.csv row: median and 10th/90th percentiles of ``secs``, then ``kw``."""
    p10, med, p90 = np.percentile(secs, [10, 50, 90])
    out = dict(kind=kind, net=b.net, method="", solver="", nfe=np.nan, batch=b.cfg.train.batch)
    out.update(device=device.type, compile=False, median_s=med, p10_s=p10, p90_s=p90)
    return out | kw


def count_flops(b: Bench, name: str, device: torch.device, n: int) -> float:
    """FLOPs of a training step of ``name``: ``step_flops`` on fresh, uncompiled parts (mean of
    ``n`` steps spread over the run after one warm-up), teacher charged as a network
    (``charged_teacher``, as ``train_flops``); cached per method; n 0: NaN."""
    if n > 0 and name not in b.flops:
        torch.manual_seed(0)
        t = charged_teacher(b.teacher, b.cfg, b.problem.shape, device)
        parts = factory.parts(b.cfg, name, b.problem.shape, t, device)
        x1 = to_device(BatchSampler(b.problem.train, b.cfg.train.batch).next(), device)
        every = max(1, b.cfg.train.steps // n)
        b.flops[name] = step_flops(parts, x1, 0, b.cfg.train, n=n, every=every)
    return b.flops.get(name, np.nan)


def bench_train(b: Bench, a: argparse.Namespace, device: torch.device, compiled: bool):
    """(row, step) of every method's training step. Each method's steps alternate with fm's, and
    ratio_to_fm is the median of the per-round ratios (fm at the same compile setting); FLOPs by
    ``count_flops``, flops_ratio_to_fm over fm's."""
    auto = AUTO[_kind(b.net), device.type]
    reps, warmup = a.reps or auto[0], a.warmup or auto[1]
    ref, out = None, []
    for name in a.methods:
        step = make_stepper(b, name, device, compiled)[0]
        first = timings(step, 1, 0, device)[0] if compiled else np.nan
        if ref is None:  # fm comes first
            ref = step
        secs, *ref_secs = interleaved([step] if step is ref else [step, ref], reps, warmup, device)
        mem = peak_mem_mb(step, device) if device.type == "cuda" else np.nan
        r = row("train", b, device, secs, method=name, compile=compiled, peak_mem_mb=mem)
        r["ratio_to_fm"] = float(np.median(np.divide(secs, ref_secs[0]))) if ref_secs else 1.0
        flops = count_flops(b, name, device, a.flops_steps)
        r["gflop_step"], r["flops_ratio_to_fm"] = flops / 1e9, flops / b.flops.get("fm", np.nan)
        r["host_syncs"] = host_syncs(step, device)
        r["compile_s"] = max(0.0, first - r["median_s"]) if compiled else np.nan
        r["teacher"] = b.teacher_note if METHODS[name].needs_teacher else ""
        out.append((r, step if device.type == "cpu" else None))  # CPU: memory pass at the end
        tag = " compiled" if compiled else ""
        ms, gf = 1e3 * r["median_s"], r["gflop_step"]
        print(f"  train {b.net} {name}{tag}: {ms:.2f} ms, {gf:.4g} GFLOP", flush=True)
    return out


def _ode(fm: FlowMap, solver: str, **kw) -> Callable[[Tensor], tuple[Tensor, int]]:
    return lambda x: solve(fm.velocity, x, 0.0, 1.0, solver, **kw)


def _compose(fm: FlowMap, nfe: int) -> Callable[[Tensor], tuple[Tensor, int]]:
    return lambda x: (unify.sample(fm, x, nfe), nfe)


def bench_sample(b: Bench, a: argparse.Namespace, device: torch.device):
    """(row, call) of the flow map at each NFE and of the fm velocity's ODE solvers."""
    fm, ecfg = b.velocity_fm, b.cfg.eval
    auto = AUTO[_kind(b.net), device.type]
    n = a.n_samples or auto[3]
    x0 = torch.randn(n, *b.problem.shape, generator=torch.Generator().manual_seed(0))
    batch = sample_batch_for(device, b.problem.shape, a.sample_batch)
    jobs = [("flowmap", "", _compose(fm, k)) for k in a.nfe]
    jobs += [("fm", "euler", _ode(fm, "euler", steps=k)) for k in a.nfe]
    jobs += [("fm", "heun", _ode(fm, "heun", steps=k // 2)) for k in a.nfe if k % 2 == 0]
    jobs += [("fm", "dopri5", _ode(fm, "dopri5", rtol=ecfg.dopri_rtol, atol=ecfg.dopri_atol))]
    out = []
    for method, solver, sampler in jobs:
        run_sampler(sampler, x0[:2], batch, device)  # warm-up on two samples
        counted: list[int] = []

        def call(sampler=sampler, counted=counted) -> None:
            counted.append(run_sampler(sampler, x0, batch, device)[2])

        secs = timings(call, a.sample_reps or auto[2], 0, device)
        mem = peak_mem_mb(call, device) if device.type == "cuda" else np.nan
        speed = n / np.median(secs)
        r = row("sample", b, device, secs, method=method, solver=solver, nfe=max(counted))
        r |= dict(n_samples=n, sample_batch=batch, samples_per_s=speed, peak_mem_mb=mem)
        r["teacher"] = b.velocity_note
        out.append((r, call))
        print(
            f"  sample {b.net} {method} {solver or 'map'} nfe {max(counted)}: {speed:.0f}/s",
            flush=True,
        )
    return out


def _kind(net: str) -> str:
    return "mlp" if net == "mlp" else "image"


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m benchmarks.perf", description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--preset", choices=sorted(PRESETS), help="gpu: paper U-Net, batch 128, bf16, +-compile")
    add("--device", choices=("cpu", "cuda"), help="default: cuda if available, else cpu")
    add("--net", help="comma list of mlp, tiny, small, paper (default cpu: mlp,tiny; cuda: paper)")
    add("--batch", type=int, default=0, help=f"training batch (0: per net, {BATCH})")
    add("--methods", default="all", help="all or a comma list (fm, the reference, is added)")
    add("--nfe", default="1,2,4,8,16", help="NFEs of the flow map, Euler and Heun")
    add("--reps", type=int, default=0, help="timed training steps (0: AUTO by net and device)")
    add("--warmup", type=int, default=0, help="untimed steps first (0: AUTO)")
    add("--sample-reps", type=int, default=0, help="timed sampling runs (0: AUTO)")
    add("--n-samples", type=int, default=0, help="samples per sampling run (0: AUTO)")
    add("--sample-batch", type=int, default=0, help="0: evaluate.sample_batch_for the device")
    add(
        "--velocity-steps",
        type=int,
        default=0,
        help="fm steps for the sampled velocity and images' teacher (0: AUTO)",
    )
    add("--flops-steps", type=int, default=4, help="counted steps per method's FLOPs (0: none)")
    add("--compile", default="off", choices=("off", "on", "both"), help="train.compile")
    add("--threads", type=int, default=0, help="torch threads (0: 1 on CPU, default on CUDA)")
    add("--out", default="results/perf")
    return p


def resolve(argv: list[str] | None) -> argparse.Namespace:
    """Parse the flags; a preset sets defaults that explicit flags override."""
    p = parser()
    a = p.parse_args(argv)
    if a.preset:
        p.set_defaults(**PRESETS[a.preset])
        a = p.parse_args(argv)
    a.device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    a.net = (a.net or ("paper" if a.device == "cuda" else "mlp,tiny")).split(",")
    names = list(METHODS) if a.methods == "all" else a.methods.split(",")
    bad = [m for m in names if m not in METHODS] + [n for n in a.net if n not in BATCH]
    if bad:
        p.error(
            f"unknown method or net {bad[0]!r}; methods: {', '.join(METHODS)}; nets: {', '.join(BATCH)}"
        )
    a.methods = ["fm", *(m for m in names if m != "fm")]
    a.nfe = [int(k) for k in a.nfe.split(",")]
    return a


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, write ``<out>/perf.csv`` and ``perf.md``, print the tables."""
    a, threads = resolve(argv), torch.get_num_threads()
    if a.threads or a.device == "cpu":  # 2-thread timings on 2 shared cores are erratic
        torch.set_num_threads(a.threads or 1)
    device, t0, pending = torch.device(a.device), time.perf_counter(), []
    try:
        for net in a.net:
            batch = a.batch or BATCH[net]
            print(f"{net}, batch {batch}, {device}, {torch.get_num_threads()} threads", flush=True)
            b = make_bench(net, batch, device, a.velocity_steps or AUTO[_kind(net), device.type][4])
            for compiled in {"off": [False], "on": [True], "both": [False, True]}[a.compile]:
                pending += bench_train(b, a, device, compiled)
            pending += bench_sample(b, a, device)
        if device.type == "cpu":  # memory last: exact RSS slows allocation
            with exact_rss() as ok:
                for r, fn in pending:
                    r["peak_mem_mb"] = peak_mem_mb(fn, device) if ok else np.nan
        rows = [r for r, _ in pending]
        print(write_outputs(rows, Path(a.out), argv, time.perf_counter() - t0))
    finally:
        torch.set_num_threads(threads)
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
