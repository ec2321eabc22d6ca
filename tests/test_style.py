"""House rules that a reviewer would otherwise check by hand: small files, short functions, no
private name imported across modules, no ``unittest.mock`` outside the tests."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("unify", "methods", "benchmarks", "paper_figures", "tests")
MAX_FILE, MAX_FUNCTION = 300, 60


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_files_and_functions_are_small() -> None:
    long_files, long_functions = [], []
    for path in _sources():
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE:
            long_files.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION:
                    long_functions.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n}"
                    )
    assert not long_files, long_files
    assert not long_functions, long_functions


def test_no_private_imports_across_modules_and_no_mock_in_the_code() -> None:
    bad = []
    for path in _sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top = node.module.split(".")[0]
                local = top in PACKAGES or (ROOT / "tests" / f"{top}.py").exists()
                private = [a.name for a in node.names if a.name.startswith("_")]
                if local and private:
                    bad.append(f"{path.relative_to(ROOT)}: from {node.module} import {private}")
                if node.module.startswith("unittest") and path.parts[-2] != "tests":
                    bad.append(f"{path.relative_to(ROOT)}: imports {node.module}")
            if isinstance(node, ast.Import) and path.relative_to(ROOT).parts[0] != "tests":
                bad += [
                    f"{path.relative_to(ROOT)}: import {a.name}"
                    for a in node.names
                    if a.name.startswith("unittest")
                ]
    assert not bad, bad
