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
import functools
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from benchmarks.base.atomic import atomic_open
from unify.ode import FIXED, SOLVERS

if TYPE_CHECKING:
    from benchmarks.base.schema import EvalCfg

FLOOR = "exact"
VELOCITIES = ("fm", "exact")  # trained teacher, oracle velocity
# the solvers of the baselines, from unify.ode.SOLVERS: fixed-step ones at the sweep's NFEs (each
# step costs FIXED[solver] network calls) and the adaptive one at its counted NFE
FIXED_BASELINES = ("euler", "heun")
STEP_COST = {s: FIXED[s] for s in FIXED_BASELINES}
(ADAPTIVE_SOLVER,) = (s for s in SOLVERS if s not in FIXED)
NA = "n/a"
KEY = ("method", "dataset", "seed", "nfe", "metric")
CONVERGENCE = "convergence.csv"  # a cell's (and a folder's) convergence rows
#: every metric a row can carry, with what it measures (all lower-is-better)
METRICS = {
    "flowmap_err": "mean |X_{0,1}(x0) - X*_{0,1}(x0)| against the exact map, same noise (oracle)",
    "flowmap_err_pd": "flowmap_err / sqrt(dimension): per-pixel map error (image oracles)",
    "sw2": "sliced W2 to the oracle's exact law (Sobol noise; floor: the exact row, ~1 % of scale)",
    "fd_pixel": "Frechet distance in pixel space to the oracle's exact mean and covariance",
    "w2": "exact W2 between the samples and held-out data (2D; floor: the exact row)",
    "fid": "FID with torch-fidelity's pt_inception-2015-12-05 weights",
    "fid_nonstd": "Frechet distance of Inception features from other weights: not an FID",
}
#: the published Inception weights' sha256 starts with the tag in their file name (torch.hub's
#: convention)
INCEPTION_SHA256_PREFIX = "6726825d"


def baseline(velocity: str, solver: str) -> str:
    """The row name of a velocity solved by an ODE solver, e.g. ``fm-heun``, ``exact-dopri5``."""
    return f"{velocity}-{solver}"


BASELINES = tuple(baseline(v, s) for v in VELOCITIES for s in (*FIXED_BASELINES, ADAPTIVE_SOLVER))


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


@functools.cache
def sha256_of(path: str) -> str:
    """Hex sha256 of a file (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fid_metric(weights_path: str | None) -> tuple[str, str]:
    """(metric name, feature-network tag) for FID computed with ``weights_path``.

    ``None`` means torch-fidelity's own download of the published weights: "fid". A file is
    identified by its sha256: the published weights give "fid", any other file "fid_nonstd"
    (a Frechet distance in some other feature space, never to be read as an FID).
    """
    if weights_path is None:
        return "fid", f"inception-2015-12-05 ({INCEPTION_SHA256_PREFIX})"
    digest = sha256_of(str(Path(weights_path).resolve()))
    if digest.startswith(INCEPTION_SHA256_PREFIX):
        return "fid", f"inception-2015-12-05 ({digest[:8]})"
    return "fid_nonstd", f"other weights ({digest[:8]})"


def metric_names(image: bool, oracle: bool, cfg: EvalCfg) -> tuple[str, ...]:
    """The metrics a cell of such a dataset reports, in row order."""
    fid = (fid_metric(cfg.fid_weights or None)[0],)
    if image:
        return ("flowmap_err_pd", "fd_pixel", *(fid if cfg.fid_weights else ())) if oracle else fid
    return ("flowmap_err", "sw2", "w2") if oracle else ("w2",)


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
    """A metrics csv with ``note`` kept as text (plain ``pd.read_csv`` turns "n/a" into NaN) and a
    ``value`` column even where no row has one (a folder whose every cell failed)."""
    df = pd.read_csv(path, keep_default_na=False, na_values=["", "nan", "NaN"])
    if "metric" in df and "value" not in df:
        df["value"] = float("nan")
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
