"""The one way files are written: a temporary file in the same folder, fsync, then ``os.replace``.

A reader sees the old file or the new one, never a part of either; a process killed mid-write
leaves at most a hidden ``.<name>.*.tmp`` beside it, which ``clean_partial`` removes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success fsync and move it over ``path``."""
    path = Path(path)
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


def write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def read_json(path: str | Path) -> dict:
    """The JSON object at ``path``, or ``{}`` when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def save_torch(obj: Any, path: str | Path) -> Path:
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def clean_partial(folder: str | Path) -> None:
    """Remove the temporary files a killed process may have left in ``folder``."""
    for p in Path(folder).glob(".*.tmp"):
        p.unlink(missing_ok=True)
