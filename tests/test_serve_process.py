"""`calsync serve --no-workers` as a real process, settled by `calsync sync` runs: the deterministic
two-step a test (or an operator) uses to queue local edits, change the remote side, then settle."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from calsync.store.db import open_engine
from tests.helpers import GoogleApi, api_key, google_account_bound


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    done = subprocess.run([sys.executable, "-m", "calsync.cli", *args, "--db", str(db)], env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    return done


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "calsync.db"
    run("db", "upgrade", db=db)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    server = subprocess.Popen([sys.executable, "-m", "calsync.cli", "serve", "--no-workers", "--port", str(port),
                               "--db", str(db)], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url, db
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_api_edits_are_settled_by_calsync_sync(served: tuple[str, Path], google_url: str) -> None:
    url, db = served
    api = GoogleApi(google_url, "frank")
    calendar = api.primary_id()
    kept = api.insert(calendar, "Kept remote")
    # the account, binding and API key made in this process, as `account add`, `calendar bind` and
    # `apikey create` make them (tests/test_cli*.py run those commands); the subject is serve + sync
    engine = open_engine(f"sqlite:///{db}")
    try:
        google_account_bound(engine, google_url, "frank", calendar)
        key = api_key(engine, "write")
    finally:
        engine.dispose()
    run("sync", db=db)
    http = httpx.Client(headers={"Authorization": f"Bearer {key}"})
    (local_calendar,) = http.get(f"{url}/api/v1/calendars").json()["calendars"]

    created = http.post(f"{url}/api/v1/events", json={
        "calendar_id": local_calendar["id"], "title": "Made through the API",
        "start": "2026-12-04T10:00:00Z", "end": "2026-12-04T11:00:00Z"})
    assert created.status_code == 201
    event: dict[str, Any] = created.json()
    assert [s["state"] for s in event["sync"]] == ["pending"]
    api.patch(calendar, kept["id"], summary="Kept remote (edited)")
    # the insert's answer is lost once: the retry meets 409 and adopts the copy, no duplicate
    httpx.post(f"{google_url}/emulator/faults",
               json={"status": 503, "count": 1, "after_commit": True, "methods": ["POST"]}).raise_for_status()

    run("sync", db=db)  # one deterministic step: inbound, then outbox, then conferences
    assert [e["id"] for e in api.list_all(calendar) if e["summary"] == "Made through the API"] == [event["id"]]
    titles = {e["summary"] for e in api.list_all(calendar)}
    assert titles == {"Made through the API", "Kept remote (edited)"}
    fetched = http.get(f"{url}/api/v1/events/{event['id']}").json()
    assert [s["state"] for s in fetched["sync"]] == ["synced"]
    listed = http.get(f"{url}/api/v1/events", params={"calendar_id": local_calendar["id"]}).json()["events"]
    assert {e["title"] for e in listed} == titles

    stale = http.patch(f"{url}/api/v1/events/{event['id']}", json={"title": "x"}, headers={"If-Match": '"0-x"'})
    assert stale.status_code == 412
    moved = http.patch(f"{url}/api/v1/events/{event['id']}", json={"title": "Moved by the API"},
                        headers={"If-Match": fetched["etag"]})
    assert moved.status_code == 200
    run("sync", db=db)
    assert api.http.get(f"/calendars/{calendar}/events/{event['id']}").json()["summary"] == "Moved by the API"
    status = http.get(f"{url}/api/v1/status").json()
    assert status["bindings"][0]["outbox_backlog"] == 0 and status["outbox_backlog"] == 0
