"""The scheduler's due-work queries at scale, on PostgreSQL: 100,000 bindings over 2,000 accounts, a
history of 100,000 done outbox rows and 100,000 done conference rows. Every query a claim runs must
read an index (never a sequential scan of the bindings or the outboxes), whether nothing is due (an
idle worker asks twice a second), a few bindings are, or all of them are (the herd after a restart)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Connection, Engine, event, text

from calsync.engine import local
from calsync.model import utcnow
from calsync.store import accounts as account_store
from calsync.store import outbox as outbox_store
from calsync.store import scheduling
from calsync.store import users as user_store
from calsync.store.db import open_engine

BINDINGS = 100_000
ACCOUNTS = 2_000


@pytest.fixture()
def engine(pg_url: str) -> Iterator[Engine]:
    engine = open_engine(pg_url)
    yield engine
    engine.dispose()


def _fill(engine: Engine) -> None:
    """The rows, each table in one INSERT ... SELECT over generate_series, then ANALYZE."""
    with engine.begin() as conn:
        user = user_store.create_user(conn, "org")
        calendar = account_store.create_calendar(conn, "everyone", user_id=user)
        spare = account_store.create_calendar(conn, "history", user_id=user)
    event_id = local.create_event(
        engine, spare, {"title": "t", "start": "2026-12-01T08:00:00Z", "end": "2026-12-01T09:00:00Z"}
    ).event_id
    params = {"user": user, "calendar": calendar, "event": event_id, "accounts": ACCOUNTS, "bindings": BINDINGS}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts (id, user_id, provider, name, credentials_sealed, state, backoff_attempts,"
                " created_at, updated_at) SELECT md5('a' || g), :user, 'google', 'a' || g, '', 'ok', 0, now(), now()"
                " FROM generate_series(1, :accounts) g"
            ),
            params,
        )
        # next polls spread over the coming five minutes; one binding in ten only pushes
        conn.execute(
            text(
                "INSERT INTO bindings (id, calendar_id, account_id, remote_calendar_id, direction, conflict_policy,"
                " full_sync_generation, sync_token, next_poll_at, created_at, updated_at)"
                " SELECT md5('b' || g), :calendar, md5('a' || (g % :accounts + 1)), 'r' || g,"
                " CASE WHEN g % 10 = 0 THEN 'push' ELSE 'two-way' END, 'ask', 0, 't',"
                " now() + (g % 300) * interval '1 second', now(), now() FROM generate_series(1, :bindings) g"
            ),
            params,
        )
        conn.execute(
            text(
                "INSERT INTO outbox (binding_id, event_id, version, status, attempts, next_attempt_at, create_sent,"
                " created_at, updated_at) SELECT md5('b' || g), :event, 1, CASE WHEN g % 1000 = 0 THEN 'pending'"
                " ELSE 'done' END, 0, now() + (g % 600) * interval '1 second', false, now(), now()"
                " FROM generate_series(1, :bindings) g"
            ),
            params,
        )
        conn.execute(
            text(
                "INSERT INTO conference_outbox (event_id, status, reason, attempts, next_attempt_at, created_at,"
                " updated_at) SELECT :event, CASE WHEN g % 1000 = 0 THEN 'pending' ELSE 'done' END, 'inbound', 0,"
                " now() + (g % 600) * interval '1 second', now(), now() FROM generate_series(1, :bindings) g"
            ),
            params,
        )
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def _plans(engine: Engine, work: Callable[[Connection], object]) -> list[tuple[str, str]]:
    """(statement, PostgreSQL's plan) of every statement `work` runs; its writes are rolled back."""
    statements: list[tuple[str, object]] = []

    def capture(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        statements.append((statement, parameters))

    with engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", capture)
        try:
            with conn.begin() as transaction:
                work(conn)
                transaction.rollback()
        finally:
            event.remove(conn, "before_cursor_execute", capture)
        plans = []
        for sql, params in statements:
            if sql.lstrip().upper().startswith(("SELECT", "UPDATE")):
                if isinstance(params, (list, tuple)):  # an executemany: the plan of one row's statement
                    params = params[0]
                lines = conn.exec_driver_sql(f"EXPLAIN {sql}", params).scalars().all()  # type: ignore[arg-type]
                plans.append((sql, "\n".join(lines)))
        return plans


def test_due_work_is_found_through_indexes_at_100000_bindings(engine: Engine) -> None:
    _fill(engine)
    now = utcnow()
    cases = {
        "nothing due": now - timedelta(minutes=5),
        "a few due": now + timedelta(seconds=2),
        "everything due": now + timedelta(hours=1),
    }
    for what, at in cases.items():
        plans = _plans(engine, lambda conn, at=at: scheduling.claim_binding(conn, "w", at, 60))
        plans += _plans(engine, lambda conn, at=at: scheduling.claim_conference_work(conn, "w", at, 60))
        plans += _plans(engine, lambda conn, at=at: outbox_store.bindings_with_work(conn, at))
        plans += _plans(engine, lambda conn, at=at: scheduling.release_binding(conn, "0" * 32, "w", at, 300, None))
        if what != "everything due":  # (then it reads them all, rightly: it moves them all, once, at a start)
            plans += _plans(engine, lambda conn, at=at: scheduling.spread_overdue_polls(conn, at, 300))
        assert len(plans) >= 6, (what, plans)
        for sql, plan in plans:
            for table in ("bindings", "outbox", "conference_outbox", "accounts"):
                assert f"Seq Scan on {table} " not in plan + " ", (what, sql, plan)
            assert "Index" in plan, (what, sql, plan)
        claim_plans = [plan for sql, plan in plans if "FOR UPDATE" in sql and "bindings.id" in sql]
        assert len(claim_plans) == 3, (what, plans)
        assert "ix_bindings_dirty_at" in claim_plans[0], (what, claim_plans[0])
        assert "ix_bindings_next_poll_at" in claim_plans[1], (what, claim_plans[1])
        assert "ix_outbox_status_next_attempt_at_binding_id" in claim_plans[2] and "pk_bindings" in claim_plans[2], (
            what,
            claim_plans[2],
        )
    # and the claims themselves: the earliest due binding, through either door
    with engine.begin() as conn:
        claim = scheduling.claim_binding(conn, "w", now + timedelta(hours=1), 60)
    assert claim is not None
    with engine.begin() as conn:
        assert scheduling.claim_binding(conn, "w", now - timedelta(minutes=5), 60) is None
