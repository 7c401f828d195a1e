"""Run a provider's page listing one page ahead of the engine, in a helper thread.

While the engine stores page k (much of it inside SQLite, which lets go of the GIL), the helper
fetches and parses page k+1 (and no further), so the network, the parser and the database work side by side instead
of taking turns. Pages still arrive in order, and an error of the listing arrives after the pages
before it, exactly where a plain loop would have raised it. Leaving the block early (an error while
storing, a crash hook) stops the helper and waits for it, so the provider is never used by two
threads at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

_END = object()
_POLL = 0.1  # seconds between looks at the stop flag while the engine is busy


@contextmanager
def prefetched(
    items: Iterator[T], *, name: str = "prefetch", more: Callable[[T], bool] | None = None
) -> Iterator[Iterator[T]]:
    """`with prefetched(provider.list_changes(...)) as pages: for page in pages: ...`

    `more(first)`: whether items may follow the first one (a listing's page that is not its last).
    Given, the first item is made in the caller's thread, and the helper starts only when more may
    follow: a quiet poll's one-page listing starts no thread (and pays no hand-over) at all."""
    handoff: queue.Queue[tuple[bool, object]] = queue.Queue()
    taken = threading.Semaphore(0)
    stop = threading.Event()

    def hand(ok: bool, value: object) -> bool:
        """Hand one item over and wait until the engine has taken it: then only two pages are alive
        at a time (the one being stored, the one being made), which bounds memory."""
        handoff.put((ok, value))
        while not stop.is_set():
            if taken.acquire(timeout=_POLL):
                return True
        return False

    def produce() -> None:
        try:
            for item in items:
                if not hand(True, item):
                    return
            hand(True, _END)
        except BaseException as exc:  # noqa: BLE001 - handed to the engine's thread, raised there
            hand(False, exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    helper = threading.Thread(target=produce, name=name, daemon=True)

    def from_helper() -> Iterator[T]:
        helper.start()
        while True:
            ok, value = handoff.get()
            taken.release()
            if not ok:
                assert isinstance(value, BaseException)
                raise value
            if value is _END:
                return
            yield value  # type: ignore[misc]

    def consume() -> Iterator[T]:
        if more is None:
            yield from from_helper()
            return
        first = next(items, _END)  # in this thread: an error is raised here, as a plain loop would
        if first is _END:
            return
        yield first  # type: ignore[misc]
        if more(first):  # type: ignore[arg-type]
            yield from from_helper()
        else:
            yield from items  # nothing, as a rule: the listing's own end (its last lines run here)

    try:
        yield consume()
    finally:
        stop.set()
        if helper.ident is not None:  # started: it closes the listing itself
            helper.join()
        else:
            close = getattr(items, "close", None)
            if close is not None:
                close()
