"""engine/collector.py: the heap as it was frozen while syncs run, unfrozen after the last."""

from __future__ import annotations

import gc
import threading
import weakref

from calsync.engine.collector import fewer_collections


def test_the_heap_is_frozen_while_any_sync_runs_and_unfrozen_after_the_last() -> None:
    entered, leave = threading.Event(), threading.Event()

    def other_sync() -> None:
        with fewer_collections():
            entered.set()
            leave.wait(10)

    with fewer_collections():
        assert gc.get_freeze_count() > 0
        thread = threading.Thread(target=other_sync)
        thread.start()
        assert entered.wait(10)
    assert gc.get_freeze_count() > 0, "the other sync still runs"
    leave.set()
    thread.join(10)
    assert gc.get_freeze_count() == 0


def test_cycles_made_during_a_sync_are_collected_after_it() -> None:
    class Node:
        other: Node

    with fewer_collections():
        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
    gc.collect()
    assert gone() is None
