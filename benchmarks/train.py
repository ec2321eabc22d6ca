"""THE training loop. It knows no method: loss -> backward -> clip -> step -> EMA -> after_step.

Checkpoints (model, EMA, optimiser, scheduler, method state, data sampler, RNG) are written every
``ckpt_every`` steps atomically (temporary file + ``os.replace``), so a killed run resumes from the
last one and continues bit-for-bit as if uninterrupted. Losses stay on the device and are read
every ``log_every`` steps (no host sync per step); a non-finite one stops the run with an error
naming method, step and value, before any checkpoint could store the damage.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from benchmarks import distributed
from benchmarks.config import TrainCfg
from benchmarks.data import BatchSampler
from methods.base import Method, ema_update

CKPT = "ckpt.pt"
LOG = "log.jsonl"


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainResult:
    steps: int
    images: int
    seconds: float  # training wall time, summed over resumed segments
    final_loss: float


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def clean_partial(run_dir: Path) -> None:
    """Remove temporary files a killed process may have left."""
    for p in run_dir.glob(".*.tmp"):
        p.unlink()


def make_optimizer(params, cfg: TrainCfg) -> torch.optim.Optimizer:
    cls = {"adam": torch.optim.Adam, "radam": torch.optim.RAdam, "adamw": torch.optim.AdamW}
    return cls[cfg.optimizer](params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (they will be written again)."""
    if not path.exists():
        return
    keep = [
        ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= last_step
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{ln}\n" for ln in keep))
    os.replace(tmp, path)


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


def prepare_model(
    fm: nn.Module, others: list[nn.Module], cfg: TrainCfg, device: torch.device
) -> None:
    """In place, before the first step: on CUDA, convolutional nets (``fm`` and ``others``: its EMA,
    the method's target networks) take channels-last weights; with ``cfg.compile``, ``fm.net`` is
    compiled by ``nn.Module.compile`` (parameter names, hence checkpoints, are unchanged) and so
    are the jvps of ``unify.flowmap`` through ``fm.compile_jvp``."""
    if device.type == "cuda":
        for m in (fm, *others):
            if any(isinstance(c, nn.Conv2d) for c in m.modules()):
                m.to(memory_format=torch.channels_last)
    if cfg.compile:
        fm.net.compile()
        fm.compile_jvp = True


def train_step(
    method: Method,
    fm: nn.Module,
    ema: nn.Module,
    x1: Tensor,
    step: int,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    cfg: TrainCfg,
    autocast: contextlib.AbstractContextManager,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One training step: loss -> backward -> clip -> step -> lr schedule -> EMA -> after_step.

    Nothing here reads a value back to the host; the loss and logs are returned on the device.
    """
    with autocast:
        loss, logs = method.loss(fm, x1, step)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    loss = distributed.sync_grads(fm, loss)  # mean over data-parallel ranks; 1 rank: unchanged
    if cfg.clip > 0:
        nn.utils.clip_grad_norm_([*fm.parameters(), *method.parameters()], cfg.clip)
    opt.step()
    sched.step()
    ema_update(ema, fm, cfg.ema)
    method.after_step(fm, step)
    return loss, logs


def save_checkpoint(
    path: Path, done: int, elapsed: float, last: float, parts: dict, window
) -> None:
    """Everything a resumed run needs to continue bit for bit from step ``done``.

    Collective when several ranks train (their generator states are gathered); rank 0 writes.
    """
    rngs = distributed.rng_states()
    if not distributed.is_main():
        return
    state = {"step": done, "seconds": elapsed, "loss": last, "window": window.cpu()}
    state.update({k: v.state_dict() for k, v in parts.items()})
    state.update(rng=rngs[0][0], cuda_rng=rngs[0][1], rng_ranks=rngs if len(rngs) > 1 else None)
    atomic_save(state, path)


# ---------------------------------------------------------------- the loop
def train(
    method: Method,
    fm: nn.Module,
    ema: nn.Module,
    batches: BatchSampler,
    cfg: TrainCfg,
    run_dir: Path,
    device: torch.device,
    quiet: bool = False,
) -> TrainResult:
    """Train ``fm`` with ``method`` for ``cfg.steps`` steps, resuming from ``run_dir/ckpt.pt``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    clean_partial(run_dir)
    method.setup(fm, cfg.steps)  # first: it may build trainable heads (method.parameters())
    opt = make_optimizer([*fm.parameters(), *method.parameters()], cfg)
    warm = max(1, cfg.warmup)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warm))
    start, seconds, last, window = 0, 0.0, float("nan"), None
    if (run_dir / CKPT).exists():
        state = torch.load(run_dir / CKPT, map_location=device, weights_only=False)
        fm.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        method.load_state_dict(state["method"])
        batches.load_state_dict(state["data"])
        distributed.set_rng_state(state)
        start, seconds, last = state["step"], state["seconds"], state["loss"]
        window = state.get("window")  # losses of a log window cut by a stop request
    else:
        distributed.seed_ranks()
    if distributed.is_main():
        _truncate_log(run_dir / LOG, start)
    if start >= cfg.steps:
        return TrainResult(start, start * cfg.batch, seconds, last)

    prepare_model(fm, [ema, *method.nets.values()], cfg, device)
    autocast = autocast_for(device)
    window = torch.zeros(cfg.log_every, device=device) if window is None else window.to(device)
    parts = dict(model=fm, ema=ema, opt=opt, sched=sched, method=method, data=batches)
    quiet = quiet or not distributed.is_main()
    bar = tqdm(total=cfg.steps, initial=start, desc=method.name, disable=quiet, dynamic_ncols=True)
    fm.train()
    t0 = time.perf_counter()
    with (run_dir / LOG).open("a") if distributed.is_main() else open(os.devnull, "w") as log:
        for step in range(start, cfg.steps):
            x1 = to_device(distributed.shard(batches.next()), device)
            loss, logs = train_step(method, fm, ema, x1, step, opt, sched, cfg, autocast)
            window[step % cfg.log_every] = loss.detach().float()
            bar.update(1)
            done = step + 1
            at_log = done % cfg.log_every == 0 or done == cfg.steps
            if distributed.stop_requested(at_log) and done != cfg.steps:
                elapsed = seconds + time.perf_counter() - t0
                save_checkpoint(run_dir / CKPT, done, elapsed, last, parts, window)
                distributed.barrier()
                raise distributed.Preempted(done)
            if not at_log:
                continue
            n = (step % cfg.log_every) + 1
            values = window[:n].tolist()
            for i, v in enumerate(values):
                if not torch.isfinite(torch.tensor(v)):
                    raise NonFiniteLoss(
                        f"method {method.name!r}: loss = {v} at step {done - n + i}; "
                        f"the last good checkpoint is kept in {run_dir / CKPT}"
                    )
            last = sum(values) / n
            elapsed = seconds + time.perf_counter() - t0
            entry = {"step": done, "loss": last, "lr": sched.get_last_lr()[0], "seconds": elapsed}
            entry.update({k: float(v) for k, v in logs.items()})
            log.write(json.dumps(entry) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{last:.4g}")
            if done % cfg.ckpt_every == 0 or done == cfg.steps:
                save_checkpoint(run_dir / CKPT, done, elapsed, last, parts, window)
    bar.close()
    return TrainResult(cfg.steps, cfg.steps * cfg.batch, seconds + time.perf_counter() - t0, last)
