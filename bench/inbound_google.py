"""Inbound sync benchmark against the Google emulator on loopback.

Initial full sync of calendars of several sizes, then an incremental sync of N remote changes.
Prints events/s, requests per sync and peak RSS of the syncing process. The emulator runs in its
own process and each size is synced by a fresh child process, so the RSS figures are the sync's own.

    python bench/inbound_google.py [--sizes 10000,100000] [--changes 100] [--page-size 2500]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(base_url: str, calendar_id: str, changes: int, page_size: int) -> None:
    """Runs in a fresh process: full sync, N remote changes, incremental sync; prints one JSON line."""
    from calsync.engine.inbound import sync_binding
    from calsync.providers.google import GoogleProvider
    from calsync.store import repo
    from calsync.store.db import open_engine

    folder = Path(tempfile.mkdtemp(prefix="calsync-bench-"))
    engine = open_engine(f"sqlite:///{folder / 'bench.db'}")
    with engine.begin() as conn:
        account = repo.create_account(conn, "google", "bench", base_url, {"token": "bench"})
        calendar = repo.create_calendar(conn, "bench")
        binding = repo.create_binding(conn, calendar, account, calendar_id, "two-way")
    rss_before = peak_rss_mb()
    provider = GoogleProvider("bench", base_url, page_size=page_size)
    started = time.perf_counter()
    full = sync_binding(engine, provider, binding)
    full_seconds = time.perf_counter() - started
    rss_full = peak_rss_mb()
    assert full.status == "ok", full.message

    api = httpx.Client(base_url=f"{base_url}/calendar/v3", headers={"Authorization": "Bearer bench"})
    first = api.get(f"/calendars/{calendar_id}/events", params={"maxResults": changes}).json()["items"]
    for n, item in enumerate(first):
        if n % 4 == 3:
            api.delete(f"/calendars/{calendar_id}/events/{item['id']}")
        else:
            api.patch(f"/calendars/{calendar_id}/events/{item['id']}", json={"summary": f"changed {n}"})
    started = time.perf_counter()
    incremental = sync_binding(engine, provider, binding)
    incremental_seconds = time.perf_counter() - started
    assert incremental.status == "ok", incremental.message
    with engine.begin() as conn:
        stored = repo.count_events(conn)
    print(json.dumps({
        "events": full.created, "stored": stored, "full_seconds": full_seconds,
        "full_events_per_s": full.created / full_seconds, "full_requests": full.requests, "full_pages": full.pages,
        "incremental_changes": incremental.updated + incremental.deleted + incremental.created,
        "incremental_seconds": incremental_seconds, "incremental_requests": incremental.requests,
        "rss_before_mb": rss_before, "peak_rss_mb": peak_rss_mb(), "rss_after_full_mb": rss_full,
        "db_mb": (folder / "bench.db").stat().st_size / 2**20,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--page-size", type=int, default=2500)
    parser.add_argument("--child", nargs=2, metavar=("BASE_URL", "CALENDAR_ID"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.changes, args.page_size)
        return

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen(
        [sys.executable, "-m", "calsync.cli", "emulator", "google", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/emulator/requests", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        print(f"{'events':>8} {'full s':>7} {'events/s':>9} {'req':>4} {'pages':>5} "
              f"{'incr changes':>12} {'incr s':>7} {'incr req':>8} {'RSS start MB':>12} {'peak RSS MB':>11} {'db MB':>6}")
        for size in (int(s) for s in args.sizes.split(",")):
            httpx.post(f"{base}/emulator/reset").raise_for_status()
            calendar_id = httpx.get(f"{base}/calendar/v3/calendars/primary",
                                    headers={"Authorization": "Bearer bench"}).json()["id"]
            httpx.post(f"{base}/emulator/calendars/{calendar_id}/seed", timeout=600, json={
                "count": size, "start": "2026-01-01T00:00:00Z", "days": 365, "seed": 1,
                "conference_every": 10, "recurring_every": 50,
            }).raise_for_status()
            out = subprocess.run(
                [sys.executable, __file__, "--child", base, calendar_id, "--changes", str(args.changes),
                 "--page-size", str(args.page_size)],
                check=True, capture_output=True, text=True, env=dict(os.environ),
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{r['events']:>8} {r['full_seconds']:>7.1f} {r['full_events_per_s']:>9.0f} {r['full_requests']:>4} "
                  f"{r['full_pages']:>5} {r['incremental_changes']:>12} {r['incremental_seconds']:>7.2f} "
                  f"{r['incremental_requests']:>8} {r['rss_before_mb']:>12.0f} {r['peak_rss_mb']:>11.0f} "
                  f"{r['db_mb']:>6.0f}", flush=True)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


if __name__ == "__main__":
    main()
