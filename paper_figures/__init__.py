"""Paper figures from the harness's results: ``python -m paper_figures.make``.

Each figure is one module with ``make(results, out) -> list[Path]``; it reads only what
``python -m benchmarks.run`` wrote (metrics rows, run logs, checkpoints) and never trains.
Missing inputs raise :class:`paper_figures.common.Skip`, naming what is missing and the command
that would make it.
"""

FIGURES = ("fid_vs_nfe", "samples", "flow_map_2d", "speedup", "training", "table_main")
