"""Benchmark harness. At the top only what orchestrates a run: ``run`` (the CLI: plan, check, run,
report), ``config`` (presets, overrides, the one ``validate``), ``cells`` (one method and seed)
and ``local`` (the local launcher). The stages are packages: ``data``, ``training``,
``evaluation`` and ``report`` (which reads results folders), on the leaves of ``base``; beside
them ``cluster`` (Slurm, imported only for ``--launcher slurm|debug``) and ``perf`` (speed).
tests/test_layout.py states the order of the layers and checks it."""
