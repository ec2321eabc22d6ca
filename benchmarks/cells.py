"""One cell = one (method, seed): build, train (resuming), evaluate, write its files.

A cell lives in ``<out>/<dataset>/runs/<method>-s<seed>/``: ``config.json``, ``state.json``
(running, stopped, failed with its reason, done), ``log.jsonl``, ``ckpt.pt``, and once finished
``train.json``, ``samples.npz`` and last ``metrics.csv``, whose presence marks the cell done.
A cell that raises is recorded as failed (``error.log`` keeps the traceback) and the launcher goes
on with the others; a stop request (Ctrl-C, SIGTERM, Slurm's SIGUSR2) is not a failure: the
checkpoint holds the exact step and the rerun resumes there. The names of these files, and the
reading of a cell's rows, are ``benchmarks.report.folders``'.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from benchmarks.base.atomic import read_json, write_json, write_text
from benchmarks.base.rows import FLOOR, write_csv
from benchmarks.base.stop import Stopped
from benchmarks.config import ConfigError, RunConfig
from benchmarks.data import registry
from benchmarks.data.batches import BatchSampler
from benchmarks.data.registry import Problem
from benchmarks.evaluation.convergence import prober
from benchmarks.evaluation.evaluate import (
    Evaluation,
    evaluate_exact,
    evaluate_method,
    evaluate_teacher,
)
from benchmarks.evaluation.scorer import Scorer
from benchmarks.report.folders import CONFIG, ERROR_LOG, METRICS, STATE, stored_config
from benchmarks.training import distributed, factory
from benchmarks.training.flops import cell_flops
from benchmarks.training.loop import CKPT, NonFiniteLoss, TrainResult, train
from methods import METHODS
from unify import Interpolant

TEACHER = "fm"  # the flow-matching method whose velocity is the trained teacher and baseline
KEPT = ("job_id", "task", "host", "requeues", "stopped_at")  # launcher history in state.json


class TeacherUnavailable(RuntimeError):
    """A distillation cell's trained teacher (the fm cell of its seed) has not finished."""


@dataclass(frozen=True)
class Cell:
    method: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.method}-s{self.seed}"


def cell_dir(out: Path, cfg: RunConfig, cell: Cell) -> Path:
    return Path(out) / cfg.dataset / "runs" / cell.key


FLOOR_KEYS = ("dataset", "data_root", "data", "eval", "interpolant")  # all the exact floor uses


def cell_config(cfg: RunConfig, cell: Cell) -> dict:
    """What determines a cell's result: the run config less other methods' options (the exact
    floor trains nothing: its data, evaluation and interpolant only)."""
    d = cfg.to_dict()
    d["method"] = {cell.method: d["method"].get(cell.method, {})}
    if cell.method == FLOOR:
        d = {k: d[k] for k in FLOOR_KEYS}
    d["seed"] = cell.seed
    return json.loads(json.dumps(d))


def plan(cfg: RunConfig, names: list[str], seeds: list[int]) -> list[Cell]:
    """Cells in run order: the fm teacher first when auto-distillation needs it, the exact floor."""
    needs = any(factory.wants_trained_teacher(cfg, m) for m in names)
    teach = TEACHER in names or (needs and cfg.teacher == "auto")
    order = ([TEACHER] if teach else []) + [m for m in names if m != TEACHER]
    order += [FLOOR] if registry.get(cfg.dataset).has_oracle else []
    return [Cell(m, s) for s in seeds for m in order]


def git_sha() -> str:
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "--short", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def status(out: Path, cfg: RunConfig, cell: Cell, force: bool = False) -> str:
    """'done', 'failed' (retried: resumes from its checkpoint), 'redo' (failed under another
    configuration: starts afresh), 'resume' or 'new'. A finished or resumable cell whose stored
    config differs needs --force: ConfigError, nothing written."""
    d = cell_dir(out, cfg, cell)
    if force or not (d / CONFIG).exists():
        return "new"
    failed = not (d / METRICS).exists() and read_json(d / STATE).get("state") == "failed"
    if stored_config(d) != cell_config(cfg, cell):
        if failed:
            return "redo"  # a failed cell under a new configuration starts afresh
        raise ConfigError(f"{d} was run with a different configuration; rerun with --force")
    if (d / METRICS).exists():
        return "done"
    return "failed" if failed else ("resume" if (d / CKPT).exists() else "new")


def teacher_for(
    out: Path,
    cfg: RunConfig,
    cell: Cell,
    problem: Problem,
    interp: Interpolant,
    device: torch.device,
):
    """(teacher, (teacher steps, teacher seconds)) of a cell: the velocity it distils from, or the
    trained network it only starts from; (None, (0, 0)) when it needs neither."""
    cls = METHODS[cell.method]
    if not (cls.needs_teacher or factory.wants_trained_teacher(cfg, cell.method)):
        return None, (0, 0.0)
    if cfg.teacher == "exact":
        return factory.teacher(cfg, problem, interp, None), (0, 0.0)
    if cfg.teacher != "auto":
        fm = factory.load_weights(Path(cfg.teacher), cfg, problem.shape, device)
        return factory.teacher(cfg, problem, interp, fm), (0, 0.0)
    tdir = cell_dir(out, cfg, Cell(TEACHER, cell.seed))
    if not (tdir / METRICS).exists() or not (tdir / CKPT).exists():
        raise TeacherUnavailable(f"teacher {TEACHER}-s{cell.seed} has not finished ({tdir})")
    fm = factory.load_weights(tdir / CKPT, cfg, problem.shape, device)
    done = json.loads((tdir / "train.json").read_text())
    return factory.teacher(cfg, problem, interp, fm), (done["steps"], done["seconds"])


def run_cell(
    *,
    out: Path,
    cfg: RunConfig,
    cell: Cell,
    device: torch.device,
    quiet: bool = True,
    position: int | None = None,
    debug: bool = False,
) -> dict:
    """Train and evaluate one cell (or only retrain a finished teacher whose checkpoint is gone);
    returns the state written to ``state.json``. Failures are recorded, not raised (``debug``:
    raised after recording); :class:`Stopped` is recorded and raised."""
    d = cell_dir(out, cfg, cell)
    main = distributed.is_main()
    if main and stored_config(d) not in ({}, cell_config(cfg, cell)):
        reset(d)  # a failed cell rerun under a new configuration (launchers check the rest)
    if main:
        d.mkdir(parents=True, exist_ok=True)
        write_json(d / CONFIG, cell_config(cfg, cell))
        here = {"pid": os.getpid(), "host": socket.gethostname()}
        _record(d, {"state": "running", **here}, main)
    try:
        state = _run(out, cfg, cell, device, quiet, position)
    except Stopped as e:  # step -1: stopped in evaluation, after training
        step = e.step if e.step >= 0 else cfg.train.steps
        state = {"state": "stopped", "step": step, "total": cfg.train.steps}
        _record(d, state, main)
        raise
    except Exception as e:
        state = _failure(e, cfg)
        _record(d, state, main, traceback.format_exc())
        if debug:
            raise
        return state
    _record(d, state, main)
    return state


def _record(d: Path, state: dict, main: bool, tb: str = "") -> None:
    """Write ``state.json``: the new state, keeping only a launcher's history (job, requeues)."""
    if main:
        old = read_json(d / STATE)
        kept = {k: old[k] for k in KEPT if k in old}
        write_json(d / STATE, {**kept, **state, "time": time.time()})
        if tb:
            write_text(d / ERROR_LOG, tb)


def _failure(e: Exception, cfg: RunConfig) -> dict:
    """The failed state of a cell: kind, error class, one-line reason, step when known."""
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if isinstance(e, NonFiniteLoss):
        return {
            "state": "failed",
            "kind": "diverged",
            "error": type(e).__name__,
            "reason": reason,
            "step": e.step,
            "total": cfg.train.steps,
        }
    if isinstance(e, torch.OutOfMemoryError):
        reason = "out of memory"
    return {"state": "failed", "kind": "error", "error": type(e).__name__, "reason": reason}


def _run(out, cfg, cell, device, quiet, position) -> dict:
    d = cell_dir(out, cfg, cell)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    problem = factory.load_problem(cfg, cell.seed)
    if problem.info and distributed.is_main():
        write_json(d / CONFIG, {**cell_config(cfg, cell), "problem": problem.info})
    interp = factory.interpolant(cfg)  # the cell's one interpolant: teacher, method, scorer
    scorer = Scorer(problem, interp, cfg.eval, cell.seed, Path(out) / cfg.dataset / "cache", device)
    if cell.method == FLOOR:
        if distributed.is_main():
            result = TrainResult(0, 0, 0.0, 0.0)
            _finish(d, evaluate_exact(scorer, FLOOR), cfg, cell, result, {"weights": "exact map"})
        return {"state": "done"}
    teacher, cost = teacher_for(out, cfg, cell, problem, interp, device)
    x1 = BatchSampler(problem.train, cfg.train.batch, seed=cell.seed).next().to(device)
    flops = cell_flops(cfg, cell.method, problem.shape, teacher, device, interp, x1)  # all ranks:
    # the counted steps all-reduce their gradients like any step
    torch.manual_seed(cell.seed)  # the same initial weights for every method of a seed
    p = factory.parts(cfg, cell.method, problem.shape, teacher, device, interp)
    about = provenance(cfg, cell, p.method.init, p.ema_law.describe())
    on_step = None
    if distributed.is_main() and cfg.eval.convergence:
        extra = dict(dataset=cfg.dataset, seed=cell.seed, run=cell.key, **about)
        on_step = prober(d, p.method, p.ema, scorer, cfg.train.steps, extra)
    batches = BatchSampler(problem.train, cfg.train.batch, seed=cell.seed, hflip=cfg.data.hflip)
    result = train(
        p, batches, cfg.train, d, device, quiet=quiet, position=position, on_step=on_step
    )
    if not distributed.is_main() or (d / METRICS).exists():  # ranks > 0, or a teacher retrained
        return {"state": "done"}
    p.ema.eval()
    if cell.method == TEACHER:
        ev = evaluate_teacher(p.method, p.ema, scorer)
    else:
        ev = evaluate_method(p.method, p.ema, scorer)
    _finish(d, ev, cfg, cell, result, about, cost, flops)
    return {"state": "done"}


def provenance(cfg: RunConfig, cell: Cell, init: str, weights: str) -> dict[str, str]:
    """What a row was learned from and how it was scored: ``teacher`` (the velocity distilled:
    "exact", "fm", or "" for data-only methods), ``init`` and ``weights`` (the scored EMA)."""
    needs = METHODS[cell.method].needs_teacher
    teacher = ("exact" if cfg.teacher == "exact" else "fm") if needs else ""
    return {"teacher": teacher, "init": init, "weights": weights}


def _finish(
    d: Path,
    ev: Evaluation,
    cfg: RunConfig,
    cell: Cell,
    result: TrainResult,
    about: dict,
    teacher_cost: tuple[int, float] = (0, 0.0),
    flops: tuple[float, float] = (0.0, 0.0),
) -> None:
    """Write samples, train.json, then metrics.csv (last: it marks the cell done)."""
    rows = pd.DataFrame(ev.rows).assign(
        dataset=cfg.dataset,
        seed=cell.seed,
        run=cell.key,
        budget=cfg.budget,
        **about,
        train_steps=result.steps,
        train_images=result.images,
        train_seconds=round(result.seconds, 3),
        train_flops=flops[0],
        train_flops_once=flops[1],
        teacher_steps=teacher_cost[0],
        teacher_seconds=round(teacher_cost[1], 3),
        git_sha=git_sha(),
    )
    ev.save(d)
    write_json(d / "train.json", result.__dict__)
    write_csv(rows, d / METRICS)


def reset(d: Path) -> None:
    """Forget a cell (``--force``)."""
    shutil.rmtree(d, ignore_errors=True)
