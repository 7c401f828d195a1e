"""`calsync demo` as the browser tests and users get it (`start_demo()`): Google, Outlook (Graph) and a
real Radicale CalDAV server, all synced, and a calendar mirrored between Google and Outlook by the hub."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from calsync import caldav_server
from calsync.demo import DEMO_POLL_SECONDS, MIRROR_NAME, Demo, prepare, start_demo
from calsync.service import runtime
from calsync.store.urls import sqlite_file

needs_radicale = pytest.mark.skipif(not caldav_server.available("radicale"),
                                    reason="radicale is not installed: pip install -e '.[dev]'")


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _utc(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    running = start_demo(open_page=True)
    try:
        yield running
    finally:
        running.stop()


def api(demo: Demo, path: str) -> Any:
    return httpx.get(f"{demo.url}/api/v1{path}").raise_for_status().json()


@needs_radicale
def test_google_outlook_and_caldav_accounts_are_bound_and_synced(demo: Demo) -> None:
    status = api(demo, "/status")
    kinds = {a["id"]: a["provider"] for a in status["accounts"]}
    assert set(kinds.values()) == {"google", "graph", "caldav"}
    assert all(a["state"] == "ok" for a in status["accounts"])
    assert all(b["last_sync_status"] == "ok" and b["has_sync_token"] for b in status["bindings"])
    calendars = api(demo, "/calendars")["calendars"]
    events_of: dict[str, int] = {}
    for calendar in calendars:
        for binding in calendar["bindings"]:
            kind = kinds[binding["account_id"]]
            events_of[kind] = events_of.get(kind, 0) + calendar["event_count"]
    assert all(events_of[kind] > 0 for kind in ("google", "graph", "caldav")), events_of

    # the Radicale events arrived as CalDAV gave them: the recurring ones as series with their rule
    caldav_calendar = next(c for c in calendars if any(kinds[b["account_id"]] == "caldav" for b in c["bindings"]))
    listed = httpx.get(f"{demo.url}/api/v1/events", params={"calendar_id": caldav_calendar["id"], "limit": 100}
                       ).raise_for_status().json()["events"]
    assert "Book club" in {e["title"] for e in listed}
    assert any(e["recurrence"] and "FREQ=WEEKLY" in e["recurrence"][0] for e in listed)
    assert demo.caldav is not None and demo.caldav.process.poll() is None

    # the mirrored calendar has one binding per side, and the Outlook side holds the Google side's events
    mirror = next(c for c in calendars if c["name"] == MIRROR_NAME)
    assert sorted(kinds[b["account_id"]] for b in mirror["bindings"]) == ["google", "graph"]
    subjects = {e["subject"] for e in demo.outlook_events(demo.mirror["outlook_calendar"])}
    with demo._google("alice") as google:
        summaries = {e["summary"] for e in google.get(f"/calendars/{demo.mirror['google_calendar']}/events")
                     .raise_for_status().json()["items"]}
    assert summaries and summaries <= subjects


def test_an_event_made_in_google_reaches_outlook_through_the_mirror(demo: Demo) -> None:
    title = f"Made in Google for Outlook {os.getpid()}"
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=3, hours=1)
    with demo._google("alice") as google:
        google.post(f"/calendars/{demo.mirror['google_calendar']}/events", json={
            "summary": title, "location": "Canteen",
            "start": {"dateTime": _utc(at)}, "end": {"dateTime": _utc(at + timedelta(minutes=45))},
        }).raise_for_status()
    # Google notifies the service, which pulls the change and queues it for the Outlook binding
    copy = wait_for(lambda: [e for e in demo.outlook_events(demo.mirror["outlook_calendar"])
                             if e["subject"] == title], timeout=20, what="the copy in Outlook")[0]
    assert datetime.fromisoformat(copy["start"]["dateTime"].rstrip("Z")[:19]) == at.replace(tzinfo=None)
    assert copy["location"]["displayName"] == "Canteen"


def test_an_event_made_in_outlook_reaches_google_through_the_mirror(demo: Demo) -> None:
    title = f"Made in Outlook for Google {os.getpid()}"
    at = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=4, hours=2)
    with demo.outlook() as outlook:
        outlook.post(f"/me/calendars/{demo.mirror['outlook_calendar']}/events", json={
            "subject": title, "start": {"dateTime": _utc(at)[:-1], "timeZone": "UTC"},
            "end": {"dateTime": _utc(at + timedelta(hours=1))[:-1], "timeZone": "UTC"},
        }).raise_for_status()

    def on_google() -> list[dict[str, Any]]:
        with demo._google("alice") as google:
            items = google.get(f"/calendars/{demo.mirror['google_calendar']}/events").raise_for_status().json()
        return [e for e in items["items"] if e.get("summary") == title]

    # Outlook notifies the service (a Graph subscription); the poll timer would bring it in otherwise
    (copy,) = wait_for(on_google, timeout=DEMO_POLL_SECONDS * 1.1 + 15, what="the copy in Google")
    assert datetime.fromisoformat(copy["start"]["dateTime"]) == at


@needs_radicale
def test_calsync_sync_on_the_demo_database_is_done_by_the_demo_service(demo: Demo) -> None:
    """The demo serves its database as `calsync serve` does: it leaves the service record, so a
    `calsync sync` on that database hands its work to the demo instead of competing with it."""
    database = sqlite_file(demo.db_url)
    assert database is not None
    record = runtime.read(database)
    assert record is not None and record.url == demo.url and record.pid == os.getpid()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    done = subprocess.run([sys.executable, "-m", "calsync", "sync", "--db", database], capture_output=True,
                          text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    assert f"synced by the calsync service at {demo.url}" in done.stderr


def test_demo_accounts_hold_oauth_grants_and_the_emulators_refuse_raw_tokens(demo: Demo) -> None:
    from calsync.store import accounts as account_store

    with demo.engine.begin() as conn:
        grants = {a["provider"]: account_store.get_account(conn, a["id"]).credentials.get("grant")
                  for a in account_store.list_accounts(conn) if a["provider"] in ("google", "graph")}
    assert grants == {"google": "google-user", "graph": "microsoft-user"}
    assert httpx.get(f"{demo.google.url}/calendar/v3/users/me/calendarList",
                     headers={"Authorization": "Bearer alice"}).status_code == 401
    assert httpx.get(f"{demo.graph.url}/v1.0/me/calendars", headers={"Authorization": "Bearer alice"},
                     verify=demo.verify).status_code == 401


def test_the_pages_connect_reaches_the_demos_google_consent_page_and_stores_the_account(demo: Demo) -> None:
    """/oauth/google/start on the demo's service: the emulated consent page, Allow, and the callback
    stores a new account; connecting a demo user again renews that account in place."""
    from calsync.demo import press_allow
    from calsync.store import accounts as account_store

    def connect(user: str) -> str:
        start = httpx.get(f"{demo.url}/oauth/google/start", params={"login_hint": user})
        assert start.status_code == 303 and start.headers["location"].startswith(f"{demo.google.url}/o/oauth2/v2/auth?")
        done = httpx.get(press_allow(start.headers["location"]))
        assert done.status_code == 303, done.text
        return done.headers["location"].split("connected=")[1]

    with demo.engine.begin() as conn:
        before = len(account_store.list_accounts(conn))
    carol = connect("carol@example.com")
    assert carol not in demo.accounts.values()
    assert connect("alice@example.com") == demo.accounts["alice"], "a connected user is renewed in place"
    with demo.engine.begin() as conn:
        assert len(account_store.list_accounts(conn)) == before + 1
        assert account_store.get_account(conn, carol).credentials["user"] == "carol@example.com"


def test_the_rename_control_leaves_an_event_a_conflict_holds_alone(demo: Demo) -> None:
    """The conflict control pauses an event; the rename control then never picks it: its change would
    wait for the conflict to be resolved, and the page would wait for an arrival that does not come."""
    after = _utc(datetime.now(UTC) + timedelta(days=1))
    held = demo.remote_change("conflict", start=after)["event_id"]
    wait_for(lambda: any(c["event_id"] == held for c in api(demo, "/conflicts")["conflicts"]), 30, "the conflict")
    # the controls go round the first five upcoming events: five renames would reach every one of them
    renamed = {demo.remote_change("rename", start=after)["event_id"] for _ in range(5)}
    assert held not in renamed


def test_stopping_the_demo_leaves_no_radicale_process_storage_or_service_record() -> None:
    demo = start_demo()
    server = demo.caldav
    database = sqlite_file(demo.db_url)
    assert server is not None and server.process.poll() is None and server.storage.exists()
    assert database is not None and runtime.read(database) is not None
    demo.stop()
    assert server.process.poll() is not None
    assert not server.storage.exists()
    assert not os.path.exists(runtime.record_path(database)), "a stopped demo leaves no service record"


def test_without_radicale_the_demo_skips_its_caldav_account_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from calsync.store import accounts as account_store

    monkeypatch.setattr(caldav_server, "available", lambda kind: False)
    out = io.StringIO()
    demo = prepare(console=Console(file=out, width=200))
    try:
        assert demo.caldav is None and demo.caldav_account is None
        assert "CalDAV demo account skipped: Radicale is not installed" in out.getvalue()
        with demo.engine.begin() as conn:
            assert {a["provider"] for a in account_store.list_accounts(conn)} == {"google", "graph"}
        assert demo.mirror["outlook_binding"]
    finally:
        demo.stop()
