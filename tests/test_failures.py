"""A cell that diverges or raises is a result: recorded, reported, and retried alone."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import cells
from benchmarks.base.rows import read_rows
from benchmarks.report import status
from benchmarks.report.folders import ERROR_LOG, STATE
from benchmarks.run import main

SMOKE = ["--dataset", "gmm", "--budget", "smoke", "--quiet"]
VALUES = ["method", "seed", "nfe", "metric", "value", "note"]


def _values(path: Path, methods: set[str]) -> pd.DataFrame:
    df = read_rows(path)
    df = df[df["method"].isin(methods)][VALUES]
    return df.sort_values(VALUES[:4]).reset_index(drop=True)


@pytest.mark.slow
def test_divergence_is_reported_not_raised(tmp_path: Path, capsys) -> None:
    argv = ["--methods", "fm,lmd", "--out", str(tmp_path), *SMOKE]
    assert main([*argv, "train.lr=1e30", "train.clip=0"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 2 and all(": diverged (step " in ln for ln in lines), err
    assert "no checkpoint" in err, "the message names a checkpoint only when one exists"
    for name in ("fm-s0", "lmd-s0"):
        state = json.loads((tmp_path / "gmm" / "runs" / name / STATE).read_text())
        assert (state["state"], state["kind"]) == ("failed", "diverged")
        assert 1 <= state["step"] <= 10 and f"diverged (step {state['step']})" in err
        assert (tmp_path / "gmm" / "runs" / name / ERROR_LOG).exists()
    note = f"diverged (step {state['step']})"
    table = (tmp_path / "gmm" / "table.md").read_text()
    assert table.count(note) >= 4  # fm and lmd, every NFE of both metrics
    rows = read_rows(tmp_path / "gmm" / "metrics.csv")
    assert set(rows.loc[rows["note"].str.startswith("diverged"), "method"]) == {"fm", "lmd"}
    assert status.main([str(tmp_path)]) == 1
    assert note in capsys.readouterr().out
    # the cause fixed: the failed cells start afresh; the floor, finished, is not redone
    floor = tmp_path / "gmm" / "runs" / "exact-s0" / "metrics.csv"
    before = floor.stat().st_mtime_ns
    assert main(argv) == 0
    rows = read_rows(tmp_path / "gmm" / "metrics.csv")
    assert not rows["note"].str.startswith("diverged").any()
    assert floor.stat().st_mtime_ns == before


@pytest.mark.slow
def test_a_cell_failing_in_evaluation_leaves_the_others_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    methods = ["lmd", "meanflow", "ct"]
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    assert main(["--methods", ",".join(methods), "--out", str(clean), *SMOKE]) == 0
    real = cells.evaluate_method

    def flaky(method, fm, scorer):
        if method.name == "meanflow":
            raise RuntimeError("evaluation blew up")
        return real(method, fm, scorer)

    monkeypatch.setattr(cells, "evaluate_method", flaky)
    assert main(["--methods", ",".join(methods), "--out", str(broken), *SMOKE]) == 1
    err = capsys.readouterr().err
    assert "meanflow-s0: failed (evaluation blew up)" in err and "Traceback" not in err
    others = {"lmd", "ct", "exact", "exact-euler", "fm-euler"}
    pd.testing.assert_frame_equal(
        _values(clean / "gmm" / "metrics.csv", others),
        _values(broken / "gmm" / "metrics.csv", others),
    )
    note = read_rows(broken / "gmm" / "metrics.csv").query("method == 'meanflow'")["note"]
    assert (note == "failed (evaluation blew up)").all()
    # rerun with the cause gone: only meanflow runs, and only its evaluation (training resumed
    # from its final checkpoint: the log is not rewritten)
    monkeypatch.setattr(cells, "evaluate_method", real)
    log = broken / "gmm" / "runs" / "meanflow-s0" / "log.jsonl"
    ct_metrics = broken / "gmm" / "runs" / "ct-s0" / "metrics.csv"
    stamps = log.stat().st_mtime_ns, ct_metrics.stat().st_mtime_ns
    assert main(["--methods", ",".join(methods), "--out", str(broken), *SMOKE]) == 0
    assert (log.stat().st_mtime_ns, ct_metrics.stat().st_mtime_ns) == stamps
    pd.testing.assert_frame_equal(
        _values(clean / "gmm" / "metrics.csv", set(methods)),
        _values(broken / "gmm" / "metrics.csv", set(methods)),
    )
