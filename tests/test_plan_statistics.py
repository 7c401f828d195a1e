"""A big listing keeps PostgreSQL's plans of the tables it fills right (store/statistics.py): the
sync ANALYZEs them once its rows pass a threshold and again at each doubling, which also makes the
server drop the generic plans it cached while the tables were small; a small sync costs nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from calsync.engine.inbound import sync_binding
from calsync.model import EventData
from calsync.providers.memory import MemoryProvider, MemoryService
from calsync.store import accounts as account_store
from calsync.store import statistics
from calsync.store.db import open_engine


@pytest.fixture()
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = open_engine(pg_url)
    yield engine
    engine.dispose()


def _binding_of(engine: Engine, service: MemoryService, events: int) -> tuple[str, str]:
    calendar = service.add_calendar(f"cal{events}")
    start = datetime(2026, 5, 1, 8, tzinfo=UTC)
    for n in range(events):
        at = start + timedelta(hours=n)
        service.insert(
            calendar, EventData(title=f"e{n}", start=at.isoformat(), end=(at + timedelta(minutes=30)).isoformat())
        )
    with engine.begin() as conn:
        account = account_store.create_account(conn, "memory", f"a{events}", None, {"token": "t"})
        local = account_store.create_calendar(conn, f"local{events}")
        return account_store.create_binding(conn, local, account, calendar, "two-way"), calendar


def _analyzed(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        count = conn.execute(
            text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = :t"), {"t": table}
        ).scalar_one()
    return int(count)


_LOOKUP = (
    "SELECT event_links.id FROM event_links JOIN events ON events.id = event_links.event_id "
    "WHERE event_links.binding_id = $1 AND event_links.remote_id = ANY(CAST((SELECT array_agg(value) FROM jsonb_array_elements_text($2::JSONB) AS listed) AS TEXT[]))"
)  # the shape of links_by_remote_id's query (store/common.one_of)


def _generic_plan(conn: object, binding_id: str) -> str:
    ids = json.dumps([f"r{n}" for n in range(500)])
    rows = conn.exec_driver_sql(f"EXPLAIN EXECUTE lookup('{binding_id}', '{ids}')")  # type: ignore[attr-defined]
    return "\n".join(row[0] for row in rows)


def test_a_big_sync_analyzes_at_the_threshold_and_each_doubling(
    pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statistics, "FIRST_REFRESH_ROWS", 300)
    service = MemoryService()
    small, _ = _binding_of(pg_engine, service, 40)
    assert sync_binding(pg_engine, MemoryProvider(service, page_size=25), small).created == 40
    assert _analyzed(pg_engine, "event_links") == 0  # a small sync: no ANALYZE at all

    big, _ = _binding_of(pg_engine, service, 1000)
    result = sync_binding(pg_engine, MemoryProvider(service, page_size=250), big)
    assert result.status == "ok" and result.created == 1000
    # pages of 250: past 300 after the second page (500 rows), doubled after the fourth (1,000)
    for table in statistics.GROWING_TABLES:
        assert _analyzed(pg_engine, table) == 2, table


def test_the_analyze_replaces_a_generic_plan_made_while_the_table_was_small(pg_engine: Engine) -> None:
    """The failure it prevents: psycopg prepares a statement its connection runs often, and the
    server's generic plan for the page's link lookup, made while the binding had no links, reads
    every link of the binding and filters them: each page of a big first sync cost more than the last."""
    service = MemoryService()
    binding, _ = _binding_of(pg_engine, service, 3000)
    with pg_engine.connect() as conn:
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql(f"PREPARE lookup AS {_LOOKUP}")
        conn.commit()
        # the first sync, with a watch that refreshes early enough for this small calendar
        watch = statistics.GrowthWatch(pg_engine, first=1000)
        assert sync_binding(pg_engine, MemoryProvider(service, page_size=500), binding).created == 3000
        stale = _generic_plan(conn, binding)
        conn.commit()  # (a transaction that holds its locks already takes in no invalidation)
        watch.wrote(3000)
        after = _generic_plan(conn, binding)
    unique = "uq_event_links_binding_id_remote_id"
    # the plan made while the table was empty: every link of the binding, filtered by the 500 ids
    assert unique not in stale and "Index Cond: ((binding_id)::text = $1)" in stale, stale
    assert unique in after and "(remote_id = ANY" in after.split(unique)[1].split("\n")[1], after
    assert watch.refreshes == 1
