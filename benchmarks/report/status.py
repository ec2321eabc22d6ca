"""One line per cell under a folder: done, failed (with its reason), stopped, running, pending.

    python -m benchmarks.report.status DIR

Works on local runs and Slurm sweeps alike. A cell's state comes from its files (``metrics.csv``
= done; ``state.json`` written by the cell; ``submit.json`` written at submission) and, for
Slurm jobs, from sacct/squeue through submitit, which catches tasks that died without a word
(cancelled, out of time or memory, node failure).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path

from benchmarks.base.atomic import read_json
from benchmarks.base.cli import OneLineParser
from benchmarks.base.rows import failure_note
from benchmarks.report.folders import CONFIG, METRICS, STATE, SUBMIT

DEAD = ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING")


def job_state(sub: dict) -> str:
    """Slurm's state of a submitted cell (sacct/squeue through submitit), or UNKNOWN."""
    if sub.get("launcher") != "slurm" or not shutil.which("sacct"):
        return "UNKNOWN"
    import submitit  # only for cells a Slurm launcher submitted

    try:
        return submitit.SlurmJob(sub["folder"], sub["job_id"]).state.split()[0]
    except Exception:  # noqa: BLE001 - no accounting reachable
        return "UNKNOWN"


def _last_step(d: Path) -> str:
    lines = (d / "log.jsonl").read_text().splitlines() if (d / "log.jsonl").exists() else []
    try:
        steps = json.loads((d / CONFIG).read_text())["train"]["steps"]
    except (OSError, ValueError, KeyError):
        steps = "?"
    return f"step {json.loads(lines[-1])['step'] if lines else 0}/{steps}"


def _log_tail(sub: dict, n: int = 4) -> list[str]:
    """The last lines of the task's submitit stderr log."""
    if not sub.get("folder"):
        return []
    import submitit

    try:
        err = submitit.SlurmJob(sub["folder"], sub["job_id"]).paths.stderr
        lines = err.read_text(errors="replace").strip().splitlines()
    except (OSError, ValueError):
        return []
    return [ln for ln in lines if ln.strip()][-n:]


def _alive(st: dict) -> bool:
    """Whether the local process that wrote a "running" state is still there (same host only)."""
    if st.get("host") not in (None, socket.gethostname()) or "pid" not in st:
        return True  # another machine's process: take its word
    try:
        os.kill(int(st["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cell_status(d: Path) -> tuple[str, str, list[str]]:
    """(state, detail, error lines) of the cell folder ``d``."""
    st, sub = read_json(d / STATE), read_json(d / SUBMIT)
    job = sub.get("job_id", "")
    requeues = int(st.get("requeues", 0))
    detail = f"job {job}" if job else "local"
    if requeues:
        detail += f", requeued {requeues}x"
    if (d / METRICS).exists():
        return "done", detail, []
    slurm_state = job_state(sub)
    if st.get("state") == "failed" or slurm_state in DEAD:
        why = [f"{st['error']}: {st.get('reason', '')}"] if st.get("error") else []
        if st.get("kind") == "diverged":
            why = [failure_note("diverged", st.get("step"), "")] + why
        if slurm_state in DEAD:
            why.insert(0, f"slurm: {slurm_state}")
        return "failed", detail, why + _log_tail(sub)
    if slurm_state == "RUNNING" or (slurm_state == "UNKNOWN" and st.get("state") == "running"):
        if job or _alive(st):
            return "running", f"{detail}, {_last_step(d)}", []
    if slurm_state in ACTIVE:
        return "pending", detail, []
    if (d / "ckpt.pt").exists():
        return "stopped", f"{detail}, {_last_step(d)} (rerun resumes)", []
    return ("pending" if job else "missing"), detail, []


def cells(root: Path) -> list[Path]:
    found = {p.parent for n in (CONFIG, SUBMIT) for p in root.rglob(f"runs/*/{n}")}
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m benchmarks.report.status", description=__doc__)
    p.add_argument("dir", type=Path)
    args = p.parse_args(argv)
    found = cells(args.dir)
    if not found:
        print(f"no cells under {args.dir}")
        return 0
    counts: dict[str, int] = {}
    for d in found:
        state, detail, why = cell_status(d)
        counts[state] = counts.get(state, 0) + 1
        print(f"{str(d.relative_to(args.dir)):<48} {state:<8} {detail}")
        for line in why:
            print(f"    {line}")
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return 1 if counts.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
