"""``--dry-run`` of a Slurm launch: print the exact sbatch scripts, on any machine, submit nothing.

submitit renders a job array's script only while submitting it, and refuses to build a Slurm
executor where ``srun`` is missing. So the dry run lets it submit, through its public API, to
stand-ins: a ``srun`` that does nothing and an ``sbatch`` that keeps the script it is given and
answers with a job id, both first on ``PATH`` for the duration, with submitit's folder in a
temporary directory. The scripts printed are those a real submission would send, with the
temporary folder shown as the real one; nothing is written outside the temporary directory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

FAKE_SBATCH = """#!/bin/sh
n=$(ls "{keep}" | wc -l)
cp "$1" "{keep}/$n.sh"
echo "Submitted batch job $((4200 + n))"
"""


@contextlib.contextmanager
def stand_in_slurm() -> Iterator[tuple[Path, Path]]:
    """(script folder, submitit folder) with stand-in ``sbatch``/``srun`` first on ``PATH``."""
    with tempfile.TemporaryDirectory(prefix="flowmap-preview-") as tmp:
        root = Path(tmp)
        bin_, keep, folder = root / "bin", root / "scripts", root / "submitit"
        for d in (bin_, keep, folder):
            d.mkdir()
        (bin_ / "sbatch").write_text(FAKE_SBATCH.format(keep=keep))
        (bin_ / "srun").write_text("#!/bin/sh\nexit 0\n")
        for f in bin_.iterdir():
            f.chmod(0o755)
        old = os.environ.get("PATH", "")
        os.environ["PATH"] = f"{bin_}{os.pathsep}{old}"
        try:
            yield keep, folder
        finally:
            os.environ["PATH"] = old


def preview(
    groups: list[list], launcher: str, executor: Callable, task: Callable, folder: Path
) -> None:
    """Print each array's cells and sbatch script. ``executor(dependency, folder)`` builds the
    executor the real launch would use, with submitit's log ``folder`` replaced."""
    dependency = None
    with stand_in_slurm() as (keep, tmp):
        for i, group in enumerate(groups):
            after = " (starts after the first array succeeds)" if i else ""
            print(f"# array {i + 1}: {len(group)} tasks{after}")
            for s in group:
                print(f"#   {s.cell.key:<16} {s.dir}")
            if launcher != "slurm":
                print(f"# {launcher} executor")
                continue
            jobs = executor(dependency, tmp / folder.name).map_array(task, group)
            script = sorted(keep.glob("*.sh"), key=lambda p: int(p.stem))[-1].read_text()
            print(script.replace(str(tmp / folder.name), str(folder.absolute())))
            dependency = f"afterok:{str(jobs[0].job_id).split('_')[0]}"
