"""`calsync demo`: emulated Google accounts with sample data, bound and synced end to end."""
from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from calsync.conferencing.zoom import ZoomAdapter
from calsync.emulators.google import GoogleEmulator, create_app
from calsync.emulators.server import RunningServer, serve_in_thread
from calsync.emulators.zoom import ZoomEmulator
from calsync.emulators.zoom import create_app as create_zoom_app
from calsync.engine.conferences import ConferenceEngine
from calsync.engine.pool import ProviderPool
from calsync.engine.sync import sync_once
from calsync.providers.google import GoogleProvider
from calsync.store import repo
from calsync.store.db import open_engine

# (user token, calendar summary or None for the primary calendar, events to seed)
SAMPLE = (
    ("alice", None, 240),
    ("alice", "Team offsites", 90),
    ("bob", None, 150),
)


def _seed(base: str, start: datetime) -> list[tuple[str, str]]:
    """Create the sample calendars on the emulator; returns (token, calendar id) pairs."""
    made: list[tuple[str, str]] = []
    for n, (token, summary, count) in enumerate(SAMPLE):
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as api:
            if summary is None:
                calendar_id = api.get("/calendar/v3/calendars/primary").raise_for_status().json()["id"]
            else:
                calendar_id = api.post(
                    "/calendar/v3/calendars", json={"summary": summary, "timeZone": "Europe/Berlin"}
                ).raise_for_status().json()["id"]
        httpx.post(f"{base}/emulator/calendars/{calendar_id}/seed", json={
            "count": count, "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "days": 42, "seed": n + 1,
            "recurring_every": 30,
        }).raise_for_status()
        made.append((token, calendar_id))
    return made


def _remote_edits(base: str, token: str, calendar_id: str, console: Console) -> None:
    """Change the remote side the way another Google client would: one insert, one edit, one delete."""
    with httpx.Client(base_url=f"{base}/calendar/v3", headers={"Authorization": f"Bearer {token}"}) as api:
        path = f"/calendars/{calendar_id}/events"
        items = api.get(path, params={"maxResults": 3}).raise_for_status().json()["items"]
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
        api.post(path, json={
            "summary": "Coffee with the calsync team",
            "start": {"dateTime": start.isoformat()}, "end": {"dateTime": (start + timedelta(minutes=30)).isoformat()},
        }).raise_for_status()
        api.patch(f"{path}/{items[0]['id']}", json={"summary": items[0].get("summary", "") + " (moved online)"},
                  headers={"If-Match": items[0]["etag"]}).raise_for_status()
        api.delete(f"{path}/{items[1]['id']}").raise_for_status()
    console.print(f"  remote edits on {calendar_id}: 1 created, 1 renamed, 1 deleted (as another Google client)")


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


def _add_conferences(engine: Engine, adapter: ZoomAdapter, console: Console, count: int = 12) -> list[dict]:  # type: ignore[type-arg]
    """Zoom meetings for the next few single events of the first calendar."""
    with engine.begin() as conn:
        first_calendar = repo.list_calendars(conn)[0]["id"]
        upcoming = [
            r for r in repo.list_events(conn, calendar_id=first_calendar,
                                        start=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            if r["recurrence"] is None and r["recurring_event_id"] is None
        ][:count]
    pool = ProviderPool(engine)
    made = [ConferenceEngine(engine, {"zoom": adapter}, pool).create(r["id"], "zoom") for r in upcoming]
    pool.close()
    console.print(f"  {len(made)} Zoom meetings created and written onto their Google events")
    return made


def _move_one(base: str, engine: Engine, conference: dict, console: Console) -> str:  # type: ignore[type-arg]
    """Move an event with a meeting, as its owner would in Google Calendar; returns the remote id."""
    with engine.begin() as conn:
        event = repo.get_events(conn, [conference["event_id"]])[0]
        binding = repo.get_binding(conn, event["links"][0]["binding_id"])
        account = repo.get_account(conn, binding["account_id"])
    remote_id = event["links"][0]["remote_id"]
    start = datetime.fromisoformat(event["start"].replace("Z", "+00:00")) + timedelta(hours=2)
    with httpx.Client(base_url=f"{base}/calendar/v3",
                      headers={"Authorization": f"Bearer {account.credentials['token']}"}) as api:
        api.patch(f"/calendars/{binding['remote_calendar_id']}/events/{remote_id}", json={
            "summary": event["title"] + " (moved)", "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(minutes=45)).isoformat()},
        }).raise_for_status()
    console.print(f"  moved '{event['title']}' by two hours in Google Calendar")
    return remote_id


def _meeting(zoom: RunningServer, adapter: ZoomAdapter, conference_id: str) -> str:
    got = adapter.get(conference_id)
    details = got.details if got else {}
    return f"{details.get('topic')} at {details.get('start_time')} for {details.get('duration')} min"


def run_demo(db: str | None, *, port: int = 0, keep_running: bool = False, console: Console) -> None:
    db_url = db or f"sqlite:///{Path(tempfile.mkdtemp(prefix='calsync-demo-')) / 'calsync.db'}"
    server = serve_in_thread(create_app(GoogleEmulator()), port=port)
    zoom = serve_in_thread(create_zoom_app(ZoomEmulator()))
    adapter = _zoom_adapter(zoom)
    try:
        console.print(f"[bold]calsync demo[/bold]\n  Google Calendar emulator: {server.url}\n"
                      f"  Zoom emulator: {zoom.url}\n  database: {db_url}")
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=7)
        calendars = _seed(server.url, start)
        engine = open_engine(db_url)
        accounts: dict[str, str] = {}
        with engine.begin() as conn:
            for token, calendar_id in calendars:
                if token not in accounts:
                    accounts[token] = repo.create_account(conn, "google", f"{token} (emulated Google)", server.url,
                                                          {"token": token})
        for token, calendar_id in calendars:
            provider = GoogleProvider(token, server.url)
            info = {c.remote_id: c for c in provider.list_calendars()}[calendar_id]
            provider.close()
            with engine.begin() as conn:
                local = repo.create_calendar(conn, info.name, info.time_zone, info.color)
                repo.create_binding(conn, local, accounts[token], calendar_id, "two-way")
        console.print(f"  {len(accounts)} accounts, {len(calendars)} calendars bound")
        t0 = time.perf_counter()
        first = sync_once(engine, adapters={"zoom": adapter})
        console.print(_results_table(f"initial sync ({time.perf_counter() - t0:.2f}s)", first.inbound))
        conferences = _add_conferences(engine, adapter, console)
        _remote_edits(server.url, *calendars[0], console)
        _move_one(server.url, engine, conferences[0], console)
        console.print(f"  Zoom meeting before the sync: {_meeting(zoom, adapter, conferences[0]['conference_id'])}")
        second = sync_once(engine, adapters={"zoom": adapter})
        console.print(_results_table("incremental sync (one request per calendar with nothing new)", second.inbound))
        c = second.conferences
        console.print(f"  conference work: {c.updated} updated, {c.deleted} deleted, {c.unchanged} unchanged "
                      f"({adapter.request_count} Zoom requests in all)")
        console.print(f"  Zoom meeting after the sync:  {_meeting(zoom, adapter, conferences[0]['conference_id'])}")
        with engine.begin() as conn:
            total = repo.count_events(conn)
            upcoming = [
                r for r in repo.list_events(conn, start=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
                if r["recurrence"] is None
            ][:8]
        table = Table("start", "title", "conference", title=f"{total} events in the local store; next few")
        for r in upcoming:
            table.add_row(r["start"], r["title"], (r["conference"] or {}).get("join_url") or "")
        console.print(table)
        console.print(f"Explore: calsync events list --db {db_url}\n         calsync status --db {db_url}\n"
                      f"         calsync conference list --db {db_url}")
        engine.dispose()
        if keep_running:
            console.print("Emulators keep running; Google tokens: alice, bob. Ctrl-C to stop.")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        adapter.close()
        zoom.stop()
        server.stop()
