"""Recurring series on the web page (FullCalendar's rrule plugin) against the server side's expansion.

Series of every kind the page must expand are made in the emulated Google Calendar, as another client would
(weekly with BYDAY and COUNT, UNTIL, monthly by weekday, yearly, daily with EXDATEs in two spellings, all-day,
in zones whose DST changes fall inside the window, one occurrence moved and one deleted), synced into a
calsync store and shown by the service's page in Chromium (the browser in Europe/Berlin). calsync's API does
not expand series (GET /events lists a series once, with its RRULE/EXDATE lines, and its exceptions as events
of their own): the page does. The occurrences the page shows must be the ones Google's events.instances lists
for the same window: the emulator's expansion with python-dateutil (calsync.emulators.google).
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from calsync.emulators.server import serve_in_thread
from calsync.engine.sync import sync_once
from calsync.service.app import create_app
from calsync.store.db import open_engine
from tests.helpers import GoogleApi, bind, migrated_sqlite, page_user
from tests.test_web import CHROMIUM_ARGS, ZONE, _chromium, _unavailable

# The page lists this window (Monday to Monday, in the browser's zone); the DST changes of 2027 inside it:
# America/New_York on 14 March, Europe/Berlin and Europe/London on 28 March.
WINDOW = ("2027-02-22", "2027-04-26")
WINDOW_UTC = ("2027-02-21T23:00:00Z", "2027-04-25T22:00:00Z")  # its bounds as instants


def timed(day_time: str, zone: str, minutes: int) -> dict[str, Any]:
    start = datetime.fromisoformat(day_time)
    end = start + timedelta(minutes=minutes)
    return {"start": {"dateTime": start.isoformat(), "timeZone": zone},
            "end": {"dateTime": end.isoformat(), "timeZone": zone}}


# summary -> the series' start/end and recurrence, as Google takes them
SERIES: dict[str, dict[str, Any]] = {
    "weekly MO,WE,FR, COUNT, Berlin, one moved": {
        **timed("2027-03-01T09:30:00", "Europe/Berlin", 45),
        "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO,WE,FR;COUNT=20"]},
    "weekly TU,TH until, New York, one deleted": {
        **timed("2027-03-02T09:00:00", "America/New_York", 60),
        # the last occurrence starts exactly at UNTIL (9:00 EDT)
        "recurrence": ["RRULE:FREQ=WEEKLY;WKST=SU;BYDAY=TU,TH;UNTIL=20270413T130000Z"]},
    "monthly 2nd Tuesday, Berlin": {
        **timed("2027-01-12T14:00:00", "Europe/Berlin", 90),
        "recurrence": ["RRULE:FREQ=MONTHLY;BYDAY=2TU"]},
    "monthly last Friday, London": {
        **timed("2027-01-29T16:00:00", "Europe/London", 30),
        "recurrence": ["RRULE:FREQ=MONTHLY;BYDAY=-1FR"]},
    "daily with EXDATEs, Berlin": {
        **timed("2027-03-22T08:00:00", "Europe/Berlin", 30),
        "recurrence": ["RRULE:FREQ=DAILY;COUNT=10", "EXDATE;TZID=Europe/Berlin:20270324T080000",
                       "EXDATE:20270329T060000Z"]},
    "every third day, UTC": {
        **timed("2027-03-03T12:00:00", "UTC", 60),
        "recurrence": ["RRULE:FREQ=DAILY;INTERVAL=3;COUNT=8"]},
    "yearly since 2024, Berlin": {
        **timed("2024-03-20T10:00:00", "Europe/Berlin", 60),
        "recurrence": ["RRULE:FREQ=YEARLY"]},
    "all-day Sundays until, one moved, one excluded": {
        "start": {"date": "2027-03-07"}, "end": {"date": "2027-03-08"},
        "recurrence": ["RRULE:FREQ=WEEKLY;UNTIL=20270418", "EXDATE;VALUE=DATE:20270321"]},
    "all-day two days every two weeks": {
        "start": {"date": "2027-02-26"}, "end": {"date": "2027-02-28"},
        "recurrence": ["RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=5"]},
}
# one occurrence moved (instance id suffix -> new times) and one deleted, per series
MOVED = {
    "weekly MO,WE,FR, COUNT, Berlin, one moved": ("20270310T083000Z",
                                                   timed("2027-03-10T15:00:00", "Europe/Berlin", 45)),
    "all-day Sundays until, one moved, one excluded": ("20270314",
                                                       {"start": {"date": "2027-03-15"}, "end": {"date": "2027-03-16"}}),
}
DELETED = {"weekly TU,TH until, New York, one deleted": "20270316T130000Z"}


def instant(text: str) -> str:
    """A Google dateTime as the API spells an instant (UTC, seconds)."""
    return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def google_occurrences(alice: GoogleApi, calendar: str, series_id: str) -> set[tuple[str, str]]:
    """(start, end) of the series' occurrences in the window, as Google's events.instances lists them."""
    body = alice.http.get(f"/calendars/{calendar}/events/{series_id}/instances",
                          params={"timeMin": WINDOW_UTC[0], "timeMax": WINDOW_UTC[1], "maxResults": 2500})
    items = body.raise_for_status().json()["items"]
    assert "nextPageToken" not in body.json()
    out = set()
    for item in items:
        if "date" in item["start"]:
            out.add((item["start"]["date"], item["end"]["date"]))
        else:
            out.add((instant(item["start"]["dateTime"]), instant(item["end"]["dateTime"])))
    return out


@pytest.fixture()
def served(google_url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, set[tuple[str, str]]], Engine]]:
    """A service over a store synced from Google with SERIES; and per summary, what Google lists."""
    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    alice = GoogleApi(google_url, "alice")
    calendar = alice.primary_id()
    bind(engine, google_url, "alice", calendar)
    ids = {}
    for summary, fields in SERIES.items():
        ids[summary] = alice.http.post(f"/calendars/{calendar}/events",
                                       json={"summary": summary, **fields}).raise_for_status().json()["id"]
    for summary, (suffix, times) in MOVED.items():
        alice.patch(calendar, f"{ids[summary]}_{suffix}", **times)
    for summary, suffix in DELETED.items():
        alice.delete(calendar, f"{ids[summary]}_{suffix}")
    report = sync_once(engine)
    assert report.ok, report.as_dict()
    expected = {summary: google_occurrences(alice, calendar, ids[summary]) for summary in SERIES}
    server = serve_in_thread(create_app(engine, open_page_user=page_user(engine)))
    try:
        yield server.url, expected, engine
    finally:
        server.stop()
        engine.dispose()


@pytest.fixture()
def page(served: tuple[str, Any, Engine]) -> Iterator[Any]:
    path = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id=ZONE, locale="en-GB")
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(served[0])
        page.wait_for_function("() => window.calsync && window.calsync.calendar")
        yield page
        browser.close()
        assert not errors, f"errors in the page: {errors}"


def shown_occurrences(page: Any) -> dict[str, set[tuple[str, str]]]:
    """Per title, the (start, end) of every event FullCalendar has on screen (a list view: one row per day
    an event touches, so a multi-day occurrence is one pair however many rows show it)."""
    rows = page.eval_on_selector_all(".fc-event[data-event-id]",
                                     "els => els.map(e => [e.dataset.title, e.dataset.start, e.dataset.end])")
    out: dict[str, set[tuple[str, str]]] = {}
    for title, start, end in rows:
        out.setdefault(title, set()).add((start, end))
    return out


def test_the_page_shows_the_occurrences_google_lists(page: Any, served: tuple[str, Any, Engine]) -> None:
    _, expected, _ = served
    assert all(expected.values()), expected
    # the series are on the calendar already (this week lists them: they began before it), so moving on to the
    # window must expand them again
    page.wait_for_function("""() => !window.calsync.state.loading
        && [...window.calsync.state.events.values()].some((e) => e.title.startsWith('yearly'))""")
    # the whole window at once, as a list (every event mounted: no "+ more" hides any)
    page.evaluate("([start, end]) => window.calsync.calendar.changeView('list', {start, end})", list(WINDOW))
    page.wait_for_function("""([start, end]) => {
        const r = window.calsync.state.range;
        return r && r.start === start && r.end === end && !window.calsync.state.loading
          && [...window.calsync.state.events.values()].some((e) => e.recurring_event_id); }""", arg=list(WINDOW_UTC))
    page.wait_for_timeout(300)
    shown = shown_occurrences(page)
    mismatches = {summary: {"only on the page": sorted(shown.get(summary, set()) - wanted),
                            "only on Google": sorted(wanted - shown.get(summary, set()))}
                  for summary, wanted in expected.items() if shown.get(summary, set()) != wanted}
    assert not mismatches, mismatches
    assert set(shown) == set(SERIES), set(shown) - set(SERIES)
    for summary in MOVED:  # a moved occurrence is an event of its own (an exception), at its new time
        assert page.locator(f'.fc-event[data-title="{summary}"]:not(.recurring)').count() == 1, summary
