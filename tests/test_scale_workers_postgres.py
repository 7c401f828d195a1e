"""Four `calsync worker` processes on one PostgreSQL database, 500 bindings over 100 Google accounts,
random notifications and a worker killed mid-sync: every binding converges, no binding is leased to a
second worker while another's lease on it still runs (a trigger in the database records every lease
change), and no account sends more requests than its budget allows (the emulator's request log).
Also: a rate-limit answer on one account empties that account's bucket only."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, text

from calsync.budgets import RequestBudget
from calsync.engine.scheduler import Worker, WorkerSettings
from calsync.store import accounts as account_store
from calsync.store import scheduling
from calsync.store.db import open_engine
from calsync.store.schema import accounts, bindings, event_links, events

ACCOUNTS = 100
PER_ACCOUNT = 5
EVENTS = 2
RATE, BURST = 4.0, 6  # the budget the workers are given: tight enough that the bucket runs dry
LATENCY_MS = 20


@pytest.fixture()
def engine(pg_url: str) -> Iterator[Engine]:
    engine = open_engine(pg_url)
    yield engine
    engine.dispose()


LEASE_AUDIT = """
CREATE TABLE lease_audit (binding_id text, old_owner text, new_owner text, old_until timestamptz,
                          at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION audit_lease() RETURNS trigger AS $$
BEGIN
  IF NEW.lease_owner IS NOT NULL AND NEW.lease_owner IS DISTINCT FROM OLD.lease_owner THEN
    INSERT INTO lease_audit (binding_id, old_owner, new_owner, old_until)
    VALUES (NEW.id, OLD.lease_owner, NEW.lease_owner, OLD.lease_until);
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER audit_lease BEFORE UPDATE ON bindings FOR EACH ROW EXECUTE FUNCTION audit_lease();
"""


def start_worker(db_url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    env["CALSYNC_REQUEST_BUDGET_GOOGLE"] = f"{RATE}/{BURST}"
    return subprocess.Popen(
        [sys.executable, "-m", "calsync.cli", "worker", "--db", db_url, "--concurrency", "8",
         "--poll-interval", "3600", "--lease-seconds", "4"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def stop(worker: subprocess.Popen[str]) -> str:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        out, _ = worker.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        worker.kill()
        out, _ = worker.communicate()
    return out or ""


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def count(engine: Engine, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(bindings).where(*where)).scalar_one())


def test_four_workers_share_500_bindings_under_budgets_with_notifications_and_a_killed_worker(
    engine: Engine, pg_url: str, google_url: str
) -> None:
    api = httpx.Client(base_url=f"{google_url}/calendar/v3", timeout=30)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).isoformat().replace("+00:00", "Z")

    def make(n: int) -> tuple[str, str]:
        user = f"scale-{n // PER_ACCOUNT:03d}"
        calendar = api.post("/calendars", json={"summary": f"calendar {n}"},
                            headers={"Authorization": f"Bearer {user}"}).raise_for_status().json()["id"]
        httpx.post(f"{google_url}/emulator/calendars/{calendar}/seed",
                   json={"count": EVENTS, "start": start, "days": 14, "seed": n + 1}).raise_for_status()
        return user, calendar

    with ThreadPoolExecutor(8) as pool:
        remote = list(pool.map(make, range(ACCOUNTS * PER_ACCOUNT)))
    owners: dict[str, str] = {}
    binding_of: dict[str, str] = {}  # remote calendar -> binding
    with engine.begin() as conn:
        conn.exec_driver_sql(LEASE_AUDIT)
        for user, calendar in remote:
            if user not in owners:
                owners[user] = account_store.create_account(conn, "google", user, google_url, {"token": user})
            local = account_store.create_calendar(conn, calendar)
            binding_of[calendar] = account_store.create_binding(conn, local, owners[user], calendar, "two-way")
    httpx.delete(f"{google_url}/emulator/requests").raise_for_status()
    httpx.post(f"{google_url}/emulator/faults", json={"latency_ms": LATENCY_MS}).raise_for_status()

    workers = [start_worker(pg_url) for _ in range(4)]
    outputs: list[str] = []
    changed: dict[str, str] = {}  # event id -> the title it was last given
    stop_load = threading.Event()

    def load() -> None:
        """Random notifications: rename an event of a random synced calendar, then mark its binding
        dirty as the webhook receiver would."""
        rng = random.Random(21)
        while not stop_load.is_set():
            with engine.connect() as conn:
                rows = conn.execute(
                    select(event_links.c.binding_id, event_links.c.remote_id, event_links.c.event_id,
                           bindings.c.remote_calendar_id, accounts.c.name)
                    .join(bindings, bindings.c.id == event_links.c.binding_id)
                    .join(accounts, accounts.c.id == bindings.c.account_id)
                    .order_by(func.random()).limit(5)).all()
            for binding, remote_id, event_id, calendar, user in rows:
                title = f"renamed {rng.random():.8f}"
                api.patch(f"/calendars/{calendar}/events/{remote_id}", json={"summary": title},
                          headers={"Authorization": f"Bearer {user}"}).raise_for_status()
                with engine.begin() as conn:
                    scheduling.mark_dirty(conn, binding)
                changed[event_id] = title
            stop_load.wait(0.5)

    loader = threading.Thread(target=load, daemon=True)
    try:
        wait_until(lambda: count(engine, bindings.c.sync_token.is_not(None)) >= 50, 60, "the first syncs")
        loader.start()
        victim = workers[0]
        # killed while it holds leases (the lease runs 4 s; the others take its bindings over after)
        wait_until(lambda: count(engine, bindings.c.lease_owner.like(f"%:{victim.pid}:%")) > 0, 30,
                   "the victim to hold a lease")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        wait_until(lambda: count(engine, bindings.c.sync_token.is_not(None)) == len(remote), 120,
                   "every binding's first sync")
        time.sleep(3)
        stop_load.set()
        loader.join(30)

        def converged() -> bool:
            if count(engine, bindings.c.dirty_at.is_not(None)) or count(engine, bindings.c.lease_owner.is_not(None)):
                return False
            with engine.connect() as conn:
                titles = dict(conn.execute(select(events.c.id, events.c.title)
                                           .where(events.c.id.in_(list(changed)))).all())
            return all(titles.get(e) == t for e, t in changed.items())

        wait_until(converged, 60, "every notified change to reach the store")
    finally:
        stop_load.set()
        outputs = [stop(w) for w in workers]
    assert changed, "the loader made no change"
    with engine.connect() as conn:
        per_binding = dict(conn.execute(select(event_links.c.binding_id, func.count())
                                        .group_by(event_links.c.binding_id)).all())
        overlaps = conn.execute(text(
            "SELECT binding_id, old_owner, new_owner, old_until, at FROM lease_audit"
            " WHERE old_owner IS NOT NULL AND old_until > at")).all()
        taken_over = conn.execute(text(
            "SELECT count(*) FROM lease_audit WHERE old_owner LIKE :victim"), {"victim": f"%:{victim.pid}:%"}
        ).scalar_one()
    assert all(per_binding.get(b) == EVENTS for b in binding_of.values()), "a binding did not converge"
    assert overlaps == [], f"a binding was leased to a second worker while the first one's lease ran: {overlaps[:5]}"
    assert taken_over >= 1, "no binding of the killed worker was taken over"

    # the budget: in no window did a user's requests exceed burst + rate x window (the log stamps a
    # request when it is answered, after the injected latency; 0.25 s covers the spread of that)
    log = httpx.get(f"{google_url}/emulator/requests").raise_for_status().json()["requests"]
    times: dict[str, list[float]] = defaultdict(list)
    for entry in log:
        if entry["method"] == "GET":  # the workers' requests (the loader's renames are PATCHes)
            times[entry["user"]].append(entry["epoch"])
    assert sum(len(t) for t in times.values()) >= len(remote)
    worst = 0.0
    for user, stamps in times.items():
        stamps.sort()
        for i in range(len(stamps)):
            for j in range(i, len(stamps)):
                excess = (j - i + 1) - (BURST + RATE * (stamps[j] - stamps[i] + 0.25))
                worst = max(worst, excess)
                assert excess <= 0, f"{user} sent {j - i + 1} requests in {stamps[j] - stamps[i]:.2f}s\n{outputs}"
    assert "Traceback" not in "".join(outputs[1:]), outputs


def test_a_rate_limit_on_one_account_empties_that_account_s_bucket_only(
    engine: Engine, google_url: str
) -> None:
    api = httpx.Client(base_url=f"{google_url}/calendar/v3", timeout=30)
    made: dict[str, str] = {}
    with engine.begin() as conn:
        for user in ("slow", "fast"):
            calendar = api.post("/calendars", json={"summary": user},
                                headers={"Authorization": f"Bearer {user}"}).raise_for_status().json()["id"]
            account = account_store.create_account(conn, "google", user, google_url, {"token": user})
            account_store.create_binding(conn, account_store.create_calendar(conn, user), account, calendar, "two-way")
            made[user] = account
    with engine.connect() as conn:
        slow_calendar = conn.execute(select(bindings.c.remote_calendar_id).where(
            bindings.c.account_id == made["slow"])).scalar_one()
    httpx.post(f"{google_url}/emulator/faults", json={
        "status": 429, "count": 1, "retry_after": 0,
        "path_prefix": f"/calendar/v3/calendars/{slow_calendar}/events"}).raise_for_status()
    budget = RequestBudget(1.0, 5)
    worker = Worker(engine, settings=WorkerSettings(budgets={"google": budget}, poll_interval=3600))
    try:
        while worker.run_once():
            pass
    finally:
        worker.close()
    with engine.connect() as conn:
        spent = dict(conn.execute(select(accounts.c.name, accounts.c.budget_spent_until)).all())
        synced = count(engine, bindings.c.sync_token.is_not(None))
    now = time.time()
    assert synced == 2  # the 429 was retried (Retry-After: 0) and the sync went on
    # the slow account's bucket was emptied (5 requests' worth ahead of now, less what has passed);
    # the fast one spent one request
    assert spent["slow"] - now > 3.0, spent
    assert spent["fast"] - now < 1.5, spent
