"""Cheaper garbage collections while a sync runs.

An initial sync allocates millions of short-lived containers (JSON answers, events, rows), so CPython's
cyclic collector runs thousands of times during it, and every so often walks the whole heap, the
thousands of objects SQLAlchemy, FastAPI and the rest made at import included. While any sync runs in
the process, the objects that were alive when the first began are frozen (gc.freeze: left out of
collections, so a full collection walks only what the syncs made); when the last sync ends they are
unfrozen and collected as usual again. The thresholds are the process's own: a library user keeps
CPython's, and the CLI raises them (cli.common.settle_heap). bench/inbound_google.py at 100,000
events: 0.20 -> 0.17 s of CPU per 1,000 events (the figures on this shared machine move by 10-15%
from run to run).
Threads share the setting: a count says when the last sync has left.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Shared:
    """How many syncs are running in the process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0


_shared = _Shared()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Around one sync (nested and concurrent uses share one freeze)."""
    with _shared.lock:
        if _shared.active == 0:
            gc.freeze()
        _shared.active += 1
    try:
        yield
    finally:
        with _shared.lock:
            _shared.active -= 1
            if _shared.active == 0:
                gc.unfreeze()
