"""The speed benchmark's plumbing at a tiny size (its timings are not checked)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmarks.config import TrainCfg, load_config
from benchmarks.evaluation.evaluate import sample_batch_for
from benchmarks.perf.bench import main, resolve
from benchmarks.perf.report import COLUMNS
from benchmarks.training import factory
from benchmarks.training.loop import prepare_model
from benchmarks.training.nets import make_net
from unify import FlowMap

TINY = ["--reps", "1", "--warmup", "1", "--sample-reps", "1", "--velocity-steps", "2"]


@pytest.mark.parametrize(
    ("net", "extra"),
    [
        ("mlp", ["--batch", "32", "--n-samples", "64"]),
        ("tiny", ["--batch", "2", "--n-samples", "2"]),
    ],
)
def test_perf_writes_rows_and_tables(tmp_path: Path, net: str, extra: list[str]) -> None:
    methods = "emd" if net == "mlp" else "meanflow"
    argv = ["--device", "cpu", "--net", net, "--methods", methods, "--nfe", "1,2", *TINY, *extra]
    main([*argv, "--out", str(tmp_path)])
    df = pd.read_csv(tmp_path / "perf.csv", keep_default_na=False, na_values=[""])
    assert list(df.columns) == COLUMNS
    train, sample = df[df["kind"] == "train"], df[df["kind"] == "sample"]
    assert list(train["method"]) == ["fm", methods], "fm, the reference, is always measured"
    assert train.set_index("method").loc["fm", "ratio_to_fm"] == 1.0
    assert (train["median_s"] > 0).all() and train["ratio_to_fm"].notna().all()
    assert (train["p10_s"] <= train["p90_s"]).all()
    assert train.set_index("method").loc["fm", "flops_ratio_to_fm"] == 1.0
    assert (train["gflop_step"] > 0).all(), "FLOPs/step are counted for every method"
    assert train["solver"].isna().all() and train["nfe"].isna().all()
    if net == "mlp":  # emd's step carries the exact mixture teacher, and says so
        assert train.set_index("method").loc["emd", "teacher"].startswith("exact gmm velocity")
    # flow map at NFE 1, 2; Euler 1, 2; Heun 2; dopri5 once with its counted NFE
    assert len(sample) == 6 and (sample["samples_per_s"] > 0).all()
    assert sample[sample["method"] == "flowmap"]["solver"].isna().all()
    assert sorted(sample[sample["method"] == "flowmap"]["nfe"]) == [1, 2]
    dopri = sample[sample["solver"] == "dopri5"]
    assert len(dopri) == 1 and dopri["nfe"].iloc[0] > 0
    assert (dopri["speedup_vs_dopri5"] == 1.0).all()
    assert (df["net"] == net).all() and (df["device"] == "cpu").all()
    md = (tmp_path / "perf.md").read_text()
    assert "torch " + torch.__version__ in md and "threads" in md
    assert "GFLOP/step" in md and "x fm (FLOPs)" in md
    assert "## Targets" in md and "1-NFE flow map / dopri5" in md


def test_gpu_preset_resolves_without_a_gpu() -> None:
    a = resolve(["--preset", "gpu"])
    assert (a.device, a.net, a.batch, a.compile) == ("cuda", ["paper"], 128, "both")
    assert a.methods == ["fm", "lmd", "emd", "meanflow"] and a.nfe == [1, 8]
    assert resolve(["--preset", "gpu", "--batch", "64"]).batch == 64  # flags beat the preset


def test_bad_method_exits(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        resolve(["--methods", "nosuch"])
    assert e.value.code == 2 and "unknown method or net 'nosuch'" in capsys.readouterr().err


def test_compile_flag_keeps_parameter_names() -> None:
    cfg = load_config("gmm", "smoke", {}, ["train.compile=true"])
    assert cfg.train.compile is True and TrainCfg().compile is False
    parts = factory.parts(cfg, "fm", (2,), None, torch.device("cpu"))
    keys = list(parts.fm.state_dict())
    prepare_model(parts, cfg.train, torch.device("cpu"))  # compiles lazily: nothing runs here
    assert list(parts.fm.state_dict()) == keys, "checkpoints must not change with train.compile"
    assert parts.fm.net._compiled_call_impl is not None


def test_sample_batch_sized_to_the_device() -> None:
    cpu = torch.device("cpu")
    assert sample_batch_for(cpu, (2,)) == 4096 and sample_batch_for(cpu, (3, 32, 32)) == 256
    assert sample_batch_for(cpu, (3, 32, 32), requested=500) == 500


def test_compiled_jvp_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where dynamo cannot trace a jvp (GroupNorm in torch 2.14) the eager jvp gives the answer."""
    import unify.flowmap as ufm

    def untraceable() -> object:
        def fail(*args: object) -> None:
            raise RuntimeError("INTERNAL ASSERT FAILED (as dynamo does on GroupNorm under jvp)")

        return fail

    monkeypatch.setattr(ufm, "_compiled_jvp", untraceable)
    torch.manual_seed(0)
    fm = FlowMap(make_net("mlp", (2,), hidden=8, depth=1))
    x, s, t, u = torch.randn(4, 2), torch.rand(4), torch.rand(4), torch.randn(4, 2)
    expected = ufm.map_ds(fm, x, s, t, u)[1]
    fm.compile_jvp = True
    with pytest.warns(UserWarning, match="compiled jvp failed"):
        got = ufm.map_ds(fm, x, s, t, u)[1]
    assert torch.equal(got, expected) and fm.compile_jvp is False
