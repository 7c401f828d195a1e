"""Exceptions that a provider lists before their series (Graph's delta does; a page boundary can fall
between them anywhere) join the series when it arrives: later on the same page, on a later page, or
in a later sync.

The listing here is scripted: which page of a real provider's listing an exception lands on is not
something a test can choose. Everything below the provider (engine, store, SQLite) is the real one.
"""
from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Engine

from calsync.engine.inbound import sync_binding
from calsync.model import ChangePage, EventData, RemoteEvent
from calsync.providers.base import Capabilities
from tests.helpers import bind, local_events


class ScriptedListing:
    """A provider whose change listings are given: one list of pages per sync."""

    capabilities = Capabilities(push=False)

    def __init__(self, syncs: list[list[list[RemoteEvent]]]) -> None:
        self.syncs = iter(syncs)
        self.request_count = 0

    def list_changes(self, calendar_id: str, sync_token: str | None) -> Iterator[ChangePage]:
        pages = next(self.syncs)
        for number, items in enumerate(pages, 1):
            self.request_count += 1
            last = number == len(pages)
            yield ChangePage(items=list(items), full=sync_token is None, last=last,
                             sync_token=f"after-{self.request_count}" if last else None)

    def listing_window(self) -> None:
        return None  # a listing covers the whole calendar


def master(remote_id: str) -> RemoteEvent:
    return RemoteEvent(remote_id, f'"{remote_id}-1"', EventData(
        title=f"series {remote_id}", start="2026-12-07T09:00:00Z", end="2026-12-07T10:00:00Z",
        time_zone="UTC", recurrence=["RRULE:FREQ=WEEKLY;COUNT=5"]))


def exception(series: str, week: int) -> RemoteEvent:
    day = 7 + 7 * week
    return RemoteEvent(f"{series}_w{week}", f'"{series}-w{week}-1"', EventData(
        title=f"series {series}, week {week} moved", start=f"2026-12-{day:02d}T11:00:00Z",
        end=f"2026-12-{day:02d}T12:00:00Z", original_start=f"2026-12-{day:02d}T09:00:00Z"),
        series_remote_id=series)


def single(remote_id: str) -> RemoteEvent:
    return RemoteEvent(remote_id, f'"{remote_id}-1"', EventData(
        title=remote_id, start="2026-12-08T09:00:00Z", end="2026-12-08T10:00:00Z"))


def test_exceptions_listed_before_their_series_join_it(engine: Engine) -> None:
    binding = bind(engine, "http://127.0.0.1:9", "orphans", "primary")
    listing = ScriptedListing([
        # first sync: A's exception on page 1, A on page 2; B's exception, but B itself not yet;
        # C's exception after C on the same page
        [[exception("A", 1), single("lone")], [master("A"), exception("B", 2)], [master("C"), exception("C", 1)]],
        # second sync: B arrives
        [[single("other"), master("B")]],
    ])

    first = sync_binding(engine, listing, binding)  # type: ignore[arg-type]
    assert first.status == "ok", first.message
    stored = local_events(engine, binding)
    assert stored["A_w1"]["recurring_event_id"] == stored["A"]["id"], "an earlier page's exception joins its series"
    assert stored["C_w1"]["recurring_event_id"] == stored["C"]["id"]
    assert stored["B_w2"]["recurring_event_id"] is None, "its series has not arrived yet"

    second = sync_binding(engine, listing, binding)  # type: ignore[arg-type]
    assert second.status == "ok", second.message
    stored = local_events(engine, binding)
    assert stored["B_w2"]["recurring_event_id"] == stored["B"]["id"], "a later sync's series takes its exception in"
    assert stored["A_w1"]["recurring_event_id"] == stored["A"]["id"]
    assert stored["lone"]["recurring_event_id"] is None and stored["other"]["recurring_event_id"] is None
