"""Launchers: dry runs and sweeps here; job arrays, requeue and resubmission on a real Slurm.

Tests marked by the ``slurm`` fixture need a running cluster (benchmarks/cluster/up.sh, with
``SLURM_CONF`` exported); they skip without ``sbatch`` unless ``FLOWMAP_REQUIRE_SLURM=1``
(.ci/run sets it), when they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmarks import run
from benchmarks.cluster import sweep
from benchmarks.report import status
from benchmarks.report.folders import STATE, SUBMIT

VALUES = ["method", "seed", "nfe", "metric", "value", "note"]
SMOKE = ["--dataset", "gmm", "--budget", "smoke", "--quiet"]


@pytest.fixture
def slurm() -> None:
    why = None
    if not shutil.which("sbatch"):
        why = "no Slurm here (sbatch not found); start one with benchmarks/cluster/up.sh"
    else:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=70)
        if "UP" not in ping.stdout:
            why = f"no Slurm controller answers (SLURM_CONF={os.environ.get('SLURM_CONF')})"
    if why and os.environ.get("FLOWMAP_REQUIRE_SLURM") == "1":
        pytest.fail(f"FLOWMAP_REQUIRE_SLURM=1 but {why}")
    if why:
        pytest.skip(why)


def _sweep_file(tmp: Path, **kw) -> Path:
    spec = {"name": "t", "budget": "smoke", "datasets": ["gmm"], "methods": ["lmd"], **kw}
    path = tmp / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _wait(cond, what: str, limit: float = 240) -> None:
    deadline = time.time() + limit
    while not cond():
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def _values(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)[VALUES].sort_values(VALUES[:4]).reset_index(drop=True)


def test_dry_run_prints_sbatch_parameters_and_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    argv = ["--methods", "fm,lmd", "--seeds", "0,1", "--out", str(out), *SMOKE]
    flags = ["--partition", "p1", "--gpus", "2", "--parallelism", "2", "--sbatch", "exclusive"]
    assert run.main([*argv, "--launcher", "slurm", "--dry-run", *flags]) == 0
    text = capsys.readouterr().out
    for line in ("--array=0-5%2", "--partition=p1", "--gpus-per-node=2", "--ntasks-per-node=2"):
        assert f"#SBATCH {line}" in text
    assert "#SBATCH --exclusive" in text and "--signal=USR2@" in text
    # an auto teacher puts the fm cells in a first array, the rest after it
    assert run.main([*argv, "--launcher", "slurm", "--dry-run", "--teacher", "auto"]) == 0
    text = capsys.readouterr().out
    assert "# array 1: 4 tasks" in text and "--dependency=afterok:" in text
    assert not out.exists()


def test_sweep_grid_gives_distinct_variant_folders(tmp_path: Path, capsys) -> None:
    path = _sweep_file(tmp_path, seeds=[0, 1], grid={"train.lr": [1e-3, 2e-3]})
    cells = sweep.expand(sweep.load_sweep(path), tmp_path / "out")
    assert len(cells) == 2 * 2 * 2  # variants x (lmd, exact) x seeds
    assert len({c.dir for c in cells}) == len(cells)
    assert {c.cfg.train.lr for c in cells} == {1e-3, 2e-3}
    assert {Path(c.out).name for c in cells} == {"train.lr=0.001", "train.lr=0.002"}
    assert sweep.main([str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    assert "#SBATCH --array=0-7" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
    bad = _sweep_file(tmp_path, slurm={"partitions": "x"})
    assert sweep.main([str(bad), "--dry-run"]) == 2


def _fail_then_resubmit(tmp_path: Path, launcher: str, capsys) -> None:
    """A corrupt checkpoint fails one cell; status shows it; a rerun submits only that cell."""
    path, out = _sweep_file(tmp_path, seeds=[0, 1]), tmp_path / "out"
    broken = out / "t" / "base" / "gmm" / "runs" / "lmd-s1"
    broken.mkdir(parents=True)
    (broken / "ckpt.pt").write_bytes(b"not a checkpoint")
    sweep.main(
        [str(path), "--out", str(out), "--launcher", launcher, "--wait", "--parallelism", "2"]
    )
    capsys.readouterr()
    assert status.main([str(out)]) == 1
    report = capsys.readouterr().out
    assert "lmd-s1" in report and "failed" in report and "3 done" in report, report
    assert "Error" in report.split("lmd-s1")[1], "the error is shown"
    assert json.loads((broken / STATE).read_text())["state"] == "failed"
    jobs = {d.name: json.loads((d / SUBMIT).read_text())["job_id"] for d in broken.parent.iterdir()}
    (broken / "ckpt.pt").unlink()
    sweep.main([str(path), "--out", str(out), "--launcher", launcher, "--wait"])
    assert "4 cells, 1 to run" in capsys.readouterr().out
    again = {
        d.name: json.loads((d / SUBMIT).read_text())["job_id"] for d in broken.parent.iterdir()
    }
    assert [k for k in jobs if jobs[k] != again[k]] == ["lmd-s1"]
    assert status.main([str(out)]) == 0
    assert "4 done" in capsys.readouterr().out


@pytest.mark.slow
def test_debug_launcher_failure_and_resubmission(tmp_path: Path, capsys) -> None:
    _fail_then_resubmit(tmp_path, "debug", capsys)


# ------------------------------------------------------------------------------- real Slurm
@pytest.mark.slow
def test_slurm_sweep_one_array_matches_local_table(slurm, tmp_path: Path, capsys) -> None:
    src = Path(__file__).parent.parent / "benchmarks" / "sweeps" / "gmm_smoke.yaml"
    out = tmp_path / "sw"
    assert sweep.main([str(src), "--out", str(out), "--wait"]) == 0
    root = out / "gmm-smoke" / "base" / "gmm"
    subs = [json.loads(p.read_text()) for p in sorted(root.glob(f"runs/*/{SUBMIT}"))]
    assert len(subs) == 6 and len({s["job_id"].split("_")[0] for s in subs}) == 1, subs
    script = next((out / "gmm-smoke" / ".submitit").rglob("*_submission.sh")).read_text()
    assert "#SBATCH --array=0-5%2" in script
    local = tmp_path / "local"
    assert run.main(["--methods", "fm,lmd", "--seeds", "0,1", "--out", str(local), *SMOKE]) == 0
    assert (root / "table.md").read_text() == (local / "gmm" / "table.md").read_text()
    pd.testing.assert_frame_equal(_values(root / "metrics.csv"), _values(local / "gmm/metrics.csv"))


@pytest.mark.slow
def test_slurm_usr2_checkpoints_requeues_and_matches_uninterrupted(slurm, tmp_path: Path) -> None:
    steps = ["train.steps=3000", "train.log_every=10", "train.ckpt_every=1000"]
    argv = ["--methods", "fm", *SMOKE, *steps]
    cut = tmp_path / "cut"
    assert run.main([*argv, "--out", str(cut), "--launcher", "slurm"]) == 0
    d = cut / "gmm" / "runs" / "fm-s0"
    log = d / "log.jsonl"
    _wait(lambda: log.exists() and len(log.read_text().splitlines()) >= 3, "training to start")
    job = json.loads((d / SUBMIT).read_text())["job_id"]
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    _wait(lambda: json.loads((d / STATE).read_text()).get("state") == "done", "the requeued task")
    state = json.loads((d / STATE).read_text())
    assert state["requeues"] >= 1 and state["stopped_at"], state
    assert 0 < state["stopped_at"][0] < 3000
    ref = tmp_path / "ref"
    assert run.main([*argv, "--out", str(ref)]) == 0
    pd.testing.assert_frame_equal(
        _values(d / "metrics.csv"), _values(ref / "gmm" / "runs" / "fm-s0" / "metrics.csv")
    )
    ref_log = (ref / "gmm" / "runs" / "fm-s0" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in log.read_text().splitlines()] == [
        json.loads(x)["loss"] for x in ref_log
    ]


@pytest.mark.slow
def test_slurm_failed_cell_shows_in_status_and_only_it_reruns(slurm, tmp_path, capsys) -> None:
    _fail_then_resubmit(tmp_path, "slurm", capsys)
