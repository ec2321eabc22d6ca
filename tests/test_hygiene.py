"""Repository hygiene: short method docstrings, and no reference to files outside the repository.

(a) Every registered method's class docstring (and the ``Method`` contract's) has at most
    ``MAX_DOC_LINES`` lines: the equation, the source, the published defaults kept and the
    deviations. Design notes, derivations and measurements belong in docs/methods.md.
(b) No file tracked by git names the private method notes or the folder beside the clone that
    holds them: a user of the repository has neither, so every source is cited by its public
    name (paper and arXiv id, or repository and file) and every translation is in docs/methods.md.
"""

from __future__ import annotations

import inspect
import shutil
import subprocess
from pathlib import Path

import pytest

from methods import METHODS
from methods.base import Method

ROOT = Path(__file__).resolve().parent.parent
MAX_DOC_LINES = 15
# assembled here so that this file does not itself contain the strings it forbids
FORBIDDEN = ("METHODS" + "_SPEC", ".." + "/shared")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_docstring_is_short(name: str) -> None:
    cls = METHODS[name]
    assert cls.__doc__, f"{name}: {cls.__name__} has no docstring"
    n = len(inspect.cleandoc(cls.__doc__).splitlines())
    assert n <= MAX_DOC_LINES, (
        f"{name}: {cls.__name__} docstring has {n} lines (at most {MAX_DOC_LINES}); move design "
        "notes, derivations and measurements to docs/methods.md"
    )


def test_method_contract_docstring_is_short() -> None:
    assert Method.__doc__
    assert len(inspect.cleandoc(Method.__doc__).splitlines()) <= MAX_DOC_LINES


def _tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no tracked files to check")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [ROOT / p for p in out.decode().split("\0") if p]


def _text(path: Path) -> str | None:
    """The file's text, or None for a binary (a NUL byte in its first 8 KiB, as git decides) or
    a tracked file missing from the working tree."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def test_no_reference_outside_the_repository() -> None:
    offenders = []
    for path in _tracked_files():
        text = _text(path)
        if text is None:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            hits = [s for s in FORBIDDEN if s in line]
            if hits:
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {', '.join(hits)}")
    assert not offenders, (
        "tracked files cite what users do not have; cite the public source and put "
        "translations in docs/methods.md:\n" + "\n".join(offenders)
    )
