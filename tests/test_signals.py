"""Stopping a run: Ctrl-C and SIGTERM save the exact step and exit 130 / 143 with one line;
SIGKILL loses at most the steps since the last checkpoint; every rerun finishes with the numbers
of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmarks.base.rows import read_rows

ROOT = Path(__file__).resolve().parent.parent
VALUES = ["method", "seed", "nfe", "metric", "value", "note"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _cli(out: Path, methods: str, *extra: str) -> list[str]:
    run = [sys.executable, "-m", "benchmarks.run", "--methods", methods, "--out", str(out)]
    flags = "--dataset gmm --budget smoke --quiet train.steps=1500 train.log_every=10"
    return [*run, *flags.split(), "train.ckpt_every=500", *extra]


def _log_steps(out: Path, method: str) -> list[int]:
    log = out / "gmm" / "runs" / f"{method}-s0" / "log.jsonl"
    return [json.loads(x)["step"] for x in log.read_text().splitlines()] if log.exists() else []


def _start_and_wait(out: Path, methods: str, min_step: int, *extra: str) -> subprocess.Popen:
    """Start a run; return once every method's log has passed ``min_step``."""
    proc = subprocess.Popen(
        _cli(out, methods, *extra),
        cwd=ROOT,
        env=ENV,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 240
    while any(max(_log_steps(out, m), default=0) < min_step for m in methods.split(",")):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the run ended (or stalled) before step {min_step}: {proc.communicate()}")
        time.sleep(0.05)
    return proc


def _values(out: Path, name: str = "metrics.csv") -> pd.DataFrame:
    df = read_rows(out / "gmm" / name)
    cols = [c for c in ["step", *VALUES] if c in df]
    return df[cols].sort_values(cols[:4]).reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run of lmd and ct."""
    out = tmp_path_factory.mktemp("ref")
    subprocess.run(_cli(out, "lmd,ct"), check=True, cwd=ROOT, env=ENV)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_saves_the_exact_step_and_resumes(reference, tmp_path, sig, code) -> None:
    proc = _start_and_wait(tmp_path, "lmd", 30)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and err.startswith("interrupted: lmd-s0 at step ")
    step = int(err.split("at step ")[1].split(" of ")[0])
    ckpt = torch.load(tmp_path / "gmm" / "runs" / "lmd-s0" / "ckpt.pt", weights_only=False)
    assert ckpt["step"] == step and 30 <= step < 1500, "saved at the step reached, not at 500"
    assert max(_log_steps(tmp_path, "lmd")) <= step
    subprocess.run(_cli(tmp_path, "lmd"), check=True, cwd=ROOT, env=ENV)
    assert _log_steps(tmp_path, "lmd") == _log_steps(reference, "lmd")
    got, ref = _values(tmp_path), _values(reference)
    ref = ref[ref["method"].isin(set(got["method"]))].reset_index(drop=True)
    assert "lmd" in set(got["method"])
    pd.testing.assert_frame_equal(got, ref)


@pytest.mark.slow
def test_interrupt_stops_every_worker_of_jobs_2(reference, tmp_path) -> None:
    proc = _start_and_wait(tmp_path, "lmd,ct", 30, "--jobs", "2")
    proc.send_signal(signal.SIGINT)  # to the launcher only: it relays the stop to its workers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and len(err.strip().splitlines()) == 1, err
    for m in ("lmd", "ct"):
        assert f"{m}-s0 at step " in err
        ckpt = torch.load(tmp_path / "gmm" / "runs" / f"{m}-s0" / "ckpt.pt", weights_only=False)
        assert 30 <= ckpt["step"] < 1500
    subprocess.run(_cli(tmp_path, "lmd,ct", "--jobs", "2"), check=True, cwd=ROOT, env=ENV)
    pd.testing.assert_frame_equal(_values(tmp_path), _values(reference))
    pd.testing.assert_frame_equal(
        _values(tmp_path, "convergence.csv"), _values(reference, "convergence.csv")
    )


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(reference, tmp_path) -> None:
    proc = _start_and_wait(tmp_path, "lmd,ct", 520)  # past the first periodic checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "gmm" / "metrics.csv").exists()
    subprocess.run(_cli(tmp_path, "lmd,ct"), check=True, cwd=ROOT, env=ENV)
    pd.testing.assert_frame_equal(_values(tmp_path), _values(reference))
    pd.testing.assert_frame_equal(
        _values(tmp_path, "convergence.csv"), _values(reference, "convergence.csv")
    )
    assert not list(tmp_path.rglob("*.tmp")), "partial files left behind"


def test_stop_during_a_probe_saves_that_step(tmp_path) -> None:
    """A stop that cuts off a convergence probe mid-training saves the probe's step (not the last
    periodic checkpoint) and reports it; the rerun resumes there and redoes the probe."""
    from benchmarks.base import stop
    from benchmarks.config import load_config
    from benchmarks.data.batches import BatchSampler
    from benchmarks.training import factory
    from benchmarks.training.loop import train

    cfg = load_config("gmm", "smoke", {}, ["train.steps=40", "train.ckpt_every=100"])
    problem = factory.load_problem(cfg, 0)
    seen: list[int] = []
    fired: list[int] = []

    def on_step(done: int) -> None:
        seen.append(done)
        if done == 17 and not fired:
            fired.append(done)
            stop.request(signal.SIGTERM)  # the signal arrives while the probe samples
            raise stop.Stopped(-1)

    def run() -> None:
        torch.manual_seed(0)
        p = factory.parts(cfg, "fmm", problem.shape, None, torch.device("cpu"))
        batches = BatchSampler(problem.train, cfg.train.batch, seed=0)
        train(p, batches, cfg.train, tmp_path, torch.device("cpu"), quiet=True, on_step=on_step)

    stop.reset()
    with pytest.raises(stop.Stopped) as e:
        run()
    assert (e.value.step, e.value.total) == (17, 40)
    assert torch.load(tmp_path / "ckpt.pt", weights_only=False)["step"] == 17
    stop.reset()
    seen.clear()
    run()
    assert seen[:2] == [17, 18] and seen[-1] == 40  # the cut-off probe is redone first
