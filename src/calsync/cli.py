"""The calsync command line (Typer + Rich)."""
from __future__ import annotations

import gc
import json
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Optional

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from calsync.conferencing import configured_adapters
from calsync.conferencing.base import ConferenceAdapter, ConferenceError
from calsync.config import ConfigError, load_settings
from calsync.engine.channels import unbind
from calsync.engine.conferences import ConferenceEngine, ConferenceWorkError
from calsync.engine.conflicts import ConflictChanged, ConflictResolved, resolve_conflict
from calsync.engine.health import status_snapshot
from calsync.engine.inbound import PageHook, SyncResult
from calsync.engine.outbound import queue_calendar
from calsync.engine.pool import ProviderPool
from calsync.engine.scheduler import WorkerSettings
from calsync.engine.sync import BindingBusy, SyncReport, sync_held
from calsync.model import CONFLICT_POLICIES, DIRECTIONS, Account, utcnow
from calsync.providers import SUPPORTED, provider_for
from calsync.providers.base import ProviderError
from calsync.providers.http import RetryPolicy
from calsync.report_text import print_report
from calsync.store import conferences as conference_store
from calsync.store import repo
from calsync.store.db import open_engine
from calsync.views import binding_json, event_json, jsonable

app = typer.Typer(help="Keep calendars, and the video conferences on their events, in sync.", no_args_is_help=True)
account_app = typer.Typer(help="Calendar accounts (Google now; Outlook and CalDAV later).", no_args_is_help=True)
calendar_app = typer.Typer(help="Remote calendars and the local calendars bound to them.", no_args_is_help=True)
events_app = typer.Typer(help="Events in the local store.", no_args_is_help=True)
conflicts_app = typer.Typer(help="Events changed on both sides that wait for a decision.", no_args_is_help=True)
conference_app = typer.Typer(help="Video conferences kept in step with their events.", no_args_is_help=True)
emulator_app = typer.Typer(help="Local stand-ins for provider APIs, for tests and demos.", no_args_is_help=True)
db_app = typer.Typer(help="The database.", no_args_is_help=True)
app.add_typer(account_app, name="account")
app.add_typer(calendar_app, name="calendar")
app.add_typer(events_app, name="events")
app.add_typer(conflicts_app, name="conflicts")
app.add_typer(conference_app, name="conference")
app.add_typer(emulator_app, name="emulator")
app.add_typer(db_app, name="db")

console = Console()
err = Console(stderr=True)

DbOption = Annotated[
    Optional[str],
    typer.Option("--db", help="Database URL or SQLite file (default: $CALSYNC_DB, else a file in the user data dir)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ConfigOption = Annotated[
    Optional[str],
    typer.Option("--config", help="TOML settings file (default: $CALSYNC_CONFIG, else config.toml in the user config dir)."),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


@contextmanager
def database(url: str | None) -> Iterator[Engine]:
    """A migrated engine, with store errors turned into one clear line."""
    try:
        engine = open_engine(url)
    except (SQLAlchemyError, OSError) as exc:
        raise fail(f"cannot open database {url or '(default)'}: {exc}") from exc
    try:
        yield engine
    except repo.NotFound as exc:
        raise fail(str(exc)) from exc
    finally:
        engine.dispose()


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(value), indent=2, sort_keys=False) + "\n")


# --- emulators --------------------------------------------------------------------------


HostOption = Annotated[str, typer.Option(help="Address to listen on (loopback by default).")]


_EMULATORS = {"google": "GoogleEmulator", "zoom": "ZoomEmulator", "graph": "GraphEmulator",
              "confhook": "ConfhookEmulator"}


def _serve_emulator(kind: str, host: str, port: int, banner: str, **options: Any) -> None:
    """Start one emulator (module calsync.emulators.<kind>) in the foreground."""
    import importlib

    from calsync.emulators.server import serve_forever

    module = importlib.import_module(f"calsync.emulators.{kind}")
    emulator = getattr(module, _EMULATORS[kind])(**options)
    err.print(banner.format(base=f"http://{host}:{port}"))
    serve_forever(module.create_app(emulator), host=host, port=port)


@emulator_app.command("google")
def emulator_google(port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
                    host: HostOption = "127.0.0.1") -> None:
    """Run the Google Calendar API v3 emulator until Ctrl-C."""
    _serve_emulator("google", host, port, "Google Calendar emulator on {base}/calendar/v3/ (admin: /emulator/...)")


@emulator_app.command("zoom")
def emulator_zoom(port: Annotated[int, typer.Option(help="Port to listen on.")] = 8766,
                  host: HostOption = "127.0.0.1") -> None:
    """Run the Zoom-compatible emulator (/v2/... and /oauth/token) until Ctrl-C."""
    _serve_emulator("zoom", host, port, "Zoom emulator on {base}/v2/ (OAuth: /oauth/token, admin: /emulator/...)")


@emulator_app.command("graph")
def emulator_graph(port: Annotated[int, typer.Option(help="Port to listen on.")] = 8768,
                   host: HostOption = "127.0.0.1") -> None:
    """Run the Microsoft Graph (Outlook calendars) emulator until Ctrl-C."""
    _serve_emulator("graph", host, port, "Microsoft Graph emulator on {base}/v1.0/ (admin: /emulator/...)")


@emulator_app.command("confhook")
def emulator_confhook(
    secret: Annotated[str, typer.Option(envvar="CALSYNC_CONFHOOK_SECRET", help="Shared HMAC secret.")],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8767,
    host: HostOption = "127.0.0.1",
) -> None:
    """Run the reference conference system that speaks calsync's signed webhook protocol."""
    _serve_emulator("confhook", host, port, "webhook conference system on {base}/hook (admin: /emulator/...)",
                    secret=secret)


# --- accounts ---------------------------------------------------------------------------


@account_app.command("add")
def account_add(
    provider: Annotated[str, typer.Argument(help=f"One of: {', '.join(SUPPORTED)}.")],
    name: Annotated[Optional[str], typer.Option(
        help="A name to recognise the account by (CalDAV: user@host when not given).")] = None,
    token: Annotated[Optional[str], typer.Option(
        envvar="CALSYNC_TOKEN", help="Bearer token (prompted for, hidden, when not given).")] = None,
    base_url: Annotated[Optional[str], typer.Option(
        "--base-url", "--url", help="API root, e.g. an emulator's URL; for CalDAV, the server URL.")] = None,
    username: Annotated[Optional[str], typer.Option(help="CalDAV user name.")] = None,
    password: Annotated[Optional[str], typer.Option(
        envvar="CALSYNC_CALDAV_PASSWORD", show_default=False,
        help="CalDAV password (prompted for, hidden, when not given).")] = None,
    verify: Annotated[bool, typer.Option(help="Check the credentials by listing calendars first.")] = True,
    db: DbOption = None,
) -> None:
    """Add an account and print its id."""
    if provider not in SUPPORTED:
        raise fail(f"unknown provider {provider!r}; supported: {', '.join(SUPPORTED)}", 2)
    if provider == "caldav":
        if not base_url or not username:
            raise fail("CalDAV needs --url and --username", 2)
        if password is None:
            if not sys.stdin.isatty():
                raise fail("--password is required (or set CALSYNC_CALDAV_PASSWORD)", 2)
            password = typer.prompt("Password", hide_input=True)
        credentials: dict[str, Any] = {"username": username, "password": password}
        name = name if name is not None else f"{username}@{httpx.URL(base_url).host}"
    else:
        if token is None:
            if not sys.stdin.isatty():
                raise fail("--token is required (or set CALSYNC_TOKEN)", 2)
            token = typer.prompt("Token", hide_input=True)
        if not token.strip():
            raise fail("the token must not be empty", 2)
        credentials = {"token": token}
    if name is None or not name.strip():
        raise fail("--name must not be empty", 2)
    if verify:
        client = provider_for(Account("", provider, name, base_url, credentials), retry=RetryPolicy(attempts=2))
        try:
            client.list_calendars()
        except (ProviderError, httpx.HTTPError) as exc:
            raise fail(f"the account does not answer: {exc}") from exc
        finally:
            client.close()
    with database(db) as engine, engine.begin() as conn:
        account_id = repo.create_account(conn, provider, name.strip(), base_url, credentials)
    console.print(account_id, highlight=False)


@account_app.command("list")
def account_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List accounts (credentials are never printed)."""
    with database(db) as engine, engine.begin() as conn:
        rows = repo.list_accounts(conn)
    if as_json:
        print_json(rows)
        return
    table = Table("id", "provider", "name", "state", "base url")
    for r in rows:
        table.add_row(r["id"], r["provider"], r["name"], r["state"], r["base_url"] or "")
    console.print(table)


# --- calendars --------------------------------------------------------------------------


@calendar_app.command("remote")
def calendar_remote(account_id: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List the calendars an account can see at its provider."""
    with database(db) as engine, engine.begin() as conn:
        account = repo.get_account(conn, account_id)
    client = provider_for(account)
    try:
        calendars = client.list_calendars()
    except (ProviderError, httpx.HTTPError) as exc:
        raise fail(str(exc)) from exc
    finally:
        client.close()
    if as_json:
        print_json([c.__dict__ for c in calendars])
        return
    table = Table("remote id", "name", "time zone", "primary", "access")
    for c in calendars:
        table.add_row(c.remote_id, c.name, c.time_zone or "", "yes" if c.primary else "", c.access_role or "")
    console.print(table)


@calendar_app.command("bind")
def calendar_bind(
    account_id: str,
    remote_calendar_id: str,
    name: Annotated[Optional[str], typer.Option(help="Local calendar name (default: the remote name).")] = None,
    direction: Annotated[str, typer.Option(help="two-way, pull or push.")] = "two-way",
    policy: Annotated[str, typer.Option(help="Conflict policy: ask, local-wins, remote-wins, latest-wins.")] = "ask",
    calendar: Annotated[Optional[str], typer.Option(
        help="Bind to this existing local calendar instead of making a new one (mirroring).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Bind a remote calendar to a local one; prints the local calendar id and the binding id."""
    if direction not in DIRECTIONS:
        raise fail(f"--direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}", 2)
    if policy not in CONFLICT_POLICIES:
        raise fail(f"--policy must be one of {', '.join(CONFLICT_POLICIES)}, not {policy!r}", 2)
    with database(db) as engine:
        with engine.begin() as conn:
            account = repo.get_account(conn, account_id)
            if repo.find_binding(conn, account_id, remote_calendar_id):
                raise fail(f"{remote_calendar_id!r} is already bound for this account")
            if calendar and not repo.calendar_exists(conn, calendar):
                raise fail(f"no local calendar with id {calendar!r}")
        client = provider_for(account)
        try:
            remote = {c.remote_id: c for c in client.list_calendars()}
        except (ProviderError, httpx.HTTPError) as exc:
            raise fail(str(exc)) from exc
        finally:
            client.close()
        if remote_calendar_id not in remote:
            raise fail(f"the account has no calendar {remote_calendar_id!r}; see `calsync calendar remote {account_id}`")
        info = remote[remote_calendar_id]
        with engine.begin() as conn:
            calendar_id = calendar or repo.create_calendar(conn, name or info.name, info.time_zone, info.color)
            binding_id = repo.create_binding(conn, calendar_id, account_id, remote_calendar_id, direction, policy)
        if calendar:
            queue_calendar(engine, binding_id)  # mirroring: the calendar's events go out to the new binding
    if as_json:
        print_json({"calendar_id": calendar_id, "binding_id": binding_id})
    else:
        console.print(f"calendar {calendar_id}\nbinding {binding_id}", highlight=False)


@calendar_app.command("list")
def calendar_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Local calendars with their bindings."""
    with database(db) as engine, engine.begin() as conn:
        calendars = repo.list_calendars(conn)
        bindings = repo.list_bindings(conn)
        counts = {c["id"]: repo.count_events(conn, c["id"]) for c in calendars}
    now = utcnow()
    out = [
        {**c, "events": counts[c["id"]],
         "bindings": [binding_json(b, now) for b in bindings if b["calendar_id"] == c["id"]]}
        for c in calendars
    ]
    if as_json:
        print_json(out)
        return
    table = Table("id", "name", "events", "bindings")
    for c in out:
        table.add_row(c["id"], c["name"], str(c["events"]),
                      "\n".join(f"{b['id']} {b['direction']} {b['remote_calendar_id']}" for b in c["bindings"]))
    console.print(table)


@calendar_app.command("unbind")
def calendar_unbind(binding_id: str, db: DbOption = None) -> None:
    """Remove a binding: its notification channels are stopped first; local events stay."""
    with database(db) as engine:
        pool = ProviderPool(engine)
        try:
            stopped = unbind(engine, pool, binding_id)
        finally:
            pool.close()
    console.print(f"binding {binding_id} removed ({stopped} channel(s) stopped)", highlight=False)


# --- sync -------------------------------------------------------------------------------


@app.command("sync")
def sync(
    binding: Annotated[Optional[list[str]], typer.Option(help="Only this binding (repeatable).")] = None,
    full: Annotated[bool, typer.Option(help="Ignore stored tokens and list everything again.")] = False,
    force: Annotated[bool, typer.Option(help="Let a full sync delete most of a calendar (mass-delete guard off).")] = False,
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
    local: Annotated[bool, typer.Option("--local", help="Sync in this process even when a service serves the database.")] = False,
) -> None:
    """Sync once: everything that is due (inbound, then conference work), then print a summary.
    When `calsync serve` runs on this SQLite database, the service does the sync (see calsync.launch).
    Otherwise the bindings are leased first, so no worker (of any process) syncs them meanwhile."""
    adapters = conference_adapters(config)
    settings = worker_settings(config, None, None, None)
    with database(db) as engine:
        settle_heap()
        try:
            report = run_sync(engine, binding_ids=binding or None, full=full, force=force,
                              show_progress=not as_json, adapters=adapters, settings=settings)
        except repo.NotFound as exc:
            raise fail(str(exc), 1) from exc
        except BindingBusy as exc:
            raise fail(f"{exc}; try again later", 1) from exc
    for adapter in adapters.values():
        adapter.close()
    if as_json:
        print_json(report.as_dict())
    else:
        print_report(jsonable(report.as_dict()), console, err)
    if not report.ok:
        raise typer.Exit(1)


def settle_heap() -> None:
    """Interpreter settings for a process whose job is syncing (library users keep their own).

    The collector: what start-up made (modules, the app) is moved out of its sight, and it runs less
    often. A long sync makes millions of short-lived objects (hardly any cycles), and with the
    default thresholds it ran ~600 times in a 10,000-event initial sync (0.3 s of it). (50,000
    saved a little more time but cost ~15 MiB of peak memory.)

    The switch interval: a large sync runs three threads that share the GIL (HTTP requests in
    flight, parsing, storing). A thread back from a socket waits up to the interval for the GIL
    while the other two compute, at every read: with the default 5 ms the HTTP thread sent its
    next request late and the parser stood waiting for answers (about a second of a 10,000-event
    initial sync on Radicale; 0.1 s at 1 ms). The extra switches cost the computing threads next
    to nothing."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    sys.setswitchinterval(0.001)


def conference_adapters(config: str | None) -> dict[str, ConferenceAdapter]:
    try:
        return configured_adapters(load_settings(config))
    except ConfigError as exc:
        raise fail(str(exc), 2) from exc


def run_sync(
    engine: Engine, *, binding_ids: list[str] | None = None, full: bool = False, force: bool = False,
    show_progress: bool = True, adapters: dict[str, ConferenceAdapter] | None = None,
    settings: WorkerSettings | None = None,
) -> SyncReport:
    """sync_held (this process's own lease on each binding) with a Rich progress line for long
    listings when a person is watching."""
    settings = settings or WorkerSettings()
    owner = f"cli-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def held(after_page: PageHook | None = None) -> SyncReport:
        return sync_held(engine, owner, binding_ids=binding_ids, full=full, force=force, adapters=adapters,
                         lease_seconds=settings.lease_seconds, poll_interval=settings.poll_interval,
                         after_page=after_page,
                         on_wait=lambda b: err.print(f"binding {b} is being synced elsewhere; waiting for it"))

    if not (show_progress and console.is_terminal):
        return held()
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(), console=console, transient=True,
    ) as progress:
        task = progress.add_task("syncing", total=None, detail="")

        def on_page(pages: int, result: SyncResult) -> None:
            seen = result.created + result.updated + result.deleted + result.unchanged
            progress.update(task, description=f"{'full' if result.full else 'incremental'} sync {result.binding_id[:8]}",
                            detail=f"page {pages}, {seen} events")

        return held(on_page)


@app.command("status")
def status(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Sync health: per binding last sync, token age, channel expiry, dirty, last error; per account
    state and backoff; conflicts and conference backlog."""
    with database(db) as engine:
        snapshot = status_snapshot(engine)
    if as_json:
        print_json(snapshot)
        return
    table = Table("binding", "remote calendar", "last success", "token age", "channel expires", "dirty", "queued",
                  "status", "error")
    for b in snapshot["bindings"]:
        age = f"{b['token_age_seconds']}s" if b["token_age_seconds"] is not None else "no token"
        channel = (b["channel"] or {}).get("expiration") or "none"
        table.add_row(b["id"][:12], b["remote_calendar_id"], b["last_success_at"] or "never", age, channel,
                      "yes" if b["dirty"] else "", str(b["outbox_backlog"]), b["last_sync_status"] or "",
                      b["last_error"] or "")
    console.print(table)
    for a in snapshot["accounts"]:
        if a["state"] != "ok" or a["backoff_until"]:
            console.print(f"[red]account {a['name']} ({a['id']}): {a['state']}[/red] "
                          f"{('backing off until ' + a['backoff_until']) if a['backoff_until'] else ''} "
                          f"{a['last_error'] or ''}")
    console.print(f"open conflicts: {snapshot['open_conflicts']}   "
                  f"conference work waiting: {snapshot['conference_backlog']}")


# --- events and conflicts ---------------------------------------------------------------


@events_app.command("list")
def events_list(
    calendar: Annotated[Optional[str], typer.Option(help="Only this local calendar.")] = None,
    include_deleted: Annotated[bool, typer.Option(help="Show tombstones too.")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List events of the local store, by start time."""
    with database(db) as engine, engine.begin() as conn:
        if calendar and not repo.calendar_exists(conn, calendar):
            raise fail(f"no local calendar with id {calendar!r}")
        rows = repo.list_events(conn, calendar_id=calendar, include_deleted=include_deleted)
    if as_json:
        print_json([event_json(r) for r in rows])
        return
    table = Table("start", "end", "title", "status", "v", "source", "id")
    for r in rows:
        table.add_row(r["start"], r["end"], r["title"], r["status"] + (" (deleted)" if r["deleted"] else ""),
                      str(r["version"]), r["updated_at_source"], r["id"])
    console.print(table)


@conflicts_app.command("list")
def conflicts_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Open conflicts with both sides."""
    with database(db) as engine, engine.begin() as conn:
        rows = repo.list_conflicts(conn)
    if as_json:
        print_json(rows)
        return
    table = Table("id", "event", "binding", "kind", "local title", "remote title")
    for r in rows:
        table.add_row(r["id"], r["event_id"], r["binding_id"][:12], r["kind"],
                      (r["local"] or {}).get("title", "(deleted)"), (r["remote"] or {}).get("title", "(deleted)"))
    console.print(table)


def conference_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "event_id": row["event_id"], "provider": row["provider"],
        "conference_id": row["conference_id"], "join_url": row["join_url"], "state": row["state"],
        "last_synced_at": row["last_synced_at"], "last_error": row["last_error"],
    }


@conference_app.command("create")
def conference_create(
    event_id: str,
    provider: Annotated[str, typer.Option(help="Conference system: zoom, webhook or jitsi (as configured).")],
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a meeting for an event and put it on the calendar event."""
    adapters = conference_adapters(config)
    with database(db) as engine:
        pool = ProviderPool(engine)
        try:
            row = ConferenceEngine(engine, adapters, pool).create(event_id, provider)
        except (ConferenceWorkError, ConferenceError, ProviderError, httpx.HTTPError) as exc:
            raise fail(str(exc)) from exc
        finally:
            pool.close()
            for adapter in adapters.values():
                adapter.close()
    if as_json:
        print_json(conference_json(row))
    else:
        console.print(f"{row['provider']} conference {row['conference_id']}: {row['join_url']}", highlight=False)


@conference_app.command("list")
def conference_list(
    state: Annotated[Optional[str], typer.Option(help="Only active or deleted ones.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Conferences calsync manages, with their state."""
    if state not in (None, "active", "deleted"):
        raise fail("--state must be active or deleted", 2)
    with database(db) as engine, engine.begin() as conn:
        rows = [conference_json(r) for r in conference_store.list_conferences(conn, state)]
    if as_json:
        print_json(rows)
        return
    table = Table("event", "provider", "conference id", "state", "join url", "last synced")
    for r in rows:
        table.add_row(r["event_id"], r["provider"], r["conference_id"], r["state"], r["join_url"] or "",
                      jsonable(r["last_synced_at"]) or "")
    console.print(table)


@conflicts_app.command("resolve")
def conflicts_resolve(
    conflict_id: str,
    keep: Annotated[str, typer.Option(help="Which side wins: local or remote.")],
    remote_etag: Annotated[str | None, typer.Option(
        help="Refuse if the remote side is no longer the one with this ETag (as `calsync conflicts` showed it).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Settle a conflict; the held changes are released and the next sync carries the outcome."""
    if keep not in ("local", "remote"):
        raise fail("--keep must be local or remote", 2)
    with database(db) as engine:
        try:
            row = resolve_conflict(engine, conflict_id, keep=keep, remote_etag=remote_etag)
        except (ConflictResolved, ConflictChanged) as exc:
            raise fail(str(exc)) from exc
    if as_json:
        print_json(row)
    else:
        console.print(f"conflict {conflict_id} resolved: kept {keep}; run `calsync sync` to carry it out",
                      highlight=False)


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create or migrate the schema to the newest revision."""
    with database(db):
        pass
    console.print("database is at the newest schema")


# --- service ----------------------------------------------------------------------------


def worker_settings(config: str | None, public_url: str | None, poll_interval: float | None,
                    lease_seconds: float | None) -> WorkerSettings:
    """Flags win over CALSYNC_* settings, which win over the defaults."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise fail(str(exc), 2) from exc
    defaults = WorkerSettings()

    def number(flag: float | None, key: str, default: float) -> float:
        if flag is not None:
            return flag
        try:
            return float(settings.get(key, default))
        except ValueError as exc:
            raise fail(f"{key} must be a number, not {settings[key]!r}", 2) from exc

    url = public_url or settings.get("CALSYNC_PUBLIC_URL") or None
    if url and not url.startswith(("http://", "https://")):
        raise fail(f"--public-url must be an http(s) URL, not {url!r}", 2)
    return WorkerSettings(
        poll_interval=number(poll_interval, "CALSYNC_POLL_INTERVAL", defaults.poll_interval),
        lease_seconds=number(lease_seconds, "CALSYNC_LEASE_SECONDS", defaults.lease_seconds),
        public_url=url,
    )


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
    public_url: Annotated[Optional[str], typer.Option(
        help="Base URL providers call back (default $CALSYNC_PUBLIC_URL); without it, polling only.")] = None,
    no_workers: Annotated[bool, typer.Option("--no-workers", help="Serve the API only; run `calsync worker` elsewhere.")] = False,
    workers: Annotated[int, typer.Option(help="Worker threads in this process (keep 1 on SQLite).")] = 1,
    poll_interval: Annotated[Optional[float], typer.Option(help="Seconds between polls of a quiet calendar.")] = None,
    lease_seconds: Annotated[Optional[float], typer.Option(help="How long a claim on work lasts.")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Run the service: REST API, webhook receivers and (unless --no-workers) background workers.
    On SQLite it leaves a record beside the database, and `calsync sync` then asks it to do the work."""
    import signal

    from calsync.emulators.server import bind_socket, serve_forever
    from calsync.service import runtime
    from calsync.service.app import WorkerPool, create_app
    from calsync.service.metrics import Metrics
    from calsync.store.urls import default_url, sqlite_file

    settings = worker_settings(config, public_url, poll_interval, lease_seconds)
    adapters = conference_adapters(config)
    database_file = sqlite_file(db or default_url())
    token = runtime.new_token() if database_file else None
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc}", 2) from exc
    reach = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # a wildcard is reached on loopback
    url = f"http://{reach if ':' not in reach else f'[{reach}]'}:{sock.getsockname()[1]}"
    signal.signal(signal.SIGTERM, _interrupt)  # uvicorn stops cleanly on SIGTERM only while it runs
    with database(db) as engine:
        metrics = Metrics()
        pool = None if no_workers else WorkerPool(engine, settings, adapters, metrics, count=max(1, workers))
        app_ = create_app(engine, metrics, wake=pool.wake if pool else None, adapters=adapters,
                          control_token=token, poll_interval=settings.poll_interval)
        if database_file and token:
            record = runtime.ServiceRecord(url=url, pid=os.getpid(), token=token,
                                           config=os.path.realpath(config) if config else None)
            try:
                runtime.claim(database_file, record)
            except RuntimeError as exc:
                raise fail(str(exc), 2) from exc
        if pool:
            pool.start()
        err.print(f"calsync on {url} (API /api/v1, webhooks /webhooks/google, metrics /metrics); "
                  f"workers: {0 if pool is None else pool.count}; notifications: {settings.public_url or 'off (polling)'}")
        settle_heap()
        try:
            serve_forever(app_, host, sock=sock)
        except KeyboardInterrupt:
            pass
        finally:
            if database_file:
                runtime.release(database_file, os.getpid())
            if pool:
                pool.stop()
            app_.state.providers.close()


@app.command("worker")
def worker(
    concurrency: Annotated[int, typer.Option(help="Worker threads in this process.")] = 1,
    public_url: Annotated[Optional[str], typer.Option(help="Base URL providers call back, for channel set-up.")] = None,
    poll_interval: Annotated[Optional[float], typer.Option(help="Seconds between polls of a quiet calendar.")] = None,
    lease_seconds: Annotated[Optional[float], typer.Option(help="How long a claim on work lasts.")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
) -> None:
    """Run workers only (scale-out): they share the database's work with every other worker."""
    import signal
    import threading

    from calsync.service.app import WorkerPool
    from calsync.service.metrics import Metrics

    settings = worker_settings(config, public_url, poll_interval, lease_seconds)
    adapters = conference_adapters(config)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with database(db) as engine:
        pool = WorkerPool(engine, settings, adapters, Metrics(), count=max(1, concurrency))
        settle_heap()
        pool.start()
        err.print(f"calsync worker: {pool.count} thread(s); Ctrl-C or SIGTERM to stop")
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            pool.stop()


# --- demo -------------------------------------------------------------------------------


@app.command("demo")
def demo(
    db: DbOption = None,
    port: Annotated[int, typer.Option(help="Port of the demo service: web page, API, webhooks (0: any free port).")] = 8000,
    host: Annotated[str, typer.Option(help="Address the demo service listens on.")] = "127.0.0.1",
    once: Annotated[bool, typer.Option("--once", help="One-shot run: sync, remote edits, re-sync, print, exit.")] = False,
    keep_running: Annotated[bool, typer.Option(hidden=True, help="Kept for old scripts: serving is the default.")] = False,
) -> None:
    """The whole service on SQLite with emulated Google accounts and Zoom, sample data, until Ctrl-C."""
    from calsync.demo import run_demo

    run_demo(db, host=host, port=port, once=once, console=console)


if __name__ == "__main__":  # pragma: no cover
    app()
