"""Metrics rows on disk: atomic writes, a lock for concurrent jobs, merge by key."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import pandas as pd

ADAPTIVE = "fm-dopri5"
KEY = ("method", "dataset", "seed", "nfe", "metric")


@contextlib.contextmanager
def _atomic(path: Path, mode: str = "w") -> Iterator[IO]:
    """Open a temp file next to ``path``; on success fsync and ``os.replace`` it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_text(path: Path, text: str) -> Path:
    with _atomic(path) as f:
        f.write(text)
    return path


def write_csv_atomic(df: pd.DataFrame, path: str | Path) -> Path:
    """``df.to_csv(path, index=False)``, atomically."""
    with _atomic(Path(path)) as f:
        df.to_csv(f, index=False)
    return Path(path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (a hidden sidecar file) so concurrent jobs do not lose rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_rows(path: str | Path) -> pd.DataFrame:
    """Read a metrics csv keeping ``note == "n/a"`` (plain ``pd.read_csv`` turns it into NaN)."""
    return pd.read_csv(path, keep_default_na=False, na_values=["", "nan", "NaN"])


def update_rows(path: Path, new_rows: pd.DataFrame, key: Sequence[str] = KEY) -> pd.DataFrame:
    """Merge ``new_rows`` into the csv at ``path`` by ``key`` (new wins), sort, write atomically.

    fm-dopri5's ``nfe`` is its counted NFE, which may change between runs, so it is not part of
    that method's key. Returns the merged rows.
    """
    path, key = Path(path), list(key)
    with _locked(path):
        both = new_rows.copy()
        if path.exists():
            both = pd.concat([read_rows(path), new_rows], ignore_index=True)
        k = both[key].copy()
        if "nfe" in key and "method" in both:
            k.loc[both["method"] == ADAPTIVE, "nfe"] = -1
        merged = both[~k.duplicated(keep="last")]
        order = [c for c in ("dataset", "metric", "method", "nfe", "seed") if c in merged]
        merged = merged.sort_values(order, kind="stable").reset_index(drop=True)
        write_csv_atomic(merged, path)
    return merged
