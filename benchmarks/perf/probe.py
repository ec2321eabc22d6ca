"""Timing and memory probes of ``benchmarks.perf``: synchronised wall-clock repetitions, peak memory."""

from __future__ import annotations

import contextlib
import ctypes
import re
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timings(fn: Callable[[], object], reps: int, warmup: int, device: torch.device) -> list[float]:
    """Seconds of ``reps`` calls after ``warmup`` untimed ones, synchronising around each."""
    return interleaved([fn], reps, warmup, device)[0]


def interleaved(
    fns: list[Callable[[], object]], reps: int, warmup: int, device: torch.device
) -> list[list[float]]:
    """Seconds of ``reps`` rounds of calls to each of ``fns`` in turn (after ``warmup`` rounds).

    Timing a method's step right next to the reference's makes their ratio robust to the load of
    a shared machine changing during the benchmark.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for fn, secs in zip(fns, out):
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            secs.append(time.perf_counter() - t0)
    return out


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@contextlib.contextmanager
def exact_rss() -> Iterator[bool]:
    """Within: freed memory goes back to the OS (glibc mallopt), so that peak RSS tracks
    allocations; yields whether that could be set. It slows allocation about 2x, so it is used only
    after every timing; on exit the thresholds take glibc's grown values (allocation speed as
    before: checked on a jvp training step)."""
    libc = _libc()
    ok = bool(
        libc and libc.mallopt(M_MMAP_THRESHOLD, 1 << 16) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 16)
    )
    try:
        yield ok
    finally:
        if libc:
            libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
            libc.mallopt(M_TRIM_THRESHOLD, 64 << 20)


def peak_mem_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory of one call above what was held before it (activations, gradients, temporaries).

    CUDA: ``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` before the call. CPU: peak
    RSS (VmHWM, reset through /proc/self/clear_refs) minus RSS before; NaN where unavailable.
    """
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    status = Path("/proc/self/status")
    libc = _libc()
    if libc:
        libc.malloc_trim(0)  # cached free memory would hide this call's allocations
    try:
        Path("/proc/self/clear_refs").write_text("5")
        base = float(re.search(r"VmRSS:\s+(\d+)", status.read_text())[1])
    except (OSError, TypeError):
        return float("nan")
    fn()
    return (float(re.search(r"VmHWM:\s+(\d+)", status.read_text())[1]) - base) / 1024


def host_syncs(fn: Callable[[], object], device: torch.device) -> float:
    """CUDA: how many host-device synchronisations one call makes (``set_sync_debug_mode``);
    NaN elsewhere."""
    if device.type != "cuda":
        return float("nan")
    _sync(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return float(sum("synchroniz" in str(w.message) for w in caught))
