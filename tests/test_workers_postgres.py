"""Worker processes sharing one PostgreSQL database: leases, SKIP LOCKED, crashes; for each provider\nwith push notifications (Google, Graph)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from calsync.store import accounts as account_store
from calsync.store import scheduling
from calsync.store.db import open_engine
from calsync.store.schema import bindings
from tests.helpers import local_events, token_of
from tests.remotes import Remote


@pytest.fixture()
def engine(pg_url: str) -> Iterator[Engine]:
    engine = open_engine(pg_url)
    yield engine
    engine.dispose()


def start_worker(db_url: str, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    return subprocess.Popen(
        [sys.executable, "-m", "calsync.cli", "worker", "--db", db_url, "--poll-interval", "3600", *extra],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def stop(worker: subprocess.Popen[str]) -> str:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        out, _ = worker.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        out, _ = worker.communicate()
    return out or ""


def synced_count(engine: Engine) -> int:
    with engine.begin() as conn:
        return int(conn.execute(
            select(func.count()).select_from(bindings).where(bindings.c.sync_token.is_not(None))).scalar_one())


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_workers_share_fifty_dirty_bindings_without_doing_any_twice(
    engine: Engine, pg_url: str, push_remote: Remote
) -> None:
    remote = push_remote
    calendars = [remote.calendar] + [remote.new_calendar(f"calendar {n}") for n in range(49)]
    for calendar in calendars:
        remote.insert(f"event of {calendar}", calendar=calendar)
    later = datetime.now(UTC) + timedelta(hours=1)
    for calendar in calendars:
        binding = remote.bind(engine, calendar)
        with engine.begin() as conn:  # not due by the poll timer: only because a notification said so
            conn.execute(bindings.update().where(bindings.c.id == binding).values(next_poll_at=later))
            scheduling.mark_dirty(conn, binding)
    remote.clear_requests()
    remote.fault(latency_ms=60)  # each list takes a while, so the two workers really run side by side
    workers = [start_worker(pg_url, "--lease-seconds", "30") for _ in range(2)]
    try:
        wait_until(lambda: synced_count(engine) == 50, 90, "all 50 bindings to sync")
    finally:
        outputs = [stop(w) for w in workers]
    per_calendar = Counter(c for c in map(remote.listed_calendar, remote.requests()) if c)
    assert set(per_calendar) == set(calendars)
    assert set(per_calendar.values()) == {1}, f"some binding was synced twice: {per_calendar}\n{outputs}"
    with engine.begin() as conn:
        assert all(b["lease_owner"] is None for b in account_store.list_bindings(conn))


def test_a_worker_killed_mid_sync_is_replaced_after_its_lease(
    engine: Engine, pg_url: str, push_remote: Remote
) -> None:
    remote = push_remote
    page = remote.default_page_size
    remote.seed(page + page // 5)  # two pages at the size calsync asks for
    binding = remote.bind(engine)
    # the second page is fetched (prefetched) while the first is stored: its latency is the window in
    # which the kill must land, so it is long enough for a loaded machine to see the first page first
    remote.fault(latency_ms=4000)
    first = start_worker(pg_url, "--lease-seconds", "3")
    wait_until(lambda: len(local_events(engine, binding)) == page, 30, "the first page to be applied")
    first.send_signal(signal.SIGKILL)  # dies while fetching the second page, holding the lease
    first.wait(timeout=10)
    killed_at = time.monotonic()
    with engine.begin() as conn:
        assert account_store.get_binding(conn, binding)["lease_owner"] is not None
    assert token_of(engine, binding) is None
    second = start_worker(pg_url, "--lease-seconds", "3")
    try:
        wait_until(lambda: token_of(engine, binding) is not None, 60, "the second worker to finish")
    finally:
        stop(second)
    assert time.monotonic() - killed_at >= 1.0
    stored = local_events(engine, binding)  # asserts no remote id maps to two events
    assert set(stored) == set(remote.titles())
    assert len(stored) == page + page // 5
