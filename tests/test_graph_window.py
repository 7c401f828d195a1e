"""Graph lists a calendar through a time window (calendarView delta, 30 days back to 365 ahead):
an event outside it is not listed, and one that leaves it is reported `@removed`. Neither is a
deletion: calsync deletes an event a windowed listing misses only when a read by id answers 404,
so a Google calendar mirrored into Outlook keeps every event, whatever its date."""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from calsync.engine.outbound import queue_calendar
from calsync.engine.sync import SyncReport, sync_once
from calsync.model import Account
from calsync.providers import provider_for
from calsync.providers.base import Provider
from calsync.store import accounts as account_store
from calsync.store import events as event_store
from tests.remotes import QUICK_RETRY, GoogleRemote, GraphRemote

NOW = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)


class Mirror:
    """A Google calendar mirrored into Outlook; Graph's provider lists the default window."""

    def __init__(self, engine: Engine, google: GoogleRemote, graph: GraphRemote, **graph_options: Any) -> None:
        self.engine, self.google, self.graph = engine, google, graph
        self.graph_options = graph_options
        self.binding_google = google.bind(engine)
        self.binding_graph: str | None = None

    def bind_outlook(self) -> None:
        with self.engine.begin() as conn:
            hub = account_store.get_binding(conn, self.binding_google)["calendar_id"]
        self.binding_graph = self.graph.bind(self.engine, local_calendar=hub)
        queue_calendar(self.engine, self.binding_graph)  # as `calsync calendar bind --calendar` does

    def providers(self) -> Callable[[Account], Provider]:
        def make(account: Account) -> Provider:
            if account.provider == "graph":
                return provider_for(account, retry=QUICK_RETRY, page_size=100, **self.graph_options)
            return provider_for(account, retry=QUICK_RETRY)
        return make

    def sync(self, **kwargs: Any) -> SyncReport:
        report = sync_once(self.engine, make_provider=self.providers(), **kwargs)
        assert report.ok, [r.message for r in report.inbound + report.outbound if r.message]
        return report

    def settle_twice(self) -> None:
        self.sync()
        self.sync()

    def deletions(self, report: SyncReport) -> int:
        return sum(r.deleted for r in report.inbound + report.outbound)


def outlook_titles(graph: GraphRemote) -> dict[str, str]:
    """Every event of the Outlook calendar, whatever its date (events list, not calendarView)."""
    out: dict[str, str] = {}
    url: str | None = f"/me/calendars/{graph.calendar}/events"
    params: dict[str, Any] | None = {"$top": 500}
    while url:
        body = graph.http.get(url, params=params).raise_for_status().json()
        out.update({e["id"]: e["subject"] for e in body["value"] if not e.get("isCancelled")})
        url, params = body.get("@odata.nextLink"), None
    return out


def spread(google: GoogleRemote, days: list[int]) -> dict[str, str]:
    """One Google event per day offset from today: title -> Google id."""
    return {f"Day {d:+d}": google.insert(f"Day {d:+d}", at=NOW + timedelta(days=d)) for d in days}


def live_local(engine: Engine) -> set[str]:
    with engine.begin() as conn:
        return {e["title"] for e in event_store.list_events(conn)}


@pytest.fixture()
def mirror(engine: Engine, google_url: str, graph_url: str) -> Mirror:
    return Mirror(engine, GoogleRemote(google_url), GraphRemote(graph_url))


def test_mirroring_into_outlook_deletes_nothing_outside_the_window(mirror: Mirror) -> None:
    """The reproduction: 30 Google events from five weeks ago to next month, Outlook bound later."""
    made = spread(mirror.google, [-35 + 2 * n for n in range(30)])
    mirror.sync()
    mirror.bind_outlook()
    for _ in range(3):
        assert mirror.deletions(mirror.sync()) == 0
    assert set(mirror.google.titles().values()) == set(made), "no Google event cancelled"
    assert sorted(outlook_titles(mirror.graph).values()) == sorted(made), "Outlook holds all 30, once each"
    assert live_local(mirror.engine) == set(made)


def test_a_long_calendar_survives_incremental_full_and_rebaselined_syncs(mirror: Mirror) -> None:
    """Events from 400 days back to 900 days ahead: incremental rounds, a forced Graph full resync, a
    dead delta token and a re-baselined window all leave every event on both sides."""
    made = spread(mirror.google, [-400, -200, -60, -31, -29, -3, 0, 5, 40, 200, 364, 366, 500, 900])
    mirror.sync()
    mirror.bind_outlook()
    mirror.sync()
    assert sorted(outlook_titles(mirror.graph).values()) == sorted(made)
    assert mirror.binding_graph is not None
    for _ in range(2):  # incremental
        assert mirror.deletions(mirror.sync()) == 0
    assert mirror.deletions(mirror.sync(binding_ids=[mirror.binding_graph], full=True)) == 0  # forced full resync
    mirror.graph.admin("POST", "/delta/expire")  # the delta token dies: a full sync follows
    assert mirror.deletions(mirror.sync()) == 0
    # every round re-baselines its window (a window is due once it is older than this: -1 s is always)
    mirror.graph_options["rebaseline_after"] = timedelta(seconds=-1)
    for _ in range(2):
        report = mirror.sync()
        assert mirror.deletions(report) == 0
        assert any(r.token_reset for r in report.inbound), "the window was re-baselined"
    mirror.graph_options.pop("rebaseline_after")
    mirror.sync()
    assert set(mirror.google.titles().values()) == set(made)
    assert sorted(outlook_titles(mirror.graph).values()) == sorted(made)
    assert live_local(mirror.engine) == set(made)


def test_outlook_changes_outside_the_window_are_picked_up(mirror: Mirror) -> None:
    """An edit and a delete made in Outlook to events outside the window reach Google (Graph reports
    them as removals; a read by id tells the change from the deletion), and a deletion is traced."""
    made = spread(mirror.google, [-120, -90, 400])
    mirror.sync()
    mirror.bind_outlook()
    mirror.sync()
    outlook = {title: rid for rid, title in outlook_titles(mirror.graph).items()}
    mirror.graph.change(outlook["Day -120"], title="Day -120 (renamed in Outlook)")
    mirror.graph.delete(outlook["Day +400"])
    mirror.sync()
    mirror.sync()
    assert sorted(mirror.google.titles().values()) == ["Day -120 (renamed in Outlook)", "Day -90"]
    with mirror.engine.begin() as conn:
        (gone,) = [e for e in event_store.list_events(conn, include_deleted=True) if e["deleted"]]
    assert gone["title"] == "Day +400"
    assert gone["deleted_by"] == f"graph:{mirror.binding_graph}"
    assert "404" in gone["deletion_proof"], gone["deletion_proof"]
    assert made  # (the ids themselves are not needed)


def test_a_full_sync_reads_unlisted_events_by_id_and_takes_their_changes(mirror: Mirror) -> None:
    """The slow path for changes outside the window: every full sync (at least the weekly
    re-baseline) reads the unlisted links by id in batches, so an edit Graph never reported arrives."""
    spread(mirror.google, [-100, -80, 420])
    mirror.sync()
    mirror.bind_outlook()
    mirror.sync()
    outlook = {title: rid for rid, title in outlook_titles(mirror.graph).items()}
    mirror.graph.change(outlook["Day -80"], title="Day -80 (edited)")
    mirror.graph.delete(outlook["Day +420"])
    assert mirror.binding_graph is not None
    report = mirror.sync(binding_ids=[mirror.binding_graph], full=True)
    (graph_result,) = [r for r in report.inbound if r.binding_id == mirror.binding_graph]
    assert (graph_result.updated, graph_result.deleted) == (1, 1)
    mirror.sync()
    assert sorted(mirror.google.titles().values()) == ["Day -100", "Day -80 (edited)"]


def google_series_instances(google: GoogleRemote, series_id: str) -> set[str]:
    """Start times of the live instances Google expands for a series."""
    body = google.http.get(f"{google._events(None)}/{series_id}/instances",
                           params={"maxResults": 2500}).raise_for_status().json()
    return {item["start"]["dateTime"] for item in body["items"] if item.get("status") != "cancelled"}


def test_a_deleted_occurrence_outside_the_window_stays_deleted(mirror: Mirror) -> None:
    """Graph shows a series' deleted occurrences only inside its window. An EXDATE outside it (made
    long ago, or left behind as the window moved on) is unknown there, not undone: an edit of the
    series in Outlook, and a window that moves past an EXDATE, bring no occurrence back on Google."""
    first = NOW - timedelta(days=70)
    skipped = first + timedelta(days=14)  # 56 days ago: outside the default window (30 days back)
    gone_soon = first + timedelta(days=49)  # 21 days ago: inside it, until the window moves on
    stamp = "%Y%m%dT%H%M%SZ"
    series = mirror.google.http.post(mirror.google._events(None), json={
        "summary": "Weekly", "start": {"dateTime": first.isoformat(), "timeZone": "UTC"},
        "end": {"dateTime": (first + timedelta(hours=1)).isoformat(), "timeZone": "UTC"},
        "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=16",
                       f"EXDATE:{skipped.strftime(stamp)},{gone_soon.strftime(stamp)}"],
    }).raise_for_status().json()["id"]
    before = google_series_instances(mirror.google, series)
    assert len(before) == 14
    mirror.sync()
    mirror.bind_outlook()
    mirror.settle_twice()
    outlook = {title: rid for rid, title in outlook_titles(mirror.graph).items()}
    mirror.graph.change(outlook["Weekly"], title="Weekly (renamed in Outlook)")
    mirror.settle_twice()
    assert mirror.google.http.get(f"{mirror.google._events(None)}/{series}").json()["summary"] \
        == "Weekly (renamed in Outlook)"
    assert google_series_instances(mirror.google, series) == before, "no deleted occurrence came back"
    # the window moves on past the second EXDATE (as 10 days of re-baselines would)
    mirror.graph_options["window"] = (timedelta(days=-10), timedelta(days=365))
    mirror.graph_options["rebaseline_after"] = timedelta(seconds=-1)
    mirror.settle_twice()
    assert google_series_instances(mirror.google, series) == before, "no deleted occurrence came back"


def test_a_moved_all_day_occurrence_stays_an_occurrence_on_both_sides(mirror: Mirror) -> None:
    """An all-day occurrence is due on a day: Graph's originalStart (an instant) is read as that
    date, as Google and CalDAV give it, so a moved one is the series' exception on either side,
    never a second, single event."""
    first = (NOW + timedelta(days=7)).date()
    events = mirror.google._events(None)
    series = mirror.google.http.post(events, json={
        "summary": "Holiday", "start": {"date": first.isoformat()},
        "end": {"date": (first + timedelta(days=1)).isoformat()}, "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"],
    }).raise_for_status().json()["id"]
    moved_from, moved_to = first + timedelta(days=7), first + timedelta(days=9)
    mirror.google.http.put(f"{events}/{series}_{moved_from.strftime('%Y%m%d')}", json={
        "summary": "Holiday (moved)", "start": {"date": moved_to.isoformat()},
        "end": {"date": (moved_to + timedelta(days=1)).isoformat()},
        "recurringEventId": series, "originalStartTime": {"date": moved_from.isoformat()},
    }).raise_for_status()
    mirror.sync()
    mirror.bind_outlook()
    mirror.settle_twice()
    outlook = {title: rid for rid, title in outlook_titles(mirror.graph).items()}
    assert set(outlook) == {"Holiday"}, "one series in Outlook, no second single event"
    window = {"startDateTime": f"{first}T00:00:00Z", "endDateTime": f"{first + timedelta(days=40)}T00:00:00Z"}
    instances = mirror.graph.http.get(f"/me/events/{outlook['Holiday']}/instances",
                                      params=window).raise_for_status().json()["value"]
    days = sorted((i["start"]["dateTime"][:10], i["subject"]) for i in instances)
    assert len(days) == 4 and (moved_to.isoformat(), "Holiday (moved)") in days
    # and back: the moved occurrence renamed in Outlook reaches Google's instance, not a new event
    exception = next(i for i in instances if i["subject"] == "Holiday (moved)")
    mirror.graph.change(exception["id"], title="Holiday (moved, renamed)")
    mirror.settle_twice()
    assert set(mirror.google.titles().values()) == {"Holiday", "Holiday (moved, renamed)"}
    google_instance = mirror.google.http.get(f"{events}/{series}_{moved_from.strftime('%Y%m%d')}").json()
    assert google_instance["summary"] == "Holiday (moved, renamed)"
    report = mirror.sync()
    assert all(r.created == r.updated == r.deleted == 0 for r in report.inbound + report.outbound), "quiet"
