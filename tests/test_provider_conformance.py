"""The Provider contract (providers/base.py), checked by calling each provider's methods directly:
the in-memory service, Google and Graph (emulators), Radicale and Xandikos (real servers).

No engine here: each test is one promise of the protocol, asked of every provider the same way,
with changes made by another client through tests/remotes.py. Where the providers legitimately
differ (documented in base.py or in the provider's docstring), the test asserts each one's
documented behaviour rather than skipping it. The memory provider's own switches (faults, paging,
its series model) are checked at the end."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from calsync.model import (
    ChangePage,
    EventData,
    RemoteChange,
    RemoteDeletion,
    RemoteEvent,
)
from calsync.providers.base import (
    AlreadyExists,
    AuthError,
    NotFoundError,
    PreconditionFailed,
    Provider,
    ProviderError,
    RateLimited,
    SyncTokenInvalid,
)
from calsync.providers.memory import MemoryProvider, MemoryService
from calsync.series_exdates import excluded_starts
from tests.remotes import ALL_REMOTES, DAY, MemoryRemote, Remote, open_remote

HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)
STARTS = [DAY + WEEK * n for n in range(4)]  # a weekly series of four, from 2026-12-01 09:00 UTC
LO, HI = DAY - timedelta(days=1), DAY + timedelta(days=30)
# how each service keeps a deleted occurrence (Provider.cancel_occurrence), as another client sees it
CANCELLED_STATE = {"memory": "excluded", "google": "cancelled", "graph": "gone", "radicale": "excluded",
                   "xandikos": "excluded"}


@pytest.fixture(params=ALL_REMOTES)
def remote(request: pytest.FixtureRequest) -> Remote:
    """Each provider in turn, the in-memory one first (this module's own `remote`)."""
    return open_remote(str(request.param), request)


@pytest.fixture()
def provider(remote: Remote) -> Iterator[Provider]:
    client = remote.provider()
    yield client
    client.close()


def utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    """An id as calsync gives its creates (a local event id: usable as a CalDAV resource name too)."""
    return uuid.uuid4().hex


def event(title: str, at: datetime = DAY, **fields: object) -> EventData:
    return EventData(title=title, start=utc(at), end=utc(at + HOUR), **fields)  # type: ignore[arg-type]


def weekly(title: str = "Weekly") -> EventData:
    return event(title, recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"])


def drain(provider: Provider, calendar: str, token: str | None) -> tuple[list[ChangePage], str]:
    """Every page of a listing, checked against ChangePage's promises: the token on the last page only."""
    pages = list(provider.list_changes(calendar, token))
    assert pages and pages[-1].last and pages[-1].sync_token
    assert all(not p.last and p.sync_token is None for p in pages[:-1])
    assert all(p.full == (token is None) for p in pages)
    return pages, pages[-1].sync_token


def latest(pages: list[ChangePage]) -> dict[str, RemoteChange]:
    """What a listing says of each id (a later mention wins, as the engine reads a page)."""
    return {item.remote_id: item for page in pages for item in page.items}


def stored_writes(remote: Remote) -> int:
    """Writes that changed the service since clear_requests (HTTP: write requests in the log)."""
    return remote.stored_writes() if isinstance(remote, MemoryRemote) else len(remote.writes())


# --- calendars and listings ------------------------------------------------------------------


def test_list_calendars_names_every_calendar_and_one_primary(remote: Remote, provider: Provider) -> None:
    second = remote.new_calendar("Second calendar")
    found = {c.remote_id: c for c in provider.list_calendars()}
    assert {remote.calendar, second} <= set(found)
    assert all(c.name for c in found.values())
    assert sum(c.primary for c in found.values()) == 1  # CalDAV has none: the first one stands for it


def test_listing_window_is_documented_per_provider(remote: Remote, provider: Provider) -> None:
    window = provider.listing_window()
    if remote.name == "graph":  # calendarView: a fixed window around now
        assert window is not None and window[0] < datetime.now(UTC) < window[1]
    else:
        assert window is None


def test_full_listing_then_incremental_sees_another_clients_insert_update_delete(
        remote: Remote, provider: Provider) -> None:
    keep = remote.insert("Standup")
    doomed = remote.insert("Retro", at=DAY + timedelta(days=1))
    pages, token = drain(provider, remote.calendar, None)
    listed = latest(pages)
    assert {keep, doomed} <= set(listed)
    first = listed[keep]
    assert isinstance(first, RemoteEvent) and first.data.title == "Standup" and first.etag

    born = remote.insert("Planning", at=DAY + timedelta(days=2))
    remote.change(keep, title="Standup (room 4)")
    remote.delete(doomed)
    pages, later = drain(provider, remote.calendar, token)
    seen = latest(pages)
    assert isinstance(seen[born], RemoteEvent) and seen[born].data.title == "Planning"
    changed = seen[keep]
    assert isinstance(changed, RemoteEvent) and changed.data.title == "Standup (room 4)"
    assert changed.etag != first.etag
    assert isinstance(seen[doomed], RemoteDeletion)

    pages, _ = drain(provider, remote.calendar, later)  # nothing happened since
    assert [item for page in pages for item in page.items] == []


def test_a_listing_comes_in_pages_with_the_token_on_the_last(remote: Remote) -> None:
    remote.seed(7)
    client = remote.provider(page_size=3)
    try:
        pages, _ = drain(client, remote.calendar, None)
    finally:
        client.close()
    assert len(pages) >= 3
    assert len({item.remote_id for page in pages for item in page.items}) == 7


def test_an_invalidated_token_raises_sync_token_invalid(remote: Remote, provider: Provider) -> None:
    remote.insert("Before")
    _, token = drain(provider, remote.calendar, None)
    refused = remote.refused_token(token)
    with pytest.raises(SyncTokenInvalid):
        drain(provider, remote.calendar, refused)
    pages, _ = drain(provider, remote.calendar, None)  # a full listing starts over
    assert "Before" in {i.data.title for i in latest(pages).values() if isinstance(i, RemoteEvent)}


# --- reading by id -------------------------------------------------------------------------------


def test_get_event_of_a_missing_id_is_none(remote: Remote, provider: Provider) -> None:
    doomed = remote.insert("Doomed")
    found = provider.get_event(remote.calendar, doomed)
    assert found is not None and found.data.title == "Doomed"
    remote.delete(doomed)
    assert provider.get_event(remote.calendar, doomed) is None
    if remote.name == "graph":  # an id Graph never issues is malformed (400): not a proof of anything
        with pytest.raises(ProviderError) as refused:
            provider.get_event(remote.calendar, new_id())
        assert refused.value.status == 400 and not isinstance(refused.value, NotFoundError)
    else:
        assert provider.get_event(remote.calendar, new_id()) is None


def test_fetch_events_answers_every_id_with_none_only_for_the_gone(remote: Remote, provider: Provider) -> None:
    alive = remote.insert("Alive")
    gone = remote.insert("Gone", at=DAY + HOUR)
    remote.delete(gone)
    never = new_id()
    if remote.name == "graph":  # "any other failure raises": a malformed id (400) is no deletion
        with pytest.raises(ProviderError):
            provider.fetch_events(remote.calendar, [alive, never])
        never = gone
    found = provider.fetch_events(remote.calendar, [alive, gone, never, alive])
    assert set(found) == {alive, gone, never}
    held = found[alive]
    assert held is not None and held.data.title == "Alive" and held.etag
    assert found[gone] is None and found[never] is None


# --- writing -------------------------------------------------------------------------------------


def test_insert_update_delete_round_trip_with_etags(remote: Remote, provider: Provider) -> None:
    sent = event("Made by calsync", location="Room 4", description="Agenda")
    made = provider.insert_event(remote.calendar, sent, remote_id=new_id())
    assert made.etag and made.content_hash == sent.content_hash()  # read back as written
    read = provider.get_event(remote.calendar, made.remote_id)
    assert read is not None and read.etag == made.etag and read.content_hash == made.content_hash
    assert remote.titles()[made.remote_id] == "Made by calsync"

    changed = provider.update_event(remote.calendar, made.remote_id, replace(read.data, title="Renamed"),
                                    if_match=made.etag)
    assert changed.remote_id == made.remote_id and changed.etag != made.etag
    assert changed.content_hash == replace(read.data, title="Renamed").content_hash()
    assert remote.titles()[made.remote_id] == "Renamed"
    again = provider.get_event(remote.calendar, made.remote_id)
    assert again is not None and again.etag == changed.etag

    provider.delete_event(remote.calendar, made.remote_id, if_match=changed.etag)
    assert provider.get_event(remote.calendar, made.remote_id) is None
    assert made.remote_id not in remote.titles()
    provider.delete_event(remote.calendar, made.remote_id, if_match=None)  # already gone: idempotent


def test_a_stale_if_match_raises_precondition_failed(remote: Remote, provider: Provider) -> None:
    made = provider.insert_event(remote.calendar, event("Ours"), remote_id=new_id())
    remote.change(made.remote_id, title="Someone else's")
    with pytest.raises(PreconditionFailed):
        provider.update_event(remote.calendar, made.remote_id, replace(made.data, title="Blind write"),
                              if_match=made.etag)
    with pytest.raises(PreconditionFailed):
        provider.delete_event(remote.calendar, made.remote_id, if_match=made.etag)
    assert remote.titles()[made.remote_id] == "Someone else's"


def test_a_guarded_write_to_an_event_deleted_meanwhile_raises(remote: Remote, provider: Provider) -> None:
    """PreconditionFailed (Google keeps the id with a new ETag; CalDAV: If-Match on no resource) or
    NotFoundError (Graph, memory): the engine re-reads on either. (Unguarded, Google and CalDAV write
    the event again, which the engine's retried create relies on; memory and Graph answer 404.)"""
    made = provider.insert_event(remote.calendar, event("Ours"), remote_id=new_id())
    remote.delete(made.remote_id)
    with pytest.raises((PreconditionFailed, NotFoundError)):
        provider.update_event(remote.calendar, made.remote_id, replace(made.data, title="Back?"),
                              if_match=made.etag)
    assert made.remote_id not in remote.titles()


def test_insert_with_an_existing_client_id(remote: Remote, provider: Provider) -> None:
    """A retried create: AlreadyExists where the client's id is the remote id (Google, CalDAV,
    memory); Graph keeps it as transactionId and answers the first event again (graph.py)."""
    remote_id = new_id()
    first = provider.insert_event(remote.calendar, event("Once"), remote_id=remote_id)
    if remote.name == "graph":
        again = provider.insert_event(remote.calendar, event("Once"), remote_id=remote_id)
        assert again.remote_id == first.remote_id
        assert list(remote.titles().values()).count("Once") == 1
        return
    assert first.remote_id == remote_id
    with pytest.raises(AlreadyExists):
        provider.insert_event(remote.calendar, event("Twice"), remote_id=remote_id)
    assert remote.titles()[remote_id] == "Once"


# --- series --------------------------------------------------------------------------------------


def test_cancel_occurrence_removes_exactly_that_occurrence_and_is_idempotent(
        remote: Remote, provider: Provider) -> None:
    series = provider.insert_event(remote.calendar, weekly(), remote_id=new_id())
    assert remote.occurrences(LO, HI) == [(s, "Weekly") for s in STARTS]

    answer = provider.cancel_occurrence(remote.calendar, series.remote_id, utc(STARTS[1]))
    rest = [(s, "Weekly") for s in STARTS if s != STARTS[1]]
    assert remote.occurrences(LO, HI) == rest
    assert remote.occurrence_state(series.remote_id, STARTS[1]) == CANCELLED_STATE[remote.name]
    if remote.name == "google":  # the service keeps a cancelled instance, and says so
        assert answer is not None and answer.data.status == "cancelled"
        assert answer.data.original_start == utc(STARTS[1]) and answer.series_remote_id == series.remote_id
    else:
        assert answer is None

    remote.clear_requests()
    provider.cancel_occurrence(remote.calendar, series.remote_id, utc(STARTS[1]))
    assert stored_writes(remote) == 0  # already gone: left as it is, no write
    assert remote.occurrences(LO, HI) == rest


def test_an_exception_inserted_with_its_series_id_is_listed_as_an_instance_of_that_series(
        remote: Remote, provider: Provider) -> None:
    series = provider.insert_event(remote.calendar, weekly(), remote_id=new_id())
    moved_to = STARTS[2] + 2 * HOUR
    made = provider.insert_event(
        remote.calendar, event("Moved", moved_to, original_start=utc(STARTS[2]), ical_uid=series.data.ical_uid),
        remote_id=new_id(), series_remote_id=series.remote_id)
    assert made.series_remote_id == series.remote_id and made.data.original_start == utc(STARTS[2])

    pages, _ = drain(provider, remote.calendar, None)
    listed = [item for item in latest(pages).values() if isinstance(item, RemoteEvent)]
    master = next(e for e in listed if e.remote_id == series.remote_id)
    assert master.data.recurrence and not master.data.original_start
    instances = [(e.remote_id, e.data.original_start, e.data.title) for e in listed
                 if e.series_remote_id == series.remote_id]
    assert instances == [(made.remote_id, utc(STARTS[2]), "Moved")]
    assert remote.occurrences(LO, HI) == sorted(
        [(s, "Weekly") for s in STARTS if s != STARTS[2]] + [(moved_to, "Moved")])


def test_a_series_updated_with_an_exdate_loses_that_occurrence_and_reads_back_as_written(
        remote: Remote, provider: Provider) -> None:
    """calsync mirrors a deleted occurrence into a series as an EXDATE; each provider writes it its
    own way (Google cancels the instance, Graph deletes the occurrence) and reads the series back
    as calsync wrote it (the same content hash: providers/canonical.py), or the echo would look like
    someone else's edit."""
    series = provider.insert_event(remote.calendar, weekly(), remote_id=new_id())
    assert series.content_hash == weekly().content_hash()
    sent = replace(series.data, recurrence=["RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE:20261215T090000Z"])
    written = provider.update_event(remote.calendar, series.remote_id, sent, if_match=series.etag)
    assert remote.occurrences(LO, HI) == [(s, "Weekly") for s in STARTS if s != STARTS[2]]
    read = provider.get_event(remote.calendar, series.remote_id)
    assert read is not None and read.etag == written.etag
    assert written.content_hash == read.content_hash == sent.content_hash()


def test_cancel_occurrence_of_a_held_exception_removes_it_and_the_master_reads_without_it(
        remote: Remote, provider: Provider) -> None:
    """With the exception's own id and ETag (what calsync holds), the occurrence goes, moved copy and
    all. The master read by id (fetch_events: "as get_event would, a series master with its
    EXDATEs") then excludes that start, except on Google, where the cancelled instance is the record."""
    series = provider.insert_event(remote.calendar, weekly(), remote_id=new_id())
    made = provider.insert_event(
        remote.calendar, event("Moved", STARTS[3] + HOUR, original_start=utc(STARTS[3]),
                               ical_uid=series.data.ical_uid),
        remote_id=new_id(), series_remote_id=series.remote_id)
    provider.cancel_occurrence(remote.calendar, series.remote_id, utc(STARTS[3]), remote_id=made.remote_id,
                               if_match=made.etag)
    assert remote.occurrences(LO, HI) == [(s, "Weekly") for s in STARTS[:3]]
    master = provider.fetch_events(remote.calendar, [series.remote_id])[series.remote_id]
    assert master is not None
    excluded = excluded_starts(master.data.recurrence, master.data.time_zone)
    assert excluded == (set() if remote.name == "google" else {utc(STARTS[3])})


def test_cancel_occurrence_of_a_deleted_series_is_left_as_it_is(remote: Remote, provider: Provider) -> None:
    series = provider.insert_event(remote.calendar, weekly(), remote_id=new_id())
    remote.delete(series.remote_id)
    remote.clear_requests()
    answer = provider.cancel_occurrence(remote.calendar, series.remote_id, utc(STARTS[1]))
    assert answer is None or answer.data.status == "cancelled"
    assert stored_writes(remote) == 0 and remote.occurrences(LO, HI) == []


def test_cancel_occurrence_of_an_exception_changed_meanwhile_raises_precondition_failed(
        remote: Remote, provider: Provider) -> None:
    series = provider.insert_event(remote.calendar, weekly(), remote_id=new_id())
    made = provider.insert_event(
        remote.calendar, event("Ours", STARTS[1] + HOUR, original_start=utc(STARTS[1]),
                               ical_uid=series.data.ical_uid),
        remote_id=new_id(), series_remote_id=series.remote_id)
    remote.move_occurrence(series.remote_id, STARTS[1], STARTS[1] + 3 * HOUR, "Theirs")
    with pytest.raises(PreconditionFailed):
        provider.cancel_occurrence(remote.calendar, series.remote_id, utc(STARTS[1]), remote_id=made.remote_id,
                                   if_match=made.etag)
    assert (STARTS[1] + 3 * HOUR, "Theirs") in remote.occurrences(LO, HI)


# --- the memory service's own switches -------------------------------------------------------------


@pytest.fixture()
def memory() -> tuple[MemoryService, str, MemoryProvider]:
    service = MemoryService()
    calendar = service.add_calendar("Mine", primary=True)
    return service, calendar, MemoryProvider(service, page_size=2)


def test_memory_faults_fire_on_the_named_method_for_the_next_calls(
        memory: tuple[MemoryService, str, MemoryProvider]) -> None:
    service, calendar, provider = memory
    service.inject("get_event", 503, count=2)
    service.inject("insert_event", AuthError("token revoked", status=401))
    for _ in range(2):
        with pytest.raises(RateLimited):
            provider.get_event(calendar, "x")
    assert provider.get_event(calendar, "x") is None
    with pytest.raises(AuthError):
        provider.insert_event(calendar, event("Refused"))
    assert service.events(calendar) == {}
    assert provider.request_count == 4


def test_memory_after_commit_fault_stores_the_write_then_raises(
        memory: tuple[MemoryService, str, MemoryProvider]) -> None:
    service, calendar, provider = memory
    service.inject("insert_event", ProviderError("answer lost", status=500), after_commit=True)
    with pytest.raises(ProviderError):
        provider.insert_event(calendar, event("Stored anyway"), remote_id="ours")
    assert service.events(calendar)["ours"].data.title == "Stored anyway"
    with pytest.raises(AlreadyExists):  # the retry of a create whose answer was lost
        provider.insert_event(calendar, event("Stored anyway"), remote_id="ours")


def test_memory_fault_mid_listing_after_skipped_pages(memory: tuple[MemoryService, str, MemoryProvider]) -> None:
    service, calendar, provider = memory
    for n in range(5):
        service.insert(calendar, event(f"e{n}", DAY + n * HOUR))
    service.inject("list_changes", 500, skip=1)
    pages = provider.list_changes(calendar, None)
    assert len(next(pages).items) == 2
    with pytest.raises(RateLimited):
        next(pages)
    assert len(drain(provider, calendar, None)[0]) == 3


def test_memory_series_model_exception_deleted_excludes_its_occurrence(
        memory: tuple[MemoryService, str, MemoryProvider]) -> None:
    """Deleting an exception deletes its occurrence (an EXDATE); an exception written over an excluded
    occurrence brings it back; a master whose EXDATEs cover an exception drops it."""
    service, calendar, provider = memory
    series = service.insert(calendar, weekly())
    moved = service.move_occurrence(calendar, series.remote_id, utc(STARTS[1]), title="Moved")
    _, token = drain(provider, calendar, None)
    provider.delete_event(calendar, moved.remote_id, if_match=moved.etag)
    seen = latest(drain(provider, calendar, token)[0])
    assert isinstance(seen[moved.remote_id], RemoteDeletion)
    master = seen[series.remote_id]
    assert isinstance(master, RemoteEvent) and master.data.recurrence == [
        "RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE:20261208T090000Z"]

    back = provider.insert_event(calendar, replace(moved.data, title="Back"), series_remote_id=series.remote_id)
    assert back.remote_id == moved.remote_id
    assert service.events(calendar)[series.remote_id].data.recurrence == ["RRULE:FREQ=WEEKLY;COUNT=4"]
    current = service.events(calendar)[series.remote_id]
    provider.update_event(calendar, series.remote_id, replace(current.data, recurrence=[
        "RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE:20261208T090000Z"]), if_match=current.etag)
    assert back.remote_id not in service.events(calendar)
    with pytest.raises(NotFoundError):  # no such occurrence at all
        provider.insert_event(calendar, event("Nowhere", DAY + HOUR, original_start=utc(DAY + HOUR)),
                              series_remote_id=series.remote_id)


def test_memory_push_is_not_supported(memory: tuple[MemoryService, str, MemoryProvider]) -> None:
    _, calendar, provider = memory
    with pytest.raises(ProviderError, match="push not supported"):
        provider.watch(calendar, "channel", "https://example.invalid/hook", "secret")
