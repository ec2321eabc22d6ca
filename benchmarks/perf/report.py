"""perf.csv and perf.md of ``benchmarks.perf``: one row per measurement, tables, target checks."""

from __future__ import annotations

import datetime
import math
import platform
from pathlib import Path

import pandas as pd
import torch

COLUMNS = (
    "kind net method solver nfe batch n_samples sample_batch device compile median_s p10_s p90_s "
    "ratio_to_fm gflop_step flops_ratio_to_fm samples_per_s speedup_vs_dopri5 peak_mem_mb "
    "host_syncs compile_s teacher"
).split()
RATIO_TARGET = {"methods": ("emd", "esd", "meanflow"), "max": 1.5}  # step time / fm step time
SPEEDUP_TARGET = 20.0  # one-step flow map samples/s over the fm teacher's dopri5


def device_name(device: str) -> str:
    """The GPU's name, or the CPU model from /proc/cpuinfo."""
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _f(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


def add_speedups(df: pd.DataFrame) -> pd.DataFrame:
    """speedup_vs_dopri5 of every sampling row: its samples/s over the same net's dopri5."""
    df = df.copy()
    df["speedup_vs_dopri5"] = float("nan")
    for net in df["net"].unique():
        dop = df[(df["net"] == net) & (df["solver"] == "dopri5")]["samples_per_s"]
        if len(dop):
            sel = (df["net"] == net) & (df["kind"] == "sample")
            df.loc[sel, "speedup_vs_dopri5"] = df.loc[sel, "samples_per_s"] / dop.iloc[0]
    return df


def train_table(df: pd.DataFrame) -> str:
    compiled = bool(df["compile"].any())
    head = ["method", "compiled"] if compiled else ["method"]
    head += ["step ms (median)", "p10-p90 ms", "x fm", "GFLOP/step", "x fm (FLOPs)", "peak MB"]
    head += ["teacher in step"]
    head += ["compile s"] if compiled else []
    body = []
    for r in df.itertuples():
        cells = [f"`{r.method}`"] + (["yes" if r.compile else "no"] if compiled else [])
        cells += [_f(1e3 * r.median_s), f"{1e3 * r.p10_s:.2f}-{1e3 * r.p90_s:.2f}"]
        cells += [_f(r.ratio_to_fm), _f(r.gflop_step, 3), _f(r.flops_ratio_to_fm)]
        cells += [_f(r.peak_mem_mb, 1), r.teacher or "-"]
        body.append(cells + ([_f(r.compile_s, 1)] if compiled else []))
    return _table(head, body)


def sample_table(df: pd.DataFrame) -> str:
    head = ["sampler", "NFE (counted)", "s per run (median)", "samples/s", "x dopri5", "peak MB"]
    body = [
        [
            "flow map X_{s,t}" if r.method == "flowmap" else f"fm velocity, {r.solver}",
            str(int(r.nfe)),
            _f(r.median_s, 3),
            f"{r.samples_per_s:,.0f}",
            _f(r.speedup_vs_dopri5, 1),
            _f(r.peak_mem_mb, 1),
        ]
        for r in df.itertuples()
    ]
    return _table(head, body)


def targets(df: pd.DataFrame) -> list[list[str]]:
    """One line per target check: what, net, value, goal, met or missed."""
    out = []
    for (net, comp), g in df[df["kind"] == "train"].groupby(["net", "compile"]):
        tag = f"{net}{' compiled' if comp else ''}"
        for m in RATIO_TARGET["methods"]:
            v = g[g["method"] == m]["ratio_to_fm"]
            if len(v):
                ok = v.iloc[0] <= RATIO_TARGET["max"]
                line = [f"`{m}` step / `fm` step", tag, _f(v.iloc[0]), f"<= {RATIO_TARGET['max']}"]
                out.append(line + ["met" if ok else "**missed**"])
    for net, g in df[df["kind"] == "sample"].groupby("net"):
        v = g[(g["method"] == "flowmap") & (g["nfe"] == 1)]["speedup_vs_dopri5"]
        if len(v):
            ok = v.iloc[0] >= SPEEDUP_TARGET
            line = ["1-NFE flow map / dopri5 samples/s", net, _f(v.iloc[0], 1)]
            out.append(line + [f">= {SPEEDUP_TARGET:g}", "met" if ok else "**missed**"])
    return out


def markdown(df: pd.DataFrame, argv: list[str] | None, seconds: float) -> str:
    dev = str(df["device"].iloc[0])
    cmd = " ".join(["python -m benchmarks.perf", *(argv or [])])
    parts = [
        "# flowmap-bench speed (`benchmarks.perf`)",
        f"- device: {dev} ({device_name(dev)}); torch {torch.__version__}; "
        f"{torch.get_num_threads()} threads; {datetime.date.today().isoformat()}"
        + (
            "; one thread by default: the two cores are shared, 2-thread timings were erratic"
            if dev == "cpu"
            else ""
        ),
        f"- command: `{cmd}` ({seconds:.0f} s)",
        "- training step: `benchmarks.training.loop.train_step` (loss, backward, clip, optimiser "
        "step, lr schedule, EMA, after_step; data fetch included), median over repeated steps after "
        "warm-up; x fm = median / fm's median on the same net, batch and compile setting. A "
        "teacher's cost (named in the table) is part of the step.",
        "- GFLOP/step: counted, not timed (`benchmarks.training.flops.step_flops`: "
        "`torch.utils.flop_counter.FlopCounterMode` over one whole `train_step`, jvps, teacher "
        "solves and backward included; after one warm-up step, the mean of `--flops-steps` (default "
        "4) steps spread evenly over `train.steps`, since steps vary: random solve lengths, "
        "stages, curricula). Only what the counter knows counts: "
        "matmuls (mm, addmm, bmm, baddbmm), convolutions and their backward, attention, at 2 "
        "FLOPs per multiply-add; elementwise ops, activations, norms, reductions, the optimiser, "
        "clipping and the EMA count 0. A teacher's calls are charged at a network's forward (the "
        "exact gmm velocity, elementwise and timed as it is, by a stand-in MLP: "
        "`charged_teacher`), as a cell's `train_flops` does. A jvp of "
        "a linear or conv layer counts 3x its forward (torch 2.14 also multiplies by the "
        "weights' zero tangent). x fm (FLOPs) = GFLOP/step / fm's.",
        "- peak MB: memory one call takes above what was held before it (activations, "
        "gradients, temporaries; not the weights): CUDA `torch.cuda.max_memory_allocated` minus "
        "`memory_allocated` before; CPU peak RSS minus RSS before (approximate, measured after "
        "all timings with glibc returning freed memory to the OS).",
        "- sampling: `benchmarks.evaluation.evaluate.run_sampler` (inference mode, batched, samples copied "
        "to the CPU) on a briefly trained fm net, used as flow map (composition) and as velocity "
        "(Euler, Heun, dopri5 at `EvalCfg` rtol/atol); NFE is counted at the call site.",
    ]
    if df["compile"].any():
        parts.append(
            "- compile s: extra time of the first compiled step (dynamo and inductor; graphs are "
            "cached across the methods of one process, so later methods reuse earlier graphs)."
        )
    for net, g in df.groupby("net", sort=False):
        tr, sa = g[g["kind"] == "train"], g[g["kind"] == "sample"]
        parts.append(f"\n## `{net}`, batch {int(g['batch'].iloc[0])}\n")
        if len(tr):
            parts.append(train_table(tr))
        if len(sa):
            n, b = int(sa["n_samples"].iloc[0]), int(sa["sample_batch"].iloc[0])
            note = f"Sampling {n} samples in batches of {min(n, b)}; {sa['teacher'].iloc[0]}"
            parts.append(f"\n{note}:\n\n" + sample_table(sa))
    lines = targets(df)
    if lines:
        parts.append("\n## Targets\n\n" + _table(["check", "net", "value", "goal", ""], lines))
    return "\n".join(parts) + "\n"


def write_outputs(rows: list[dict], out: Path, argv: list[str] | None, seconds: float) -> str:
    """Write ``out/perf.csv`` and ``out/perf.md``; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    df = add_speedups(pd.DataFrame(rows))
    df = df.reindex(columns=COLUMNS)
    df.to_csv(out / "perf.csv", index=False)
    text = markdown(df, argv, seconds)
    (out / "perf.md").write_text(text)
    return text
