# ruff: noqa: F811  (pytest fixtures imported from tests.caldav_servers are parameters here)
"""The CalDAV provider against real servers (Radicale and Xandikos), through the engine and alone.

Remote changes are made by *another* client: plain httpx PUT / DELETE of .ics resources.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar, Event
from sqlalchemy import Engine, select, update

from calsync.engine import local
from calsync.engine.inbound import SyncResult
from calsync.engine.outbound import Pusher
from calsync.engine.sync import SyncReport, sync_once
from calsync.model import Account, EventData
from calsync.providers import SUPPORTED, ical, provider_for
from calsync.providers.base import (
    AlreadyExists,
    PreconditionFailed,
    ProviderError,
    SyncTokenInvalid,
)
from calsync.providers.caldav import CalDAVProvider
from calsync.store import accounts as account_store
from calsync.store import events as event_store
from calsync.store import outbox as outbox_store
from calsync.store.db import open_engine
from calsync.store.schema import bindings, conflicts, event_links, events
from tests.caldav_servers import DavCalendar, caldav_server, dav, ics, provider_options  # noqa: F401 (fixtures)
from tests.helpers import local_events, migrated_sqlite, token_of

SERIES = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//other client//test//EN
X-WR-CALNAME:Team
BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:STANDARD
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VEVENT
UID:weekly-standup@other
DTSTAMP:20260101T000000Z
SEQUENCE:2
DTSTART;TZID=Europe/Berlin:20261201T090000
DTEND;TZID=Europe/Berlin:20261201T093000
RRULE:FREQ=WEEKLY;COUNT=6
EXDATE;TZID=Europe/Berlin:20261208T090000
SUMMARY:Standup
LOCATION:Room 1
ORGANIZER;CN=Alice:mailto:alice@example.org
ATTENDEE;CN=Bob;PARTSTAT=ACCEPTED;RSVP=TRUE;X-NOTE=keep:mailto:bob@example.org
CATEGORIES:work,daily
X-OTHER-CLIENT-FLAG;X-P=1:keep me
CLASS:PRIVATE
BEGIN:VALARM
ACTION:DISPLAY
TRIGGER:-PT15M
DESCRIPTION:Standup soon
END:VALARM
END:VEVENT
BEGIN:VEVENT
UID:weekly-standup@other
DTSTAMP:20260101T000000Z
RECURRENCE-ID;TZID=Europe/Berlin:20261215T090000
DTSTART;TZID=Europe/Berlin:20261215T110000
DTEND;TZID=Europe/Berlin:20261215T113000
SUMMARY:Standup (moved)
X-OVERRIDE-FLAG:still here
END:VEVENT
END:VCALENDAR
""".replace("\n", "\r\n")


@pytest.fixture()
def engine(tmp_path: Path) -> Engine:
    return open_engine(migrated_sqlite(tmp_path / "calsync.db"))


def bind(engine: Engine, dav: DavCalendar, **options: Any) -> str:
    """A caldav account and a binding of the test's collection to a new local calendar."""
    with engine.begin() as conn:
        account = account_store.create_account(conn, "caldav", f"{dav.server.username}@{dav.server.kind}", dav.url,
                                               {"username": dav.server.username, "password": dav.server.password})
        calendar = account_store.create_calendar(conn, f"caldav:{dav.path}")
        return account_store.create_binding(conn, calendar, account, dav.path, options.get("direction", "two-way"),
                                            options.get("policy", "ask"))


def maker(**options: Any) -> Callable[[Account], CalDAVProvider]:
    def make(account: Account) -> CalDAVProvider:
        return CalDAVProvider.from_account(account, **provider_options(**options))
    return make


def sync(engine: Engine, binding: str, **options: Any) -> SyncReport:
    return sync_once(engine, binding_ids=[binding], make_provider=maker(**options))


def inbound(report: SyncReport) -> SyncResult:
    (result,) = report.inbound
    assert result.status == "ok", result.message
    return result


def calendar_of(engine: Engine, binding: str) -> str:
    with engine.begin() as conn:
        return str(account_store.get_binding(conn, binding)["calendar_id"])


def titles(engine: Engine, binding: str) -> dict[str, str]:
    return {rid: row["title"] for rid, row in local_events(engine, binding).items()}


def remote_titles(dav: DavCalendar) -> dict[str, str]:
    out = {}
    for name in dav.names():
        text, etag = dav.get(name)
        for event in ical.remote_events(name, etag, text):
            out[event.remote_id] = event.data.title
    return out


def provider(dav: DavCalendar, **options: Any) -> CalDAVProvider:
    return CalDAVProvider(dav.url, dav.server.username, dav.server.password, **provider_options(**options))


def parsed(dav: DavCalendar, name: str) -> Calendar:
    return Calendar.from_ical(dav.get(name)[0])


# --- discovery and listing ------------------------------------------------------------------------


def test_caldav_is_a_supported_provider(dav: DavCalendar) -> None:
    account = Account(id="a", provider="caldav", name="x", base_url=dav.url,
                      credentials={"username": dav.server.username, "password": dav.server.password})
    assert "caldav" in SUPPORTED
    client = provider_for(account)
    assert isinstance(client, CalDAVProvider)
    client.close()


def test_discovery_finds_the_calendar_through_principal_and_home(dav: DavCalendar) -> None:
    client = provider(dav)
    found = {c.remote_id: c for c in client.list_calendars()}
    assert dav.path in found
    assert found[dav.path].name == "Test calendar"
    assert found[dav.path].access_role == "writer"
    assert all(path.endswith("/") for path in found)


def test_initial_full_sync_pages_through_everything(engine: Engine, dav: DavCalendar) -> None:
    dav.seed(25)
    binding = bind(engine, dav)
    result = inbound(sync(engine, binding, batch_size=10, page_events=10))
    assert result.full and not result.token_reset
    # one sync-collection REPORT, then three calendar-multiget batches of at most 10 hrefs
    assert (result.pages, result.requests, result.created) == (3, 4, 25)
    assert (token_of(engine, binding) or "").startswith("dav:")
    assert titles(engine, binding) == remote_titles(dav)
    sample = next(iter(local_events(engine, binding).values()))
    assert sample["source"] == f"caldav:{binding}" and sample["ical_uid"].endswith("@other")
    with engine.begin() as conn:  # the raw object is kept once, on the event; a new link's base is the event itself
        rows = conn.execute(select(events.c.extra, event_links.c.base_snapshot).join(
            event_links, event_links.c.event_id == events.c.id)).all()
    assert len(rows) == 25
    assert all(extra["caldav"]["ics"].startswith("BEGIN:VCALENDAR") and base is None for extra, base in rows)


def test_a_page_gathers_several_multiget_batches(engine: Engine, dav: DavCalendar) -> None:
    """Batches stay small for the server; the engine stores fewer, larger pages (fewer commits)."""
    dav.seed(25)
    binding = bind(engine, dav)
    result = inbound(sync(engine, binding, batch_size=10, page_events=20))
    assert (result.pages, result.requests, result.created) == (2, 4, 25)  # 10 + 10 | 5
    assert titles(engine, binding) == remote_titles(dav)


def test_incremental_sync_gets_exactly_another_clients_changes(engine: Engine, dav: DavCalendar) -> None:
    names = dav.seed(6)
    binding = bind(engine, dav)
    inbound(sync(engine, binding))
    first_token = token_of(engine, binding)

    dav.put("fresh", ics("fresh@other", "Fresh"))  # created
    dav.put(names[1], ics(f"{names[1]}@other", "Renamed"))  # updated
    dav.delete(names[2])  # deleted
    result = inbound(sync(engine, binding))
    assert not result.full
    assert (result.created, result.updated, result.deleted, result.conflicts) == (1, 1, 1, 0)
    assert result.requests == 2  # sync-collection + one multiget of the two changed members
    assert token_of(engine, binding) != first_token
    assert titles(engine, binding) == remote_titles(dav)
    assert titles(engine, binding)[names[1]] == "Renamed" and names[2] not in titles(engine, binding)

    quiet = inbound(sync(engine, binding))
    assert quiet.requests == 1  # nothing changed: one REPORT, nothing else
    assert (quiet.created, quiet.updated, quiet.deleted, quiet.unchanged) == (0, 0, 0, 0)


def test_invalid_token_means_a_full_sync_that_reconciles_deletions(engine: Engine, dav: DavCalendar) -> None:
    names = dav.seed(12)
    binding = bind(engine, dav)
    inbound(sync(engine, binding))
    with engine.begin() as conn:  # a token the server never gave (or forgot: Radicale prunes old ones)
        bogus = "dav:http://radicale.org/ns/sync/0000" if dav.server.kind == "radicale" else "dav:" + "0" * 40
        conn.execute(update(bindings).where(bindings.c.id == binding).values(sync_token=bogus))
    client = provider(dav)
    with pytest.raises(SyncTokenInvalid):
        list(client.list_changes(dav.path, bogus))

    dav.delete(names[0])
    dav.put(names[3], ics(f"{names[3]}@other", "Changed meanwhile"))
    dav.put("late", ics("late@other", "Late"))
    result = inbound(sync(engine, binding))
    assert result.token_reset and result.full
    assert (result.created, result.updated, result.deleted) == (1, 1, 1)
    assert titles(engine, binding) == remote_titles(dav)
    assert inbound(sync(engine, binding)).requests == 1


def test_etag_listing_fallback_without_sync_collection(engine: Engine, dav: DavCalendar) -> None:
    names = dav.seed(5)
    binding = bind(engine, dav)
    first = inbound(sync(engine, binding, sync_collection=False))
    token = token_of(engine, binding) or ""
    assert first.full and first.created == 5 and token.startswith("etags:") and ";ctag:" in token
    quiet = inbound(sync(engine, binding, sync_collection=False))
    assert quiet.requests == 1 and quiet.unchanged == 0
    # the getctag alone answered: a Depth-0 PROPFIND, not the listing of every member
    probe = provider(dav, sync_collection=False)
    listed: list[str] = []
    probe.http._client.event_hooks["request"].append(lambda request: listed.append(request.headers["Depth"]))
    assert list(probe.list_changes(dav.path, token))[0].items == [] and listed == ["0"]
    dav.delete(names[4])
    dav.put(names[0], ics(f"{names[0]}@other", "Changed"))
    changed = inbound(sync(engine, binding, sync_collection=False))
    assert changed.token_reset and (changed.updated, changed.deleted) == (1, 1)
    assert titles(engine, binding) == remote_titles(dav)


# --- pushing local changes -----------------------------------------------------------------------


def test_local_create_update_delete_arrive_on_the_server(engine: Engine, dav: DavCalendar) -> None:
    binding = bind(engine, dav)
    inbound(sync(engine, binding))
    calendar = calendar_of(engine, binding)
    made = local.create_event(engine, calendar, {
        "title": "Lunch", "start": "2026-12-03T11:00:00Z", "end": "2026-12-03T12:00:00Z",
        "time_zone": "Europe/Berlin", "location": "Canteen",
        "attendees": [{"email": "bob@example.org", "name": "Bob"}],
    })
    report = sync(engine, binding)
    assert report.outbound[0].created == 1 and report.ok
    assert dav.names() == {made.event_id}  # <local id>.ics
    vevent = parsed(dav, made.event_id).events[0]
    assert str(vevent["SUMMARY"]) == "Lunch" and str(vevent["LOCATION"]) == "Canteen"
    assert vevent["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert str(vevent["ATTENDEE"]) == "mailto:bob@example.org"
    echo = inbound(sync(engine, binding))
    assert (echo.created, echo.updated, echo.conflicts) == (0, 0, 0)  # our own write comes back as a no-op

    local.update_event(engine, made.event_id, {"title": "Long lunch", "end": "2026-12-03T13:00:00Z"}, None)
    report = sync(engine, binding)
    assert report.outbound[0].updated == 1
    vevent = parsed(dav, made.event_id).events[0]
    assert str(vevent["SUMMARY"]) == "Long lunch" and str(vevent["LOCATION"]) == "Canteen"
    assert inbound(sync(engine, binding)).updated == 0

    local.delete_event(engine, made.event_id, None)
    report = sync(engine, binding)
    assert report.outbound[0].deleted == 1
    assert not dav.exists(made.event_id)
    assert titles(engine, binding) == {}


def created_with_answer_lost(engine: Engine, dav: DavCalendar) -> tuple[str, str]:
    """A bound collection and a local event whose create was PUT there, the worker killed before its
    checkpoint: (binding, event id)."""
    binding = bind(engine, dav)
    inbound(sync(engine, binding))
    made = local.create_event(engine, calendar_of(engine, binding), {
        "title": "Once", "start": "2026-12-04T10:00:00Z", "end": "2026-12-04T11:00:00Z"})

    def crash(event_id: str, what: str) -> None:
        raise RuntimeError("worker died after the PUT, before the checkpoint")

    with pytest.raises(RuntimeError):
        sync_once(engine, binding_ids=[binding], make_provider=maker(), after_write=crash)
    return binding, made.event_id


def test_a_create_whose_answer_was_lost_is_adopted_not_duplicated(engine: Engine, dav: DavCalendar) -> None:
    binding, event_id = created_with_answer_lost(engine, dav)
    assert dav.names() == {event_id}
    report = sync(engine, binding)  # the listing adopts the copy (its id is the local id); nothing is re-sent
    assert report.ok and report.inbound[0].created == 0
    assert report.outbound[0].created == 0
    assert list(local_events(engine, binding)) == [event_id]
    assert dav.names() == {event_id}


def test_a_retried_create_whose_event_took_another_uid_writes_over_its_copy(engine: Engine, dav: DavCalendar) -> None:
    """A create whose answer was lost, then the event changed as another side's edit that names it with
    that side's UID (Outlook's iCalUId): the retried create meets its copy (412) and writes over it.
    A resource keeps its UID, so that write keeps the copy's, instead of failing for good with the
    server's no-uid-conflict (chaos c1-907, c3-1192)."""
    binding, event_id = created_with_answer_lost(engine, dav)
    (first_uid,) = [str(c["UID"]) for c in parsed(dav, event_id).walk("VEVENT")]
    with engine.begin() as conn:  # what taking Outlook's edit does: its title, its UID
        data = event_store.event_data(conn, event_id)
        event_store.save_event_from(conn, event_id, replace(data, title="Once (moved)", ical_uid="040000008200E"),
                                    2, "graph:other")
        outbox_store.enqueue(conn, calendar_of(engine, binding), [(event_id, 2)])
    report = sync(engine, binding)
    assert report.ok and report.outbound[0].failed == 0, report.outbound[0].message
    (vevent,) = list(parsed(dav, event_id).walk("VEVENT"))
    assert str(vevent["SUMMARY"]) == "Once (moved)"
    # Radicale refuses to change a resource's UID (the change goes into its copy, UID kept);
    # Xandikos takes the new one
    assert str(vevent["UID"]) == (first_uid if dav.server.kind == "radicale" else "040000008200E")
    assert dav.names() == {event_id}


def test_create_with_if_none_match_meets_the_existing_copy(dav: DavCalendar) -> None:
    client = provider(dav)
    data = EventData(title="Mine", start="2026-12-05T10:00:00Z", end="2026-12-05T11:00:00Z")
    created = client.insert_event(dav.path, data, remote_id="0123abcd")
    assert created.remote_id == "0123abcd" and created.etag
    with pytest.raises(AlreadyExists):
        client.insert_event(dav.path, data, remote_id="0123abcd")
    got = client.get_event(dav.path, "0123abcd")
    assert got is not None and got.etag == created.etag and got.content_hash == created.content_hash
    # the same UID under another name: the server's no-uid-conflict, not "already exists"
    with pytest.raises(ProviderError) as caught:
        client.insert_event(dav.path, EventData(**{**data.to_json(), "ical_uid": "0123abcd", "attendees": []}),
                            remote_id="other-name")
    assert not isinstance(caught.value, AlreadyExists) and caught.value.reason == "no-uid-conflict"
    stale = created.etag
    updated = client.update_event(dav.path, "0123abcd", EventData(**{**created.data.to_json(), "title": "v2",
                                                                      "attendees": []}), if_match=stale)
    with pytest.raises(PreconditionFailed):
        client.update_event(dav.path, "0123abcd", created.data, if_match=stale)
    with pytest.raises(PreconditionFailed):
        client.delete_event(dav.path, "0123abcd", if_match=stale)
    client.delete_event(dav.path, "0123abcd", if_match=updated.etag)
    client.delete_event(dav.path, "0123abcd", if_match=updated.etag)  # gone already: still fine
    assert not dav.exists("0123abcd")
    with pytest.raises(ProviderError, match="no push"):
        client.watch(dav.path, "c", "http://x", "t")


def test_a_concurrent_edit_meets_412_and_becomes_a_conflict(engine: Engine, dav: DavCalendar) -> None:
    dav.put("shared", ics("shared@other", "Planning"))
    binding = bind(engine, dav)
    inbound(sync(engine, binding))
    (event_id,) = [row["id"] for row in local_events(engine, binding).values()]
    local.update_event(engine, event_id, {"title": "Planning (local)"}, None)
    _, etag = dav.get("shared")
    dav.put("shared", ics("shared@other", "Planning (remote)"), if_match=etag)

    client = CalDAVProvider.from_account(_account(engine, binding), **provider_options())
    result = Pusher(engine, client, binding).run()
    assert result.held == 1 and result.updated == 0
    with engine.begin() as conn:
        rows = conn.execute(select(conflicts).where(conflicts.c.event_id == event_id)).mappings().all()
    assert len(rows) == 1 and rows[0]["kind"] == "edit-edit" and rows[0]["status"] == "open"
    assert rows[0]["remote"]["title"] == "Planning (remote)" and rows[0]["local"]["title"] == "Planning (local)"
    assert str(parsed(dav, "shared").events[0]["SUMMARY"]) == "Planning (remote)"  # never overwritten


def _account(engine: Engine, binding: str) -> Account:
    with engine.begin() as conn:
        return account_store.get_account(conn, account_store.get_binding(conn, binding)["account_id"])


# --- recurring series and unmodelled properties ----------------------------------------------------


def _unmodelled(vevent: Any) -> dict[str, Any]:
    """What calsync does not model, in comparable form."""
    alarm = vevent.subcomponents[0] if vevent.subcomponents else None
    return {
        "categories": [str(c) for c in vevent["CATEGORIES"].cats] if "CATEGORIES" in vevent else None,
        "x": (str(vevent.get("X-OTHER-CLIENT-FLAG")), dict(vevent["X-OTHER-CLIENT-FLAG"].params))
        if "X-OTHER-CLIENT-FLAG" in vevent else None,
        "class": str(vevent.get("CLASS")),
        "organizer": (str(vevent.get("ORGANIZER")), dict(vevent["ORGANIZER"].params)) if "ORGANIZER" in vevent else None,
        "attendee_params": dict(vevent["ATTENDEE"].params) if "ATTENDEE" in vevent else None,
        "alarm": None if alarm is None else (str(alarm["ACTION"]), alarm["TRIGGER"].dt, str(alarm["DESCRIPTION"])),
    }


def test_a_series_with_override_and_exdate_round_trips(engine: Engine, dav: DavCalendar) -> None:
    dav.put("standup", SERIES)
    original = parsed(dav, "standup")
    master_before = next(c for c in original.events if "RECURRENCE-ID" not in c)
    binding = bind(engine, dav)
    result = inbound(sync(engine, binding))
    assert result.created == 2
    events = local_events(engine, binding)
    master, override = events["standup"], events["standup#20261215T080000Z"]
    # an EXDATE in the series' zone reads as the same instant in UTC, as every provider's reader spells it
    assert master["recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=6", "EXDATE:20261208T080000Z"]
    assert master["time_zone"] == "Europe/Berlin" and master["start"] == "2026-12-01T08:00:00Z"
    assert master["attendees"][0]["response"] == "accepted" and master["ical_uid"] == "weekly-standup@other"
    assert override["recurring_event_id"] == master["id"]
    assert override["original_start"] == "2026-12-15T08:00:00Z" and override["start"] == "2026-12-15T10:00:00Z"

    # rename the series locally: only SUMMARY (and the stamps) change in the master; the override stays
    local.update_event(engine, master["id"], {"title": "Daily standup"}, None)
    assert sync(engine, binding).outbound[0].updated == 1
    after = parsed(dav, "standup")
    master_after = next(c for c in after.events if "RECURRENCE-ID" not in c)
    override_after = next(c for c in after.events if "RECURRENCE-ID" in c)
    assert str(master_after["SUMMARY"]) == "Daily standup"
    assert _unmodelled(master_after) == _unmodelled(master_before)
    assert ical.recurrence_lines(master_after) == ical.recurrence_lines(master_before)
    assert str(master_after["LOCATION"]) == "Room 1" and int(master_after["SEQUENCE"]) == 2
    assert str(override_after["SUMMARY"]) == "Standup (moved)" and str(override_after["X-OVERRIDE-FLAG"]) == "still here"
    assert str(after["X-WR-CALNAME"]) == "Team"

    # the write to the master did not make the override look changed (component ETags): no echo work
    quiet = inbound(sync(engine, binding))
    assert (quiet.updated, quiet.created, quiet.conflicts) == (0, 0, 0)

    # edit the override locally: the same resource is rewritten, the master is untouched
    local.update_event(engine, override["id"], {"title": "Standup (moved longer)", "end": "2026-12-15T11:00:00Z"},
                       None)
    assert sync(engine, binding).outbound[0].updated == 1
    after = parsed(dav, "standup")
    override_after = next(c for c in after.events if "RECURRENCE-ID" in c)
    master_again = next(c for c in after.events if "RECURRENCE-ID" not in c)
    assert str(override_after["SUMMARY"]) == "Standup (moved longer)"
    assert str(override_after["X-OVERRIDE-FLAG"]) == "still here"
    assert ical.component_etag(master_again) == ical.component_etag(master_after)
    quiet = inbound(sync(engine, binding))
    assert (quiet.updated, quiet.created, quiet.conflicts) == (0, 0, 0)

    # another client edits the override: exactly that instance changes locally
    text, etag = dav.get("standup")
    dav.put("standup", text.replace("Standup (moved longer)", "Standup (their edit)"), if_match=etag)
    changed = inbound(sync(engine, binding))
    assert (changed.updated, changed.conflicts) == (1, 0)
    assert titles(engine, binding)["standup#20261215T080000Z"] == "Standup (their edit)"

    # delete the occurrence locally: the override goes and the instance is excluded
    local.delete_event(engine, override["id"], None)
    assert sync(engine, binding).outbound[0].deleted == 1
    after = parsed(dav, "standup")
    assert len(after.events) == 1
    lines = ical.recurrence_lines(after.events[0]) or []
    assert any(line.startswith("EXDATE") and "20261215T090000" in line for line in lines)
    assert _unmodelled(after.events[0]) == _unmodelled(master_before)
    final = inbound(sync(engine, binding))
    assert final.conflicts == 0
    assert set(titles(engine, binding)) == {"standup"}


def test_another_clients_series_delete_removes_series_and_overrides(engine: Engine, dav: DavCalendar) -> None:
    dav.put("standup", SERIES)
    binding = bind(engine, dav)
    inbound(sync(engine, binding))
    dav.delete("standup")
    result = inbound(sync(engine, binding))
    assert result.deleted == 1
    assert titles(engine, binding) == {}


def _without_override(text: str) -> str:
    """The series resource with its override component removed (the instance back to the rule)."""
    calendar = Calendar.from_ical(text)
    calendar.subcomponents = [c for c in calendar.subcomponents if "RECURRENCE-ID" not in c]
    return str(calendar.to_ical().decode())


def test_another_client_reverting_an_override_removes_the_local_exception(engine: Engine, dav: DavCalendar) -> None:
    """An override is a component inside its series' resource: when another client drops it, no
    member is removed, the resource just changes. The re-read resource is the whole series, so the
    exception it no longer holds is gone."""
    dav.put("standup", SERIES)
    binding = bind(engine, dav)
    inbound(sync(engine, binding))
    assert set(titles(engine, binding)) == {"standup", "standup#20261215T080000Z"}

    text, etag = dav.get("standup")
    dav.put("standup", _without_override(text), if_match=etag)
    result = inbound(sync(engine, binding))
    assert (result.deleted, result.conflicts) == (1, 0)
    assert set(titles(engine, binding)) == {"standup"}, "the reverted instance follows the rule again"

    # and back: another client moves the instance again; the exception is live again (one event)
    text, etag = dav.get("standup")
    dav.put("standup", SERIES, if_match=etag)
    result = inbound(sync(engine, binding))
    assert result.conflicts == 0 and result.created + result.updated >= 1
    assert titles(engine, binding)["standup#20261215T080000Z"] == "Standup (moved)"
    assert len(local_events(engine, binding)) == 2
    quiet = inbound(sync(engine, binding))
    assert (quiet.created, quiet.updated, quiet.deleted) == (0, 0, 0)


def test_an_override_reverted_remotely_after_a_local_edit_is_a_conflict(engine: Engine, dav: DavCalendar) -> None:
    dav.put("standup", SERIES)
    binding = bind(engine, dav, direction="pull")
    inbound(sync(engine, binding))
    override = local_events(engine, binding)["standup#20261215T080000Z"]
    local.update_event(engine, override["id"], {"title": "Standup (my edit)"}, None)
    text, etag = dav.get("standup")
    dav.put("standup", _without_override(text), if_match=etag)
    result = inbound(sync(engine, binding))
    assert result.conflicts == 1, "a local edit is not lost to a remote revert without asking"
    assert titles(engine, binding)["standup#20261215T080000Z"] == "Standup (my edit)"


EXCHANGE_SERIES = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:Microsoft Exchange Server 2010
BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VEVENT
UID:exchange-weekly@example.org
DTSTAMP:20261101T000000Z
DTSTART;TZID=W. Europe Standard Time:20261203T090000
DTEND;TZID=W. Europe Standard Time:20261203T100000
RRULE:FREQ=WEEKLY;COUNT=20
SUMMARY:Exchange weekly
END:VEVENT
END:VCALENDAR
""".replace("\n", "\r\n")


def test_a_windows_time_zone_name_is_read_as_its_iana_zone(engine: Engine, dav: DavCalendar) -> None:
    """Exchange and Outlook write TZID=W. Europe Standard Time: the series keeps its instants and gets
    Europe/Berlin, the zone its rule repeats in (and what Google or Outlook need when it is mirrored);
    an edit elsewhere in the event leaves the Windows zone in the resource as it was."""
    dav.put("exchange", EXCHANGE_SERIES)
    binding = bind(engine, dav)
    inbound(sync(engine, binding))
    series = local_events(engine, binding)["exchange"]
    assert (series["time_zone"], series["start"], series["end"]) == (
        "Europe/Berlin", "2026-12-03T08:00:00Z", "2026-12-03T09:00:00Z")

    local.update_event(engine, series["id"], {"title": "Exchange weekly (renamed)"}, None)
    assert sync(engine, binding).outbound[0].updated == 1
    text, _ = dav.get("exchange")
    master = parsed(dav, "exchange").events[0]
    assert str(master["SUMMARY"]) == "Exchange weekly (renamed)"
    assert master["DTSTART"].params["TZID"] == "W. Europe Standard Time", text
    quiet = inbound(sync(engine, binding))
    assert (quiet.created, quiet.updated, quiet.conflicts) == (0, 0, 0)


def test_conference_is_written_as_conference_and_url(dav: DavCalendar) -> None:
    client = provider(dav)
    data = EventData(title="Call", start="2026-12-06T10:00:00Z", end="2026-12-06T11:00:00Z",
                     description="Agenda: none", location="Online")
    created = client.insert_event(dav.path, data, remote_id="callevent")
    conference = {"type": "addOn", "name": "Zoom", "conference_id": "987",
                  "join_url": "https://zoom.example/j/987", "provider": "zoom"}
    with_call = EventData(**{**created.data.to_json(), "conference": conference, "attendees": []})
    updated = client.update_event(dav.path, "callevent", with_call, if_match=created.etag)
    assert updated.data.conference == conference
    vevent = parsed(dav, "callevent").events[0]
    assert str(vevent["CONFERENCE"]) == "https://zoom.example/j/987"
    assert vevent["CONFERENCE"].params["LABEL"] == "Zoom"
    assert "VIDEO" in str(vevent["CONFERENCE"].params["FEATURE"])
    assert str(vevent["URL"]) == "https://zoom.example/j/987"
    assert str(vevent["DESCRIPTION"]) == "Agenda: none" and str(vevent["LOCATION"]) == "Online"
    fetched = client.get_event(dav.path, "callevent")
    assert fetched is not None and fetched.data.conference == conference
    gone = client.update_event(dav.path, "callevent", EventData(**{**with_call.to_json(), "conference": None,
                                                                    "attendees": []}), if_match=updated.etag)
    vevent = parsed(dav, "callevent").events[0]
    assert gone.data.conference is None and "CONFERENCE" not in vevent and "URL" not in vevent


# --- protocol details without a server -----------------------------------------------------------


def test_a_truncated_sync_answer_507_is_continued() -> None:
    """RFC 6578 3.6: a 507 for the request-URI means "more": ask again with the token given."""
    calls: list[str] = []
    member = ("<d:response><d:href>/cal/{n}.ics</d:href><d:propstat><d:prop><d:getetag>\"{n}\"</d:getetag>"
              "</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>")

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        calls.append(f"{request.method} {request.headers.get('Depth')}")
        if "sync-collection" in body:
            if "<d:sync-token></d:sync-token>" in body:
                answer = (member.format(n="a") + "<d:response><d:href>/cal/</d:href>"
                          "<d:status>HTTP/1.1 507 Insufficient Storage</d:status></d:response>"
                          "<d:sync-token>t1</d:sync-token>")
            else:
                assert "<d:sync-token>t1</d:sync-token>" in body
                answer = (member.format(n="b") + "<d:response><d:href>/cal/gone.ics</d:href>"
                          "<d:status>HTTP/1.1 404 Not Found</d:status></d:response><d:sync-token>t2</d:sync-token>")
            return httpx.Response(207, text=f'<d:multistatus xmlns:d="DAV:">{answer}</d:multistatus>')
        assert "calendar-multiget" in body
        parts = []
        for name in ("a", "b"):
            if f"/cal/{name}.ics" in body:
                parts.append(
                    f'<d:response><d:href>/cal/{name}.ics</d:href><d:propstat><d:prop><d:getetag>"{name}"</d:getetag>'
                    f"<c:calendar-data>{ics(name, name.upper())}</c:calendar-data></d:prop>"
                    "<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>")
        return httpx.Response(207, text='<d:multistatus xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
                                        + "".join(parts) + "</d:multistatus>")

    client = CalDAVProvider("http://dav.invalid/", "u", "p")
    client.http._client = httpx.Client(base_url="http://dav.invalid", transport=httpx.MockTransport(handler))
    pages = list(client.list_changes("/cal/", None))
    assert [p.last for p in pages] == [False, True] and pages[-1].sync_token == "dav:t2"
    items = [[(type(i).__name__, i.remote_id) for i in p.items] for p in pages]
    assert items == [[("RemoteEvent", "a")], [("RemoteDeletion", "gone"), ("RemoteEvent", "b")]], \
        "a few deletions share their page with the changed members"
    assert calls == ["REPORT 0", "REPORT 1", "REPORT 0", "REPORT 1"]


def test_a_server_without_sync_collection_gets_the_etag_listing() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        seen.append(request.method)
        if "sync-collection" in body:
            return httpx.Response(501, text="not implemented")
        if request.method == "PROPFIND":
            return httpx.Response(207, text=(
                '<d:multistatus xmlns:d="DAV:"><d:response><d:href>/cal/</d:href><d:propstat><d:prop><d:resourcetype>'
                "<d:collection/></d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
                '<d:response><d:href>http://dav.invalid/cal/x.ics</d:href><d:propstat><d:prop><d:getetag>"1"</d:getetag>'
                "<d:getcontenttype>text/calendar</d:getcontenttype></d:prop><d:status>HTTP/1.1 200 OK</d:status>"
                "</d:propstat></d:response></d:multistatus>"))
        return httpx.Response(207, text=(
            '<d:multistatus xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:response><d:href>/cal/x.ics'
            '</d:href><d:propstat><d:prop><d:getetag>"1"</d:getetag><c:calendar-data>' + ics("x", "X")
            + "</c:calendar-data></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
            "</d:multistatus>"))

    client = CalDAVProvider("http://dav.invalid/", "u", "p")
    client.http._client = httpx.Client(base_url="http://dav.invalid", transport=httpx.MockTransport(handler))
    (page,) = list(client.list_changes("/cal/", None))
    assert page.full and page.last and (page.sync_token or "").startswith("etags:")
    assert [(type(i).__name__, i.remote_id) for i in page.items] == [("RemoteEvent", "x")]
    assert seen == ["REPORT", "PROPFIND", "REPORT"]
    assert next(iter(client.list_changes("/cal/", page.sync_token))).items == []  # unchanged: one PROPFIND


def test_a_put_answered_without_etag_is_read_back() -> None:
    """RFC 4791 5.3.4: no ETag after a PUT means the server changed what it stored: read it again."""
    stored: dict[str, str] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            assert request.headers["If-None-Match"] == "*"
            stored["text"] = request.content.decode().replace("SUMMARY:Mine", "SUMMARY:Mine (normalised)")
            return httpx.Response(201)
        assert request.method == "GET"
        return httpx.Response(200, text=stored["text"], headers={"ETag": '"server-1"'})

    client = CalDAVProvider("http://dav.invalid/", "u", "p")
    client.http._client = httpx.Client(base_url="http://dav.invalid", transport=httpx.MockTransport(handler))
    made = client.insert_event("/cal/", EventData(title="Mine", start="2026-12-05T10:00:00Z",
                                                  end="2026-12-05T11:00:00Z"), remote_id="abc")
    assert (made.remote_id, made.etag, made.data.title) == ("abc", '"server-1"', "Mine (normalised)")
    assert client.request_count == 2


def test_an_instance_from_elsewhere_joins_its_series_resource(dav: DavCalendar) -> None:
    """An exception mirrored from another calendar (e.g. a Google instance) is added to the resource
    that holds its series here (found by UID), not created as a resource of its own."""
    client = provider(dav)
    series = EventData(title="Weekly", start="2026-12-01T08:00:00Z", end="2026-12-01T09:00:00Z",
                       time_zone="Europe/Berlin", recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"], ical_uid="series-uid")
    master = client.insert_event(dav.path, series, remote_id="seriesname")
    instance = EventData(title="Weekly (moved)", start="2026-12-08T10:00:00Z", end="2026-12-08T11:00:00Z",
                         time_zone="Europe/Berlin", original_start="2026-12-08T08:00:00Z", ical_uid="series-uid")
    created = client.insert_event(dav.path, instance, remote_id="0" * 32)
    assert created.remote_id == "seriesname#20261208T080000Z"
    assert created.data.original_start == "2026-12-08T08:00:00Z" and created.data.title == "Weekly (moved)"
    assert dav.names() == {"seriesname"}
    stored = parsed(dav, "seriesname")
    override = next(c for c in stored.events if "RECURRENCE-ID" in c)
    assert override["RECURRENCE-ID"].params["TZID"] == "Europe/Berlin"
    again = client.get_event(dav.path, "seriesname")
    assert again is not None and again.data.title == "Weekly" and again.etag != master.etag
    lonely = EventData(**{**instance.to_json(), "ical_uid": "nowhere", "attendees": []})
    with pytest.raises(ProviderError) as caught:
        client.insert_event(dav.path, lonely, remote_id="1" * 32)
    assert caught.value.status == 409 and caught.value.reason == "series-not-found"


@pytest.mark.parametrize("data", [
    EventData(title="Timed", start="2026-12-01T08:00:00Z", end="2026-12-01T09:30:00Z", time_zone="Europe/Berlin",
              description="Line 1\nLine 2, with; punctuation", location="Room", status="tentative",
              attendees=[], recurrence=["RRULE:FREQ=DAILY;COUNT=3"], sequence=4),
    EventData(title="All day", start="2026-12-24", end="2026-12-26", all_day=True),
    EventData(title="UTC", start="2026-12-01T08:00:00Z", end="2026-12-01T09:00:00Z",
              conference={"type": "addOn", "name": "Jitsi", "conference_id": "room-1",
                          "join_url": "https://meet.example/room-1", "provider": "jitsi"}),
])
def test_event_data_round_trips_through_icalendar(data: EventData) -> None:
    from calsync.model import Attendee

    if data.title == "Timed":
        data.attendees = [Attendee(email="bob@example.org", name="Bob", response="accepted"),
                          Attendee(email="eve@example.org", optional=True)]
    cal, comp = ical.new_resource(data, uid="uid-1")
    ical.apply_event_data(comp, data, creating=True)
    (back,) = ical.remote_events("x", '"e"', ical.render(cal))
    assert back.data.content_hash() == data.content_hash()
    assert back.data.ical_uid == "uid-1" and back.data.sequence == data.sequence


def test_component_etags_ignore_order_and_dtstamp() -> None:
    cal = Calendar.from_ical(SERIES)
    master = cal.events[0]
    before = ical.component_etag(master)
    master.pop("DTSTAMP")
    master.add("DTSTAMP", master["DTSTART"].dt)
    reordered = Calendar.from_ical(Calendar.from_ical(SERIES).to_ical())  # canonical property order
    assert ical.component_etag(master) == before == ical.component_etag(reordered.events[0])
    master["SUMMARY"] = "changed"
    assert ical.component_etag(master) != before


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_adds_a_caldav_account_binds_and_syncs(tmp_path: Path, dav: DavCalendar) -> None:
    import json
    import os
    import subprocess
    import sys

    dav.seed(3)
    db = tmp_path / "cli.db"
    env = {**os.environ, "COLUMNS": "200", "CALSYNC_CALDAV_PASSWORD": dav.server.password}
    env.pop("CALSYNC_DB", None)

    def calsync(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "calsync.cli", *args, "--db", str(db)], capture_output=True,
                              text=True, env=env, stdin=subprocess.DEVNULL, timeout=120, check=False)
        assert done.returncode == 0, done.stderr + done.stdout
        assert dav.server.password not in done.stdout + done.stderr  # never echoed
        return done.stdout

    account = calsync("account", "add", "caldav", "--url", dav.url, "--username", dav.server.username).strip()
    assert len(account) == 32
    remote = json.loads(calsync("calendar", "remote", account, "--json"))
    assert dav.path in [c["remote_id"] for c in remote]
    calsync("calendar", "bind", account, dav.path, "--json")
    summary = json.loads(calsync("sync", "--json"))["inbound"]
    assert summary[0]["created"] == 3 and summary[0]["status"] == "ok"
    accounts = json.loads(calsync("account", "list", "--json"))
    assert accounts[0]["provider"] == "caldav" and accounts[0]["name"] == f"{dav.server.username}@127.0.0.1"


# --- the fast iCalendar reader agrees with icalendar ---------------------------------------------

READER_CASES = {
    "series with overrides": SERIES,
    "LF line ends": SERIES.replace("\r\n", "\n"),
    "floating, DURATION, escapes": "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\\,1\r\nDTSTART:20260101T100000\r\n"
        "DURATION:PT1H30M\r\nSUMMARY:a\\,b\\;c\\nd\\Ne\\\\f\\:g\r\nSTATUS:tentative\r\nSEQUENCE:3\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n",
    "all-day without end": "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART;VALUE=DATE:20260101\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n",
    "attendees, quoted and caret parameters": "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n"
        'DTSTART:20260101T100000Z\r\nORGANIZER;CN="Doe, J":MAILTO:X@y\r\n'
        'ATTENDEE;CN="Doe, J";PARTSTAT=accepted;ROLE=OPT-PARTICIPANT:MAILTO:x@y\r\n'
        "ATTENDEE;CN=A^nB^^C^'D:mailto:z@y\r\nURL:https://zoom.us/j/1\\,2\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    "recurrence spelling, zones": "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n"
        "DTSTART;TZID=Europe/Berlin:20260101T100000\r\n"
        "EXDATE;TZID=Europe/Berlin:20260108T100000,20260115T100000\r\nRRULE:COUNT=3;FREQ=WEEKLY;BYDAY=MO,TU\r\n"
        "RDATE;VALUE=DATE:20260301\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:x\r\n"
        "RECURRENCE-ID;TZID=Europe/Berlin:20260122T100000\r\nDTSTART;TZID=America/New_York:20260122T100000\r\n"
        "DTEND:20260122T180000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    "TZID=UTC and a DST gap": "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART;TZID=UTC:20260329T023000\r\n"
        "DTEND;TZID=Europe/Berlin:20260329T023000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    "left to icalendar (CONFERENCE)": "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:20260101T100000Z\r\n"
        "CONFERENCE;VALUE=URI;FEATURE=VIDEO:https://meet.example/x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
}


@pytest.mark.parametrize("text", list(READER_CASES.values()), ids=list(READER_CASES))
def test_fast_reader_reads_what_icalendar_reads(text: str) -> None:
    """remote_events takes the fast reader when it can; it must give what icalendar gives."""
    slow = ical._remote_events_icalendar("r", '"e"', text)
    fast = ical.remote_events("r", '"e"', text)
    assert [(e.remote_id, e.etag, e.series_remote_id, e.updated) for e in fast] == \
           [(e.remote_id, e.etag, e.series_remote_id, e.updated) for e in slow]
    for a, b in zip(fast, slow, strict=True):
        assert {**a.data.__dict__, "extra": None} == {**b.data.__dict__, "extra": None}
        kept = ical._remote_events_icalendar("r", '"e"', a.data.extra["caldav"]["ics"])
        assert kept[0].data.content_hash() == a.data.content_hash()  # the kept copy reads back the same


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="abcXYZ019-._~@/%: ", max_size=24))
def test_plain_hrefs_take_a_short_way_to_the_same_normalised_path(tail: str) -> None:
    """`_path` skips URL parsing for plain absolute hrefs (one call per member of a listing); the
    answer must be what the full normalisation gives."""
    from urllib.parse import quote, unquote, urljoin, urlparse

    from calsync.providers.caldav import SAFE_PATH

    provider = CalDAVProvider("http://127.0.0.1:1/", "u", "p")
    href = "/" + tail
    full = quote(unquote(urlparse(urljoin(provider.origin + "/", href.strip())).path or "/"), safe=SAFE_PATH)
    assert provider._path(href) == full


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="\\,;nN:a ", max_size=16))
def test_text_unescaping_takes_a_short_way_to_the_same_result(value: str) -> None:
    try:
        expected = ical._ESCAPE.sub(ical._unescaped, value)
    except ical._Fallback:
        with pytest.raises(ical._Fallback):
            ical._unescape(value)
        return
    assert ical._unescape(value) == expected


def _icalendar_recurrence(lines: list[str]) -> list[str] | None:
    """The reference: every recurrence line read by icalendar at once, in one VEVENT."""
    comp = Event.from_ical("BEGIN:VEVENT\r\n" + "\r\n".join(lines) + "\r\nEND:VEVENT\r\n")
    return ical.recurrence_lines(comp)


_DATE = st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 12, 31)).map(lambda d: d.strftime("%Y%m%d"))
_VALUE = st.one_of(
    _DATE, _DATE.map(lambda d: d + "T101500"), _DATE.map(lambda d: d + "T235959Z"),
    st.sampled_from(["20260230", "20261301T000000", "20260101T250000Z", "2026011", "20260101T1015"]))
_DATE_LIST = st.builds(
    lambda name, params, values: f"{name}{params}:{','.join(values)}",
    st.sampled_from(["EXDATE", "RDATE", "exdate", "ExDate"]),
    st.sampled_from(["", ";TZID=Europe/Berlin", ";TZID=America/Argentina/Buenos_Aires", ';TZID="Europe/Berlin"',
                     ";VALUE=DATE", ";VALUE=DATE-TIME", ";value=date", ";TZID=Etc/GMT+5", ";X-FOO=1"]),
    st.lists(_VALUE, min_size=1, max_size=3))
_RULE = st.builds(
    lambda parts: "RRULE:" + ";".join(parts),
    st.lists(st.sampled_from(["FREQ=WEEKLY", "FREQ=DAILY", "COUNT=5", "INTERVAL=2", "BYDAY=MO,WE", "WKST=SU",
                              "UNTIL=20261231T000000Z", "UNTIL=20261231", "BYMONTH=3", "BYMONTHDAY=-1",
                              "BYDAY=2SU", "freq=monthly"]), min_size=1, max_size=4, unique=True))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(_DATE_LIST, _RULE), min_size=1, max_size=4))
def test_recurrence_lines_read_one_by_one_match_icalendar_reading_them_together(lines: list[str]) -> None:
    """The fast reader spells each recurrence line alone (a plain date list as it came, the rest
    through icalendar, cached): the same lines, in the same order, as reading them all at once."""
    try:
        expected = _icalendar_recurrence(lines)
    except (ValueError, IndexError, KeyError):
        with pytest.raises(ical._Fallback):
            ical._fast_recurrence(lines)
        return
    assert ical._fast_recurrence(lines) == expected


@pytest.mark.parametrize("server", ["radicale", "xandikos"])
def test_a_rewrite_whose_resource_changed_under_it_is_made_again_over_the_new_copy(
        request: pytest.FixtureRequest, server: str) -> None:
    """A series and its overrides are one resource, written whole with If-Match on its ETag. When the
    server answers 412 to that write (another part of the resource changed since our read, or a
    retried write of ours already landed), the provider reads the resource again and makes its
    change over the new copy: deleting one occurrence does not fail because the resource moved on."""
    from datetime import UTC, datetime, timedelta

    from tests.remotes import open_remote

    remote = open_remote(server, request)
    start = datetime(2026, 12, 7, 9, tzinfo=UTC)
    series = remote.insert_series("Standup", start, 4)
    provider = remote.provider()
    remote.fault(status=412, methods=["PUT"], count=2)
    second = start + timedelta(weeks=1)
    provider.cancel_occurrence(remote.calendar, series, second.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert remote.occurrence_state(series, second) == "excluded"
    puts = [r["status"] for r in remote.requests() if r["method"] == "PUT"]
    assert puts[:2] == [412, 412] and len(puts) == 3 and puts[2] < 300, puts
    provider.close()
