"""Phantom conflicts: a provider gives calsync's own write back spelled its own way (an RRULE
re-ordered or with a default spelled out, a UTC zone named or dropped, an empty text as nothing),
and the three-way rule must not take that for someone else's edit. The providers' readers spell
what means the same the same way, so local and remote contents compare equal and the engine
fast-forwards instead of asking a person to choose between two equal things."""
from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

import pytest
from dateutil.rrule import rrulestr
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from calsync.model import EventData, RemoteEvent
from calsync.providers import ical
from calsync.providers.canonical import (
    canonical_recurrence,
    canonical_text,
    canonical_zone,
)
from calsync.providers.google import change_from_google
from calsync.providers.graph_mapping import change_from_graph
from calsync.store import accounts as account_store
from calsync.store import conflicts as conflict_store
from calsync.store import events as event_store
from tests.remotes import open_remote
from tests.test_mirroring import (
    LEFT,
    SECOND,
    SEEN,
    SERIES_START,
    THIRD,
    Mirror,
    assert_quiet,
    remote_series,
)


def test_an_occurrence_deleted_in_google_with_three_sides_opens_no_conflict(
    engine: Engine, request: pytest.FixtureRequest,
) -> None:
    """A weekly series of four made in Google, mirrored to Outlook and CalDAV (one calendar, three
    bindings); one occurrence deleted in Google. Nobody else changed anything, so no conflict may
    open: Outlook and Radicale give calsync's own writes back spelled their way (Graph adds
    BYDAY=MO and drops the UTC zone Google names) and that must not read as someone's edit."""
    google, graph, dav = (open_remote(kind, request) for kind in ("google", "graph", "radicale"))
    mirror = Mirror(engine, google, graph, dav)
    google.insert_series("Standup", SERIES_START, 4)
    mirror.settle()
    google.delete_occurrence(remote_series(engine, mirror.binding_a), SECOND)
    for _ in range(3):
        mirror.sync()
    with engine.begin() as conn:
        assert [(c["kind"], c["binding_id"]) for c in conflict_store.list_conflicts(conn)] == []
    left = sorted([*LEFT, (THIRD, "Standup")])
    for remote in mirror.remotes:
        assert remote.occurrences(*SEEN) == left, remote.name
    assert_quiet(mirror, google, graph, dav)


def test_a_series_made_in_outlook_mirrored_to_google_and_caldav_opens_no_conflict(
    engine: Engine, request: pytest.FixtureRequest,
) -> None:
    """The same the other way round: a series born in Outlook (Graph spells BYDAY and no zone),
    mirrored to Google (which needs a zone for a series: calsync writes UTC) and CalDAV; one
    occurrence deleted in Outlook."""
    graph, google, dav = (open_remote(kind, request) for kind in ("graph", "google", "radicale"))
    mirror = Mirror(engine, graph, google, dav)
    graph.insert_series("Standup", SERIES_START, 4)
    mirror.settle()
    graph.delete_occurrence(remote_series(engine, mirror.binding_a), SECOND)
    for _ in range(3):
        mirror.sync()
    with engine.begin() as conn:
        assert [(c["kind"], c["binding_id"]) for c in conflict_store.list_conflicts(conn)] == []
    left = sorted([*LEFT, (THIRD, "Standup")])
    for remote in mirror.remotes:
        assert remote.occurrences(*SEEN) == left, remote.name
    assert_quiet(mirror, graph, google, dav)



# --- the helper: one spelling, the same meaning ------------------------------------------------------

MONDAY_9 = datetime(2026, 12, 7, 9)  # the wall time of a series' first start, as its rule sees it


@pytest.mark.parametrize(("lines", "first", "expected"), [
    # part order (Radicale via icalendar: FREQ, UNTIL, COUNT, INTERVAL, BY*..., WKST), case, signs
    (["RRULE:INTERVAL=2;COUNT=5;FREQ=DAILY"], MONDAY_9, ["RRULE:FREQ=DAILY;COUNT=5;INTERVAL=2"]),
    (["RRULE:freq=monthly;byday=+1mo"], MONDAY_9, ["RRULE:FREQ=MONTHLY;BYDAY=1MO"]),
    (["RRULE:FREQ=WEEKLY;COUNT=5;INTERVAL=2;BYDAY=WE,MO,WE;WKST=SU"], MONDAY_9,
     ["RRULE:FREQ=WEEKLY;COUNT=5;INTERVAL=2;BYDAY=MO,WE;WKST=SU"]),  # WKST counts here: kept
    # defaults a provider spells out (Graph: BYDAY of the start, WKST=SU, INTERVAL=1)
    (["RRULE:FREQ=WEEKLY;INTERVAL=1;COUNT=4"], MONDAY_9, ["RRULE:FREQ=WEEKLY;COUNT=4"]),
    (["RRULE:FREQ=WEEKLY;COUNT=4;BYDAY=MO;WKST=SU"], MONDAY_9, ["RRULE:FREQ=WEEKLY;COUNT=4"]),
    (["RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=MO;WKST=SU"], MONDAY_9, ["RRULE:FREQ=WEEKLY;COUNT=4;INTERVAL=2"]),
    (["RRULE:FREQ=DAILY;COUNT=3;WKST=SU"], MONDAY_9, ["RRULE:FREQ=DAILY;COUNT=3"]),
    (["RRULE:FREQ=MONTHLY;COUNT=3;BYMONTHDAY=7"], MONDAY_9, ["RRULE:FREQ=MONTHLY;COUNT=3"]),
    (["RRULE:FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=7"], MONDAY_9, ["RRULE:FREQ=YEARLY"]),
    (["RRULE:FREQ=YEARLY;BYMONTH=12"], date(2026, 12, 7), ["RRULE:FREQ=YEARLY"]),
    # not the default, or not provably the same: kept
    (["RRULE:FREQ=WEEKLY;COUNT=4;BYDAY=TU"], MONDAY_9, ["RRULE:FREQ=WEEKLY;COUNT=4;BYDAY=TU"]),
    (["RRULE:FREQ=WEEKLY;BYMONTHDAY=7;BYDAY=MO"], MONDAY_9, ["RRULE:FREQ=WEEKLY;BYDAY=MO;BYMONTHDAY=7"]),
    (["RRULE:FREQ=YEARLY;BYMONTHDAY=7"], MONDAY_9, ["RRULE:FREQ=YEARLY;BYMONTHDAY=7"]),
    (["RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;WKST=SU"], MONDAY_9, ["RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU;WKST=SU"]),
    (["RRULE:FREQ=WEEKLY;COUNT=4;BYDAY=MO"], None, ["RRULE:FREQ=WEEKLY;COUNT=4;BYDAY=MO"]),  # start unknown
    (["RRULE:FREQ=WEEKLY;BYDAY=XX"], MONDAY_9, ["RRULE:FREQ=WEEKLY;BYDAY=XX"]),  # not understood: as it was
    (["RRULE:RSCALE=HEBREW;FREQ=YEARLY;BYMONTH=12"], MONDAY_9, ["RRULE:RSCALE=HEBREW;FREQ=YEARLY;BYMONTH=12"]),
    # EXDATEs: one line, UTC (a zone's value is the same instant), sorted, once; lines in RRULE..EXDATE order
    (["EXDATE:20261221T090000Z", "RRULE:FREQ=WEEKLY", "EXDATE:20261214T090000Z,20261221T090000Z"], MONDAY_9,
     ["RRULE:FREQ=WEEKLY", "EXDATE:20261214T090000Z,20261221T090000Z"]),
    (["RRULE:FREQ=WEEKLY", "EXDATE;TZID=Europe/Berlin:20261214T100000"], MONDAY_9,
     ["RRULE:FREQ=WEEKLY", "EXDATE:20261214T090000Z"]),
    (["RRULE:FREQ=DAILY", "EXDATE;VALUE=DATE:20261209", "EXDATE;VALUE=DATE:20261208"], date(2026, 12, 7),
     ["RRULE:FREQ=DAILY", "EXDATE;VALUE=DATE:20261208,20261209"]),
    (["RRULE:FREQ=DAILY", "EXDATE:20261208T090000"], MONDAY_9,  # floating: depends on the series' zone
     ["RRULE:FREQ=DAILY", "EXDATE:20261208T090000"]),
])
def test_recurrence_spellings_that_mean_the_same_read_the_same(
        lines: list[str], first: date | datetime | None, expected: list[str]) -> None:
    assert canonical_recurrence(lines, first) == expected
    assert canonical_recurrence(expected, first) == expected, "a fixed point"


def test_zones_and_texts() -> None:
    assert [canonical_zone(z) for z in ("UTC", "Etc/UTC", "GMT", "Z", None, "", "Europe/London")] == \
        [None, None, None, None, None, None, "Europe/London"]
    assert [canonical_text(t) for t in ("", None, " ", "Room 1")] == [None, None, " ", "Room 1"]


_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@st.composite
def _spelled_rules(draw: st.DrawFn) -> tuple[str, datetime]:
    """A rule with parts a provider might spell out (defaults from the start, WKST, INTERVAL=1), in
    any order and case, and the start it is anchored on."""
    first = datetime.combine(draw(st.dates(date(2025, 1, 1), date(2028, 12, 31))), time(9))
    freq = draw(st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]))
    parts = {"FREQ": freq, "COUNT": str(draw(st.integers(1, 15)))}
    if draw(st.booleans()):
        parts["INTERVAL"] = str(draw(st.integers(1, 3)))
    if draw(st.booleans()):
        parts["WKST"] = draw(st.sampled_from(_DAYS))
    own = _DAYS[first.weekday()]
    if freq == "WEEKLY" and draw(st.booleans()):
        days = draw(st.sets(st.sampled_from(_DAYS), min_size=1, max_size=3)) if draw(st.booleans()) else {own}
        parts["BYDAY"] = ",".join(days)
    if freq in ("MONTHLY", "YEARLY") and draw(st.booleans()):
        parts["BYMONTHDAY"] = str(draw(st.sampled_from([first.day, (first.day % 28) + 1])))
    if freq == "YEARLY" and draw(st.booleans()):
        parts["BYMONTH"] = str(draw(st.sampled_from([first.month, (first.month % 12) + 1])))
    order = draw(st.permutations(list(parts)))
    text = ";".join(f"{k}={parts[k]}" for k in order)
    return "RRULE:" + (text.lower() if draw(st.booleans()) else text), first


@settings(max_examples=400, deadline=None)
@given(_spelled_rules())
def test_the_canonical_rule_expands_to_the_same_starts(rule: tuple[str, datetime]) -> None:
    """dateutil (RFC 5545) expands the re-spelled rule to exactly the starts of the original."""
    text, first = rule
    (spelled,) = canonical_recurrence([text], first) or []
    original = list(rrulestr(text.removeprefix("RRULE:"), dtstart=first))
    assert list(rrulestr(spelled.removeprefix("RRULE:"), dtstart=first)) == original, (text, spelled)


# --- each provider's reader ------------------------------------------------------------------------

SERIES_HASH_FIELDS = ("title", "start", "end", "all_day", "time_zone", "description", "location", "recurrence")


def _google_master(**fields: Any) -> dict[str, Any]:
    """A weekly series as Google gives back what calsync wrote (a series needs a zone: UTC)."""
    return {"id": "s1", "etag": '"1"', "status": "confirmed", "summary": "Standup",
            "start": {"dateTime": "2026-12-07T09:00:00Z", "timeZone": "UTC"},
            "end": {"dateTime": "2026-12-07T10:00:00Z", "timeZone": "UTC"},
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"], **fields}


def _graph_master(**fields: Any) -> dict[str, Any]:
    """The same series as Outlook gives it back: a pattern (daysOfWeek and firstDayOfWeek spelled
    out), no zone of its own beyond UTC, an empty body and location."""
    return {"id": "m1", "@odata.etag": 'W/"1"', "type": "seriesMaster", "subject": "Standup",
            "start": {"dateTime": "2026-12-07T09:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2026-12-07T10:00:00.0000000", "timeZone": "UTC"},
            "originalStartTimeZone": "UTC", "body": {"contentType": "html", "content": ""},
            "location": {"displayName": ""},
            "recurrence": {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"],
                                       "firstDayOfWeek": "sunday"},
                           "range": {"type": "numbered", "startDate": "2026-12-07", "numberOfOccurrences": 4,
                                     "recurrenceTimeZone": "UTC"}}, **fields}


def _ics(*lines: str) -> str:
    body = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//test//EN", "BEGIN:VEVENT", "UID:s1@test",
            "DTSTAMP:20261201T000000Z", "SUMMARY:Standup", *lines, "END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(body)


def _fields(data: EventData) -> dict[str, Any]:
    return {k: getattr(data, k) for k in SERIES_HASH_FIELDS}


def _read_ics(*lines: str) -> list[EventData]:
    """One VEVENT with these lines, read by both CalDAV readers (the fast one and icalendar's),
    which must say the same."""
    text = _ics(*lines)
    fast = [e.data for e in ical.remote_events("r", '"e"', text)]
    slow = [e.data for e in ical._remote_events_icalendar("r", '"e"', text)]
    assert [_fields(d) for d in fast] == [_fields(d) for d in slow]
    return fast


def _google(item: dict[str, Any]) -> EventData:
    change = change_from_google(item)
    assert isinstance(change, RemoteEvent)
    return change.data


def _graph(item: dict[str, Any], exdates: list[str] | None = None) -> EventData:
    change = change_from_graph(item, exdates)
    assert isinstance(change, RemoteEvent)
    return change.data


def test_one_series_reads_the_same_from_google_outlook_and_caldav() -> None:
    """The Google series calsync mirrored, as each side gives it back: one content hash."""
    google = _google(_google_master())
    graph = _graph(_graph_master())
    (dav,) = _read_ics("DTSTART:20261207T090000Z", "DTEND:20261207T100000Z", "RRULE:COUNT=4;FREQ=WEEKLY;INTERVAL=1",
                       "DESCRIPTION:", "LOCATION:")
    assert _fields(google) == _fields(graph) == _fields(dav)
    assert google.content_hash() == graph.content_hash() == dav.content_hash()
    assert google.recurrence == ["RRULE:FREQ=WEEKLY;COUNT=4"] and google.time_zone is None


def test_graph_reads_its_pattern_without_the_defaults_it_spells_out() -> None:
    data = _graph(_graph_master(), exdates=["2026-12-14T09:00:00Z"])
    assert data.recurrence == ["RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE:20261214T090000Z"]


def test_graph_reads_a_utc_zone_under_another_name_as_none() -> None:
    assert _graph(_graph_master(originalStartTimeZone="Etc/UTC")).time_zone is None
    assert _graph(_graph_master(originalStartTimeZone="Europe/Paris")).time_zone == "Europe/Paris"


def test_google_reads_the_utc_zone_calsync_gives_a_series_as_none() -> None:
    assert _google(_google_master()).time_zone is None
    zoned = {"dateTime": "2026-12-07T10:00:00+01:00", "timeZone": "Europe/Paris"}
    assert _google(_google_master(start=zoned, end=zoned)).time_zone == "Europe/Paris"


def test_google_reads_empty_texts_as_none() -> None:
    data = _google(_google_master(description="", location=""))
    assert (data.description, data.location) == (None, None)


def test_google_reads_a_rule_in_the_one_spelling() -> None:
    data = _google(_google_master(recurrence=["EXDATE:20261214T090000Z", "RRULE:BYDAY=MO;FREQ=WEEKLY;COUNT=4"]))
    assert data.recurrence == ["RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE:20261214T090000Z"]
    # the weekday is the start's in the rule's zone: 00:30 in Tokyo on Tuesday is Monday in UTC
    tokyo = {"dateTime": "2026-12-07T15:30:00Z", "timeZone": "Asia/Tokyo"}
    data = _google(_google_master(start=tokyo, end=tokyo, recurrence=["RRULE:FREQ=WEEKLY;BYDAY=MO"]))
    assert data.recurrence == ["RRULE:FREQ=WEEKLY;BYDAY=MO"], "Tuesday there: BYDAY=MO is no default"
    data = _google(_google_master(start=tokyo, end=tokyo, recurrence=["RRULE:FREQ=WEEKLY;BYDAY=TU"]))
    assert data.recurrence == ["RRULE:FREQ=WEEKLY"]


def test_caldav_reads_a_reordered_rule_and_split_exdates_in_the_one_spelling() -> None:
    (data,) = _read_ics("DTSTART:20261207T090000Z", "DTEND:20261207T100000Z",
                        "RRULE:FREQ=DAILY;INTERVAL=2;COUNT=5", "EXDATE:20261211T090000Z", "EXDATE:20261209T090000Z")
    assert data.recurrence == ["RRULE:FREQ=DAILY;COUNT=5;INTERVAL=2", "EXDATE:20261209T090000Z,20261211T090000Z"]


def test_caldav_reads_a_weekday_in_the_series_own_zone() -> None:
    """DTSTART 00:30 on a Tuesday in Tokyo is Monday in UTC: BYDAY=TU is the default, BYDAY=MO is not."""
    start = "DTSTART;TZID=Asia/Tokyo:20261208T003000"
    (data,) = _read_ics(start, "DTEND;TZID=Asia/Tokyo:20261208T013000", "RRULE:FREQ=WEEKLY;BYDAY=TU")
    assert data.recurrence == ["RRULE:FREQ=WEEKLY"] and data.time_zone == "Asia/Tokyo"
    (data,) = _read_ics(start, "DTEND;TZID=Asia/Tokyo:20261208T013000", "RRULE:FREQ=WEEKLY;BYDAY=MO")
    assert data.recurrence == ["RRULE:FREQ=WEEKLY;BYDAY=MO"]


def test_caldav_reads_tzid_utc_and_empty_texts_as_none() -> None:
    (data,) = _read_ics("DTSTART;TZID=UTC:20261207T090000", "DTEND;TZID=UTC:20261207T100000",
                        "DESCRIPTION:", "LOCATION:")
    assert (data.time_zone, data.description, data.location) == (None, None, None)
    assert data.start == "2026-12-07T09:00:00Z"


def test_caldav_writes_an_empty_text_as_no_property() -> None:
    cal, comp = ical.new_resource(EventData(title="x", start="2026-12-07T09:00:00Z", end="2026-12-07T10:00:00Z"),
                                  "uid-1")
    ical.apply_event_data(comp, EventData(title="x", start="2026-12-07T09:00:00Z", end="2026-12-07T10:00:00Z",
                                          description="", location=""), creating=True)
    text = ical.render(cal)
    assert "DESCRIPTION" not in text and "LOCATION" not in text


def test_a_local_write_is_spelled_as_the_providers_read_it_back(engine: Engine) -> None:
    """An empty description or location is none, and UTC by any name is no zone, here as everywhere:
    the local side of a later three-way comparison is spelled like the remote one."""
    from calsync.engine import local

    with engine.begin() as conn:
        calendar = account_store.create_calendar(conn, "Work")
    made = local.create_event(engine, calendar, {"title": "Plain", "start": "2026-12-01T09:00:00Z",
                                                 "end": "2026-12-01T10:00:00Z", "description": "",
                                                 "location": "", "time_zone": "UTC"})
    with engine.begin() as conn:
        data = event_store.event_data(conn, made.event_id)
    assert (data.description, data.location, data.time_zone) == (None, None, None)
