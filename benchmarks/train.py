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
from torch import nn
from tqdm import tqdm

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
    opt = make_optimizer(fm.parameters(), cfg)
    warm = max(1, cfg.warmup)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warm))
    method.setup(fm, cfg.steps)
    start, seconds, last = 0, 0.0, float("nan")
    if (run_dir / CKPT).exists():
        state = torch.load(run_dir / CKPT, map_location=device, weights_only=False)
        fm.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        method.load_state_dict(state["method"])
        batches.load_state_dict(state["data"])
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start, seconds, last = state["step"], state["seconds"], state["loss"]
    _truncate_log(run_dir / LOG, start)
    if start >= cfg.steps:
        return TrainResult(start, start * cfg.batch, seconds, last)

    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    window = torch.zeros(cfg.log_every, device=device)
    bar = tqdm(total=cfg.steps, initial=start, desc=method.name, disable=quiet, dynamic_ncols=True)
    fm.train()
    t0 = time.perf_counter()
    with (run_dir / LOG).open("a") as log:
        for step in range(start, cfg.steps):
            x1 = batches.next().to(device, non_blocking=True)
            with autocast:
                loss, logs = method.loss(fm, x1, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip > 0:
                nn.utils.clip_grad_norm_(fm.parameters(), cfg.clip)
            opt.step()
            sched.step()
            ema_update(ema, fm, cfg.ema)
            method.after_step(fm, step)
            window[step % cfg.log_every] = loss.detach().float()
            bar.update(1)
            done = step + 1
            if done % cfg.log_every and done != cfg.steps:
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
                state = {
                    "step": done,
                    "seconds": elapsed,
                    "loss": last,
                    "model": fm.state_dict(),
                    "ema": ema.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "method": method.state_dict(),
                    "data": batches.state_dict(),
                    "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                }
                atomic_save(state, run_dir / CKPT)
    bar.close()
    return TrainResult(cfg.steps, cfg.steps * cfg.batch, seconds + time.perf_counter() - t0, last)
