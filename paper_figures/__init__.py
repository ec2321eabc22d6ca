"""Paper figures from the harness's results: ``python -m paper_figures.make``.

Each figure is one module with ``make(results, out) -> list[Path]``; it reads only what
``python -m benchmarks.run`` wrote (metrics rows, run logs, each cell's ``samples.npz`` and
``convergence.csv``), never a checkpoint, and never trains or builds a network. Missing inputs
raise :class:`paper_figures.common.Skip`, naming what is missing and the command that would make
it. Files carry no creation date: regenerating from unchanged results rewrites identical bytes.
"""

FIGURES = (
    "fid_vs_nfe",
    "samples",
    "flow_map_2d",
    "speedup",
    "convergence",
    "compute",
    "verdicts",
    "training",
    "table_main",
)
