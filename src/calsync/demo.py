"""`calsync demo`: emulated Google accounts and a Zoom emulator with sample data, bound and synced end to end.

By default the whole service runs (REST API, web page, webhook receiver, workers) on a SQLite database,
with the emulators in-process, until Ctrl-C; its own URL is the public URL the emulated Google calls
back, so a change made on the emulator reaches the open page within a second or two. `--once` does a
one-shot run instead: initial sync, Zoom meetings, remote edits, incremental sync, printed, then exit.
"""
from __future__ import annotations

import io
import signal
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from calsync.conferencing.base import ConferenceAdapter
from calsync.conferencing.zoom import ZoomAdapter
from calsync.emulators.google import GoogleEmulator, create_app
from calsync.emulators.server import RunningServer, serve_in_thread
from calsync.emulators.zoom import ZoomEmulator
from calsync.emulators.zoom import create_app as create_zoom_app
from calsync.engine import local
from calsync.engine.conferences import ConferenceEngine
from calsync.engine.pool import ProviderPool
from calsync.engine.scheduler import WorkerSettings
from calsync.engine.sync import sync_once
from calsync.providers.google import GoogleProvider
from calsync.store import repo
from calsync.store.db import open_engine

# (user token, calendar summary or None for the primary calendar, events to seed, colour on the page)
SAMPLE = (
    ("alice", None, 240, "#3b6fd8"),
    ("alice", "Team offsites", 90, "#d9772b"),
    ("bob", None, 150, "#2e9d62"),
)
MEETINGS = 12  # Zoom meetings made for the next single events of the first calendar


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seed(base: str, start: datetime) -> list[tuple[str, str, str]]:
    """Create the sample calendars on the emulator; returns (token, calendar id, colour) triples."""
    made: list[tuple[str, str, str]] = []
    for n, (token, summary, count, colour) in enumerate(SAMPLE):
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as api:
            if summary is None:
                calendar_id = api.get("/calendar/v3/calendars/primary").raise_for_status().json()["id"]
            else:
                calendar_id = api.post(
                    "/calendar/v3/calendars", json={"summary": summary, "timeZone": "Europe/Berlin"}
                ).raise_for_status().json()["id"]
        httpx.post(f"{base}/emulator/calendars/{calendar_id}/seed", json={
            "count": count, "start": _utc(start), "days": 42, "seed": n + 1, "recurring_every": 30,
        }).raise_for_status()
        made.append((token, calendar_id, colour))
    return made


def _results_table(title: str, results: list) -> Table:  # type: ignore[type-arg]
    table = Table("binding", "kind", "pages", "requests", "created", "updated", "deleted", "status", title=title)
    for r in results:
        table.add_row(r.binding_id[:12], "full" if r.full else "incremental", str(r.pages), str(r.requests),
                      str(r.created), str(r.updated), str(r.deleted), r.status)
    return table


def _zoom_adapter(zoom: RunningServer) -> ZoomAdapter:
    adapter = ZoomAdapter.from_settings({
        "CALSYNC_ZOOM_BASE_URL": f"{zoom.url}/v2", "CALSYNC_ZOOM_OAUTH_URL": f"{zoom.url}/oauth/token",
        "CALSYNC_ZOOM_ACCOUNT_ID": "demo", "CALSYNC_ZOOM_CLIENT_ID": "demo", "CALSYNC_ZOOM_CLIENT_SECRET": "demo",
    })
    assert adapter is not None
    return adapter


def _single(row: dict[str, Any]) -> bool:
    return row["recurrence"] is None and row["recurring_event_id"] is None and not row["all_day"]


@dataclass
class Demo:
    """The emulators, the seeded and synced database and, once `serve` ran, the service on top of them.

    It is also the demo control the web page drives (`POST /api/v1/demo/remote-change`)."""

    google: RunningServer
    zoom: RunningServer
    adapter: ZoomAdapter
    db_url: str
    engine: Engine
    accounts: dict[str, str] = field(default_factory=dict)  # token -> account id
    calendars: list[tuple[str, str]] = field(default_factory=list)  # (token, remote calendar id)
    conferences: list[dict[str, Any]] = field(default_factory=list)
    service: RunningServer | None = None
    pool: Any = None  # calsync.service.app.WorkerPool once serving
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _changes: int = 0

    @property
    def url(self) -> str:
        assert self.service is not None, "the demo service is not running"
        return self.service.url

    @property
    def adapters(self) -> dict[str, ConferenceAdapter]:
        return {"zoom": self.adapter}

    # --- the service ---------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """The API, the web page, the webhook receiver and a worker, whose public URL is its own URL."""
        from calsync.service.app import WorkerPool
        from calsync.service.app import create_app as create_service
        from calsync.service.metrics import Metrics

        metrics = Metrics()
        self.pool = WorkerPool(self.engine, WorkerSettings(), self.adapters, metrics)
        self.service = serve_in_thread(create_service(self.engine, metrics, wake=self.pool.wake,
                                                      adapters=self.adapters, demo=self), host=host, port=port)
        self.pool.settings = WorkerSettings(public_url=self.service.url, idle_sleep=0.25, debounce=0.2,
                                            poll_interval=120.0)
        self.pool.start()
        self.pool.wake.set()
        return self.service.url

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stop(timeout=10)
        if self.service is not None:
            self.service.stop()
        self.engine.dispose()
        self.adapter.close()
        self.zoom.stop()
        self.google.stop()

    # --- the demo control ----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "google_emulator": self.google.url, "zoom_emulator": self.zoom.url, "database": self.db_url,
            "accounts": sorted(self.accounts),
            "kinds": {
                "create": "a new event appears in Google Calendar",
                "rename": "an event is renamed in Google Calendar",
                "move": "an event with a Zoom meeting is moved by an hour in Google Calendar (its meeting follows)",
                "conflict": "an event is renamed here and in Google Calendar at the same moment",
            },
        }

    def remote_change(self, kind: str, start: str | None = None) -> dict[str, Any]:
        """Change the emulated remote side as another Google client (or a person in two places) would."""
        with self._lock:
            self._changes += 1
            after = _parse(start) if start else datetime.now(UTC)
            if kind == "create":
                return self._create(after if start else _next_hour())
            event = self._pick(after, with_meeting=kind == "move")
            if kind == "rename":
                title = _retitled(event["title"], "renamed in Google")
                self._patch(event, {"summary": title})
                return self._answer(kind, event, title, f"renamed '{event['title']}' to '{title}' in Google Calendar")
            if kind == "move":
                begin = _parse(event["start"]) + timedelta(hours=1)
                finish = _parse(event["end"]) + timedelta(hours=1)
                self._patch(event, {"start": {"dateTime": _utc(begin)}, "end": {"dateTime": _utc(finish)}})
                return self._answer(kind, event, event["title"],
                                    f"moved '{event['title']}' one hour later in Google Calendar", start=_utc(begin))
            if kind == "conflict":
                remote_title = _retitled(event["title"], "edited in Google")
                local_title = _retitled(event["title"], "edited here")
                self._patch(event, {"summary": remote_title})
                local.update_event(self.engine, event["id"], {"title": local_title}, None)
                return self._answer(kind, event, remote_title,
                                    f"'{event['title']}' renamed here to '{local_title}' and in Google Calendar "
                                    f"to '{remote_title}' at the same moment", local_title=local_title)
            raise LookupError(f"unknown kind of change {kind!r}")

    def _create(self, at: datetime) -> dict[str, Any]:
        token, calendar_id = self.calendars[0]
        title = f"Coffee with the calsync team #{self._changes}"
        with self._google(token) as api:
            made = api.post(f"/calendars/{calendar_id}/events", json={
                "summary": title, "description": "Made in Google Calendar by the demo control.",
                "start": {"dateTime": _utc(at)}, "end": {"dateTime": _utc(at + timedelta(minutes=30))},
            }).raise_for_status().json()
        return {"kind": "create", "title": title, "remote_id": made["id"], "start": _utc(at), "event_id": None,
                "message": f"created '{title}' at {_utc(at)} in Google Calendar"}

    def _pick(self, after: datetime, *, with_meeting: bool) -> dict[str, Any]:
        """An upcoming single event of the first calendar (with one of our meetings, for a move)."""
        with self.engine.begin() as conn:
            calendar = repo.get_binding(conn, self._binding_ids()[0])["calendar_id"]
            rows = [r for r in repo.list_events(conn, calendar_id=calendar, start=_utc(after))
                    if _single(r) and r["links"] and r["status"] != "cancelled" and r["start"] >= _utc(after)]
        meeting = [r for r in rows if (r["conference"] or {}).get("provider")]
        candidates = (meeting or rows) if with_meeting else rows
        if not candidates:
            raise LookupError("no upcoming event to change")
        return candidates[(self._changes - 1) % min(len(candidates), 5)]

    def _patch(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        link = event["links"][0]
        with self.engine.begin() as conn:
            binding = repo.get_binding(conn, link["binding_id"])
            token = repo.get_account(conn, binding["account_id"]).credentials["token"]
        with self._google(token) as api:
            api.patch(f"/calendars/{binding['remote_calendar_id']}/events/{link['remote_id']}",
                      json=body).raise_for_status()

    def _answer(self, kind: str, event: dict[str, Any], title: str, message: str, **extra: Any) -> dict[str, Any]:
        return {"kind": kind, "title": title, "event_id": event["id"], "remote_id": event["links"][0]["remote_id"],
                "start": extra.pop("start", event["start"]), "message": message, **extra}

    def _google(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=f"{self.google.url}/calendar/v3", headers={"Authorization": f"Bearer {token}"})

    def _binding_ids(self) -> list[str]:
        with self.engine.begin() as conn:
            return [b["id"] for b in repo.list_bindings(conn)]


def _parse(value: str) -> datetime:
    if len(value) == 10:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _next_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def _retitled(title: str, note: str) -> str:
    base = title.split(" (", 1)[0] if title.endswith(")") else title
    return f"{base} ({note})"


# --- building the demo ----------------------------------------------------------------------


def prepare(db: str | None = None, console: Console | None = None) -> Demo:
    """Start the emulators, seed two accounts and three calendars, bind them to a fresh database,
    run the initial sync and create Zoom meetings for the next events."""
    console = console or Console(file=io.StringIO())
    db_url = db or f"sqlite:///{Path(tempfile.mkdtemp(prefix='calsync-demo-')) / 'calsync.db'}"
    google = serve_in_thread(create_app(GoogleEmulator()))
    zoom = serve_in_thread(create_zoom_app(ZoomEmulator()))
    adapter = _zoom_adapter(zoom)
    engine = open_engine(db_url)
    demo = Demo(google=google, zoom=zoom, adapter=adapter, db_url=db_url, engine=engine)
    try:
        console.print(f"[bold]calsync demo[/bold]\n  Google Calendar emulator: {google.url}\n"
                      f"  Zoom emulator: {zoom.url}\n  database: {db_url}")
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=7)
        seeded = _seed(google.url, start)
        with engine.begin() as conn:
            for token, _calendar, _colour in seeded:
                if token not in demo.accounts:
                    demo.accounts[token] = repo.create_account(conn, "google", f"{token} (emulated Google)",
                                                               google.url, {"token": token})
        for token, calendar_id, colour in seeded:
            provider = GoogleProvider(token, google.url)
            info = {c.remote_id: c for c in provider.list_calendars()}[calendar_id]
            provider.close()
            with engine.begin() as conn:
                calendar = repo.create_calendar(conn, info.name, info.time_zone, colour)
                repo.create_binding(conn, calendar, demo.accounts[token], calendar_id, "two-way")
            demo.calendars.append((token, calendar_id))
        console.print(f"  {len(demo.accounts)} accounts, {len(demo.calendars)} calendars bound")
        t0 = time.perf_counter()
        first = sync_once(engine, adapters=demo.adapters)
        console.print(_results_table(f"initial sync ({time.perf_counter() - t0:.2f}s)", first.inbound))
        demo.conferences = _add_conferences(engine, adapter)
        console.print(f"  {len(demo.conferences)} Zoom meetings created and written onto their Google events")
    except BaseException:
        demo.stop()
        raise
    return demo


def _add_conferences(engine: Engine, adapter: ZoomAdapter, count: int = MEETINGS) -> list[dict[str, Any]]:
    """Zoom meetings for the next few single events of the first calendar."""
    with engine.begin() as conn:
        first_calendar = repo.list_calendars(conn)[0]["id"]
        now = _utc(datetime.now(UTC))
        upcoming = [r for r in repo.list_events(conn, calendar_id=first_calendar, start=now)
                    if _single(r) and r["start"] >= now and not r["conference"]][:count]
    pool = ProviderPool(engine)
    try:
        return [ConferenceEngine(engine, {"zoom": adapter}, pool).create(r["id"], "zoom") for r in upcoming]
    finally:
        pool.close()


def start_demo(db: str | None = None, *, host: str = "127.0.0.1", port: int = 0,
               console: Console | None = None) -> Demo:
    """The demo with its service running (what `calsync demo` serves, and what the browser tests use)."""
    demo = prepare(db, console)
    try:
        demo.serve(host, port)
    except BaseException:
        demo.stop()
        raise
    return demo


# --- the one-shot run (`calsync demo --once`) ------------------------------------------------


def _remote_edits(base: str, token: str, calendar_id: str, console: Console) -> None:
    """Change the remote side the way another Google client would: one insert, one edit, one delete."""
    with httpx.Client(base_url=f"{base}/calendar/v3", headers={"Authorization": f"Bearer {token}"}) as api:
        path = f"/calendars/{calendar_id}/events"
        items = api.get(path, params={"maxResults": 3}).raise_for_status().json()["items"]
        start = _next_hour() + timedelta(days=1)
        api.post(path, json={
            "summary": "Coffee with the calsync team",
            "start": {"dateTime": start.isoformat()}, "end": {"dateTime": (start + timedelta(minutes=30)).isoformat()},
        }).raise_for_status()
        api.patch(f"{path}/{items[0]['id']}", json={"summary": items[0].get("summary", "") + " (moved online)"},
                  headers={"If-Match": items[0]["etag"]}).raise_for_status()
        api.delete(f"{path}/{items[1]['id']}").raise_for_status()
    console.print(f"  remote edits on {calendar_id}: 1 created, 1 renamed, 1 deleted (as another Google client)")


def _move_one(demo: Demo, conference: dict[str, Any], console: Console) -> None:
    """Move an event with a meeting, as its owner would in Google Calendar."""
    with demo.engine.begin() as conn:
        event = repo.get_events(conn, [conference["event_id"]])[0]
    start = _parse(event["start"]) + timedelta(hours=2)
    demo._patch(event, {"summary": event["title"] + " (moved)", "start": {"dateTime": _utc(start)},
                        "end": {"dateTime": _utc(start + timedelta(minutes=45))}})
    console.print(f"  moved '{event['title']}' by two hours in Google Calendar")


def _meeting(adapter: ZoomAdapter, conference_id: str) -> str:
    got = adapter.get(conference_id)
    details = got.details if got else {}
    return f"{details.get('topic')} at {details.get('start_time')} for {details.get('duration')} min"


def run_once(demo: Demo, console: Console) -> None:
    """Remote edits, an incremental sync, and the Zoom meeting following its event, printed."""
    _remote_edits(demo.google.url, *demo.calendars[0], console)
    meeting = demo.conferences[0]["conference_id"]
    _move_one(demo, demo.conferences[0], console)
    console.print(f"  Zoom meeting before the sync: {_meeting(demo.adapter, meeting)}")
    second = sync_once(demo.engine, adapters=demo.adapters)
    console.print(_results_table("incremental sync (one request per calendar with nothing new)", second.inbound))
    c = second.conferences
    console.print(f"  conference work: {c.updated} updated, {c.deleted} deleted, {c.unchanged} unchanged "
                  f"({demo.adapter.request_count} Zoom requests in all)")
    console.print(f"  Zoom meeting after the sync:  {_meeting(demo.adapter, meeting)}")
    with demo.engine.begin() as conn:
        total = repo.count_events(conn)
        now = _utc(datetime.now(UTC))
        upcoming = [r for r in repo.list_events(conn, start=now) if r["recurrence"] is None][:8]
    table = Table("start", "title", "conference", title=f"{total} events in the local store; next few")
    for r in upcoming:
        table.add_row(r["start"], r["title"], (r["conference"] or {}).get("join_url") or "")
    console.print(table)
    db = demo.db_url
    console.print(f"Explore: calsync events list --db {db}\n         calsync status --db {db}\n"
                  f"         calsync conference list --db {db}")


def _stop_on_sigterm() -> None:
    """SIGTERM (a service manager, `kill`) stops the demo as Ctrl-C does: workers and servers shut down."""
    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def run_demo(db: str | None, *, host: str = "127.0.0.1", port: int = 8000, once: bool = False,
             console: Console) -> None:
    """`calsync demo`: serve until Ctrl-C, or (`once`) the one-shot run."""
    if not once and port:
        try:  # fail before the seeding, not after it
            with socket.create_server((host, port)):
                pass
        except OSError as exc:
            console.print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc} (try --port 0 for any free port)")
            raise SystemExit(1) from exc
    demo = prepare(db, console)
    try:
        if once:
            run_once(demo, console)
            return
        try:
            url = demo.serve(host, port)
        except OSError as exc:
            console.print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc} (try --port 0 for any free port)")
            raise SystemExit(1) from exc
        console.print(f"\n[bold]calsync is running at {url}/[/bold]  (open it in a browser)\n"
                      f"  REST API {url}/api/v1 · OpenAPI {url}/docs · webhooks {url}/webhooks/google\n"
                      f"  Google tokens: {', '.join(sorted(demo.accounts))}. Ctrl-C to stop.")
        _stop_on_sigterm()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        demo.stop()
