"""THE training loop. It knows no method: loss -> backward -> clip -> step -> EMA -> after_step.

Checkpoints (model, EMA, optimiser, scheduler, method state, data sampler, RNG, the current loss
window) are written atomically every ``ckpt_every`` steps and when a stop is requested, so a
killed run resumes from the last one and a stopped run from the exact step, continuing bit for
bit as if uninterrupted. Losses stay on the device and are read every ``log_every`` steps (no
host sync per step); a non-finite one stops the run with :class:`NonFiniteLoss`, naming method,
step and value, before any checkpoint could store the damage.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch
from torch import Tensor, nn
from tqdm import tqdm

from benchmarks.base.atomic import atomic_open, clean_partial, save_torch
from benchmarks.base.schema import TrainCfg
from benchmarks.base.stop import Stopped
from benchmarks.data.batches import BatchSampler
from benchmarks.training import distributed
from benchmarks.training.factory import Parts
from methods.base import ema_update

CKPT = "ckpt.pt"
LOG = "log.jsonl"


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite at ``step``."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


@dataclass(frozen=True)
class TrainResult:
    steps: int
    images: int
    seconds: float  # training wall time, summed over resumed segments
    final_loss: float


@dataclass
class Progress:
    """Where training stands: the next step, time spent, last logged loss, the loss window."""

    step: int = 0
    seconds: float = 0.0
    last: float = math.nan
    window: Tensor | None = None


# ---------------------------------------------------------------- the step (timed by benchmarks.perf)
def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """A batch on ``device``; image batches (B, C, H, W) in channels-last layout on CUDA."""
    x = x.to(device, non_blocking=True)
    if device.type == "cuda" and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def prepare_model(p: Parts, cfg: TrainCfg, device: torch.device) -> None:
    """In place, before the first step: on CUDA, convolutional nets (the model, its EMA, the
    method's target networks) take channels-last weights; with ``cfg.compile``, ``fm.net`` is
    compiled by ``nn.Module.compile`` (parameter names, hence checkpoints, are unchanged) and so
    are the jvps of ``unify.flowmap`` through ``fm.compile_jvp``."""
    if device.type == "cuda":
        for m in p.nets():
            if any(isinstance(c, nn.Conv2d) for c in m.modules()):
                m.to(memory_format=torch.channels_last)
    if cfg.compile:
        p.fm.net.compile()
        p.fm.compile_jvp = True


def train_step(
    p: Parts, x1: Tensor, step: int, cfg: TrainCfg, autocast: contextlib.AbstractContextManager
) -> tuple[Tensor, dict[str, Tensor]]:
    """One training step: loss -> backward -> clip -> step -> lr schedule -> EMA -> after_step.

    Nothing here reads a value back to the host; the loss and logs are returned on the device.
    """
    with autocast:
        loss, logs = p.method.loss(p.fm, x1, step)
    p.opt.zero_grad(set_to_none=True)
    loss.backward()
    params = [*p.fm.parameters(), *p.method.parameters()]
    loss = distributed.sync_grads(params, loss)  # mean over data-parallel ranks; 1 rank: unchanged
    if cfg.clip > 0:
        nn.utils.clip_grad_norm_(params, cfg.clip)
    p.opt.step()
    p.sched.step()
    start, _ = p.method.stage_bounds(step)  # the EMA restarts with each training stage
    ema_update(p.ema, p.fm, p.ema_law.beta(step - start + 1))
    p.method.after_step(p.fm, step)
    return loss, logs


# ---------------------------------------------------------------- checkpoints and logs
def _state_parts(p: Parts, batches: BatchSampler) -> dict:
    return dict(model=p.fm, ema=p.ema, opt=p.opt, sched=p.sched, method=p.method, data=batches)


def save_checkpoint(path: Path, prog: Progress, p: Parts, batches: BatchSampler) -> None:
    """Everything a resumed run needs to continue bit for bit from ``prog.step``.

    Collective when several ranks train (their generator states are gathered); rank 0 writes.
    """
    rngs = distributed.rng_states()
    if not distributed.is_main():
        return
    state = {"step": prog.step, "seconds": prog.seconds, "loss": prog.last}
    state["window"] = prog.window.cpu() if prog.window is not None else None
    state.update({k: v.state_dict() for k, v in _state_parts(p, batches).items()})
    state.update(rng=rngs[0][0], cuda_rng=rngs[0][1], rng_ranks=rngs if len(rngs) > 1 else None)
    save_torch(state, path)


def resume(run_dir: Path, p: Parts, batches: BatchSampler, device: torch.device) -> Progress:
    """Load ``run_dir/ckpt.pt`` into the parts and return its progress, or start afresh."""
    if not (run_dir / CKPT).exists():
        distributed.seed_ranks()
        return Progress()
    state = torch.load(run_dir / CKPT, map_location=device, weights_only=False)
    for key, part in _state_parts(p, batches).items():
        part.load_state_dict(state[key])
    distributed.set_rng_state(state)
    return Progress(state["step"], state["seconds"], state["loss"], state.get("window"))


def truncate_log(path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be written again)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    keep = [ln for ln in lines if ln and json.loads(ln)["step"] <= last_step]
    if len(keep) < len(lines):
        with atomic_open(path) as f:
            f.write("".join(f"{ln}\n" for ln in keep))


def check_finite(values: list[float], first: int, name: str, run_dir: Path) -> None:
    """Raise NonFiniteLoss at the first non-finite loss (steps ``first``, ``first + 1``, ...)."""
    for i, v in enumerate(values):
        if not math.isfinite(v):
            saved = (run_dir / CKPT).exists()
            where = f"the last good checkpoint is {run_dir / CKPT}" if saved else "no checkpoint"
            msg = f"method {name!r}: loss = {v} at step {first + i + 1}; {where}"
            raise NonFiniteLoss(msg, first + i + 1)


def _log_window(
    log: IO, prog: Progress, done: int, cfg: TrainCfg, p: Parts, logs: dict, run_dir: Path
) -> None:
    """At a log boundary: check the window's losses, write one log line, update ``prog.last``."""
    n = (done - 1) % cfg.log_every + 1
    values = prog.window[:n].tolist()
    check_finite(values, done - n, p.method.name, run_dir)
    prog.last = sum(values) / n
    entry = {"step": done, "loss": prog.last, "lr": p.sched.get_last_lr()[0]}
    entry.update(seconds=prog.seconds, **{k: float(v) for k, v in logs.items()})
    log.write(json.dumps(entry) + "\n")
    log.flush()


# ---------------------------------------------------------------- the loop
def _probe(
    on_step, prog: Progress, p: Parts, batches: BatchSampler, run_dir: Path, total: int
) -> None:
    """A probe cut off by a stop request: save this step, so that the rerun resumes here and redoes
    the probe (one rank; with several, the stop is raised as is and the rerun resumes from the
    last periodic checkpoint, since saving is collective)."""
    try:
        on_step(prog.step)
    except Stopped:
        if distributed.world_size() > 1:
            raise
        save_checkpoint(run_dir / CKPT, prog, p, batches)
        raise Stopped(prog.step, total) from None


def train(
    p: Parts,
    batches: BatchSampler,
    cfg: TrainCfg,
    run_dir: Path,
    device: torch.device,
    *,
    quiet: bool = False,
    position: int | None = None,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train ``p.fm`` with ``p.method`` for ``cfg.steps`` steps, resuming from ``run_dir/ckpt.pt``.

    ``on_step(done)`` runs after each step's bookkeeping (the convergence probes). A stop request
    saves a checkpoint at the step reached and raises :class:`benchmarks.base.stop.Stopped`.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    clean_partial(run_dir)
    prog = resume(run_dir, p, batches, device)
    main = distributed.is_main()
    if main:
        truncate_log(run_dir / LOG, prog.step)
    if on_step is not None and prog.step > 0:
        on_step(prog.step)  # a probe that a stop or a kill cut off after this checkpoint
    if prog.step >= cfg.steps:
        return TrainResult(prog.step, prog.step * cfg.batch, prog.seconds, prog.last)
    prepare_model(p, cfg, device)
    autocast = autocast_for(device)
    prog.window = torch.zeros(cfg.log_every, device=device) if prog.window is None else prog.window
    prog.window = prog.window.to(device)
    shown = dict(position=position, disable=quiet or not main, leave=position is None)
    bar = tqdm(total=cfg.steps, initial=prog.step, desc=p.method.name, dynamic_ncols=True, **shown)
    p.fm.train()
    t0, base = time.perf_counter(), prog.seconds
    with (run_dir / LOG).open("a") if main else open(os.devnull, "w") as log:
        for step in range(prog.step, cfg.steps):
            x1 = to_device(distributed.shard(batches.next()), device)
            loss, logs = train_step(p, x1, step, cfg, autocast)
            prog.window[step % cfg.log_every] = loss.detach().float()
            prog.step, prog.seconds = step + 1, base + time.perf_counter() - t0
            bar.update(1)
            at_log = prog.step % cfg.log_every == 0 or prog.step == cfg.steps
            if at_log:  # before a stop: a run stopped at a log step keeps that step's line
                _log_window(log, prog, prog.step, cfg, p, logs, run_dir)
                bar.set_postfix(loss=f"{prog.last:.4g}")
            if distributed.stop_requested(at_log) and prog.step != cfg.steps:
                save_checkpoint(run_dir / CKPT, prog, p, batches)
                distributed.barrier()
                bar.close()
                raise Stopped(prog.step, cfg.steps)
            if at_log and (prog.step % cfg.ckpt_every == 0 or prog.step == cfg.steps):
                save_checkpoint(run_dir / CKPT, prog, p, batches)
            if on_step is not None:
                t_probe = time.perf_counter()
                _probe(on_step, prog, p, batches, run_dir, cfg.steps)
                t0 += time.perf_counter() - t_probe  # probes are not training time
    bar.close()
    return TrainResult(cfg.steps, cfg.steps * cfg.batch, prog.seconds, prog.last)
