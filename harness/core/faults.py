"""Crash points for the chaos test: a process that reaches one dies as if the power went.

``BENCH_CRASH_AT=point[:n[:SIGNAL]]`` sends this process SIGKILL (or SIGNAL, e.g. ``INT`` for a
Ctrl-C at a known moment) the n-th time (default: the first) it reaches ``crash_point(point)``.
With ``BENCH_CRASH_ONCE=FILE`` only the first process to reach it crashes (it creates FILE
first): a run retried in a fresh worker then goes through, as after a real one-off crash.
Unset, as always outside the tests, a crash point does nothing.
The points are ``decode`` (half of a dataset decoded into its cache file), ``epoch`` (an epoch
trained: the driver crashes when its worker reports the epoch) and ``result`` (a result written to its
temporary file, not yet renamed into place).
"""
from __future__ import annotations

import os
import signal

ENV = "BENCH_CRASH_AT"
ONCE = "BENCH_CRASH_ONCE"
_reached: dict[str, int] = {}


def crash_point(name: str) -> None:
    point, _, rest = os.environ.get(ENV, "").partition(":")
    if point != name:
        return
    nth, _, sig = rest.partition(":")
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(nth or 1) and _first_crash():
        os.kill(os.getpid(), getattr(signal, f"SIG{sig}") if sig else signal.SIGKILL)


def _first_crash() -> bool:
    """Whether this crash is allowed: always, or under ``BENCH_CRASH_ONCE`` only if none happened yet."""
    marker = os.environ.get(ONCE)
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False
