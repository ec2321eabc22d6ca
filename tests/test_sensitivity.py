"""The sensitivity report on a hand-made sweep: best setting, spread, gain and the > 10 % flag."""

import math
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.report import sensitivity as S

LABELS = ("3.3e-4", "1e-3", "3e-3")
# one-step flowmap_err per lr; NFE 2 and 4 are derived from it below
ONE = {
    "a": (0.50, 0.40, 0.30),  # best at 3e-3, 25 % better than the default: flagged
    "b": (0.30, 0.20, 0.25),  # best at the default: gain 0
    "c": (0.19, 0.20, 0.40),  # best at 3.3e-4 by 5 %: not flagged
    "d": (0.30, 0.30, math.nan),  # failed at 3e-3: spread inf
    "fm-euler": (3.0, 2.0, 1.0),  # the trained fm's solve: shown apart, never in the headline
    "exact": (0.01, 0.01, 0.01),  # the floor: no setting touches it, excluded
}


def _rows(i: int) -> pd.DataFrame:
    out = []
    for method, vals in ONE.items():
        v = vals[i]
        note = "failed: diverged" if math.isnan(v) else ""
        for nfe, scale in ((1, 1.0), (2, 0.9), (4, 0.8), (8, 0.1)):  # NFE 8 lies outside <= 4
            out.append(
                dict(
                    method=method,
                    dataset="gmm",
                    seed=0,
                    nfe=nfe,
                    metric="flowmap_err",
                    value=v * scale,
                    note=note,
                )
            )
    # "e" is n/a at one step (as ct is elsewhere) and only counts at NFE 2 and 4
    out.append(
        dict(
            method="e",
            dataset="gmm",
            seed=0,
            nfe=1,
            metric="flowmap_err",
            value=math.nan,
            note="n/a",
        )
    )
    for nfe, v in ((2, (0.6, 0.5, 0.4)[i]), (4, (0.7, 0.6, 0.2)[i])):
        out.append(
            dict(method="e", dataset="gmm", seed=0, nfe=nfe, metric="flowmap_err", value=v, note="")
        )
    return pd.DataFrame(out)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "gmm-lr"
    for i, lab in enumerate(LABELS):
        d = root / f"train.lr={lab}" / "gmm"
        d.mkdir(parents=True)
        _rows(i).to_csv(d / "metrics.csv", index=False)
    return root


def _row(df: pd.DataFrame, method: str, crit: str) -> pd.Series:
    hit = df[(df["method"] == method) & (df["criterion"] == crit)]
    assert len(hit) == 1, (method, crit)
    return hit.iloc[0]


def test_best_spread_gain_and_flag(sweep: Path) -> None:
    assert S.settings(sweep, "train.lr") == {f"train.lr={x}": float(x) for x in LABELS}
    df = S.sensitivity(S.criteria(S.load(sweep, "train.lr", "gmm"), "flowmap_err"), 1e-3)
    a = _row(df, "a", S.ONE_STEP)
    assert a["best"] == "3e-3" and a["spread"] == pytest.approx(0.50 / 0.30)
    assert a["gain"] == pytest.approx(0.25) and a["flag"]
    b = _row(df, "b", S.ONE_STEP)
    assert b["best"] == "1e-3" and b["gain"] == 0 and not b["flag"]
    assert b["spread"] == pytest.approx(1.5)
    c = _row(df, "c", S.ONE_STEP)
    assert c["best"] == "3.3e-4" and c["gain"] == pytest.approx(0.05) and not c["flag"]
    d = _row(df, "d", S.ONE_STEP)
    assert d["best"] == "1e-3"  # a tie goes to the default
    assert math.isinf(d["spread"]) and d["gain"] == 0 and not d["flag"]
    # the few-step criterion takes the best of NFE 1, 2, 4 (NFE 8 is ignored): a's 0.8 x value
    assert _row(df, "a", S.FEW_STEP)["best_value"] == pytest.approx(0.24)
    e1, e4 = _row(df, "e", S.ONE_STEP), _row(df, "e", S.FEW_STEP)
    assert e1["best"] == "" and not e1["flag"]  # n/a at one step at every lr
    assert e4["best"] == "3e-3" and e4["gain"] == pytest.approx(0.6) and e4["flag"]
    assert df["criterion"].iloc[0] == S.ONE_STEP
    assert set(df["method"]) == {"a", "b", "c", "d", "e", "fm-euler"}  # the floor is left out
    assert set(df.loc[df["method"] == "fm-euler", "group"]) == {"fm solves"}
    assert list(df["group"]).index("fm solves") > max(
        i for i, g in enumerate(df["group"]) if g == "learned"
    )


def test_cli_writes_md_and_csv(sweep: Path) -> None:
    assert S.main([str(sweep)]) == 0
    md = (sweep / "sensitivity.md").read_text()
    assert "- nfe 1: 1 method(s) gain > 10%: a (+25.0 % at train.lr=3e-3)" in md
    assert "fm-euler" in md and "fm-euler (" not in md.split("## ")[0]  # not in the headline
    assert "train.lr=1e-3 (default)" in md
    csv = pd.read_csv(sweep / "sensitivity.csv")
    learned = csv[csv["group"] == "learned"]
    assert int(learned["flag"].sum()) == 3  # a at nfe 1 and at nfe <= 4, e at nfe <= 4


def test_missing_sweep_is_an_error(tmp_path: Path, capsys) -> None:
    assert S.main([str(tmp_path)]) == 2
    assert "no train.lr=*/gmm/metrics.csv" in capsys.readouterr().err
