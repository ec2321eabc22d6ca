"""The local launcher: cells one after another in this process (``--jobs 1``), or ``--jobs N`` at
once in worker processes (one GPU each on a multi-GPU machine, ``cpu_count // N`` threads each
on CPU). A distillation cell with a trained teacher starts once the fm cell of its seed is done.

Isolation: a cell that fails is recorded as failed and the others go on. Stopping: SIGINT and
SIGTERM stop every running cell at its current step, which is saved (``benchmarks.base.stop``);
workers ignore the terminal's SIGINT and are told once per signal the launcher receives, so a
second Ctrl-C is ignored while checkpoints are written and a third exits at once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import torch

from benchmarks.base import stop
from benchmarks.base.atomic import read_json
from benchmarks.cells import TEACHER, Cell, cell_dir, run_cell
from benchmarks.config import RunConfig
from benchmarks.report.folders import STATE
from benchmarks.training.factory import wants_trained_teacher
from methods import METHODS


@dataclass(frozen=True)
class CellSpec:
    """What one task runs: a cell of a run config, written under ``out``."""

    out: str
    cfg: RunConfig
    cell: Cell
    device: str = "auto"

    @property
    def dir(self) -> Path:
        return cell_dir(Path(self.out), self.cfg, self.cell)

    def needs_trained_teacher(self) -> bool:
        """Waits for the run's fm cell (``teacher: auto``): to distil from or to start from."""
        m = self.cell.method
        return self.cfg.teacher == "auto" and m in METHODS and wants_trained_teacher(self.cfg, m)


def device_for(name: str, slot: int = 0) -> torch.device:
    """``auto``: the slot's GPU when there are GPUs, else the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device(f"cuda:{slot % max(1, torch.cuda.device_count())}")


def phases(specs: list[CellSpec]) -> list[list[CellSpec]]:
    """[cells that need no trained teacher (fm first), the distillation cells that do]."""
    first = sorted(
        (s for s in specs if not s.needs_trained_teacher()), key=lambda s: s.cell.method != TEACHER
    )
    return [p for p in (first, [s for s in specs if s.needs_trained_teacher()]) if p]


def _ready(spec: CellSpec, busy: list[CellSpec]) -> bool:
    """Runnable now: its teacher cell (if any) is neither waiting to run nor running."""
    if not spec.needs_trained_teacher():
        return True
    teacher = Cell(TEACHER, spec.cell.seed)
    return not any(s.cell == teacher and s.out == spec.out for s in busy)


def _state(spec: CellSpec) -> dict:
    return read_json(spec.dir / STATE)


def run_local(
    specs: list[CellSpec], *, jobs: int = 1, quiet: bool = True, debug: bool = False
) -> list[tuple[CellSpec, dict]]:
    """Run the cells; returns (spec, final state) of each cell that ran or was stopped."""
    stop.reset()
    with stop.handle():
        if jobs <= 1:
            return _in_process(specs, quiet, debug)
        return _workers(specs, jobs, quiet, debug)


def _in_process(specs, quiet, debug) -> list[tuple[CellSpec, dict]]:
    done = []
    for spec in (s for p in phases(specs) for s in p):
        try:
            state = run_cell(
                out=Path(spec.out),
                cfg=spec.cfg,
                cell=spec.cell,
                device=device_for(spec.device),
                quiet=quiet,
                debug=debug,
            )
        except stop.Stopped:
            done.append((spec, _state(spec)))
            break
        done.append((spec, state))
    return done


def _worker(spec: CellSpec, slot: int, jobs: int, quiet: bool, debug: bool) -> None:
    """A worker process: one cell; exit 128 + signal when stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the launcher relays stops as SIGTERM
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))
    with stop.handle((signal.SIGTERM,)):
        try:
            run_cell(
                out=Path(spec.out),
                cfg=spec.cfg,
                cell=spec.cell,
                position=slot,
                device=device_for(spec.device, slot),
                quiet=quiet,
                debug=debug,
            )
        except stop.Stopped:  # a normal exit: multiprocessing's finalizers release semaphores
            raise SystemExit(stop.exit_code()) from None


def _workers(specs, jobs, quiet, debug) -> list[tuple[CellSpec, dict]]:
    ctx = mp.get_context("spawn")
    pending = [s for p in phases(specs) for s in p]
    running: dict = {}  # process -> (spec, slot)
    done, relayed = [], 0
    while pending or running:
        free = sorted(set(range(jobs)) - {slot for _, slot in running.values()})
        busy = pending + [spec for spec, _ in running.values()]
        for spec in [s for s in pending if _ready(s, busy)]:
            if stop.STOP.is_set() or not free:
                break
            slot = free.pop(0)
            proc = ctx.Process(target=_worker, args=(spec, slot, jobs, quiet, debug))
            proc.start()
            running[proc] = (spec, slot)
            pending.remove(spec)
        if stop.STOP.is_set():
            pending.clear()
            for _ in range(relayed, stop.count()):  # tell every worker once per signal
                for proc in running:
                    if proc.is_alive():
                        os.kill(proc.pid, signal.SIGTERM)
            relayed = stop.count()
        for sentinel in wait([p.sentinel for p in running], timeout=0.5):
            proc = next(p for p in running if p.sentinel == sentinel)
            proc.join()
            spec, _ = running.pop(proc)
            done.append((spec, _state(spec)))
    return done
