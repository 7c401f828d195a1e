"""A one-shot `calsync sync` spends the accounts' request budgets as the workers do (engine/sync.py
over scheduler.AccountRequests; budgets.py, kept on the account row): with a tiny budget, the
emulator's request log never shows one user sending more than the budget allows in any window, on
SQLite for the CLI alone, and on PostgreSQL for a `calsync worker` and the CLI syncing one account's
bindings at the same time (they share its bucket)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

import calsync
from calsync.store import accounts as account_store
from calsync.store.db import open_engine
from calsync.store.schema import bindings

RATE, BURST = 2.0, 2  # the budget every process is given: far below what a sync of a dozen bindings asks
SPREAD = 0.5  # seconds between a request being sent and the log stamping it, at most (a loaded machine)
USER = "budgeted"
LATENCY_MS = 20
SRC = str(Path(calsync.__file__).resolve().parents[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    env["CALSYNC_REQUEST_BUDGET_GOOGLE"] = f"{RATE}/{BURST}"
    env["PYTHONPATH"] = os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])
    return env


def _calendars(google_url: str, n: int) -> list[str]:
    api = httpx.Client(base_url=f"{google_url}/calendar/v3", headers={"Authorization": f"Bearer {USER}"}, timeout=30)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).isoformat().replace("+00:00", "Z")
    made = []
    for i in range(n):
        calendar = api.post("/calendars", json={"summary": f"calendar {i}"}).raise_for_status().json()["id"]
        httpx.post(
            f"{google_url}/emulator/calendars/{calendar}/seed",
            json={"count": 2, "start": start, "days": 14, "seed": i + 1},
        ).raise_for_status()
        made.append(calendar)
    return made


def _bind(engine: Engine, google_url: str, calendars: list[str]) -> list[str]:
    with engine.begin() as conn:
        account = account_store.create_account(conn, "google", USER, google_url, {"token": USER})
        return [
            account_store.create_binding(conn, account_store.create_calendar(conn, c), account, c, "two-way")
            for c in calendars
        ]


def _start_logging(google_url: str) -> None:
    httpx.delete(f"{google_url}/emulator/requests").raise_for_status()
    httpx.post(f"{google_url}/emulator/faults", json={"latency_ms": LATENCY_MS}).raise_for_status()


def _user_stamps(google_url: str) -> list[float]:
    log = httpx.get(f"{google_url}/emulator/requests").raise_for_status().json()["requests"]
    return sorted(entry["epoch"] for entry in log if (entry["user"] or "").split("@")[0] == USER)


def _assert_within_budget(stamps: list[float], context: Any = "") -> None:
    """In no window did the user send more than burst + rate x window (the log stamps a request when
    it is answered, after the injected latency: SPREAD covers that; unpaced, a dozen requests go in
    a fraction of a second)."""
    for i in range(len(stamps)):
        for j in range(i, len(stamps)):
            sent, window = j - i + 1, stamps[j] - stamps[i]
            assert sent <= BURST + RATE * (window + SPREAD), (
                f"{sent} requests in {window:.2f}s at {i}\n{context}\n{[round(s - stamps[0], 3) for s in stamps]}"
            )


def _synced(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(bindings).where(bindings.c.sync_token.is_not(None))
            ).scalar_one()
        )


def _cli_sync(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "calsync.cli", "sync", "--db", db_url, "--json", *args],
        env=_env(),
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_one_shot_sync_paces_an_account_to_its_budget(tmp_path: Path, google_url: str) -> None:
    db_url = f"sqlite:///{tmp_path / 'calsync.db'}"
    engine = open_engine(db_url)
    try:
        calendars = _calendars(google_url, 12)
        _bind(engine, google_url, calendars)
        _start_logging(google_url)
        started = time.monotonic()
        done = _cli_sync(db_url)
        took = time.monotonic() - started
        assert done.returncode == 0, done.stdout + done.stderr
        assert _synced(engine) == 12
        stamps = _user_stamps(google_url)
    finally:
        engine.dispose()
    assert len(stamps) >= 12  # a listing a binding at least
    _assert_within_budget(stamps, done.stderr)
    # the bucket held BURST; every further request waited its 1/RATE s
    assert took >= (len(stamps) - BURST) / RATE - SPREAD, (took, len(stamps))


@pytest.fixture()
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = open_engine(pg_url)
    yield engine
    engine.dispose()


def test_a_worker_and_a_one_shot_sync_share_an_account_s_budget(
    pg_engine: Engine, pg_url: str, google_url: str
) -> None:
    calendars = _calendars(google_url, 16)
    ids = _bind(pg_engine, google_url, calendars)
    _start_logging(google_url)
    worker = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "calsync.cli",
            "worker",
            "--db",
            pg_url,
            "--concurrency",
            "4",
            "--poll-interval",
            "3600",
        ],
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _synced(pg_engine) == 0:  # the worker is at work on the account's bindings
            assert time.monotonic() < deadline and worker.poll() is None, "the worker never synced"
            time.sleep(0.05)
        # the second half, named: whichever the worker holds the CLI waits for, then syncs again
        before = _synced(pg_engine)
        done = _cli_sync(pg_url, *[arg for b in ids[8:] for arg in ("--binding", b)])
        assert done.returncode == 0, done.stdout + done.stderr
        deadline = time.monotonic() + 60
        while _synced(pg_engine) < 16:
            assert time.monotonic() < deadline, "the worker did not finish the first half"
            time.sleep(0.1)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=60)[0]
    stamps = _user_stamps(google_url)
    assert worker.returncode == 0, output
    assert before < 16  # the CLI began while the worker still had the account's first syncs to do
    cli_requests = sum(r["requests"] for r in json.loads(done.stdout)["inbound"])
    assert cli_requests >= 8  # a listing each of the CLI's eight ...
    assert len(stamps) >= 8 + cli_requests  # ... and the worker's first syncs of the eight others
    _assert_within_budget(stamps, output + done.stderr)
