"""What a results folder holds, read back: the files of a cell and the metrics rows of a cell.

A cell (one method and seed, written by ``benchmarks.cells``) lives in
``<out>/<dataset>/runs/<method>-s<seed>/``: ``config.json`` (what determines its result),
``state.json`` (running, stopped, failed with its reason, done), ``submit.json`` (a Slurm
submission), ``error.log`` (a failure's traceback) and, once finished, ``metrics.csv``, whose
presence marks the cell done. A failed cell has no metrics; its rows are made here from its
config, one per NFE and metric, each carrying the failure note.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from benchmarks.base.atomic import read_json
from benchmarks.base.rows import failure_note, metric_names, read_rows
from benchmarks.base.schema import RunConfig, apply_updates
from benchmarks.data import registry

CONFIG, STATE, METRICS, ERROR_LOG = "config.json", "state.json", "metrics.csv", "error.log"
SUBMIT = "submit.json"  # written by the Slurm launcher when it submits the cell


def method_of_cell(name: str) -> str:
    """The method of a cell named ``<method>-s<seed>`` (``benchmarks.cells.Cell.name``)."""
    return name.rsplit("-s", 1)[0]


def stored_config(d: Path) -> dict:
    """A cell's config.json without what it learned while running (``problem``)."""
    stored = read_json(d / CONFIG)
    stored.pop("problem", None)
    return stored


def failure_rows(d: Path) -> pd.DataFrame:
    """Rows of a failed cell, one per (NFE, metric), each carrying the failure note (no value)."""
    state, conf = read_json(d / STATE), stored_config(d)
    if state.get("state") != "failed" or not conf:
        return pd.DataFrame()
    seed = conf.pop("seed")
    conf.pop("method", None)  # the method's own options name no row
    cfg = apply_updates(RunConfig(), conf)
    spec = registry.get(cfg.dataset)
    names = metric_names(spec.kind == "images", spec.has_oracle, cfg.eval)
    note = failure_note(state.get("kind", "error"), state.get("step"), state.get("reason", ""))
    method = method_of_cell(d.name)
    rows = [
        dict(
            method=method,
            dataset=cfg.dataset,
            seed=seed,
            nfe=n,
            metric=m,
            value=math.nan,
            note=note,
            budget=cfg.budget,
            run=d.name,
        )
        for n in cfg.eval.nfe
        for m in names
    ]
    return pd.DataFrame(rows)


def rows_of(d: Path) -> pd.DataFrame:
    """The rows of a cell folder: its metrics when done, its failure rows when failed."""
    return read_rows(d / METRICS) if (d / METRICS).exists() else failure_rows(d)
