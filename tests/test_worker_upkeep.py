"""`calsync worker` keeps the change journal as `calsync serve` does (engine/journal_upkeep.py): real
worker processes, on SQLite and PostgreSQL, give rows written by another process their feed positions
with no reader asking, and prune rows past CALSYNC_JOURNAL_DAYS. Several processes doing it at once:
positions stay unique and gapless, and two pruners on PostgreSQL never delete (or count) a row twice."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

import calsync
from calsync.engine import journal_upkeep, local
from calsync.model import utcnow
from calsync.store import accounts as account_store
from calsync.store import journal, users
from calsync.store.db import open_engine
from calsync.store.schema import event_changes, journal_state
from tests.test_workers_postgres import stop

SLOT = {"start": "2026-12-08T09:00:00Z", "end": "2026-12-08T09:30:00Z"}
SRC = str(Path(calsync.__file__).resolve().parents[1])


@pytest.fixture()
def store(db_url: str) -> Iterator[Engine]:
    engine = open_engine(db_url)
    yield engine
    engine.dispose()


def _calendar(engine: Engine) -> str:
    with engine.begin() as conn:
        user_id = users.create_user(conn, "ada")
        return account_store.create_calendar(conn, "ada's", user_id=user_id)


def _event(engine: Engine, calendar_id: str, title: str) -> str:
    return local.create_event(engine, calendar_id, {"title": title, **SLOT}).event_id


def _backdate(engine: Engine, event_id: str, days: float) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(event_changes)
            .where(event_changes.c.event_id == event_id)
            .values(created_at=utcnow() - timedelta(days=days))
        )


def _start_worker(db_url: str, days: float) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    env["CALSYNC_JOURNAL_DAYS"] = str(days)
    env["PYTHONPATH"] = os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])
    return subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "calsync.cli",
            "worker",
            "--db",
            db_url,
            "--poll-interval",
            "3600",
            "--concurrency",
            "1",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _state(engine: Engine) -> tuple[int, int, int, int]:
    """(sequenced_through, pruned_through, rows, rows waiting for a position), read without sequencing."""
    with engine.connect() as conn:
        head, pruned = conn.execute(select(journal_state.c.sequenced_through, journal_state.c.pruned_through)).one()
        rows = conn.execute(select(func.count()).select_from(event_changes)).scalar_one()
        waiting = conn.execute(
            select(func.count()).select_from(event_changes).where(event_changes.c.position.is_(None))
        ).scalar_one()
    return int(head), int(pruned), int(rows), int(waiting)


def _positions(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [int(p) for p in conn.execute(select(event_changes.c.position).order_by(event_changes.c.id)).scalars()]


def test_worker_processes_sequence_what_another_process_writes_and_prune_past_retention(
    store: Engine, db_url: str
) -> None:
    calendar = _calendar(store)
    old = _event(store, calendar, "old")
    _backdate(store, old, 10)
    kept = _event(store, calendar, "kept")
    assert _state(store) == (0, 0, 2, 2)  # nobody has read the feed: nothing numbered yet
    workers = [_start_worker(db_url, days=5) for _ in range(2)]  # two at once, as a scaled-out deployment runs
    try:
        # the old row is numbered (only sequenced rows are pruned), then pruned; the kept one stays
        _until(lambda: _state(store) == (2, 1, 1, 0), 60, "the workers to sequence and prune the journal")
        with store.connect() as conn:
            assert [r["event_id"] for r in journal.history(conn, kept)] == [kept]
            assert journal.history(conn, old) == []
        # written while they run, by this process, read by nobody: numbered within about a second
        written = [_event(store, calendar, f"later {n}") for n in range(30)]
        local.update_event(store, kept, {"title": "kept, renamed"}, None)
        _until(lambda: _state(store)[0] == 33 and _state(store)[3] == 0, 30, "the later rows' positions")
    finally:
        outputs = [stop(w) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    assert len(written) == 30
    positions = _positions(store)
    assert sorted(positions) == list(range(2, 34)), positions  # unique and gapless after the pruned first
    assert positions == sorted(positions)  # committed one after another: id order is commit order here


def test_two_pruners_at_once_on_postgresql_delete_and_count_each_row_once(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        calendar = _calendar(engine)
        for n in range(40):
            _backdate(engine, _event(engine, calendar, f"old {n}"), 10)
        journal_upkeep.sequence_pending(engine)
        removed: list[int] = []
        errors: list[BaseException] = []

        def prune() -> None:
            try:
                removed.append(journal_upkeep.prune(engine, days=5))
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        # a sequencer in another transaction holds the journal_state row: both pruners start meanwhile
        with engine.connect() as holder:
            holder.begin()
            journal.sequence(holder)
            pruners = [threading.Thread(target=prune) for _ in range(2)]
            for thread in pruners:
                thread.start()
            time.sleep(1.0)  # both are at their first statement that needs a lock
            holder.rollback()
        for thread in pruners:
            thread.join(30)
        assert not errors, errors
        # unserialised, both read the same 40 rows; the second waited on the first's row locks, then
        # deleted none of them and counted all 40
        assert sorted(removed) == [0, 40]
        assert _state(engine) == (40, 40, 0, 0)
    finally:
        engine.dispose()


def test_sequencers_in_several_threads_on_postgresql_give_unique_gapless_positions(pg_url: str) -> None:
    engine = open_engine(pg_url)
    try:
        calendar = _calendar(engine)
        for n in range(60):
            _event(engine, calendar, f"event {n}")
        done: list[int] = []
        with engine.connect() as holder:
            holder.begin()
            journal.sequence(holder)  # numbers every row, uncommitted: the others wait on its lock
            threads = [threading.Thread(target=lambda: done.append(journal_upkeep.sequence_pending(engine)))]
            threads.append(threading.Thread(target=lambda: done.append(journal_upkeep.sequence_pending(engine))))
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            holder.rollback()  # the rows wait again; the two sequencers now go one after the other
        for thread in threads:
            thread.join(30)
        assert sorted(done) == [0, 60]
        assert sorted(_positions(engine)) == list(range(1, 61))
    finally:
        engine.dispose()
