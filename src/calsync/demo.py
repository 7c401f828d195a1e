"""`calsync demo`: every kind of account calsync syncs, with sample data, bound and synced end to end.

Google Calendar (two emulated users, three calendars), Outlook through Microsoft Graph (an emulated
mailbox), a real Radicale CalDAV server (a child process with throwaway storage; skipped with a message
when Radicale is not installed), a Zoom emulator for the meetings, and one calendar mirrored between
Google and Outlook through the hub (one local calendar, two bindings).

By default the whole service runs (REST API, web page, webhook receiver, workers) on a SQLite database,
with the emulators in-process, until Ctrl-C; its own URL is the public URL the emulated Google and
Outlook call back, so a change made on either emulator reaches the open page within a second or two.
CalDAV has no push, so the demo polls every DEMO_POLL_SECONDS. The emulated Google and Microsoft
authorization servers are on (Graph over TLS, trusting a CA made in the demo's directory): each Google
user and the Outlook mailbox is connected through its consent page, as `calsync account connect` does,
and the page's Connect button works against them. `--once` does a one-shot run instead:
initial sync, Zoom meetings, remote edits, incremental sync, a Google event reaching Outlook through
the mirror, printed, then exit.
"""

from __future__ import annotations

import functools
import io
import os
import re
import signal
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from calsync import caldav_server, demo_weeks
from calsync.caldav_server import CalDAVServer
from calsync.conferencing.base import ConferenceAdapter
from calsync.conferencing.zoom import ZoomAdapter
from calsync.credentials import grants, provider_maker
from calsync.credentials.connect import ConnectError, GoogleClient, MicrosoftClient, consent_on_loopback
from calsync.demo_weeks import Planner, SampleEvent
from calsync.emulators.google import GoogleEmulator, create_app
from calsync.emulators.graph import GraphEmulator
from calsync.emulators.graph import create_app as create_graph_app
from calsync.emulators.oauth.tls import TlsFiles, ensure_tls_files
from calsync.emulators.server import RunningServer, serve_in_thread
from calsync.emulators.zoom import ZoomEmulator
from calsync.emulators.zoom import create_app as create_zoom_app
from calsync.engine import local, setup
from calsync.engine.conferences import ConferenceEngine
from calsync.engine.inbound import SyncResult
from calsync.engine.pool import ProviderPool
from calsync.engine.scheduler import WorkerSettings
from calsync.engine.sync import sync_once
from calsync.providers.caldav import CalDAVProvider
from calsync.service import runtime
from calsync.service.oauth_routes import OAuthClients
from calsync.store import accounts as account_store
from calsync.store import conflicts as conflict_store
from calsync.store import events as event_store
from calsync.store.db import open_engine
from calsync.store.rows import ConferenceRow, EventRow, EventWithLinks
from calsync.store.urls import sqlite_file

# (Google user, calendar summary or None for the primary calendar, its sample events (demo_weeks), colour on
# the page); the user signs in on the emulator's consent page as <user>@example.com. The colours carry white
# text at a contrast of 4.5:1 or more (WCAG AA).
SAMPLE: tuple[tuple[str, str | None, Callable[[demo_weeks.Planner], list[SampleEvent]], str], ...] = (
    ("alice", None, demo_weeks.alice_work, "#2c57b3"),
    ("alice", "Team offsites", demo_weeks.offsites, "#a8561c"),
    ("bob", None, demo_weeks.bob_week, "#237a4b"),
)
SAMPLE_DAYS = 42  # the sample weeks start a week before today
MEETINGS = 12  # Zoom meetings made for the next single events of the first calendar
OUTLOOK_USER = "alice"  # signs in on the Graph emulator's consent page as the mailbox alice@contoso.example
OUTLOOK_COLOUR = "#0e6f82"
CALDAV_USER = "carol"  # Radicale runs without authentication: the user name picks the calendar home
CALDAV_COLOUR = "#8e44ad"
# (summary, day after the demo's first day, hour (UTC), hours, location, recurrence rule)
CALDAV_SAMPLE = (
    ("Book club", 2, 17, 2, "Library, 2nd floor", "FREQ=WEEKLY;COUNT=6"),
    ("Dentist", 4, 8, 1, "Dr. Molnar, Hauptstrasse 5", None),
    ("Climbing with Sam", 6, 16, 2, "Boulder hall", None),
    ("Piano lesson", 8, 15, 1, None, "FREQ=WEEKLY;INTERVAL=2;COUNT=3"),
    ("Farmers' market stall", 12, 7, 4, "Market square", None),
    ("Call with the landlord", 15, 10, 1, None, None),
    ("Dinner at Ana's", 19, 18, 3, "Ana's place", None),
    ("Bike repair pickup", 23, 9, 1, "Velo workshop", None),
)
MIRROR_NAME = "Shared: Google + Outlook"  # the local calendar with a Google and an Outlook binding
MIRROR_GOOGLE, MIRROR_OUTLOOK = "Shared with Outlook", "Shared with Google"  # their remote calendars
MIRROR_EVENTS = 10  # single events made on the Google side; the hub copies them to Outlook
MIRROR_COLOUR = "#a63225"
# OAuth clients registered on the emulated authorization servers: calsync's own (the accounts it syncs, the
# page's Connect) and "another client" the demo acts as when it changes events remotely, with its own grant
# as a person's calendar app has (the emulators in OAuth mode take only tokens they issued)
GOOGLE_CLIENT = ("calsync-demo.apps.googleusercontent.com", "calsync-demo-secret")
GOOGLE_REMOTE_CLIENT = ("demo-calendar-app.apps.googleusercontent.com", "demo-calendar-app-secret")
MICROSOFT_CLIENT = "0d3c5a1e-ca15-4e0c-9d3a-c0ffeec0ffee"  # a public client (no secret), as the CLI's
MICROSOFT_REMOTE_CLIENT = "5e1f0a7b-0ae7-4c1e-8f00-0a11ce0a11ce"
MICROSOFT_TENANT = "organizations"
DEMO_POLL_SECONDS = 15.0  # CalDAV changes arrive by polling (Google and Outlook ones by push; polls are the safety net)


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- consent, as a person's browser gives it -----------------------------------------------------

_FORM = re.compile(r'<form method="post" action="([^"]+)">')
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def press_allow(auth_url: str, verify: ssl.SSLContext | bool = True) -> str:
    """Open an emulated consent page and press Allow, as the person would in a browser; returns the
    address the authorization server redirects to (the client's redirect URI with the answer)."""
    page = httpx.get(auth_url, verify=verify)
    action = _FORM.search(page.text)
    if page.status_code != 200 or action is None:
        raise ConnectError(f"no consent page at {auth_url.split('?')[0]}: HTTP {page.status_code}")
    fields = {unescape(k): unescape(v) for k, v in _HIDDEN.findall(page.text)}
    answer = httpx.post(
        urljoin(auth_url, unescape(action.group(1))), data={**fields, "decision": "allow"}, verify=verify
    )
    if answer.status_code != 302:
        raise ConnectError(f"the consent page did not redirect: HTTP {answer.status_code}")
    return answer.headers["location"]


def google_consent(client: GoogleClient, user: str) -> dict[str, Any]:
    """The flow `calsync account connect google` runs, with the demo pressing Allow: the credentials."""
    return consent_on_loopback(client, user, lambda url: _follow(press_allow(url, True)), 30)


def microsoft_consent(client: MicrosoftClient, user: str, verify: ssl.SSLContext) -> dict[str, Any]:
    """The flow `calsync account connect microsoft` runs, with the demo pressing Allow: the credentials."""
    return consent_on_loopback(client, user, lambda url: _follow(press_allow(url, verify)), 30)


def _follow(location: str) -> None:
    """The browser's last step: the consent page's redirect, to calsync's loopback listener."""
    httpx.get(location, timeout=30)


class RemoteTokens:
    """Another client's grant for one user (the person's own calendar app, as the demo plays it): its
    access token, renewed with its refresh token shortly before it expires. Kept apart from calsync's
    grant so that the demo never spends (or, at Microsoft, rotates away) the refresh token calsync stores."""

    def __init__(self, credentials: dict[str, Any]) -> None:
        self._credentials = credentials
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            c = self._credentials
            if float(c["expires_at"]) - time.time() < 300:
                issued = grants.refresh(c)
                c["access_token"], c["expires_at"] = issued.access_token, issued.expires_at
                c["refresh_token"] = issued.refresh_token or c["refresh_token"]
            return str(c["access_token"])


def _google_email(user: str) -> str:
    return GoogleEmulator.user_email(user)


def _seed(demo: Demo, planner: Planner) -> list[tuple[str, str, str]]:
    """Create the sample calendars on the emulator, their events made as the user's own calendar app would
    (events.insert); returns (user, calendar id, colour) triples."""
    made: list[tuple[str, str, str]] = []
    for user, summary, sample, colour in SAMPLE:
        with demo._google(user) as api:
            if summary is None:
                calendar_id = api.get("/calendars/primary").raise_for_status().json()["id"]
            else:
                calendar_id = (
                    api.post("/calendars", json={"summary": summary, "timeZone": demo_weeks.ZONE})
                    .raise_for_status()
                    .json()["id"]
                )
            _insert_google(api, calendar_id, sample(planner))
        made.append((user, calendar_id, colour))
    return made


def _insert_google(api: httpx.Client, calendar_id: str, events: list[SampleEvent]) -> None:
    for event in events:
        api.post(f"/calendars/{calendar_id}/events", json=event.google()).raise_for_status()


def _binding_labels(engine: Engine) -> dict[str, str]:
    """binding id -> "provider: local calendar", for the printed tables."""
    with engine.begin() as conn:
        names = {c["id"]: c["name"] for c in account_store.list_calendars(conn)}
        kinds = {a["id"]: a["provider"] for a in account_store.list_accounts(conn)}
        return {
            b["id"]: f"{kinds[b['account_id']]}: {names[b['calendar_id']]}" for b in account_store.list_bindings(conn)
        }


def _results_table(title: str, results: list[SyncResult], labels: dict[str, str]) -> Table:
    table = Table("binding", "kind", "pages", "requests", "created", "updated", "deleted", "status", title=title)
    for r in results:
        table.add_row(
            labels.get(r.binding_id, r.binding_id[:12]),
            "full" if r.full else "incremental",
            str(r.pages),
            str(r.requests),
            str(r.created),
            str(r.updated),
            str(r.deleted),
            r.status,
        )
    return table


def _zoom_adapter(zoom: RunningServer) -> ZoomAdapter:
    adapter = ZoomAdapter.from_settings(
        {
            "CALSYNC_ZOOM_BASE_URL": f"{zoom.url}/v2",
            "CALSYNC_ZOOM_OAUTH_URL": f"{zoom.url}/oauth/token",
            "CALSYNC_ZOOM_ACCOUNT_ID": "demo",
            "CALSYNC_ZOOM_CLIENT_ID": "demo",
            "CALSYNC_ZOOM_CLIENT_SECRET": "demo",
        }
    )
    assert adapter is not None
    return adapter


def _single(row: EventRow) -> bool:
    return row["recurrence"] is None and row["recurring_event_id"] is None and not row["all_day"]


@dataclass
class Demo:
    """The emulators, the seeded and synced database and, once `serve` ran, the service on top of them.

    It is also the demo control the web page drives (`POST /api/v1/demo/remote-change`)."""

    google: RunningServer
    zoom: RunningServer
    graph: RunningServer
    adapter: ZoomAdapter
    db_url: str
    engine: Engine
    tls: TlsFiles  # the local CA the Graph emulator's certificate is signed by (trusted, never unchecked)
    caldav: CalDAVServer | None = None  # None when Radicale is not installed
    accounts: dict[str, str] = field(default_factory=dict)  # Google user -> account id
    calendars: list[tuple[str, str]] = field(default_factory=list)  # Google (user, remote calendar id)
    remote: dict[str, RemoteTokens] = field(default_factory=dict)  # Google user, or "outlook" -> another client's
    outlook_account: str | None = None
    caldav_account: str | None = None
    outlook_calendars: dict[str, str] = field(default_factory=dict)  # Outlook calendar name -> Graph id
    caldav_calendar: str | None = None  # the collection path on Radicale
    mirror: dict[str, str] = field(default_factory=dict)  # calendar_id, google/outlook binding and remote ids
    conferences: list[ConferenceRow] = field(default_factory=list)
    service: RunningServer | None = None
    pool: Any = None  # calsync.service.app.WorkerPool once serving
    record: str | None = None  # the database whose service record (service/runtime.py) this demo wrote
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _changes: int = 0

    @property
    def url(self) -> str:
        assert self.service is not None, "the demo service is not running"
        return self.service.url

    @property
    def adapters(self) -> dict[str, ConferenceAdapter]:
        return {"zoom": self.adapter}

    @property
    def verify(self) -> ssl.SSLContext:
        """Certificate checks against the demo's CA (for the Graph emulator)."""
        return _trusting(self.tls.ca_cert)

    def google_client(self) -> GoogleClient:
        return GoogleClient(*GOOGLE_CLIENT, base_url=self.google.url)

    def microsoft_client(self) -> MicrosoftClient:
        return MicrosoftClient(MICROSOFT_CLIENT, None, MICROSOFT_TENANT, self.graph.url, self.tls.ca_cert)

    def oauth_clients(self) -> OAuthClients:
        """The page's Connect: calsync's clients at the emulated Google and Microsoft sign-in."""
        return OAuthClients(
            google=self.google_client(),
            google_base_url=self.google.url,
            microsoft=self.microsoft_client(),
            graph_base_url=self.graph.url,
        )

    # --- the service ---------------------------------------------------------------------------

    def _page_user(self) -> str:
        from calsync.store import users

        with self.engine.begin() as conn:
            return users.default_owner(conn)

    def serve(self, host: str = "127.0.0.1", port: int = 0, *, open_page: bool = False) -> str:
        """The API, the web page, the webhook receiver and a worker, whose public URL is its own URL.

        The page needs a login (`login_link` prints one for the demo's user); `open_page` (the tests
        only) lets keyless requests act as that user instead."""
        from calsync.service.app import WorkerPool
        from calsync.service.app import create_app as create_service
        from calsync.service.metrics import Metrics

        metrics = Metrics()
        database = sqlite_file(self.db_url)
        token = runtime.new_token() if database else None
        self.pool = WorkerPool(self.engine, WorkerSettings(), self.adapters, metrics)
        self.service = serve_in_thread(
            create_service(
                self.engine,
                metrics,
                wake=self.pool.wake,
                adapters=self.adapters,
                demo=self,
                control_token=token,
                poll_interval=DEMO_POLL_SECONDS,
                oauth=self.oauth_clients(),
                open_page_user=self._page_user() if open_page else None,
            ),
            host=host,
            port=port,
        )
        if database and token:  # `calsync sync --db <this database>` hands its work to the demo's service
            runtime.claim(
                database, runtime.ServiceRecord(url=self.service.url, pid=os.getpid(), token=token, config=None)
            )
            self.record = database
        self.pool.settings = WorkerSettings(
            public_url=self.service.url, idle_sleep=0.25, debounce=0.2, poll_interval=DEMO_POLL_SECONDS
        )
        self.pool.start()
        self.pool.wake.set()
        return self.service.url

    def login_link(self) -> str:
        """A one-time login URL for the user who owns the demo's accounts: how `calsync demo` logs
        its user in, so the demo stays one command (store/sessions.py: good once, for 15 minutes)."""
        from calsync.store import sessions

        assert self.service is not None, "serve() first"
        with self.engine.begin() as conn:
            token = sessions.create_login_token(conn, self._page_user())
        return sessions.login_url(self.service.url, token)

    def stop(self) -> None:
        """Workers, service, emulators, and the Radicale process with its storage: nothing is left behind."""
        if self.pool is not None:
            self.pool.stop(timeout=10)
        if self.service is not None:
            self.service.stop()
        if self.record is not None:
            runtime.release(self.record, os.getpid())
        self.engine.dispose()
        self.adapter.close()
        self.zoom.stop()
        self.graph.stop()
        self.google.stop()
        if self.caldav is not None:
            self.caldav.close()

    # --- the demo control ----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "google_emulator": self.google.url,
            "zoom_emulator": self.zoom.url,
            "database": self.db_url,
            "graph_emulator": self.graph.url,
            "caldav_server": self.caldav.url if self.caldav else None,
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
                return self._answer(
                    kind,
                    event,
                    event["title"],
                    f"moved '{event['title']}' one hour later in Google Calendar",
                    start=_utc(begin),
                )
            if kind == "conflict":
                remote_title = _retitled(event["title"], "edited in Google")
                local_title = _retitled(event["title"], "edited here")
                self._patch(event, {"summary": remote_title})
                local.update_event(self.engine, event["id"], {"title": local_title}, None)
                return self._answer(
                    kind,
                    event,
                    remote_title,
                    f"'{event['title']}' renamed here to '{local_title}' and in Google Calendar "
                    f"to '{remote_title}' at the same moment",
                    local_title=local_title,
                )
            raise LookupError(f"unknown kind of change {kind!r}")

    def _create(self, at: datetime) -> dict[str, Any]:
        user, calendar_id = self.calendars[0]
        title = f"Coffee with the calsync team #{self._changes}"
        with self._google(user) as api:
            made = (
                api.post(
                    f"/calendars/{calendar_id}/events",
                    json={
                        "summary": title,
                        "description": "Made in Google Calendar by the demo control.",
                        "start": {"dateTime": _utc(at)},
                        "end": {"dateTime": _utc(at + timedelta(minutes=30))},
                    },
                )
                .raise_for_status()
                .json()
            )
        return {
            "kind": "create",
            "title": title,
            "remote_id": made["id"],
            "start": _utc(at),
            "event_id": None,
            "message": f"created '{title}' at {_utc(at)} in Google Calendar",
        }

    def _pick(self, after: datetime, *, with_meeting: bool) -> EventWithLinks:
        """An upcoming single event of the first calendar (with one of our meetings, for a move) that
        no conflict holds: a paused event would take the remote change only once the conflict is
        resolved, so the page would wait for an arrival that does not come."""
        with self.engine.begin() as conn:
            calendar = account_store.get_binding(conn, self._binding_ids()[0])["calendar_id"]
            rows = [
                r
                for r in event_store.list_events(conn, calendar_id=calendar, start=_utc(after))
                if _single(r) and r["links"] and r["status"] != "cancelled" and r["start"] >= _utc(after)
            ]
            ids = [r["id"] for r in rows]
            paused: set[str] = set()
            for binding_id in {link["binding_id"] for r in rows for link in r["links"]}:
                paused.update(conflict_store.open_conflicts_of(conn, binding_id, ids))
            rows = [r for r in rows if r["id"] not in paused]
        meeting = [r for r in rows if (r["conference"] or {}).get("provider")]
        candidates = (meeting or rows) if with_meeting else rows
        if not candidates:
            raise LookupError("no upcoming event to change")
        return candidates[(self._changes - 1) % min(len(candidates), 5)]

    def _patch(self, event: EventWithLinks, body: dict[str, Any]) -> None:
        link = event["links"][0]
        with self.engine.begin() as conn:
            binding = account_store.get_binding(conn, link["binding_id"])
        with self._google(self.user_of(binding["account_id"])) as api:
            api.patch(
                f"/calendars/{binding['remote_calendar_id']}/events/{link['remote_id']}", json=body
            ).raise_for_status()

    def _answer(self, kind: str, event: EventWithLinks, title: str, message: str, **extra: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "title": title,
            "event_id": event["id"],
            "remote_id": event["links"][0]["remote_id"],
            "start": extra.pop("start", event["start"]),
            "message": message,
            **extra,
        }

    def user_of(self, account_id: str) -> str:
        """The demo's Google user a Google account was connected for."""
        return next(user for user, account in self.accounts.items() if account == account_id)

    def _google(self, user: str) -> httpx.Client:
        """Google Calendar's API as `user`'s own calendar app uses it (its token, not calsync's)."""
        token = self.remote[user].token()
        return httpx.Client(base_url=f"{self.google.url}/calendar/v3", headers={"Authorization": f"Bearer {token}"})

    def outlook(self) -> httpx.Client:
        """The Graph API of the emulated Outlook mailbox, as another Outlook client would use it."""
        return httpx.Client(
            base_url=f"{self.graph.url}/v1.0",
            headers={"Authorization": f"Bearer {self.remote['outlook'].token()}"},
            verify=self.verify,
        )

    def outlook_events(self, calendar_id: str) -> list[dict[str, Any]]:
        """Every single event and series master of an Outlook calendar (Graph's /events listing)."""
        found: list[dict[str, Any]] = []
        with self.outlook() as api:
            url: str | None = f"/me/calendars/{calendar_id}/events?$top=1000"
            while url:
                body = api.get(url).raise_for_status().json()
                found += body["value"]
                url = body.get("@odata.nextLink")
        return found

    def _binding_ids(self) -> list[str]:
        with self.engine.begin() as conn:
            return [b["id"] for b in account_store.list_bindings(conn)]


@functools.cache
def _trusting(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


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
    """Start the emulators (and Radicale), connect every account through its consent page, seed and
    bind the calendars to a fresh database, run the initial sync and create Zoom meetings for the next
    events."""
    console = console or Console(file=io.StringIO())
    home = Path(tempfile.mkdtemp(prefix="calsync-demo-"))
    db_url = db or f"sqlite:///{home / 'calsync.db'}"
    # the CA stays beside the database: the Outlook account's credentials name it (ca_file)
    tls = ensure_tls_files(home / "tls")
    google = serve_in_thread(create_app(GoogleEmulator(oauth=True)))
    zoom = serve_in_thread(create_zoom_app(ZoomEmulator()))
    graph = serve_in_thread(create_graph_app(GraphEmulator(oauth=True)), certfile=tls.cert, keyfile=tls.key)
    adapter = _zoom_adapter(zoom)
    engine = open_engine(db_url)
    demo = Demo(google=google, zoom=zoom, graph=graph, adapter=adapter, db_url=db_url, engine=engine, tls=tls)
    try:
        demo.caldav = _start_radicale(console)
        console.print(
            f"[bold]calsync demo[/bold]\n  Google Calendar emulator: {google.url}\n"
            f"  Outlook (Microsoft Graph) emulator: {graph.url} (its CA: {tls.ca_cert})\n"
            f"  CalDAV (Radicale): {demo.caldav.url if demo.caldav else 'skipped'}\n"
            f"  Zoom emulator: {zoom.url}\n  database: {db_url}"
        )
        _register_clients(demo)
        for user in dict.fromkeys(user for user, _summary, _count, _colour in SAMPLE):
            _connect_google(demo, user, console)
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=7)
        planner = Planner(demo_weeks.first_day(start), SAMPLE_DAYS)  # one busy map over every calendar
        seeded = _seed(demo, planner)
        make = provider_maker(engine)
        for user, calendar_id, colour in seeded:
            with engine.begin() as conn:
                provider = make(account_store.get_account(conn, demo.accounts[user]))
            try:
                info = {c.remote_id: c for c in provider.list_calendars()}[calendar_id]
            finally:
                provider.close()
            setup.bind_calendar(
                engine, demo.accounts[user], calendar_id, setup.NewCalendar(info.name, info.time_zone, colour)
            )
            demo.calendars.append((user, calendar_id))
        _add_outlook(demo, planner, console)
        if demo.caldav is not None:
            _add_caldav(demo, demo.caldav, start)
        _add_mirror(demo, planner)
        with engine.begin() as conn:
            accounts, calendars = len(account_store.list_accounts(conn)), len(account_store.list_calendars(conn))
        console.print(
            f"  {accounts} accounts, {calendars} calendars bound "
            f"('{MIRROR_NAME}' mirrors Google and Outlook through the hub)"
        )
        t0 = time.perf_counter()
        first = sync_once(engine, adapters=demo.adapters)
        console.print(
            _results_table(f"initial sync ({time.perf_counter() - t0:.2f}s)", first.inbound, _binding_labels(engine))
        )
        mirrored = sum(r.created for r in first.outbound if r.binding_id == demo.mirror["outlook_binding"])
        console.print(f"  {mirrored} events of '{MIRROR_GOOGLE}' (Google) copied to '{MIRROR_OUTLOOK}' (Outlook)")
        demo.conferences = _add_conferences(engine, adapter)
        console.print(f"  {len(demo.conferences)} Zoom meetings created and written onto their Google events")
    except BaseException:
        demo.stop()
        raise
    return demo


def _start_radicale(console: Console) -> CalDAVServer | None:
    """A real Radicale on loopback with throwaway storage, or None (and why) when it is not installed."""
    if not caldav_server.available("radicale"):
        console.print(
            "  [yellow]CalDAV demo account skipped:[/yellow] Radicale is not installed "
            "(pip install radicale, or install calsync with its dev extras, to add it)"
        )
        return None
    # (Radicale runs without authentication: any password will do)
    return caldav_server.start_server("radicale", username=CALDAV_USER, password="demo")  # noqa: S106


def _register_clients(demo: Demo) -> None:
    """calsync's OAuth clients and the "other client" the demo acts as, registered with the emulated
    authorization servers (from then on, unknown clients and wrong secrets are refused there)."""
    for client_id, secret in (GOOGLE_CLIENT, GOOGLE_REMOTE_CLIENT):
        httpx.post(
            f"{demo.google.url}/emulator/oauth/clients", json={"client_id": client_id, "client_secret": secret}
        ).raise_for_status()
    for client_id in (MICROSOFT_CLIENT, MICROSOFT_REMOTE_CLIENT):
        httpx.post(
            f"{demo.graph.url}/emulator/oauth/clients",
            json={"client_id": client_id, "client_secret": None},
            verify=demo.verify,
        ).raise_for_status()


def _connect_google(demo: Demo, user: str, console: Console) -> None:
    """`user` gives calsync access on the emulated consent page (the demo presses Allow), and gives the
    demo's "other client" its own access, which the demo uses to change events remotely."""
    email = _google_email(user)
    credentials = google_consent(demo.google_client(), email)
    demo.accounts[user] = setup.connect_account(
        demo.engine, "google", f"{user} (emulated Google)", demo.google.url, credentials
    ).account_id
    demo.remote[user] = RemoteTokens(google_consent(GoogleClient(*GOOGLE_REMOTE_CLIENT, demo.google.url), email))
    console.print(f"  Google account {email} connected through the emulator's consent page (OAuth, PKCE)")


def _add_outlook(demo: Demo, planner: Planner, console: Console) -> None:
    """The Outlook mailbox, connected through the emulated Microsoft consent page: its default
    calendar seeded with sample events, bound on its own, and an empty second calendar that becomes the
    Outlook side of the mirror."""
    mailbox = GraphEmulator.user_email(OUTLOOK_USER)
    credentials = microsoft_consent(demo.microsoft_client(), mailbox, demo.verify)
    demo.outlook_account = setup.connect_account(
        demo.engine, "graph", f"{OUTLOOK_USER} (emulated Outlook)", demo.graph.url, credentials
    ).account_id
    remote = MicrosoftClient(MICROSOFT_REMOTE_CLIENT, None, MICROSOFT_TENANT, demo.graph.url, demo.tls.ca_cert)
    demo.remote["outlook"] = RemoteTokens(microsoft_consent(remote, mailbox, demo.verify))
    console.print(f"  Outlook account {mailbox} connected through the emulator's consent page (OAuth, PKCE, TLS)")
    with demo.outlook() as api:
        default = next(c for c in api.get("/me/calendars").raise_for_status().json()["value"] if c["isDefaultCalendar"])
        shared = api.post("/me/calendars", json={"name": MIRROR_OUTLOOK}).raise_for_status().json()
        for event in demo_weeks.outlook_week(planner):
            api.post(f"/me/calendars/{default['id']}/events", json=event.graph()).raise_for_status()
    demo.outlook_calendars = {default["name"]: default["id"], MIRROR_OUTLOOK: shared["id"]}
    setup.bind_calendar(
        demo.engine,
        demo.outlook_account,
        default["id"],
        setup.NewCalendar(f"{mailbox} (Outlook)", "Europe/Berlin", OUTLOOK_COLOUR),
    )


def _add_caldav(demo: Demo, server: CalDAVServer, start: datetime) -> None:
    """A calendar on Radicale with a handful of events PUT as any CalDAV client would, then bound."""
    with server.client() as http:
        path = caldav_server.make_calendar(server, "personal", f"{CALDAV_USER.title()}'s personal calendar", http=http)
        for n, (summary, day, hour, hours, location, rule) in enumerate(CALDAV_SAMPLE):
            lines = [
                f"LOCATION:{location}" if location else "",
                f"RRULE:{rule}" if rule else "",
                f"DESCRIPTION:Sample event {n + 1} on Radicale, made by the demo as another CalDAV client.",
            ]
            text = caldav_server.ics(
                f"demo-{n}@radicale.calsync",
                summary,
                start + timedelta(days=day, hours=hour),
                hours=hours,
                body="\n".join(lines),
            )
            http.put(
                f"{path}demo-{n}.ics",
                content=text.encode(),
                headers={"Content-Type": "text/calendar; charset=utf-8", "If-None-Match": "*"},
            ).raise_for_status()
    provider = CalDAVProvider(server.url, server.username, server.password)
    try:
        info = {c.remote_id: c for c in provider.list_calendars()}[path]
    finally:
        provider.close()
    demo.caldav_calendar = path
    demo.caldav_account = setup.add_account(
        demo.engine,
        "caldav",
        f"{server.username} (Radicale CalDAV)",
        server.url,
        {"username": server.username, "password": server.password},
    )
    setup.bind_calendar(
        demo.engine, demo.caldav_account, path, setup.NewCalendar(info.name, info.time_zone, CALDAV_COLOUR)
    )


def _add_mirror(demo: Demo, planner: Planner) -> None:
    """One local calendar bound to a Google calendar and to an Outlook calendar: what arrives from one
    side is queued for the other (the Google side starts with sample events, the Outlook side empty)."""
    user = SAMPLE[0][0]
    with demo._google(user) as api:
        google_id = (
            api.post("/calendars", json={"summary": MIRROR_GOOGLE, "timeZone": "Europe/Berlin"})
            .raise_for_status()
            .json()["id"]
        )
        _insert_google(api, google_id, demo_weeks.mirrored(planner, MIRROR_EVENTS))
    outlook_id = demo.outlook_calendars[MIRROR_OUTLOOK]
    assert demo.outlook_account is not None
    calendar = setup.add_calendar(demo.engine, MIRROR_NAME, "Europe/Berlin", MIRROR_COLOUR)
    google_binding = setup.bind_calendar(demo.engine, demo.accounts[user], google_id, calendar).binding_id
    outlook_binding = setup.bind_calendar(demo.engine, demo.outlook_account, outlook_id, calendar).binding_id
    demo.calendars.append((user, google_id))
    demo.mirror = {
        "calendar_id": calendar,
        "google_binding": google_binding,
        "google_calendar": google_id,
        "outlook_binding": outlook_binding,
        "outlook_calendar": outlook_id,
    }


def _add_conferences(engine: Engine, adapter: ZoomAdapter, count: int = MEETINGS) -> list[ConferenceRow]:
    """Zoom meetings for the next few single events of the first calendar."""
    with engine.begin() as conn:
        first_calendar = account_store.list_calendars(conn)[0]["id"]
        now = _utc(datetime.now(UTC))
        upcoming = [
            r
            for r in event_store.list_events(conn, calendar_id=first_calendar, start=now)
            if _single(r) and r["start"] >= now and not r["conference"]
        ][:count]
    pool = ProviderPool(engine)
    try:
        return [ConferenceEngine(engine, {"zoom": adapter}, pool).create(r["id"], "zoom") for r in upcoming]
    finally:
        pool.close()


def start_demo(
    db: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    console: Console | None = None,
    open_page: bool = False,
) -> Demo:
    """The demo with its service running (what `calsync demo` serves, and what the browser tests use,
    with `open_page`: keyless requests act as the demo's user, see Demo.serve)."""
    demo = prepare(db, console)
    try:
        demo.serve(host, port, open_page=open_page)
    except BaseException:
        demo.stop()
        raise
    return demo


# --- the one-shot run (`calsync demo --once`) ------------------------------------------------


def _remote_edits(demo: Demo, user: str, calendar_id: str, console: Console) -> None:
    """Change the remote side the way another Google client would: one insert, one edit, one delete."""
    with demo._google(user) as api:
        path = f"/calendars/{calendar_id}/events"
        items = api.get(path, params={"maxResults": 3}).raise_for_status().json()["items"]
        start = _next_hour() + timedelta(days=1)
        api.post(
            path,
            json={
                "summary": "Coffee with the calsync team",
                "start": {"dateTime": start.isoformat()},
                "end": {"dateTime": (start + timedelta(minutes=30)).isoformat()},
            },
        ).raise_for_status()
        api.patch(
            f"{path}/{items[0]['id']}",
            json={"summary": items[0].get("summary", "") + " (moved online)"},
            headers={"If-Match": items[0]["etag"]},
        ).raise_for_status()
        api.delete(f"{path}/{items[1]['id']}").raise_for_status()
    console.print(f"  remote edits on {calendar_id}: 1 created, 1 renamed, 1 deleted (as another Google client)")


def _move_one(demo: Demo, conference: ConferenceRow, console: Console) -> None:
    """Move an event with a meeting, as its owner would in Google Calendar."""
    with demo.engine.begin() as conn:
        event = event_store.get_events(conn, [conference["event_id"]])[0]
    start = _parse(event["start"]) + timedelta(hours=2)
    demo._patch(
        event,
        {
            "summary": event["title"] + " (moved)",
            "start": {"dateTime": _utc(start)},
            "end": {"dateTime": _utc(start + timedelta(minutes=45))},
        },
    )
    console.print(f"  moved '{event['title']}' by two hours in Google Calendar")


def _mirror_once(demo: Demo, console: Console) -> None:
    """An event made in the mirrored Google calendar, one sync, and its copy found in Outlook."""
    title = "Planning lunch (made in Google, mirrored to Outlook)"
    at = _next_hour() + timedelta(days=2)
    with demo._google(SAMPLE[0][0]) as api:
        api.post(
            f"/calendars/{demo.mirror['google_calendar']}/events",
            json={
                "summary": title,
                "start": {"dateTime": _utc(at)},
                "end": {"dateTime": _utc(at + timedelta(hours=1))},
            },
        ).raise_for_status()
    sync_once(demo.engine, binding_ids=[demo.mirror["google_binding"], demo.mirror["outlook_binding"]])
    copies = [e for e in demo.outlook_events(demo.mirror["outlook_calendar"]) if e["subject"] == title]
    where = f"in Outlook as {copies[0]['id'][:16]}..." if copies else "not yet in Outlook"
    console.print(f"  mirror: '{title}' created in Google Calendar, one sync later {where}")


def _meeting(adapter: ZoomAdapter, conference_id: str) -> str:
    got = adapter.get(conference_id)
    details = got.details if got else {}
    return f"{details.get('topic')} at {details.get('start_time')} for {details.get('duration')} min"


def run_once(demo: Demo, console: Console) -> None:
    """Remote edits, an incremental sync, and the Zoom meeting following its event, printed."""
    _remote_edits(demo, *demo.calendars[0], console)
    meeting = demo.conferences[0]["conference_id"]
    _move_one(demo, demo.conferences[0], console)
    console.print(f"  Zoom meeting before the sync: {_meeting(demo.adapter, meeting)}")
    second = sync_once(demo.engine, adapters=demo.adapters)
    console.print(
        _results_table(
            "incremental sync (one request per calendar with nothing new)", second.inbound, _binding_labels(demo.engine)
        )
    )
    c = second.conferences
    console.print(
        f"  conference work: {c.updated} updated, {c.deleted} deleted, {c.unchanged} unchanged "
        f"({demo.adapter.request_count} Zoom requests in all)"
    )
    console.print(f"  Zoom meeting after the sync:  {_meeting(demo.adapter, meeting)}")
    _mirror_once(demo, console)
    with demo.engine.begin() as conn:
        total = event_store.count_events(conn)
        now = _utc(datetime.now(UTC))
        upcoming = [r for r in event_store.list_events(conn, start=now) if r["recurrence"] is None][:8]
    table = Table("start", "title", "conference", title=f"{total} events in the local store; next few")
    for r in upcoming:
        table.add_row(r["start"], r["title"], (r["conference"] or {}).get("join_url") or "")
    console.print(table)
    db = demo.db_url
    cli = os.environ.get("CALSYNC_CLI") or "calsync"  # scripts/demo: ./scripts/calsync, which runs from the root
    console.print(
        f"Explore: {cli} events list --db {db}\n         {cli} status --db {db}\n"
        f"         {cli} conference list --db {db}",
        highlight=False,
        soft_wrap=True,  # a command broken over lines would not run as printed
    )


def _connect_hint(demo: Demo, url: str) -> str:
    """How to connect one more account against the demo's emulated sign-in, from the page or the CLI."""
    client_id, secret = GOOGLE_CLIENT
    cli = os.environ.get("CALSYNC_CLI") or "calsync"
    return (
        f"  Connect another account: the page's Connect, or {url}/oauth/google/start (any address, "
        "e.g. carol@example.com, on the emulator's consent page), or\n"
        f"    {cli} account connect google --base-url {demo.google.url} --client-id {client_id} "
        f"--client-secret {secret} --db {demo.db_url}\n"
        f"    {cli} account connect microsoft --client-id {MICROSOFT_CLIENT} --tenant {MICROSOFT_TENANT} "
        f"--authority-url {demo.graph.url} --base-url {demo.graph.url} --ca-file {demo.tls.ca_cert} "
        f"--db {demo.db_url}"
    )


def _stop_on_sigterm() -> None:
    """SIGTERM (a service manager, `kill`) stops the demo as Ctrl-C does: workers and servers shut down."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


def run_demo(
    db: str | None, *, host: str = "127.0.0.1", port: int = 8000, once: bool = False, console: Console
) -> None:
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
        except RuntimeError as exc:  # another service already serves this database
            console.print(f"[red]error:[/red] {exc}")
            raise SystemExit(1) from exc
        console.print(
            f"\n[bold]calsync is running at {url}/[/bold]  (open the login link below in a browser)\n"
            f"  REST API {url}/api/v1 · OpenAPI {url}/docs · webhooks {url}/webhooks/google and /graph\n"
            f"  Google users: {', '.join(_google_email(u) for u in sorted(demo.accounts))} · Outlook: "
            f"{GraphEmulator.user_email(OUTLOOK_USER)} ({demo.graph.url}/v1.0)"
            + (f" · CalDAV: {demo.caldav.url} as {demo.caldav.username}" if demo.caldav else "")
            + "\n"
            + _connect_hint(demo, url)
            + f"\n  '{MIRROR_NAME}': make an event in Google's '{MIRROR_GOOGLE}' or Outlook's "
            f"'{MIRROR_OUTLOOK}' and it appears in the other (CalDAV is polled every "
            f"{DEMO_POLL_SECONDS:.0f} s). Ctrl-C to stop.",
            soft_wrap=True,  # the commands in it run as printed only when not broken over lines
        )
        # the demo stays one command: this link logs the browser in as the demo's user (good once, for
        # 15 minutes; `calsync user login-link NAME --base-url URL --db DB` makes another)
        console.print(f"\n  Log in: {demo.login_link()}\n", soft_wrap=True, highlight=False)
        _stop_on_sigterm()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        demo.stop()
