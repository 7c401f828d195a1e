"""Google-specific inbound behaviours (recurring series as Google sends them, field mapping,
conferenceData, own-write echo, adoption by client-chosen id). The behaviours every provider
shares are in test_inbound.py, parametrised over Google, Graph, Radicale and Xandikos."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from calsync.engine.inbound import MassDeleteGuard, SyncResult
from calsync.engine.sync import sync_once
from calsync.model import Account, EventData
from calsync.providers.google import GoogleProvider
from calsync.providers.http import RetryPolicy
from calsync.store import accounts as account_store
from calsync.store.schema import event_links
from tests.helpers import (
    GoogleApi,
    admin,
    bind,
    event_data,
    local_create,
    local_events,
)


def run(
    engine: Engine, *, page_size: int = 2500, binding_ids: list[str] | None = None, full: bool = False,
    force: bool = False, after_page: Callable[[int, SyncResult], None] | None = None,
    guard: MassDeleteGuard | None = None,
) -> list[SyncResult]:
    def make(account: Account) -> GoogleProvider:
        return GoogleProvider.from_account(account, page_size=page_size, retry=RetryPolicy(base_delay=0.05))

    return sync_once(engine, binding_ids=binding_ids, full=full, force=force, after_page=after_page,
                     make_provider=make, guard=guard).inbound


def one(results: list[SyncResult]) -> SyncResult:
    assert len(results) == 1
    return results[0]


def remote_titles(api: GoogleApi, calendar_id: str) -> dict[str, str]:
    return {e["id"]: e.get("summary", "") for e in api.list_all(calendar_id)}


def assert_mirrors(engine: Engine, binding_id: str, api: GoogleApi, calendar_id: str) -> None:
    """The store holds exactly the remote calendar: same ids, same titles, nothing extra, nothing twice."""
    local = {rid: row["title"] for rid, row in local_events(engine, binding_id).items()}
    assert local == remote_titles(api, calendar_id)


def test_nothing_changed_costs_exactly_one_request(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    alice.seed(calendar, 300)
    bind(engine, google_url, "alice", calendar)
    run(engine, page_size=100)
    admin(google_url, "DELETE", "/requests")
    result = one(run(engine, page_size=100))
    assert result.requests == 1
    assert (result.created, result.updated, result.deleted) == (0, 0, 0)
    log = admin(google_url, "GET", "/requests").json()["requests"]
    assert len(log) == 1 and "syncToken" in str(log[0]["query"])


def test_recurring_series_stored_as_given_with_exceptions(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    start = datetime(2026, 12, 7, 9, tzinfo=UTC)
    # Google requires a time zone on a recurring event's start: it is the zone the rule expands in
    series = alice.insert(
        calendar, "Weekly sync", recurrence=["RRULE:FREQ=WEEKLY;COUNT=10"],
        start={"dateTime": start.isoformat(), "timeZone": "UTC"},
        end={"dateTime": (start + timedelta(hours=1)).isoformat(), "timeZone": "UTC"},
    )
    instances = alice.http.get(f"/calendars/{calendar}/events/{series['id']}/instances").raise_for_status().json()
    moved, cancelled = instances["items"][1], instances["items"][2]
    alice.patch(calendar, moved["id"], summary="Weekly sync (moved)",
                start={"dateTime": (start + timedelta(days=8)).isoformat(), "timeZone": "UTC"},
                end={"dateTime": (start + timedelta(days=8, hours=1)).isoformat(), "timeZone": "UTC"})
    alice.delete(calendar, cancelled["id"])
    binding = bind(engine, google_url, "alice", calendar)
    run(engine)

    stored = local_events(engine, binding)
    assert len(stored) == 3, "a series and two exceptions, not ten expanded instances"
    parent = stored[series["id"]]
    assert parent["recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=10"] and parent["recurring_event_id"] is None
    assert stored[moved["id"]]["recurring_event_id"] == parent["id"]
    assert stored[moved["id"]]["original_start"] == "2026-12-14T09:00:00Z"
    assert stored[moved["id"]]["title"] == "Weekly sync (moved)"
    assert stored[cancelled["id"]]["status"] == "cancelled"
    assert stored[cancelled["id"]]["recurring_event_id"] == parent["id"]

    alice.delete(calendar, series["id"])
    run(engine)
    assert local_events(engine, binding) == {}


def test_own_write_echo_is_a_no_op(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    alice.insert(calendar, "Echo")
    binding = bind(engine, google_url, "alice", calendar)
    run(engine)
    (row,) = local_events(engine, binding).values()
    # the provider write path returns the new ETag; once recorded on the link, the echo changes nothing
    provider = GoogleProvider("alice", google_url)
    data = event_data(engine, row["id"])
    data.title = "Echo (written by calsync)"
    written = provider.update_event(calendar, row["links"][0]["remote_id"], data, if_match=row["links"][0]["etag"])
    provider.close()
    with engine.begin() as conn:
        conn.execute(event_links.update().values(etag=written.etag))
    result = one(run(engine))
    assert (result.updated, result.unchanged) == (0, 1)
    assert binding


def test_event_fields_are_mapped(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    created = alice.insert(
        calendar, "Design review", at=datetime(2026, 12, 3, 15, tzinfo=UTC),
        description="Bring sketches", location="Room 2",
        attendees=[{"email": "bob@example.com", "displayName": "Bob", "responseStatus": "accepted"}],
        extendedProperties={"private": {"crm": "42"}},
    )
    alice.http.post(f"/calendars/{calendar}/events", json={
        "summary": "Holiday", "start": {"date": "2026-12-24"}, "end": {"date": "2026-12-27"},
    }).raise_for_status()
    binding = bind(engine, google_url, "alice", calendar)
    run(engine)
    stored = local_events(engine, binding)
    review = stored[created["id"]]
    assert (review["start"], review["end"], review["all_day"]) == ("2026-12-03T15:00:00Z", "2026-12-03T16:00:00Z", False)
    assert review["description"] == "Bring sketches" and review["location"] == "Room 2"
    assert review["attendees"][0]["email"] == "bob@example.com" and review["attendees"][0]["response"] == "accepted"
    assert review["extra"]["google"]["extendedProperties"] == {"private": {"crm": "42"}}
    holiday = next(r for r in stored.values() if r["title"] == "Holiday")
    assert (holiday["start"], holiday["end"], holiday["all_day"]) == ("2026-12-24", "2026-12-27", True)


def test_conferences_are_kept(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    alice.seed(calendar, 12, conference_every=3)
    binding = bind(engine, google_url, "alice", calendar)
    run(engine)
    with_conference = [r for r in local_events(engine, binding).values() if r["conference"]]
    assert len(with_conference) == 4
    assert all(r["conference"]["join_url"].startswith("https://") for r in with_conference)


def test_remote_copy_of_a_local_event_is_adopted_not_duplicated(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    """Our outbox creates remote events with the local id; if it crashed before recording the link,
    the inbound sync must link the remote copy instead of importing a second event."""
    calendar = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar)
    with engine.begin() as conn:
        local_calendar = account_store.get_binding(conn, binding)["calendar_id"]
    data = EventData(title="Pushed by calsync", start="2026-12-02T10:00:00Z", end="2026-12-02T11:00:00Z")
    event_id = local_create(engine, local_calendar, data)
    alice.insert(calendar, "Pushed by calsync", at=datetime(2026, 12, 2, 10, tzinfo=UTC), id=event_id)
    result = one(run(engine))
    assert result.created == 0
    stored = local_events(engine, binding)
    assert list(stored) == [event_id] and stored[event_id]["id"] == event_id
    assert stored[event_id]["links"][0]["base_version"] == 1  # same content: already agreed


def _rich_google_events() -> list[dict[str, object]]:
    """Events with every field Google lists, the ones calsync reads and keeps and the ones it does not."""
    series = {
        "kind": "calendar#event", "etag": '"3"', "id": "series1", "status": "confirmed",
        "htmlLink": "https://www.google.com/calendar/event?eid=x", "created": "2026-01-01T00:00:00.000Z",
        "updated": "2026-01-02T00:00:00.000Z", "summary": "Weekly", "description": "Notes", "location": "Room 9",
        "colorId": "5", "creator": {"email": "a@example.org", "self": True},
        "organizer": {"email": "a@example.org", "self": True},
        "start": {"dateTime": "2026-03-02T09:00:00+01:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-03-02T10:00:00+01:00", "timeZone": "Europe/Berlin"},
        "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE;TZID=Europe/Berlin:20260309T090000"],
        "transparency": "transparent", "visibility": "private", "iCalUID": "series1@google.com", "sequence": 2,
        "attendees": [
            {"email": "a@example.org", "organizer": True, "self": True, "responseStatus": "accepted"},
            {"email": "b@example.org", "displayName": "B", "optional": True, "responseStatus": "tentative",
             "comment": "maybe", "additionalGuests": 1},
        ],
        "extendedProperties": {"private": {"k": "v"}, "shared": {"s": "t"}},
        "conferenceData": {
            "conferenceId": "123", "conferenceSolution": {"key": {"type": "addOn"}, "name": "Zoom"},
            "entryPoints": [{"entryPointType": "video", "uri": "https://zoom.example/j/123"}],
            "parameters": {"addOnParameters": {"parameters": {"calsyncProvider": "zoom"}}},
        },
        "reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 5}]},
        "guestsCanModify": True, "guestsCanInviteOthers": False, "guestsCanSeeOtherGuests": False,
        "source": {"url": "https://example.org", "title": "Example"}, "eventType": "default",
        "hangoutLink": "https://meet.google.com/x", "attachments": [{"fileUrl": "https://drive/x"}],
        "anyoneCanAddSelf": False, "privateCopy": False, "locked": False,
    }
    moved = {
        "kind": "calendar#event", "etag": '"4"', "id": "series1_20260316T080000Z", "status": "tentative",
        "recurringEventId": "series1", "originalStartTime": {"dateTime": "2026-03-16T09:00:00+01:00",
                                                              "timeZone": "Europe/Berlin"},
        "start": {"date": "2026-03-17"}, "end": {"date": "2026-03-18"}, "summary": "Moved", "sequence": 3,
        "updated": "2026-01-03T00:00:00.000Z", "htmlLink": "https://x", "creator": {"email": "a@example.org"},
    }
    cancelled = {"kind": "calendar#event", "etag": '"5"', "id": "series1_20260323T080000Z", "status": "cancelled",
                 "recurringEventId": "series1", "originalStartTime": {"dateTime": "2026-03-23T09:00:00+01:00"}}
    gone = {"kind": "calendar#event", "etag": '"6"', "id": "gone1", "status": "cancelled"}
    return [series, moved, cancelled, gone]


def test_what_events_list_is_asked_for_is_all_the_mapping_reads_and_keeps() -> None:
    """GoogleProvider asks events.list for LISTED_FIELDS only (Google's partial response): each event
    maps to the same change from that selection as from the whole event, so no field the mapping
    reads or keeps for writing back is left out of the request."""
    from calsync.emulators.google.partial import parse_fields, select
    from calsync.providers.google import LISTED_FIELDS, change_from_google

    wanted = parse_fields(LISTED_FIELDS)
    assert set(wanted) == {"items", "nextPageToken", "nextSyncToken"}
    for item in _rich_google_events():
        listed = select(item, wanted["items"])
        assert "htmlLink" not in listed and "creator" not in listed
        assert change_from_google(listed) == change_from_google(item), item["id"]
