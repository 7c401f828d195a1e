"""Conference sync benchmark: N events with Zoom conferences, 10% of them changed remotely, one sync.

Of the changed events, most are moved or renamed (relevant to the meeting), some only change
colour (irrelevant) and some are deleted. The sync must call Zoom once per relevant change and
never for the others, whatever the number of events it lists.

    python bench/conferences.py [--events 1000] [--changed 0.10]
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from calsync.conferencing.zoom import ZoomAdapter
from calsync.emulators.google import GoogleEmulator
from calsync.emulators.google import create_app as google_app
from calsync.emulators.server import serve_in_thread
from calsync.emulators.zoom import ZoomEmulator
from calsync.emulators.zoom import create_app as zoom_app
from calsync.engine.conferences import ConferenceEngine
from calsync.engine.pool import ProviderPool
from calsync.engine.sync import sync_once
from calsync.store import accounts as account_store
from calsync.store import events as event_store
from calsync.store.db import open_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--changed", type=float, default=0.10)
    args = parser.parse_args()
    google, zoom = serve_in_thread(google_app(GoogleEmulator())), serve_in_thread(zoom_app(ZoomEmulator()))
    try:
        run(google.url, zoom.url, args.events, args.changed)
    finally:
        google.stop()
        zoom.stop()


def run(google_url: str, zoom_url: str, count: int, changed_share: float) -> None:
    api = httpx.Client(base_url=f"{google_url}/calendar/v3", headers={"Authorization": "Bearer bench"})
    calendar = api.get("/calendars/primary").json()["id"]
    httpx.post(f"{google_url}/emulator/calendars/{calendar}/seed",
               json={"count": count, "start": "2026-12-01T00:00:00Z", "days": 60, "seed": 3}).raise_for_status()
    engine = open_engine(f"sqlite:///{Path(tempfile.mkdtemp(prefix='calsync-bench-')) / 'bench.db'}")
    with engine.begin() as conn:
        account = account_store.create_account(conn, "google", "bench", google_url, {"token": "bench"})
        local = account_store.create_calendar(conn, "bench")
        account_store.create_binding(conn, local, account, calendar, "two-way")
    zoom = ZoomAdapter.from_settings({
        "CALSYNC_ZOOM_BASE_URL": f"{zoom_url}/v2", "CALSYNC_ZOOM_OAUTH_URL": f"{zoom_url}/oauth/token",
        "CALSYNC_ZOOM_ACCOUNT_ID": "a", "CALSYNC_ZOOM_CLIENT_ID": "c", "CALSYNC_ZOOM_CLIENT_SECRET": "s",
    })
    assert zoom is not None
    adapters = {"zoom": zoom}
    sync_once(engine, adapters=adapters)

    started = time.perf_counter()
    pool = ProviderPool(engine)
    conferences = ConferenceEngine(engine, adapters, pool)
    with engine.begin() as conn:
        event_ids = [e["id"] for e in event_store.list_events(conn, calendar_id=local)]
    for event_id in event_ids:
        conferences.create(event_id, "zoom")
    pool.close()
    create_seconds = time.perf_counter() - started
    sync_once(engine, adapters=adapters)  # our own write-backs echo once; they cost Zoom nothing

    remote_ids = [e["id"] for e in api.get(f"/calendars/{calendar}/events", params={"maxResults": 2500}).json()["items"]]
    rng = random.Random(7)
    touched = rng.sample(remote_ids, int(len(remote_ids) * changed_share))
    moved, recoloured, deleted = 0, 0, 0
    for n, remote_id in enumerate(touched):
        if n % 10 == 8:
            api.patch(f"/calendars/{calendar}/events/{remote_id}", json={"colorId": "7"})
            recoloured += 1
        elif n % 10 == 9:
            api.delete(f"/calendars/{calendar}/events/{remote_id}")
            deleted += 1
        else:
            start = datetime(2026, 12, 15, 9, tzinfo=UTC) + timedelta(minutes=15 * n)
            api.patch(f"/calendars/{calendar}/events/{remote_id}", json={
                "start": {"dateTime": start.isoformat()}, "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
            })
            moved += 1

    httpx.delete(f"{zoom_url}/emulator/requests").raise_for_status()
    httpx.delete(f"{google_url}/emulator/requests").raise_for_status()
    started = time.perf_counter()
    report = sync_once(engine, adapters=adapters)
    seconds = time.perf_counter() - started
    zoom_log = httpx.get(f"{zoom_url}/emulator/requests").json()["requests"]
    calls = [r for r in zoom_log if r["path"].startswith("/v2/")]
    google_requests = len(httpx.get(f"{google_url}/emulator/requests").json()["requests"])
    by_method: dict[str, int] = {}
    for call in calls:
        by_method[call["method"]] = by_method.get(call["method"], 0) + 1
    print(f"events with conferences          {count} (created in {create_seconds:.1f}s, "
          f"{count / create_seconds:.0f}/s)")
    print(f"changed remotely                 {len(touched)}: {moved} moved, {recoloured} colour only, {deleted} deleted")
    print(f"relevant changes                 {moved + deleted}")
    print(f"conference API calls in the sync {len(calls)} {by_method}")
    print(f"calendar requests in the sync    {google_requests} (inbound: "
          f"{sum(r.requests for r in report.inbound)}, write-backs: "
          f"{google_requests - sum(r.requests for r in report.inbound)})")
    print(f"sync wall time                   {seconds:.2f}s")
    print(f"conference outcome               {report.conferences.as_dict() | {'errors': len(report.conferences.errors)}}")
    zoom.close()


if __name__ == "__main__":
    main()
