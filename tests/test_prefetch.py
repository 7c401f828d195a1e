"""The engine's one-page-ahead listing: same pages, same order, errors where a plain loop has them."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from calsync.engine.prefetch import prefetched


class Listing:
    """A provider-like generator that records how far it got and whether it was closed."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.produced = 0
        self.closed = False
        self.threads: set[str] = set()

    def __iter__(self) -> Iterator[int]:
        try:
            for i in range(self.count):
                self.threads.add(threading.current_thread().name)
                if i == self.fail_at:
                    raise ValueError(f"page {i} failed")
                self.produced += 1
                yield i
        finally:
            self.closed = True


def test_pages_arrive_in_order_from_a_helper_thread() -> None:
    listing = Listing(50)
    with prefetched(iter(listing), name="helper") as pages:
        assert list(pages) == list(range(50))
    assert listing.threads == {"helper"} and listing.closed


def test_an_error_arrives_after_the_pages_before_it() -> None:
    listing = Listing(10, fail_at=4)
    seen: list[int] = []
    with pytest.raises(ValueError, match="page 4 failed"):
        with prefetched(iter(listing)) as pages:
            for page in pages:
                seen.append(page)
    assert seen == [0, 1, 2, 3]


def test_the_helper_runs_at_most_one_page_ahead_and_stops_when_the_engine_leaves() -> None:
    listing = Listing(1000)
    before = threading.active_count()
    with pytest.raises(RuntimeError):
        with prefetched(iter(listing)) as pages:
            for page in pages:
                time.sleep(0.2)  # the engine is slow: the helper must wait, not run on
                assert listing.produced <= page + 2  # this page, and the next one being made
                if page == 2:
                    raise RuntimeError("crash while storing")
    assert listing.closed and listing.produced <= 4
    assert threading.active_count() == before  # the helper was waited for: the provider is free again
