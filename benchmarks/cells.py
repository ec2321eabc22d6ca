"""One cell = one (method, seed): build the model, train (resuming), evaluate, write its rows.

A cell lives in ``<out>/<dataset>/runs/<method>-s<seed>/`` with ``config.json``, ``log.jsonl``,
``ckpt.pt`` and, once finished, ``metrics.csv`` (its presence marks the cell done).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from benchmarks import distributed
from benchmarks.config import ConfigError, RunConfig
from benchmarks.data import BatchSampler
from benchmarks.evaluate import Scorer, evaluate_exact, evaluate_method, evaluate_teacher
from benchmarks.nets import make_net
from benchmarks.problems import Problem
from benchmarks.report import read_rows, write_csv_atomic
from benchmarks.train import CKPT, TrainResult, train
from methods import METHODS, build_config
from unify import FlowMap, FlowMapTeacher, VelocityTeacher, make_interpolant
from unify.teacher import Teacher

TEACHER = "fm"  # the flow-matching method whose velocity is the ODE teacher and baseline
EXACT = "exact"  # the oracle floor row


@dataclass(frozen=True)
class Cell:
    method: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.method}-s{self.seed}"


def cell_dir(out: Path, cfg: RunConfig, cell: Cell) -> Path:
    return out / cfg.dataset / "runs" / cell.key


def cell_config(cfg: RunConfig, cell: Cell) -> dict:
    """What determines a cell's result: the run config less other methods' options."""
    d = cfg.to_dict()
    d["method"] = {cell.method: cfg.method.get(cell.method, {})}
    d["seed"] = cell.seed
    return d


def git_sha() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def check_cell(out: Path, cfg: RunConfig, cell: Cell, force: bool) -> str:
    """'done', 'resume' or 'new'; a stored config that differs needs --force (nothing is written)."""
    d = cell_dir(out, cfg, cell)
    stored = d / "config.json"
    if stored.exists() and not force:
        if json.loads(stored.read_text()) != json.loads(json.dumps(cell_config(cfg, cell))):
            raise ConfigError(
                f"{d} was run with a different configuration; rerun with --force to redo it"
            )
    if force or not stored.exists():
        return "new"
    return "done" if (d / "metrics.csv").exists() else ("resume" if (d / CKPT).exists() else "new")


def build_model(cfg: RunConfig, shape: tuple[int, ...]) -> FlowMap:
    n = cfg.net
    kw = {"hidden": n.hidden, "depth": n.depth} if n.kind == "mlp" else {"dropout": n.dropout}
    return FlowMap(make_net(n.kind, shape, **kw))


def load_teacher_checkpoint(
    path: Path, cfg: RunConfig, shape: tuple[int, ...], device: torch.device
) -> FlowMap:
    """The EMA weights of an fm checkpoint written by this harness."""
    fm = build_model(cfg, shape).to(device)
    state = torch.load(path, map_location=device, weights_only=False)
    fm.load_state_dict(state["ema"] if "ema" in state else state)
    fm.requires_grad_(False).eval()
    return fm


TEACHER_MAX_DT = 1 / 32  # a teacher ODE step is Heun with sub-steps of at most this length


def make_teacher(cfg: RunConfig, problem: Problem, teacher_fm: FlowMap | None) -> Teacher | None:
    """``exact``: the oracle's closed-form velocity; otherwise a trained fm's velocity v(x, t, t).

    Either way a teacher ODE step is Heun (the consistency-distillation solver) with sub-steps of
    at most ``TEACHER_MAX_DT``, so every distillation method sees the same kind of teacher.
    """
    interp = make_interpolant(cfg.interpolant)
    if cfg.teacher == "exact":
        oracle = problem.oracle

        def velocity(x, t):
            return oracle.velocity(x, t, interp)

        return VelocityTeacher(velocity, "heun", max_dt=TEACHER_MAX_DT)
    return None if teacher_fm is None else FlowMapTeacher(teacher_fm, "heun", max_dt=TEACHER_MAX_DT)


def run_cell(
    out: Path,
    cfg: RunConfig,
    cell: Cell,
    problem: Problem,
    teacher: Teacher | None,
    teacher_cost: tuple[int, float],
    device: torch.device,
    quiet: bool,
    force: bool,
    need_model: bool = False,
) -> tuple[pd.DataFrame, FlowMap | None]:
    """Train and evaluate one cell, or read a finished one back; returns (rows, EMA model).

    A finished cell is not retrained unless its model is needed (as a teacher) and its checkpoint
    is gone; then training reruns deterministically and the stored rows are kept.
    """
    d = cell_dir(out, cfg, cell)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    done = not force and (d / "metrics.csv").exists()
    if done and not need_model:
        return read_rows(d / "metrics.csv"), None
    if force and d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():  # data-parallel ranks > 0 write nothing
        tmp = d / ".config.json.tmp"
        tmp.write_text(json.dumps(cell_config(cfg, cell), indent=2, sort_keys=True))
        os.replace(tmp, d / "config.json")
    interp = make_interpolant(cfg.interpolant)
    scorer = Scorer(problem, interp, cfg.eval, cell.seed, out / cfg.dataset / "fid_cache", device)
    if cell.method == EXACT and not distributed.is_main():
        return pd.DataFrame(), None
    if cell.method == EXACT:
        rows = pd.DataFrame(evaluate_exact(scorer, cfg.eval.nfe))
        return _finish(d, rows, cfg, cell, TrainResult(0, 0, 0.0, 0.0), (0, 0.0)), None

    torch.manual_seed(cell.seed)  # the same initial weights for every method of a seed
    fm = build_model(cfg, problem.shape).to(device)
    ema = copy.deepcopy(fm).requires_grad_(False)
    cls = METHODS[cell.method]
    method = cls(
        build_config(cls, cfg.method.get(cell.method)),
        interp,
        teacher if cls.needs_teacher else None,
    )
    batches = BatchSampler(problem.train, cfg.train.batch, seed=cell.seed, hflip=cfg.data.hflip)
    result = train(method, fm, ema, batches, cfg.train, d, device, quiet)
    if not distributed.is_main():  # data-parallel ranks > 0 only train
        return pd.DataFrame(), None
    if done:
        return read_rows(d / "metrics.csv"), ema
    ema.eval()
    if cell.method == TEACHER:
        rows = evaluate_teacher(ema, scorer, cfg.eval.nfe)
    else:
        rows = evaluate_method(method, ema, scorer, cfg.eval.nfe)
    cost = teacher_cost if cls.needs_teacher else (0, 0.0)
    return _finish(d, pd.DataFrame(rows), cfg, cell, result, cost), ema


def _finish(
    d: Path, rows: pd.DataFrame, cfg: RunConfig, cell: Cell, result: TrainResult, teacher_cost
) -> pd.DataFrame:
    rows = rows.assign(
        dataset=cfg.dataset,
        seed=cell.seed,
        run=cell.key,
        budget=cfg.budget,
        train_steps=result.steps,
        train_images=result.images,
        train_seconds=round(result.seconds, 3),
        teacher_steps=teacher_cost[0],
        teacher_seconds=round(teacher_cost[1], 3),
        git_sha=git_sha(),
    )
    write_csv_atomic(rows, d / "metrics.csv")
    (d / "train.json").write_text(json.dumps(result.__dict__))
    return rows
