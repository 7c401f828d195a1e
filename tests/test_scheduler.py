"""The scheduler's timer and what a poll costs: polls spread over the interval by each binding's own
slot (also after a restart, when every poll is overdue at once), and a poll of a quiet calendar
costs one provider request and a handful of SQL statements, for every provider."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, update

from calsync.engine.scheduler import Worker, WorkerSettings
from calsync.model import utcnow
from calsync.store import accounts as account_store
from calsync.store import scheduling
from calsync.store.common import new_id
from calsync.store.db import open_engine
from calsync.store.schema import bindings
from tests.remotes import Remote

INTERVAL = 300.0


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_engine(f"sqlite:///{tmp_path / 'calsync.db'}")
    yield engine
    engine.dispose()


def _buckets(times: list[datetime], start: datetime, buckets: int = 10) -> Counter[int]:
    return Counter(int((t - start).total_seconds() // (INTERVAL / buckets)) for t in times)


def _phases(times: list[datetime], buckets: int = 10) -> Counter[int]:
    """How many of the times fall in each tenth of the interval, counted from the epoch (the slots')."""
    return Counter(int(t.timestamp() % INTERVAL // (INTERVAL / buckets)) for t in times)


def test_each_binding_has_its_own_slot_and_the_slots_cover_the_interval() -> None:
    ids = [new_id() for _ in range(2000)]
    after = datetime(2026, 12, 7, 8, 0, 0, 123456, tzinfo=UTC)
    slots = [scheduling.first_slot_after(i, after, INTERVAL) for i in ids]
    assert slots == [scheduling.first_slot_after(i, after, INTERVAL) for i in ids], "deterministic"
    assert all(after <= s < after + timedelta(seconds=INTERVAL) for s in slots)
    spread = _phases(slots)
    assert set(spread) == set(range(10)) and min(spread.values()) > 120, spread  # ~200 in each tenth
    # a poll comes 0.9 to 1.1 intervals after a sync, and exactly one interval once on its slot
    nexts = [scheduling.next_poll_slot(i, after, INTERVAL) for i in ids]
    gaps = [(n - after).total_seconds() for n in nexts]
    assert min(gaps) >= INTERVAL * 0.9 - 1e-6 and max(gaps) <= INTERVAL * 1.1 + 1e-6
    on_slot = [scheduling.next_poll_slot(i, s, INTERVAL) for i, s in zip(ids, slots, strict=True)]
    assert all(abs((n - s).total_seconds() - INTERVAL) < 1e-3 for s, n in zip(slots, on_slot, strict=True))


def _bindings(engine: Engine, count: int, **values: object) -> list[str]:
    with engine.begin() as conn:
        account = account_store.create_account(conn, "caldav", "a", "http://x/", {"username": "u"})
        calendar = account_store.create_calendar(conn, "c")
        made = [account_store.create_binding(conn, calendar, account, f"/c{n}/", "two-way") for n in range(count)]
        if values:
            conn.execute(update(bindings).values(**values))
    return made


def _next_polls(engine: Engine) -> dict[str, datetime]:
    with engine.begin() as conn:
        return {b["id"]: b["next_poll_at"] for b in account_store.list_bindings(conn)}


def test_a_herd_synced_at_once_drifts_apart_to_the_bindings_own_slots(engine: Engine) -> None:
    """500 bindings bound and synced in one burst: each poll after moves toward its own slot, so within
    five polls the herd is spread over the whole interval (and stays so)."""
    made = _bindings(engine, 500)
    at = {b: utcnow() for b in made}
    spreads = []
    for _poll in range(6):
        with engine.begin() as conn:
            conn.execute(update(bindings).values(lease_owner="w", lease_until=utcnow() + timedelta(minutes=1)))
            for binding in made:  # each synced when its poll came
                scheduling.release_binding(conn, binding, "w", at[binding], INTERVAL, None)
        at = _next_polls(engine)
        spreads.append(_phases(list(at.values())))
    assert len(spreads[0]) <= 3, spreads[0]  # after the burst's sync: within a fifth of the interval
    assert set(spreads[-1]) == set(range(10)) and max(spreads[-1].values()) < 90, spreads[-1]  # ~50 a tenth


def test_overdue_polls_after_a_restart_are_spread_over_the_next_interval(engine: Engine) -> None:
    hour_ago = utcnow() - timedelta(hours=1)
    made = _bindings(engine, 400, sync_token="t", next_poll_at=hour_ago)  # noqa: S106 (a sync token)
    dirty, new, leased, pushing = made[:4]
    with engine.begin() as conn:
        scheduling.mark_dirty(conn, dirty)
        conn.execute(update(bindings).where(bindings.c.id == new).values(sync_token=None))
        conn.execute(
            update(bindings)
            .where(bindings.c.id == leased)
            .values(lease_owner="other", lease_until=utcnow() + timedelta(minutes=1))
        )
        conn.execute(update(bindings).where(bindings.c.id == pushing).values(direction="push"))
    stop = threading.Event()
    stop.set()
    now = utcnow()
    worker = Worker(engine, settings=WorkerSettings(poll_interval=INTERVAL))
    worker.run_forever(stop)  # a worker starting: it spreads what is overdue, then (stopped) leaves
    polls = _next_polls(engine)
    for kept in (new, leased, pushing):  # a first sync is not delayed; a leased one is someone's
        assert polls[kept] == hour_ago
    assert polls[dirty] < now  # a notification waits for it
    moved = [polls[b] for b in made[4:]]
    assert all(now <= t < now + timedelta(seconds=INTERVAL + 1) for t in moved)
    spread = _buckets(moved, now)
    assert set(spread) <= set(range(11)) and max(spread.values()) < 80, spread  # ~40 a tenth, not 396 now
    with engine.begin() as conn:  # a second worker starting finds nothing left to move
        assert scheduling.spread_overdue_polls(conn, utcnow(), INTERVAL) == 0


def test_a_poll_of_a_quiet_calendar_costs_one_request_and_a_few_statements(engine: Engine, remote: Remote) -> None:
    remote.seed(5)
    binding = remote.bind(engine)
    worker = Worker(engine, settings=WorkerSettings(poll_interval=INTERVAL), make_provider=remote.make_provider())
    assert worker.run_once() is True  # the first sync
    with engine.begin() as conn:
        assert account_store.get_binding(conn, binding)["sync_token"]
        conn.execute(update(bindings).values(next_poll_at=utcnow() - timedelta(seconds=1)))
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    remote.clear_requests()
    event.listen(engine, "before_cursor_execute", count)
    try:
        assert worker.run_once() is True  # the poll: nothing changed there
    finally:
        event.remove(engine, "before_cursor_execute", count)
    requests = remote.requests()
    assert len(requests) == 1, requests
    kinds = Counter(statements)
    # the claim: three index ranges (notified, poll timer, due outbox), the account's budget, the lease
    # (returning the binding's row) and the account; the sync: the token with its stats, the release;
    # the look for conference work
    assert len(statements) <= 9, kinds
    assert kinds["UPDATE"] + kinds["INSERT"] + kinds["DELETE"] <= 4, kinds
    with engine.begin() as conn:
        row = account_store.get_binding(conn, binding)
    assert row["lease_owner"] is None and row["last_sync_status"] == "ok" and row["next_poll_at"] > utcnow()
    worker.close()
