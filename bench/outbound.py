"""Outbound benchmark: N local creates, then N local updates, pushed to the Google emulator on loopback.

Prints writes/s, remote requests per change, and the p50/p99 time from the local commit to the
remote write. The emulator runs in its own process.

    python bench/outbound.py [--events 5000]
"""
from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from calsync.engine import local
from calsync.engine.outbound import Pusher
from calsync.providers.google import GoogleProvider
from calsync.store import accounts as account_store
from calsync.store.db import open_engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def push_all(engine, provider: GoogleProvider, binding: str, committed: dict[str, float]) -> tuple[float, list[float]]:  # type: ignore[no-untyped-def]
    """Drain the outbox; returns (seconds, per-change latency from local commit to remote write)."""
    latencies: list[float] = []

    def written(event_id: str, _what: str) -> None:
        latencies.append(time.time() - committed[event_id])

    started = time.perf_counter()
    result = Pusher(engine, provider, binding, after_write=written).run()
    assert result.status == "ok", result.message
    return time.perf_counter() - started, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen([sys.executable, "-m", "calsync.cli", "emulator", "google", "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/emulator/requests", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        run(base, args.events)
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


def run(base: str, count: int) -> None:
    calendar_id = httpx.get(f"{base}/calendar/v3/calendars/primary", headers={"Authorization": "Bearer bench"}).json()["id"]
    engine = open_engine(f"sqlite:///{Path(tempfile.mkdtemp(prefix='calsync-bench-')) / 'bench.db'}")
    with engine.begin() as conn:
        account = account_store.create_account(conn, "google", "bench", base, {"token": "bench"})
        calendar = account_store.create_calendar(conn, "bench")
        binding = account_store.create_binding(conn, calendar, account, calendar_id, "two-way")
    provider = GoogleProvider("bench", base)
    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    committed: dict[str, float] = {}
    ids: list[str] = []
    t0 = time.perf_counter()
    for n in range(count):
        at = start + timedelta(minutes=30 * n)
        change = local.create_event(engine, calendar, {
            "title": f"Bench {n}", "start": at.isoformat(), "end": (at + timedelta(minutes=30)).isoformat(),
            "attendees": [f"guest{n % 7}@example.com"]})
        committed[change.event_id] = time.time()
        ids.append(change.event_id)
    local_seconds = time.perf_counter() - t0
    before = provider.request_count
    create_seconds, create_latency = push_all(engine, provider, binding, committed)
    create_requests = provider.request_count - before

    for n, event_id in enumerate(ids):
        local.update_event(engine, event_id, {"title": f"Bench {n} (moved)", "location": "Room 2"}, None)
        committed[event_id] = time.time()
    before = provider.request_count
    update_seconds, update_latency = push_all(engine, provider, binding, committed)
    update_requests = provider.request_count - before
    provider.close()
    remote = httpx.get(f"{base}/calendar/v3/calendars/{calendar_id}/events", params={"maxResults": 2500},
                       headers={"Authorization": "Bearer bench"}).json()
    print(f"local changes committed      {count} creates in {local_seconds:.1f}s ({count / local_seconds:.0f}/s)")
    for name, seconds, requests, lat in (("creates", create_seconds, create_requests, create_latency),
                                         ("updates", update_seconds, update_requests, update_latency)):
        print(f"pushed {name:<8}             {count} in {seconds:.1f}s = {count / seconds:.0f} writes/s, "
              f"{requests / count:.2f} requests/change, commit->remote p50 {statistics.median(lat):.1f}s "
              f"p99 {percentile(lat, 0.99):.1f}s (queue drained after all commits)")
    print(f"remote check                 first page holds {len(remote['items'])} events, "
          f"all moved: {all(e['summary'].endswith('(moved)') for e in remote['items'])}")


if __name__ == "__main__":
    main()
