"""Report tables, plots, speed-ups and the keyed metrics csv on a hand-computed fixture."""

import math

import numpy as np
import pandas as pd
import pytest

from benchmarks import report as R
from benchmarks.base import rows as RW

SEC = {"lmd": 0.1, "ct": 0.1, "fm-euler": 0.2, "fm-heun": 0.2}  # sample seconds per NFE


def _row(method, seed, nfe, value, note="", metric="fid"):
    sec = 10.0 if method == "fm-dopri5" else SEC.get(method, 0.0) * nfe
    return dict(
        method=method,
        dataset="toy",
        seed=seed,
        nfe=nfe,
        metric=metric,
        value=value,
        n_samples=1000,
        sample_seconds=sec,
        train_steps=100,
        train_images=1000,
        train_seconds=1.0,
        budget="tiny",
        git_sha="abc",
        note=note,
    )


@pytest.fixture
def rows() -> pd.DataFrame:
    """2 learned methods x 2 seeds (ct is n/a at NFE 1), teachers, dopri5 and the exact floor."""
    out = []
    lmd = {1: (0.30, 0.34), 2: (0.20, 0.22), 4: (0.035, 0.045)}
    ct = {2: (0.25, 0.27), 4: (0.004, 0.006)}
    for seed in (0, 1):
        out += [_row("lmd", seed, n, v[seed]) for n, v in lmd.items()]
        out += [_row("ct", seed, n, v[seed]) for n, v in ct.items()]
        out.append(_row("ct", seed, 1, math.nan, note="n/a"))
        out.append(_row("fm-dopri5", seed, (38, 40)[seed], (0.02, 0.04)[seed]))
    euler = {1: 2.0, 2: 1.0, 4: 0.5, 8: 0.25, 16: 0.12}
    heun = {2: 0.6, 4: 0.2, 8: 0.05, 16: 0.045}
    out += [_row("fm-euler", 0, n, v) for n, v in euler.items()]
    out += [_row("fm-heun", 0, n, v) for n, v in heun.items()]
    out += [_row("exact", 0, n, 0.001) for n in (1, 2, 4)]
    return pd.DataFrame(out)


def test_table_strings_and_best(rows):
    t = R.table(rows, "fid")
    assert list(t.columns) == ["1", "2", "4", "8", "16", "adaptive"]
    assert list(t.index) == ["ct", "lmd", "fm-euler", "fm-heun", "fm-dopri5", "exact"]
    assert t.loc["lmd", "1"] == "0.320 ± 0.028"
    assert t.loc["lmd", "4"] == "0.0400 ± 0.0071"
    assert t.loc["ct", "4"] == "0.00500 ± 0.00141"
    assert t.loc["ct", "1"] == "n/a"
    assert t.loc["ct", "8"] == "—" and t.loc["fm-euler", "adaptive"] == "—"
    assert t.loc["fm-euler", "8"] == "0.250"  # one seed: mean only
    assert t.loc["fm-dopri5", "adaptive"] == "0.0300 ± 0.0141 (nfe 39)"
    assert t.loc["exact", "4"] == "0.00100"
    best = t.attrs["best"]
    assert best == {"1": ["lmd"], "2": ["lmd"], "4": ["ct"], "8": ["fm-heun"], "16": ["fm-heun"]}
    md = R.table(rows, "fid", style="md")
    assert md.loc["ct", "4"] == "**0.00500 ± 0.00141**"  # exact (0.001) is lower but excluded
    assert md.loc["exact", "4"] == "0.00100" and md.loc["lmd", "4"] == "0.0400 ± 0.0071"
    assert R.fmt(math.inf) == "inf" and R.fmt(math.nan) == "—" and R.fmt(123.456, 1.0) == "123 ± 1"
    tex = R.table(rows, "fid", style="tex")
    assert tex.loc["lmd", "2"] == r"\textbf{0.210 $\pm$ 0.014}"
    assert tex.loc["ct", "8"] == "--"


def _lines(ax):
    return {ln.get_gid(): ln for ln in ax.lines if ln.get_gid()}


def _panels(fig):
    return {ax.get_gid(): ax for ax in fig.axes}


def test_plot_series_match_fixture(rows, tmp_path):
    fig = R.plot_metric_vs_nfe(rows, "fid", tmp_path / "fid_vs_nfe")
    assert (tmp_path / "fid_vs_nfe.png").stat().st_size > 0
    assert (tmp_path / "fid_vs_nfe.pdf").stat().st_size > 0
    panels = _panels(fig)
    assert list(panels) == ["consistency", "teacher-distilled"]  # one panel per family present
    base = {"fm-euler", "fm-heun", "fm-dopri5", "exact"}
    lines = _lines(panels["teacher-distilled"])
    assert set(lines) == {"lmd"} | base, "a panel holds its family and every baseline"
    assert set(_lines(panels["consistency"])) == {"ct"} | base
    np.testing.assert_allclose(lines["lmd"].get_xdata(), [1, 2, 4])
    np.testing.assert_allclose(lines["lmd"].get_ydata(), [0.32, 0.21, 0.04])
    band = panels["teacher-distilled"].collections[0].get_paths()[0].vertices
    lo, hi = band[:, 1].min(), band[:, 1].max()  # mean +- std over the two seeds
    assert lo == pytest.approx(0.04 - 0.0070711, rel=1e-4) and hi == pytest.approx(
        0.32 + 0.028284, rel=1e-4
    )
    ct = _lines(panels["consistency"])["ct"]
    np.testing.assert_allclose(ct.get_xdata(), [2, 4])  # n/a at NFE 1 left out
    np.testing.assert_allclose(ct.get_ydata(), [0.26, 0.005])
    np.testing.assert_allclose(lines["fm-dopri5"].get_xdata(), [39])
    np.testing.assert_allclose(lines["fm-dopri5"].get_ydata(), [0.03])
    assert lines["fm-dopri5"].get_marker() == "*"
    np.testing.assert_allclose(lines["exact"].get_ydata(), [0.001, 0.001])
    assert lines["exact"].get_linestyle() == ":" and lines["fm-euler"].get_linestyle() == "--"
    np.testing.assert_allclose(lines["fm-heun"].get_ydata(), [0.6, 0.2, 0.05, 0.045])
    ax = panels["teacher-distilled"]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"

    other = rows[rows["method"] != "lmd"].assign(metric="w2")
    panels2 = _panels(R.plot_metric_vs_nfe(other, "w2", None))
    assert "teacher-distilled" not in panels2
    assert _lines(panels2["consistency"])["ct"].get_color() == ct.get_color()
    assert ct.get_color() != lines["lmd"].get_color()
    assert R.method_color("ct") == R.method_color("ct")


def test_speedup_hand_computed(rows):
    sp = R.speedup(rows, "fid").set_index(["method", "nfe"])
    expect = {  # (teacher, teacher_nfe, nfe_ratio, time_ratio)
        ("lmd", 1): ("fm-heun", 4, 4.0, 8.0),  # heun@4 0.2 <= 0.32; euler@8 0.25 needs more NFE
        ("lmd", 2): ("fm-heun", 4, 2.0, 4.0),
        ("lmd", 4): ("fm-dopri5", 39, 9.75, 25.0),  # only dopri5 (0.03) reaches 0.04
        ("ct", 2): ("fm-heun", 4, 2.0, 4.0),
    }
    for k, (teacher, tnfe, nr, tr) in expect.items():
        r = sp.loc[k]
        assert r["teacher"] == teacher
        assert r["teacher_nfe"] == pytest.approx(tnfe)
        assert r["nfe_ratio"] == pytest.approx(nr) and r["time_ratio"] == pytest.approx(tr)
    nr = sp.loc[("ct", 4)]
    assert nr["teacher"] == "not reached (best fm-dopri5: 0.0300 at nfe 39)"
    assert math.isnan(nr["teacher_nfe"]) and math.isnan(nr["nfe_ratio"])
    assert ("ct", 1) not in sp.index and len(sp) == 5  # n/a cells give no row
    (head,) = R.headline(rows, "fid")  # no exact-velocity method: one line, against fm
    assert "against fm: **lmd**" in head and "39x fewer NFE" in head
    assert "100x less sampling time" in head and "10.7x fm-dopri5's" in head


def test_write_reports_atomic(rows, tmp_path):
    both = pd.concat([rows, rows.assign(metric="w2")], ignore_index=True)
    paths = R.write_reports(both, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [
            "table.md",
            "table.tex",
            "speedup.md",
            "summary.csv",
            "fid_vs_nfe.png",
            "fid_vs_nfe.pdf",
            "w2_vs_nfe.png",
            "w2_vs_nfe.pdf",
        ]
    )
    assert all(p.is_file() for p in paths)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names  # no temp files
    md = (tmp_path / "out" / "table.md").read_text()
    assert "## fid (toy)" in md and "## w2 (toy)" in md and "**0.00500 ± 0.00141**" in md
    tex = (tmp_path / "out" / "table.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 2 and r"\toprule" in tex and "±" not in tex
    assert "not reached" in (tmp_path / "out" / "speedup.md").read_text()


def test_update_rows_by_key(rows, tmp_path):
    path = tmp_path / "metrics.csv"
    first = RW.update_rows(path, rows)
    assert len(first) == len(rows)
    again = RW.update_rows(path, rows.iloc[:3].assign(value=9.0))  # same keys, new values
    assert len(again) == len(rows)
    back = RW.read_rows(path)
    assert len(back) == len(rows)
    assert R.table(back, "fid").loc["ct", "1"] == "n/a"  # "n/a" survives the csv round trip
    key = back.set_index(list(RW.KEY)).index
    assert key.is_unique
    hit = back[(back.method == "lmd") & (back.seed == 0) & (back.nfe == 1)]
    assert hit["value"].tolist() == [9.0]
    dop = rows[(rows.method == "fm-dopri5") & (rows.seed == 0)].assign(nfe=41, value=0.5)
    new = _row("lmd", 2, 1, 0.31)
    after = RW.update_rows(path, pd.concat([dop, pd.DataFrame([new])], ignore_index=True))
    assert len(after) == len(rows) + 1  # dopri5 re-run replaced although its counted NFE moved
    d0 = after[(after.method == "fm-dopri5") & (after.seed == 0)]
    assert d0[["nfe", "value"]].values.tolist() == [[41, 0.5]]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith(".")} == {"metrics.csv"}


def test_bold_marks_every_method_not_separable_from_the_best(rows):
    # at NFE 2, ct moved to 0.21 +- 0.0141 (lmd: 0.21 +- 0.0141 at a mean 0.005 lower): a gap of
    # 0.005 against 2 standard errors of 0.028 cannot be told apart
    close = rows.copy()
    hit = (close["method"] == "ct") & (close["nfe"] == 2)
    close.loc[hit, "value"] = close.loc[hit, "value"] - 0.045
    best = R.table(close, "fid").attrs["best"]
    assert best["2"] == ["ct", "lmd"]
    assert best["4"] == ["ct"], "0.035 apart with standard errors of 0.005: separable"
    md = R.table(close, "fid", style="md", improving={"lmd"})
    assert md.loc["lmd †", "2"].startswith("**") and md.loc["ct", "2"].startswith("**")
