"""One line on the machine a bench runs on, printed above its figures.

Why: CPU figures (seconds per 1,000 events, ms a poll, whether a target of seconds is met on 2
cores) depend on the machine as much as on the code. Two machines of the same kind here ran the
same commit's inbound bench at 0.045 and 0.100 s of client CPU per 1,000 events. The line names
the processor and the interpreter and times a fixed piece of pure-Python work (dictionary reads
and writes, arithmetic: the kind of work a sync does between its C libraries), so figures from two
machines can be set side by side: divide each by its machine's reference time. On a shared
machine the reference itself varies by a fifth or more from minute to minute (seen here): a bench's
figure is no steadier than that.
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import time
from pathlib import Path


def reference_seconds(repeat: int = 5) -> float:
    """CPU seconds of the reference work on this thread, the best of `repeat` runs (the least
    disturbed), with the cyclic collector held off."""
    best = float("inf")
    collecting = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            started = time.thread_time()
            _reference_work()
            best = min(best, time.thread_time() - started)
    finally:
        if collecting:
            gc.enable()
    return best


def _reference_work() -> None:
    """Dictionary reads and writes, integer arithmetic and calls, allocating next to nothing (a
    version that made 200,000 dicts varied with the allocator's mood by half)."""
    state = {"k": 0, "title": "Design review"}
    total = 0
    for i in range(1_000_000):
        state["k"] = (state["k"] * 31 + i) % 1_000_003
        total += len(state["title"]) + (state["k"] & 7)


def processor() -> str:
    """The processor's model name as the kernel reports it (or the platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    """`machine: <processor>, <n> cores; Python <version> (<executable>); reference work <s> s`."""
    return (
        f"machine: {processor()}, {os.cpu_count()} cores; Python {platform.python_version()} "
        f"({sys.executable}); reference work {reference_seconds():.3f} s of CPU (bench/_machine.py: "
        f"divide a CPU figure by it to compare machines)"
    )


if __name__ == "__main__":
    print(describe())
