"""Graph recurrence and conference mapping: RRULE <-> patternedRecurrence, series through the Graph
emulator over real HTTP (provider writes, delta folding, EXDATEs), and Zoom-style conferences."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from dateutil.rrule import rrulestr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from calsync.emulators.graph import (
    _check_recurrence,
    _Series,
    _When,
)
from calsync.engine import inbound
from calsync.engine.outbound import Pusher
from calsync.engine.sync import sync_once
from calsync.model import Account, EventData, RemoteDeletion, RemoteEvent
from calsync.providers.graph import GraphProvider
from calsync.providers.graph_mapping import (
    SeriesAnchor,
    UnsupportedRecurrence,
    _rule_of,
    anchor_of,
    graph_to_rrule,
    recurrence_lines,
    rrule_to_graph,
    same_recurrence,
)
from calsync.providers.html_text import _PLAIN_DOCUMENT, html_to_text, parsed_text, text_to_html
from calsync.providers.http import RetryPolicy
from calsync.store import accounts as account_store
from calsync.store.schema import events, outbox

USER = "adele"
PARIS = "Europe/Paris"
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ZOOM = {"type": "addOn", "name": "Zoom", "join_url": "https://zoom.example/j/815", "provider": "zoom",
        "conference_id": "815"}


# --- pure mapping: property tests ---------------------------------------------------------------


@st.composite
def graph_series(draw: st.DrawFn) -> tuple[dict[str, Any], SeriesAnchor]:
    """A Graph recurrence in the exact shape rrule_to_graph writes, anchored on its first occurrence."""
    kind = draw(st.sampled_from(["daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly",
                                 "relativeYearly"]))
    pattern: dict[str, Any] = {"interval": draw(st.integers(1, 4)), "type": kind}
    days = sorted(draw(st.sets(st.integers(0, 6), min_size=1, max_size=3)))
    if kind == "weekly":
        pattern.update(daysOfWeek=[DAYS[d] for d in days], firstDayOfWeek=draw(st.sampled_from(DAYS)))
    if kind.startswith("relative"):
        pattern.update(index=draw(st.sampled_from(["first", "second", "third", "fourth", "last"])),
                       daysOfWeek=[DAYS[d] for d in days])
    if kind.startswith("absolute"):
        pattern["dayOfMonth"] = draw(st.integers(1, 28))
    if kind.endswith("Yearly"):
        pattern["month"] = draw(st.integers(1, 12))
    zone = draw(st.sampled_from(["UTC", PARIS, "America/New_York"]))
    all_day = draw(st.booleans())
    day = draw(st.dates(date(2025, 1, 1), date(2028, 12, 31)))
    clock = time(0) if all_day else draw(st.sampled_from([time(0, 30), time(9), time(17, 45)]))
    seed = {"pattern": pattern, "range": {"type": "noEnd", "startDate": day.isoformat()}}
    anchor0 = SeriesAnchor(datetime.combine(day, clock), "UTC" if all_day else zone, all_day)
    first = _rule_of(seed, anchor0).after(anchor0.local, inc=True)
    anchor = SeriesAnchor(first, anchor0.zone_name, all_day)
    rng: dict[str, Any] = {"type": draw(st.sampled_from(["noEnd", "numbered", "endDate"])),
                           "startDate": first.date().isoformat(), "recurrenceTimeZone": anchor.zone_name}
    if rng["type"] == "numbered":
        rng["numberOfOccurrences"] = draw(st.integers(1, 30))
    elif rng["type"] == "endDate":
        rng["endDate"] = (first.date() + timedelta(days=draw(st.integers(0, 900)))).isoformat()
    return {"pattern": pattern, "range": rng}, anchor


@settings(max_examples=300, deadline=None)
@given(graph_series())
def test_graph_patterns_round_trip_through_rrule(series: tuple[dict[str, Any], SeriesAnchor]) -> None:
    recurrence, anchor = series
    rule = graph_to_rrule(recurrence, anchor)
    back, exdates = rrule_to_graph([rule], anchor)
    assert back == recurrence, rule
    assert exdates == []
    assert graph_to_rrule(back, anchor) == rule  # and the RRULE text is a fixed point


@settings(max_examples=300, deadline=None)
@given(graph_series())
def test_the_rule_calsync_reads_from_graph_means_what_graph_spells(series: tuple[dict[str, Any], SeriesAnchor]) -> None:
    """The reader leaves out what Graph spells but the start implies (BYDAY of a weekly series, its
    week start where it cannot matter, BYMONTH / BYMONTHDAY of the start): the same starts, and a
    rule that still maps to the same pattern."""
    recurrence, anchor = series
    spelled = graph_to_rrule(recurrence, anchor)
    (read,) = recurrence_lines(recurrence, anchor, None) or []
    first = anchor.local if anchor.all_day else anchor.local.replace(tzinfo=anchor.zone)  # (UNTIL is UTC)
    assert list(rrulestr(read.removeprefix("RRULE:"), dtstart=first).xafter(first, count=60, inc=True)) == \
        list(rrulestr(spelled.removeprefix("RRULE:"), dtstart=first).xafter(first, count=60, inc=True)), (spelled, read)
    assert same_recurrence(rrule_to_graph([read], anchor)[0], recurrence, anchor), (spelled, read)


def _utc(values: list[datetime]) -> list[datetime]:
    return [v.astimezone(UTC) for v in values]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph_series())
def test_the_rrule_means_what_graph_expands(series: tuple[dict[str, Any], SeriesAnchor]) -> None:
    """RFC 5545 expansion of our RRULE (dateutil, wall-clock in the zone) equals the emulator's
    expansion of the Graph pattern we would write for it: the mapping keeps the meaning."""
    recurrence, anchor = series
    rule = graph_to_rrule(recurrence, anchor)
    zone = ZoneInfo(anchor.zone_name) if anchor.zone_name != "UTC" else UTC
    lo = datetime.combine(anchor.local.date(), time(0), UTC) - timedelta(days=2)
    hi = lo + timedelta(days=3 * 366)
    if anchor.all_day:  # floating dates (UNTIL is a DATE): expand naive, midnights count as UTC
        rfc = rrulestr(rule.removeprefix("RRULE:"), dtstart=anchor.local)
        naive = rfc.between(lo.replace(tzinfo=None), hi.replace(tzinfo=None), inc=True)
        expected = [v.replace(tzinfo=UTC) for v in naive]
    else:
        rfc = rrulestr(rule.removeprefix("RRULE:"), dtstart=anchor.local.replace(tzinfo=zone))
        expected = _utc(rfc.between(lo, hi, inc=True))
    written, _ = rrule_to_graph([rule], anchor)
    start = _When(anchor.local, anchor.zone_name, zone)  # type: ignore[arg-type]
    end = _When(anchor.local + timedelta(hours=1), anchor.zone_name, zone)  # type: ignore[arg-type]
    graph = _Series(_check_recurrence(written), start, end)  # type: ignore[arg-type]
    assert graph.starts(lo, hi) == [e for e in expected if lo <= e < hi][:5000], rule


def test_rrule_spellings_normalise() -> None:
    """Google-style rules: defaults filled from the start, ordinals, BYSETPOS, UNTIL in UTC, EXDATE."""
    anchor = anchor_of(EventData(start="2026-03-10T08:00:00Z", end="2026-03-10T09:00:00Z", time_zone=PARIS))
    cases = {
        "RRULE:FREQ=WEEKLY": "RRULE:FREQ=WEEKLY;BYDAY=TU",
        "RRULE:FREQ=WEEKLY;BYDAY=TH,TU;WKST=SU": "RRULE:FREQ=WEEKLY;BYDAY=TU,TH;WKST=SU",
        "RRULE:FREQ=MONTHLY;BYDAY=2TU": "RRULE:FREQ=MONTHLY;BYDAY=2TU",
        "RRULE:FREQ=MONTHLY;BYDAY=TU,WE;BYSETPOS=3": "RRULE:FREQ=MONTHLY;BYDAY=TU,WE;BYSETPOS=3",
        "RRULE:FREQ=MONTHLY": "RRULE:FREQ=MONTHLY;BYMONTHDAY=10",
        "RRULE:FREQ=YEARLY;UNTIL=20300310T235959Z": "RRULE:FREQ=YEARLY;UNTIL=20300310T080000Z;BYMONTH=3;BYMONTHDAY=10",
        "RRULE:FREQ=DAILY;INTERVAL=2;UNTIL=20260320T075959Z": "RRULE:FREQ=DAILY;INTERVAL=2;UNTIL=20260319T080000Z",
    }
    for given_rule, canonical in cases.items():
        recurrence, _ = rrule_to_graph([given_rule], anchor)
        assert graph_to_rrule(recurrence, anchor) == canonical, given_rule
    _, exdates = rrule_to_graph(["RRULE:FREQ=DAILY", "EXDATE;TZID=Europe/Paris:20260312T090000,20260314T090000",
                                 "EXDATE:20260313T080000Z"], anchor)
    assert exdates == ["2026-03-12T08:00:00Z", "2026-03-13T08:00:00Z", "2026-03-14T08:00:00Z"]


UNSUPPORTED = [
    ["RRULE:FREQ=HOURLY"],
    ["RRULE:FREQ=WEEKLY;BYDAY=TU", "RRULE:FREQ=MONTHLY;BYDAY=1TU"],
    ["RRULE:FREQ=WEEKLY;BYDAY=TU", "RDATE:20260401T080000Z"],
    ["RRULE:FREQ=MONTHLY;BYDAY=TU;BYSETPOS=1,3"],
    ["RRULE:FREQ=MONTHLY;BYDAY=1TU,3TU"],
    ["RRULE:FREQ=MONTHLY;BYDAY=5TU"],
    ["RRULE:FREQ=MONTHLY;BYMONTHDAY=-1"],
    ["RRULE:FREQ=MONTHLY;BYMONTHDAY=1,15"],
    ["RRULE:FREQ=DAILY;BYHOUR=9,17"],
    ["RRULE:FREQ=WEEKLY;BYDAY=WE"],  # the start (a Tuesday) is not an occurrence: Graph would drop it
    ["RRULE:FREQ=YEARLY;BYWEEKNO=20"],
]


@pytest.mark.parametrize("lines", UNSUPPORTED, ids=lambda ls: ";".join(ls)[:40])
def test_rules_graph_cannot_express_are_refused(lines: list[str]) -> None:
    anchor = anchor_of(EventData(start="2026-03-10T08:00:00Z", end="2026-03-10T09:00:00Z", time_zone=PARIS))
    with pytest.raises(UnsupportedRecurrence) as caught:
        rrule_to_graph(lines, anchor)
    assert caught.value.status == 422 and caught.value.reason == "unsupportedRecurrence"


# --- over HTTP ---------------------------------------------------------------------------------




@pytest.fixture()
def api(graph_url: str) -> Iterator[httpx.Client]:
    """Another Outlook client, acting on the mailbox with plain HTTP."""
    with httpx.Client(base_url=f"{graph_url}/v1.0", headers={
            "Authorization": f"Bearer {USER}", "Prefer": 'outlook.timezone="UTC", IdType="ImmutableId"'}) as client:
        yield client


@pytest.fixture()
def provider(graph_url: str) -> Iterator[GraphProvider]:
    p = GraphProvider(USER, graph_url, retry=RetryPolicy(attempts=2, base_delay=0.01))
    yield p
    p.close()


def calendar_id(api: httpx.Client) -> str:
    (default,) = [c for c in api.get("/me/calendars").raise_for_status().json()["value"] if c["isDefaultCalendar"]]
    return str(default["id"])


def next_weekday(weekday: int, days_ahead: int = 10) -> date:
    day = datetime.now(UTC).date() + timedelta(days=days_ahead)
    return day + timedelta(days=(weekday - day.weekday()) % 7)


def instances(api: httpx.Client, master_id: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    params = {"startDateTime": (now - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "endDateTime": (now + timedelta(days=365)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return list(api.get(f"/me/events/{master_id}/instances", params=params).raise_for_status().json()["value"])


def writes(graph_url: str) -> list[tuple[str, str]]:
    log = httpx.get(f"{graph_url}/emulator/requests").raise_for_status().json()["requests"]
    return [(r["method"], r["path"]) for r in log if r["method"] in ("POST", "PATCH", "DELETE")]


def standup(monday: date, lines: list[str]) -> EventData:
    """A Google-style master: 10:00 Paris on Mondays and Wednesdays."""
    start = datetime.combine(monday, time(10), ZoneInfo(PARIS)).astimezone(UTC)
    return EventData(title="Standup", start=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     end=(start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"), time_zone=PARIS,
                     description="<p>daily sync</p>", recurrence=lines)


def starts_of(monday: date, offsets: list[int]) -> list[str]:
    return [datetime.combine(monday + timedelta(days=o), time(10), ZoneInfo(PARIS)).astimezone(UTC)
            .strftime("%Y-%m-%dT%H:%M:%SZ") for o in offsets]


def test_a_series_written_by_the_provider_expands_in_the_emulator(
        api: httpx.Client, provider: GraphProvider, graph_url: str) -> None:
    monday = next_weekday(0)
    skipped = starts_of(monday, [2])[0].replace("-", "").replace(":", "")
    data = standup(monday, ["RRULE:FREQ=WEEKLY;COUNT=6;BYDAY=MO,WE", f"EXDATE:{skipped}"])
    written = provider.insert_event(calendar_id(api), data)
    master = api.get(f"/me/events/{written.remote_id}").raise_for_status().json()
    assert master["type"] == "seriesMaster"
    assert master["recurrence"]["pattern"]["type"] == "weekly"
    assert master["recurrence"]["pattern"]["daysOfWeek"] == ["monday", "wednesday"]
    assert master["recurrence"]["range"]["numberOfOccurrences"] == 6
    listed = sorted(i["originalStart"] for i in instances(api, written.remote_id))
    assert listed == starts_of(monday, [0, 7, 9, 14, 16]), "six occurrences, the EXDATE one deleted"
    assert [m for m, _ in writes(graph_url)] == ["POST", "DELETE"], "one create, one deleted occurrence"

    read = provider.get_event("", written.remote_id)
    assert read is not None and read.data.recurrence == data.recurrence
    assert read.content_hash == data.content_hash() == written.content_hash, "the read-back is the same event"


def test_unsupported_rules_never_reach_graph_and_fail_the_outbox_row_once(
        engine: Engine, api: httpx.Client, provider: GraphProvider, graph_url: str) -> None:
    data = standup(next_weekday(0), ["RRULE:FREQ=MONTHLY;BYDAY=MO;BYSETPOS=1,-1"])
    with pytest.raises(UnsupportedRecurrence):
        provider.insert_event(calendar_id(api), data)
    assert writes(graph_url) == []

    _, google, graph = hub_with_google(engine, graph_url, calendar_id(api))
    inbound.apply_remote_changes(engine, google, [RemoteEvent("g1", '"1"', data)])
    result = Pusher(engine, provider, graph).run()
    assert result.failed == 1 and result.retried == 0, "a rule Graph cannot hold is not retried for ever"
    with engine.begin() as conn:
        (row,) = conn.execute(select(outbox).where(outbox.c.binding_id == graph)).mappings().all()
    assert row["status"] == "failed" and "BYSETPOS" in row["last_error"]
    assert writes(graph_url) == []


def hub_with_google(engine: Engine, graph_url: str, graph_calendar: str) -> tuple[str, str, str]:
    """One local calendar bound to a (pull-only, never contacted) Google calendar and to Outlook."""
    with engine.begin() as conn:
        calendar = account_store.create_calendar(conn, "team")
        g_account = account_store.create_account(conn, "google", "g", None, {"token": "unused"})
        o_account = account_store.create_account(conn, "graph", USER, graph_url, {"token": USER})
        google = account_store.create_binding(conn, calendar, g_account, "primary", "pull")
        graph = account_store.create_binding(conn, calendar, o_account, graph_calendar, "two-way")
    return calendar, google, graph


def make(account: Account) -> GraphProvider:
    return GraphProvider.from_account(account, page_size=3, retry=RetryPolicy(attempts=2, base_delay=0.01))


def local_rows(engine: Engine, calendar: str) -> list[dict[str, Any]]:
    with engine.begin() as conn:
        return [dict(r) for r in conn.execute(
            select(events).where(events.c.calendar_id == calendar, events.c.deleted.is_(False))).mappings()]


def test_a_google_series_mirrors_to_outlook_as_a_series_and_echoes_as_nothing(
        engine: Engine, api: httpx.Client, graph_url: str) -> None:
    monday = next_weekday(0)
    skipped = starts_of(monday, [7])[0].replace("-", "").replace(":", "")
    data = standup(monday, ["RRULE:FREQ=WEEKLY;UNTIL=20991231T235959Z;BYDAY=MO,WE", f"EXDATE:{skipped}"])
    calendar, google, graph = hub_with_google(engine, graph_url, calendar_id(api))
    sync_once(engine, binding_ids=[graph], make_provider=make)  # the Outlook calendar is empty: a token
    inbound.apply_remote_changes(engine, google, [RemoteEvent("google-standup", '"1"', data)])
    report = sync_once(engine, binding_ids=[graph], make_provider=make)
    assert report.outbound[0].created == 1

    (master,) = api.get(f"/me/calendars/{calendar_id(api)}/events").raise_for_status().json()["value"]
    assert master["type"] == "seriesMaster" and master["subject"] == "Standup"
    listed = {i["originalStart"] for i in instances(api, master["id"])}
    assert starts_of(monday, [0, 2, 9])[0] in listed and starts_of(monday, [2])[0] in listed
    assert starts_of(monday, [7])[0] not in listed, "the EXDATE became a deleted occurrence"

    echo = sync_once(engine, binding_ids=[graph], make_provider=make)
    assert (echo.inbound[0].created, echo.inbound[0].updated) == (0, 0), "our own series echoes as nothing"
    (row,) = local_rows(engine, calendar)
    assert row["recurrence"] == data.recurrence and row["recurring_event_id"] is None


def test_an_outlook_series_arrives_as_a_master_with_exdates_and_its_exceptions(
        engine: Engine, api: httpx.Client, graph_url: str) -> None:
    monday = next_weekday(0)
    cal = calendar_id(api)
    body = {"subject": "Review", "start": {"dateTime": f"{monday}T10:00:00", "timeZone": PARIS},
            "end": {"dateTime": f"{monday}T11:00:00", "timeZone": PARIS},
            "recurrence": {"pattern": {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["monday"],
                                       "index": _index_of(monday)},
                           "range": {"type": "numbered", "numberOfOccurrences": 4, "startDate": str(monday),
                                     "recurrenceTimeZone": PARIS}}}
    master = api.post(f"/me/calendars/{cal}/events", json=body).raise_for_status().json()
    occurrences = sorted(instances(api, master["id"]), key=lambda i: i["originalStart"])
    assert len(occurrences) == 4
    api.patch(f"/me/events/{occurrences[1]['id']}", json={"subject": "Review (moved)"}).raise_for_status()
    api.delete(f"/me/events/{occurrences[2]['id']}").raise_for_status()

    with engine.begin() as conn:
        calendar = account_store.create_calendar(conn, "outlook")
        account = account_store.create_account(conn, "graph", USER, graph_url, {"token": USER})
        binding = account_store.create_binding(conn, calendar, account, cal, "two-way")
    sync_once(engine, binding_ids=[binding], make_provider=make)
    rows = {r["title"]: r for r in local_rows(engine, calendar)}
    assert set(rows) == {"Review", "Review (moved)"}, "no plain occurrences, one master, one exception"
    deleted = occurrences[2]["originalStart"].replace("-", "").replace(":", "")
    assert rows["Review"]["recurrence"] == [f"RRULE:FREQ=MONTHLY;COUNT=4;BYDAY={_ordinal(monday)}MO",
                                            f"EXDATE:{deleted}"]
    exception = rows["Review (moved)"]
    assert exception["recurring_event_id"] == rows["Review"]["id"]
    assert exception["original_start"] == occurrences[1]["originalStart"]

    # an incremental round reads the master through its instances: the same master, not a change
    api.patch(f"/me/events/{occurrences[1]['id']}", json={"subject": "Review (moved again)"}).raise_for_status()
    report = sync_once(engine, binding_ids=[binding], make_provider=make)
    assert report.inbound[0].updated == 1, "only the exception changed"
    assert {r["title"]: r for r in local_rows(engine, calendar)}["Review"]["version"] == rows["Review"]["version"]

    api.patch(f"/me/events/{master['id']}", json={"subject": "Review v2"}).raise_for_status()
    report = sync_once(engine, binding_ids=[binding], make_provider=make)
    assert report.inbound[0].deleted == 0, "a changed master is not taken for a deletion"
    titles = {r["title"] for r in local_rows(engine, calendar)}
    assert titles == {"Review v2", "Review (moved again)"}


def _index_of(day: date) -> str:
    return ["first", "second", "third", "fourth", "fourth"][(day.day - 1) // 7]


def _ordinal(day: date) -> int:
    return min((day.day - 1) // 7 + 1, 4)


def test_a_master_update_resends_the_rule_only_when_it_changed(
        api: httpx.Client, provider: GraphProvider, graph_url: str) -> None:
    monday = next_weekday(0)
    data = standup(monday, ["RRULE:FREQ=WEEKLY;COUNT=4;BYDAY=MO"])
    written = provider.insert_event(calendar_id(api), data)
    first = min(instances(api, written.remote_id), key=lambda i: i["originalStart"])
    api.patch(f"/me/events/{first['id']}", json={"subject": "Standup (special)"}).raise_for_status()
    fresh = provider.get_event("", written.remote_id)
    assert fresh is not None

    data.title = "Standup (renamed)"
    provider.update_event("", written.remote_id, data, if_match=fresh.etag)
    kinds = sorted(i["type"] for i in instances(api, written.remote_id))
    assert kinds == ["exception", "occurrence", "occurrence", "occurrence"], "no reshape: the exception stays"

    data.recurrence = ["RRULE:FREQ=WEEKLY;COUNT=2;BYDAY=MO"]
    updated = provider.update_event("", written.remote_id, data, if_match=None)
    kinds = sorted(i["type"] for i in instances(api, written.remote_id))
    assert kinds == ["occurrence", "occurrence"], "a new rule reshapes the series"
    assert updated.data.recurrence == ["RRULE:FREQ=WEEKLY;COUNT=2"], "read back without the default BYDAY=MO"


def test_a_master_made_in_outlook_keeps_its_exceptions_when_its_read_back_copy_is_written(
        api: httpx.Client, provider: GraphProvider) -> None:
    """Outlook makes weekly series with firstDayOfWeek sunday; read back, a one-weekday rule needs no
    WKST (it cannot change a single weekday's weeks), so the copy calsync writes back says monday.
    That is the same series: writing a title must not re-send the rule (a reshape drops exceptions)."""
    monday = next_weekday(0)
    made = api.post(f"/me/calendars/{calendar_id(api)}/events", json={
        "subject": "Standup", "start": {"dateTime": f"{monday}T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": f"{monday}T09:30:00", "timeZone": "UTC"},
        "recurrence": {"pattern": {"type": "weekly", "interval": 2, "daysOfWeek": ["monday"],
                                   "firstDayOfWeek": "sunday"},
                       "range": {"type": "numbered", "startDate": str(monday), "numberOfOccurrences": 4}},
    }).raise_for_status().json()
    first = min(instances(api, made["id"]), key=lambda i: i["originalStart"])
    api.patch(f"/me/events/{first['id']}", json={"subject": "Standup (special)"}).raise_for_status()
    fresh = provider.get_event("", made["id"])
    assert fresh is not None and fresh.data.recurrence == ["RRULE:FREQ=WEEKLY;COUNT=4;INTERVAL=2"]

    fresh.data.title = "Standup (renamed)"
    provider.update_event("", made["id"], fresh.data, if_match=fresh.etag)
    kinds = sorted(i["type"] for i in instances(api, made["id"]))
    assert kinds == ["exception", "occurrence", "occurrence", "occurrence"], "no reshape: the exception stays"


# --- conferences -------------------------------------------------------------------------------


def test_a_zoom_conference_is_shown_in_the_body_and_location_and_reads_back_unchanged(
        api: httpx.Client, provider: GraphProvider) -> None:
    cal = calendar_id(api)
    plain = EventData(title="Call", start="2026-12-01T09:00:00Z", end="2026-12-01T10:00:00Z",
                      description="<p>Agenda</p>", conference=dict(ZOOM))
    written = provider.insert_event(cal, plain)
    raw = api.get(f"/me/events/{written.remote_id}").raise_for_status().json()
    assert raw["location"]["displayName"] == ZOOM["join_url"] and raw["location"]["locationUri"] == ZOOM["join_url"]
    assert [loc["displayName"] for loc in raw["locations"]] == [ZOOM["join_url"]]
    assert ZOOM["join_url"] in raw["body"]["content"]
    assert raw["isOnlineMeeting"] is False and raw["onlineMeeting"] is None, "no Teams meeting made for Zoom"
    read = provider.get_event(cal, written.remote_id)
    assert read is not None
    assert (read.data.location, read.data.description, read.data.conference) == (None, "<p>Agenda</p>", ZOOM)
    assert read.content_hash == plain.content_hash() == written.content_hash

    roomed = EventData(**{**plain.to_json(), "attendees": [], "location": "Room 1"})
    written = provider.insert_event(cal, roomed)
    raw = api.get(f"/me/events/{written.remote_id}").raise_for_status().json()
    assert raw["location"]["displayName"] == "Room 1", "the user's own location is left alone"
    read = provider.get_event(cal, written.remote_id)
    assert read is not None and read.data.location == "Room 1" and read.data.conference == ZOOM
    assert read.content_hash == roomed.content_hash()

    plain.conference = None
    cleared = provider.update_event(cal, provider.insert_event(cal, EventData(**{
        **plain.to_json(), "attendees": [], "conference": dict(ZOOM)})).remote_id, plain, if_match=None)
    raw = api.get(f"/me/events/{cleared.remote_id}").raise_for_status().json()
    assert raw["location"]["displayName"] == "" and ZOOM["join_url"] not in raw["body"]["content"]
    assert cleared.content_hash == plain.content_hash()


def test_read_only_online_meeting_fields_are_ignored_like_graph(api: httpx.Client) -> None:
    body = {"subject": "x", "start": {"dateTime": "2026-12-01T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-12-01T10:00:00", "timeZone": "UTC"},
            "onlineMeetingUrl": ZOOM["join_url"], "onlineMeeting": {"joinUrl": ZOOM["join_url"]}}
    made = api.post(f"/me/calendars/{calendar_id(api)}/events", json=body).raise_for_status().json()
    assert made["onlineMeetingUrl"] is None and made["onlineMeeting"] is None


def test_an_event_cancelled_by_its_organizer_is_a_deletion(
        api: httpx.Client, provider: GraphProvider, graph_url: str) -> None:
    cal = calendar_id(api)
    pages = list(provider.list_changes(cal, None))
    token = pages[-1].sync_token
    single = api.post(f"/me/calendars/{cal}/events", json={
        "subject": "Lunch", "start": {"dateTime": "2026-12-02T12:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-12-02T13:00:00", "timeZone": "UTC"}}).raise_for_status().json()
    httpx.post(f"{graph_url}/emulator/events/{single['id']}/cancel-by-organizer",
               json={"user": f"{USER}@contoso.example"}).raise_for_status()
    changes = [c for p in provider.list_changes(cal, token) for c in p.items]
    assert [type(c) for c in changes if c.remote_id == single["id"]][-1] is RemoteDeletion


@given(st.text(alphabet=st.sampled_from(list("ab <>&\"'\n\t\u00e9")), max_size=40))
def test_plain_text_survives_the_html_body_round_trip(text: str) -> None:
    expected = text.replace("\t", "    ").strip("\n")
    assert html_to_text(text_to_html(text)) == expected
    wrapped = f"<html>\r\n<head>\r\n<meta charset=utf-8>\r\n</head>\r\n<body>\r\n{text_to_html(text)}\r\n</body>\r\n</html>"
    assert html_to_text(wrapped) == expected, "the document Outlook wraps it in adds nothing"


def test_html_is_read_as_a_reader_sees_it() -> None:
    markup = ("<html><head><title>x</title><style>p{}</style></head><body><p>Hello <b>world</b></p>"
              "<div>Second&nbsp;&nbsp;line</div><ul><li>a</li><li>b</li></ul>one<br/>two</body></html>")
    assert html_to_text(markup) == "Hello world\nSecond  line\na\nb\none\ntwo"


def test_an_occurrence_deleted_in_outlook_reaches_its_series_without_a_full_sync(
        engine: Engine, api: httpx.Client, graph_url: str) -> None:
    """Delta names the deleted occurrence only by its own id (never stored here): the engine re-reads
    the series masters, and the master gains the EXDATE in the same incremental sync."""
    monday = next_weekday(0)
    cal = calendar_id(api)
    body = {"subject": "Weekly", "start": {"dateTime": f"{monday}T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": f"{monday}T11:00:00", "timeZone": "UTC"},
            "recurrence": {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                           "range": {"type": "numbered", "numberOfOccurrences": 4, "startDate": str(monday),
                                     "recurrenceTimeZone": "UTC"}}}
    master = api.post(f"/me/calendars/{cal}/events", json=body).raise_for_status().json()
    with engine.begin() as conn:
        calendar = account_store.create_calendar(conn, "outlook")
        account = account_store.create_account(conn, "graph", USER, graph_url, {"token": USER})
        binding = account_store.create_binding(conn, calendar, account, cal, "two-way")
    sync_once(engine, binding_ids=[binding], make_provider=make)
    (row,) = local_rows(engine, calendar)
    # Graph's pattern names the Monday and a Sunday week start: neither changes a weekly Monday rule
    assert row["recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=4"]

    second = sorted(instances(api, master["id"]), key=lambda i: i["originalStart"])[1]
    api.delete(f"/me/events/{second['id']}").raise_for_status()
    report = sync_once(engine, binding_ids=[binding], make_provider=make)
    assert not report.inbound[0].full and report.inbound[0].updated == 1
    (row,) = local_rows(engine, calendar)
    deleted = second["originalStart"].replace("-", "").replace(":", "")[:15] + "Z"
    assert row["recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=4", f"EXDATE:{deleted}"]
    quiet = sync_once(engine, binding_ids=[binding], make_provider=make)
    assert quiet.inbound[0].requests == 1, "nothing more to re-read once the deletion is in"


_BLANK = st.text(st.sampled_from(" \t\r\n"), max_size=3)
_BODY_TEXT = st.lists(
    st.one_of(st.sampled_from(["&amp;", "&nbsp;", "&lt;", "&#x27;", "&", "&amp", "&#", "&#10;", "&#32;", "&Tab;", ">",
                               "  ", "\r\n", "\t", "\xa0"]),
              st.characters(blacklist_characters="<", max_codepoint=0x2FFF)),
    max_size=20,
).map("".join)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(_BODY_TEXT, min_size=1, max_size=4),
    blanks=st.lists(_BLANK, min_size=7, max_size=7),
    metas=st.lists(st.sampled_from(['<meta http-equiv="Content-Type" content="text/html; charset=utf-8">',
                                    '<meta name="Generator" content="Microsoft Exchange Server">']), max_size=2),
)
def test_a_plain_outlook_document_reads_as_the_parser_reads_it(lines: list[str], blanks: list[str],
                                                                metas: list[str]) -> None:
    """html_to_text reads the document Outlook makes of plain text (a head of <meta> tags, text
    broken by <br>) without the HTML parser: it must read exactly what the parser reads, whatever
    the text (character references whole or broken, bare ampersands, non-breaking and runs of
    spaces, line breaks) and the white space between the tags."""
    b = blanks
    markup = (f"{b[0]}<html>{b[1]}<head>{b[2]}{b[2].join(metas)}{b[3]}</head>{b[4]}<body>"
              f"{'<br>'.join(lines)}</body>{b[5]}</html>{b[6]}")
    assert _PLAIN_DOCUMENT.fullmatch(markup) is not None
    assert html_to_text(markup) == parsed_text(markup)


def test_what_the_graph_emulator_and_text_to_html_write_takes_the_short_way() -> None:
    """The seeded bodies and calsync's own writes are plain documents (so the test above checks the
    way a Graph sync takes), and anything else is read by the parser."""
    from calsync.emulators.graph.fields import _html_of_text

    text = "Agenda & notes: 'one'\n  two  \n\n<three>"
    seeded = _html_of_text(text)
    assert _PLAIN_DOCUMENT.fullmatch(seeded) is not None
    assert html_to_text(seeded) == parsed_text(seeded)
    styled = seeded.replace("<body>", "<body><div>").replace("</body>", "</div></body>")
    assert _PLAIN_DOCUMENT.fullmatch(styled) is None and html_to_text(styled) == parsed_text(styled)
