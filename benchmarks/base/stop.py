"""Stopping a run cleanly: a stop request, the signals that raise it, and the exception it ends in.

SIGINT (Ctrl-C), SIGTERM (``kill``, a container stop) and, under Slurm, SIGUSR2 (the warning
before the time limit, or a preemption) all set ``STOP``. The training loop polls it after each
step, saves a checkpoint at that exact step and raises :class:`Stopped`; evaluation polls it
between NFEs and raises too, leaving no partial file (the rerun redoes only the evaluation).
A second SIGINT/SIGTERM while the checkpoint is written is ignored; a third exits at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

STOP = threading.Event()
_received: list[int] = []  # signal numbers, in order


class Stopped(RuntimeError):
    """Training or evaluation stopped on request; a checkpoint holds the step reached."""

    def __init__(self, step: int, total: int = 0) -> None:
        where = f"step {step} of {total}" if total else f"step {step}"
        super().__init__(f"stopped at {where} on request; the checkpoint is at that step")
        self.step, self.total = step, total


def request(signum: int) -> None:
    """Ask the running cell to stop (what the signal handlers do)."""
    _received.append(signum)
    STOP.set()


def received() -> int | None:
    """The first signal that asked for a stop, if any."""
    return _received[0] if _received else None


def count() -> int:
    """How many stop signals have arrived."""
    return len(_received)


def exit_code() -> int:
    """128 + the first signal's number (130 for SIGINT, 143 for SIGTERM); 1 without a signal."""
    return 128 + _received[0] if _received else 1


def reset() -> None:
    STOP.clear()
    _received.clear()


def _handler(signum: int, _frame) -> None:
    request(signum)
    if len(_received) >= 3:  # the third signal: no more waiting for the checkpoint
        os._exit(128 + signum)


@contextlib.contextmanager
def handle(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Within this block the given signals request a stop instead of killing the process."""
    old = {s: signal.signal(s, _handler) for s in signals}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
