"""The evaluation protocol: the EMA law, teacher initialisation, run-length knobs, exact-velocity
baselines, convergence probes, and --jobs giving the same files as one process."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmarks.base.rows import BASELINES, read_rows
from benchmarks.config import load_config
from benchmarks.run import main
from benchmarks.training import factory
from benchmarks.training.ema import EMALaw, ema_update, gamma_of_width
from methods import METHODS
from methods.common import run_length_decay
from unify import FlowMapTeacher, VelocityTeacher


def _average(law: EMALaw, values: list[float], starts: set[int]) -> list[float]:
    """Run the recurrence on a scalar 'parameter' that takes ``values`` (step k = index)."""
    target, online, out = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False), []
    start = 0
    for step, v in enumerate(values):
        start = step if step in starts else start
        online.weight.data.fill_(v)
        ema_update(target, online, law.beta(step - start + 1))
        out.append(float(target.weight.detach()))
    return out


def test_power_ema_equals_its_closed_form_and_restarts() -> None:
    law = EMALaw("power", width=0.1)
    g = law.gamma
    # EDM2 Eq. 3: sigma_rel^2 = (g + 1) / ((g + 2)^2 (g + 3)); 0.10 <-> gamma = 6.94
    assert math.sqrt((g + 1) / ((g + 2) ** 2 * (g + 3))) == pytest.approx(0.1, rel=1e-9)
    assert gamma_of_width(0.05) == pytest.approx(16.97, abs=0.01)
    values = [math.sin(0.3 * k) + 0.01 * k**1.5 for k in range(40)]
    got = _average(law, values, starts={0, 25})
    for k in (0, 5, 24, 25, 26, 39):
        start = 25 if k >= 25 else 0
        i = torch.arange(1, k - start + 2, dtype=torch.float64)  # 1..n since the (re)start
        w = i ** (g + 1) - (i - 1) ** (g + 1)
        expect = float(
            (w * torch.tensor(values[start : k + 1], dtype=torch.float64)).sum() / w.sum()
        )
        assert got[k] == pytest.approx(expect, rel=1e-5, abs=1e-6), k
    assert got[25] == pytest.approx(values[25], rel=1e-6), "the restart keeps nothing of stage 0"


def test_constant_ema_and_none() -> None:
    values = [1.0, 2.0, 4.0, 8.0]
    got = _average(EMALaw("constant", decay=0.5), values, {0})
    assert got == pytest.approx([1.0, 1.5, 2.75, 5.375])  # beta_1 = 0: no initialisation kept
    assert _average(EMALaw("none"), values, {0}) == pytest.approx(values)
    with pytest.raises(ValueError, match="power, constant, none"):
        EMALaw("median")


def test_run_length_decay() -> None:
    assert run_length_decay(0.999, 400_000, 1_500) == pytest.approx(0.999 ** (400_000 / 1_500))
    assert run_length_decay(0.999, 400_000, 800_000) == 0.999  # never longer than published
    shortcut = METHODS["shortcut"]()
    shortcut.setup(factory.model(load_config("gmm", "smoke", {}, []), (2,)), 1_500)
    assert shortcut.target_ema == pytest.approx(0.7658, abs=1e-4)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_teacher_initialisation_loads_the_teachers_weights(name: str) -> None:
    cfg = load_config("gmm", "smoke", {"teacher": "auto"}, [])
    torch.manual_seed(1)
    teacher_fm = factory.model(cfg, (2,))
    teacher = FlowMapTeacher(teacher_fm, max_dt=1 / 32)
    torch.manual_seed(0)
    p = factory.parts(cfg, name, (2,), teacher, torch.device("cpu"))
    same = all(torch.equal(a, b) for a, b in zip(p.fm.parameters(), teacher_fm.parameters()))
    assert same == METHODS[name].init_from_teacher
    assert p.method.init == ("teacher" if same else "scratch")
    if same:  # the EMA and the method's target copies start there too
        assert all(torch.equal(a, b) for a, b in zip(p.ema.parameters(), teacher_fm.parameters()))
    exact = load_config("gmm", "smoke", {"teacher": "exact"}, [])
    assert factory.init_of(exact, name) == "scratch", "the exact oracle has no network to copy"


def _smoke(out: Path, *extra: str) -> int:
    base = ["--dataset", "gmm", "--budget", "smoke", "--out", str(out), "--quiet"]
    return main([*base, *extra])


@pytest.mark.slow
def test_oracle_run_has_exact_baselines_convergence_and_provenance(tmp_path: Path) -> None:
    assert _smoke(tmp_path, "--methods", "fm,lmd,meanflow") == 0
    rows = read_rows(tmp_path / "gmm" / "metrics.csv")
    assert set(BASELINES) <= set(rows["method"]), "fm-* and exact-* solver rows"
    lmd = rows[rows["method"] == "lmd"].iloc[0]
    assert (lmd["teacher"], lmd["init"]) == ("exact", "scratch")
    assert lmd["weights"].startswith("ema power")
    assert rows[rows["method"] == "meanflow"]["teacher"].fillna("").eq("").all()
    conv = read_rows(tmp_path / "gmm" / "convergence.csv")
    steps = sorted(conv["step"].unique())
    assert steps == [3, 5, 10, 20]  # 1/8, 1/4, 1/2, 1 of 20 steps
    assert set(conv["nfe"]) == {1, 2} and (conv["n_samples"] == 128).all()
    assert (tmp_path / "gmm" / "w2_vs_step.png").stat().st_size > 0
    speed = (tmp_path / "gmm" / "speedup.md").read_text()
    assert "against exact: **lmd**" in speed and "exact-dopri5" in speed


@pytest.mark.slow
def test_jobs_two_equals_jobs_one(tmp_path: Path) -> None:
    args = ["--methods", "lmd,cd,ct", "--seeds", "0,1", "--teacher", "auto"]  # fm runs first
    assert _smoke(tmp_path / "one", *args) == 0
    assert _smoke(tmp_path / "two", *args, "--jobs", "2") == 0
    cols = ["method", "seed", "nfe", "metric", "value", "note"]

    def values(root: Path, name: str) -> pd.DataFrame:
        df = read_rows(root / "gmm" / name)
        return df[[c for c in df.columns if c in cols + ["step"]]].reset_index(drop=True)

    for name in ("metrics.csv", "convergence.csv"):
        pd.testing.assert_frame_equal(
            values(tmp_path / "one", name), values(tmp_path / "two", name)
        )
    one = (tmp_path / "one" / "gmm" / "table.md").read_text()
    assert one == (tmp_path / "two" / "gmm" / "table.md").read_text()


def test_methods_read_the_datasets_sigma_data_unless_overridden() -> None:
    """One translation rule (unify.edm): by default the laws read a/b as EDM's sigma
    (data.sigma_data = 0.5); 0 selects the dataset's declared scale (the ring's per-coordinate std,
    0.5 for images); a negative value is refused."""
    from benchmarks.base.schema import ConfigError
    from benchmarks.config import validate

    interp = factory.interpolant(load_config("gmm", "smoke", {}, []))
    for dataset, overrides, want in (
        ("gmm", [], 0.5),
        ("gmm", ["data.sigma_data=0"], math.sqrt(8.16)),
        ("gmm", ["data.sigma_data=1.5"], 1.5),
        ("cifar-gmm", ["data.sigma_data=0"], 0.5),
        ("checkerboard", ["data.sigma_data=0"], 8 / math.sqrt(12)),
    ):
        cfg = load_config(dataset, "smoke", {}, overrides)
        for name in ("ct", "ct+cmt"):
            m = factory.method(cfg, name, interp, VelocityTeacher(lambda x, t: x))
            assert m.sigma_data == pytest.approx(want)
            assert all(s.sigma_data == pytest.approx(want) for s in getattr(m, "stages", ()))
    with pytest.raises(ConfigError, match="data.sigma_data"):
        validate(load_config("gmm", "smoke", {}, ["data.sigma_data=-1"]))
