"""Metrics rows: their vocabulary (baseline names, notes) and their files (lock, merge by key).

A row: ``method, dataset, seed, nfe, metric, value, n_samples, sample_seconds, note, weights,
teacher, init, train_*, teacher_*, budget, run, git_sha``. Every metric is lower-is-better.
``note`` is empty for a number, ``n/a`` where a method cannot sample at that NFE, and
``diverged (step N)`` or ``failed (reason)`` for every row of a cell that did not finish.

Baselines are named ``<velocity>-<solver>``: the velocity is ``fm`` (the trained teacher) or
``exact`` (an oracle's closed form), the solver a fixed-step one at the sweep's NFEs or the
adaptive one at its counted NFE. ``exact`` alone is the floor: the exact flow map of the
evaluation noise, scored like a method.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from benchmarks.atomic import atomic_open

FLOOR = "exact"
VELOCITIES = ("fm", "exact")  # trained teacher, oracle velocity
SOLVERS = ("euler", "heun")  # fixed-step baselines: (solver, network calls per step)
STEP_COST = {"euler": 1, "heun": 2}
ADAPTIVE_SOLVER = "dopri5"
NA = "n/a"
KEY = ("method", "dataset", "seed", "nfe", "metric")


def baseline(velocity: str, solver: str) -> str:
    """The row name of a velocity solved by an ODE solver, e.g. ``fm-heun``, ``exact-dopri5``."""
    return f"{velocity}-{solver}"


BASELINES = tuple(baseline(v, s) for v in VELOCITIES for s in (*SOLVERS, ADAPTIVE_SOLVER))


def is_baseline(method: str) -> bool:
    """A solver baseline or the exact floor: not a learned method."""
    return method in BASELINES or method == FLOOR


def is_adaptive(method: str) -> bool:
    """A baseline whose ``nfe`` is the count of an adaptive solve (one column, "adaptive")."""
    return method in BASELINES and method.endswith(f"-{ADAPTIVE_SOLVER}")


def velocity_of(method: str) -> str:
    """``fm`` or ``exact`` for a solver baseline (ValueError otherwise)."""
    if method not in BASELINES:
        raise ValueError(f"{method!r} is not a solver baseline; baselines: {', '.join(BASELINES)}")
    return method.rsplit("-", 1)[0]


def failure_note(kind: str, step: int | None, reason: str) -> str:
    """The note of every row of a cell that did not finish."""
    if kind == "diverged":
        return f"diverged (step {step})"
    return f"failed ({reason})"


def is_failure(note: str) -> bool:
    return str(note).startswith(("diverged", "failed"))


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """``df.to_csv(path, index=False)``, atomically."""
    with atomic_open(path) as f:
        df.to_csv(f, index=False)
    return Path(path)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (a hidden sidecar file) so concurrent jobs do not lose rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_rows(path: str | Path) -> pd.DataFrame:
    """A metrics csv with ``note`` kept as text (plain ``pd.read_csv`` turns "n/a" into NaN)."""
    df = pd.read_csv(path, keep_default_na=False, na_values=["", "nan", "NaN"])
    if "note" in df:
        df["note"] = df["note"].astype(object).where(df["note"].notna(), "").astype(str)
    return df


def _dedup_key(rows: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """The key columns, with an adaptive baseline's counted NFE (which may change) left out."""
    k = rows[key].copy()
    if "nfe" in key and "method" in rows:
        k.loc[rows["method"].map(is_adaptive).astype(bool), "nfe"] = -1
    return k


def update_rows(path: Path, new_rows: pd.DataFrame, key: Sequence[str] = KEY) -> pd.DataFrame:
    """Merge ``new_rows`` into the csv at ``path`` by ``key`` (new wins), sort, write atomically.

    Old failure rows of a cell (``run``) that has new rows are dropped, so a cell that failed
    before and finished now leaves no failure note behind. Returns the merged rows.
    """
    path, key = Path(path), list(key)
    with locked(path):
        old = read_rows(path) if path.exists() else new_rows.iloc[:0]
        if len(old) and "run" in old and "run" in new_rows and "note" in old:
            stale = old["run"].isin(set(new_rows["run"])) & old["note"].map(is_failure)
            old = old[~stale]
        both = pd.concat([old, new_rows], ignore_index=True)
        merged = both[~_dedup_key(both, key).duplicated(keep="last")]
        order = [c for c in ("dataset", "metric", "method", "nfe", "seed") if c in merged]
        merged = merged.sort_values(order, kind="stable").reset_index(drop=True)
        write_csv(merged, path)
    return merged
