"""Fewer garbage collections while a sync runs.

An initial sync allocates millions of short-lived containers (JSON answers, events, rows), almost none
in reference cycles; with CPython's default thresholds (a young collection every 700 allocations, and
every so often a full one over the whole heap, SQLAlchemy's and FastAPI's objects included) the cyclic
collector took a large share of a sync's CPU (bench/inbound_google.py, 10,000 events: 140 -> 100 µs an
event; the figures on this shared machine move by 15% from run to run). While any sync runs in the
process, the objects that were alive when the first began are frozen (gc.freeze: left out of
collections, so a full collection walks only what the sync made) and young collections are rarer;
when the last sync ends, the thresholds are put back and the frozen objects are collected as usual
again. Reference counting frees everything without a cycle at once either way; garbage in cycles
made meanwhile waits a little longer. Threads share the setting: a count says when the last one left.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# young collections every 10,000 allocations (not 700); the older generations as CPython has them. Higher
# (50,000, 20, 100) saved a little more CPU but let peak RSS grow with the calendar (202 MB at 100,000
# events against 112 MB), so not that.
SYNC_THRESHOLD = (10_000, 10, 10)


class _Shared:
    """How many syncs are running in the process, and the thresholds to put back after the last."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.saved = gc.get_threshold()


_shared = _Shared()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Around one sync (nested and concurrent uses share one setting)."""
    with _shared.lock:
        if _shared.active == 0:
            _shared.saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(*SYNC_THRESHOLD)
        _shared.active += 1
    try:
        yield
    finally:
        with _shared.lock:
            _shared.active -= 1
            if _shared.active == 0:
                gc.set_threshold(*_shared.saved)
                gc.unfreeze()
