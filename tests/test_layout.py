"""The layout of the code: every import points one way, and no import cycle anywhere.

Layers, lowest first (a module may import its own package and any lower layer, nothing else):

0. ``unify``: the maths.
1. ``methods``: one loss per method over ``unify``'s FlowMap.
2. ``benchmarks.base``: leaves every stage uses (atomic writes, metrics rows, the stop flag, the
   one-line CLI parser, the run configuration's schema).
3. ``benchmarks.data``: the dataset registry, loaders, batches, the CIFAR-10 mixture oracle.
4. The stages beside one another, none importing another: ``benchmarks.training``,
   ``benchmarks.evaluation`` and ``benchmarks.report`` (which reads results folders, so reading
   results never loads training or evaluation).
5. Orchestration: the top-level modules of ``benchmarks`` (``run``, ``cells``, ``local``,
   ``config``), ``benchmarks.perf``, and ``benchmarks.cluster``, which only ``benchmarks.run``
   imports, inside its ``--launcher slurm|debug`` branch (submitit is not loaded otherwise).
6. ``paper_figures``: figures from results folders.

Every ``import`` statement counts, wherever it stands: at module level, under ``TYPE_CHECKING``
or inside a function.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("unify", "methods", "benchmarks", "paper_figures")
STAGES = ("benchmarks.training", "benchmarks.evaluation", "benchmarks.report")
ORCHESTRATION = ("benchmarks", "benchmarks.perf", "benchmarks.cluster")
RANKS = {
    "unify": 0,
    "methods": 1,
    "benchmarks.base": 2,
    "benchmarks.data": 3,
    **dict.fromkeys(STAGES, 4),
    **dict.fromkeys(ORCHESTRATION, 5),
    "paper_figures": 6,
}
MAX_TOP_LEVEL = 8  # .py files directly in benchmarks/, __init__.py included


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported project module, whether the import stands inside a function) of every import."""
    found = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((a.name, inner) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for a in child.names:  # ``from pkg import module`` imports pkg.module
                    sub = f"{child.module}.{a.name}"
                    found.append((sub if sub in MODULES else child.module, inner))
            visit(child, inner)

    visit(ast.parse(path.read_text()), False)
    return [(m, nested) for m, nested in found if m in MODULES]


GRAPH = {m: _imports(p) for m, p in MODULES.items()}


def _unit(module: str) -> str:
    """The layer unit of a module: its package in RANKS ("benchmarks" for the top-level ones)."""
    parts = module.split(".")
    if parts[0] == "benchmarks" and ".".join(parts[:2]) in RANKS:
        return ".".join(parts[:2])
    return parts[0]


def _closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for dep, _ in GRAPH[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_top_level_of_benchmarks_is_small() -> None:
    top = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for dep, _ in GRAPH[m]:
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_every_import_points_down() -> None:
    bad = []
    for m, deps in GRAPH.items():
        for dep, nested in deps:
            a, b = _unit(m), _unit(dep)
            if a == b or RANKS[a] > RANKS[b]:
                continue
            if RANKS[a] == RANKS[b] == 5 and b != "benchmarks.perf":
                if b != "benchmarks.cluster" or (m == "benchmarks.run" and nested):
                    continue
            bad.append(f"{m} ({a}) imports {dep} ({b})")
    assert not bad, bad


def test_cluster_is_imported_only_by_the_slurm_branch_of_run() -> None:
    users = {
        (m, nested)
        for m, deps in GRAPH.items()
        for dep, nested in deps
        if _unit(dep) == "benchmarks.cluster" and _unit(m) != "benchmarks.cluster"
    }
    assert users == {("benchmarks.run", True)}, users


def test_reading_results_imports_no_training() -> None:
    for m in [m for m in MODULES if _unit(m) == "benchmarks.report"]:
        loaded = {_unit(d) for d in _closure(m)}
        assert not loaded & {"benchmarks.training", "benchmarks.evaluation", *ORCHESTRATION}, m


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_run_does_not_load_submitit_and_status_loads_no_training() -> None:
    assert "submitit" not in _loaded_after("import benchmarks.run")
    loaded = _loaded_after("import benchmarks.report.status")
    readers = ("benchmarks.base", "benchmarks.data", "benchmarks.report")
    bad = {m for m in loaded if m.startswith("benchmarks.") and _unit(m) not in readers}
    assert not bad, sorted(bad)
    assert "submitit" not in loaded
