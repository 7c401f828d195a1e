"""The store on a real PostgreSQL server: the same migrations, types and sync as on SQLite.

The server comes from CALSYNC_TEST_PG_URL (./scripts/test finds or starts one with scripts/postgres.sh);
each test gets a database of its own (the pg_url / db_url fixtures in conftest.py).
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, inspect, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, TEXT
from sqlalchemy.exc import IntegrityError, StatementError

from calsync.engine.inbound import SyncResult
from calsync.engine.sync import sync_once
from calsync.model import Account
from calsync.providers.google import GoogleProvider
from calsync.providers.http import RetryPolicy
from calsync.store import accounts as account_store
from calsync.store.db import alembic_config, open_engine
from calsync.store.schema import accounts, bindings, event_links, events, metadata
from tests.helpers import GoogleApi, admin, bind, local_events, token_of


@pytest.fixture()
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = open_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def any_engine(db_url: str) -> Iterator[Engine]:
    """The same test on SQLite and on PostgreSQL: the store must behave the same on both."""
    engine = open_engine(db_url)
    yield engine
    engine.dispose()


# --- schema --------------------------------------------------------------------------------------


def test_migrations_build_exactly_the_schema_the_code_declares(pg_engine: Engine) -> None:
    assert pg_engine.dialect.name == "postgresql"
    with pg_engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []
    assert set(inspect(pg_engine).get_table_names()) >= {
        "accounts", "calendars", "bindings", "events", "event_links", "conflicts", "alembic_version"}
    # JSON columns are JSONB on PostgreSQL (the variant JsonType declares)
    columns = {c["name"]: c["type"] for c in inspect(pg_engine).get_columns("bindings")}
    assert isinstance(columns["last_sync_stats"], JSONB)
    # credentials are sealed text (store/sealing.py), never a JSON column
    columns = {c["name"]: c["type"] for c in inspect(pg_engine).get_columns("accounts")}
    assert "credentials" not in columns and isinstance(columns["credentials_sealed"], TEXT)


def test_opening_twice_is_harmless_and_keeps_data(pg_url: str) -> None:
    first = open_engine(pg_url)
    with first.begin() as conn:
        account_store.create_calendar(conn, "kept")
    first.dispose()
    second = open_engine(pg_url)
    try:
        with second.begin() as conn:
            assert [c["name"] for c in account_store.list_calendars(conn)] == ["kept"]
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            assert MigrationContext.configure(conn).get_current_revision() == head
    finally:
        second.dispose()


def test_foreign_keys_are_enforced(pg_engine: Engine) -> None:
    with pytest.raises(IntegrityError), pg_engine.begin() as conn:
        account_store.create_binding(conn, "no-such-calendar", "no-such-account", "x", "two-way")


# --- types (on both backends) --------------------------------------------------------------------


def _binding(engine: Engine) -> str:
    with engine.begin() as conn:
        account = account_store.create_account(conn, "google", "alice", None, {"token": "t"})
        calendar = account_store.create_calendar(conn, "Work")
        return account_store.create_binding(conn, calendar, account, "primary", "two-way")


def test_json_columns_round_trip(any_engine: Engine) -> None:
    credentials: dict[str, Any] = {
        "token": "secret", "scopes": ["a", "b"], "nested": {"n": 1, "x": 2.5, "ok": True, "none": None},
        "unicode": "Zoë — 会議 🗓", "empty": {}, "list_of_objects": [{"a": 1}, {"b": [1, 2, 3]}],
    }
    with any_engine.begin() as conn:
        account_id = account_store.create_account(conn, "google", "json", None, credentials)
    with any_engine.begin() as conn:
        assert account_store.get_account(conn, account_id).credentials == credentials


def test_json_none_is_sql_null_and_values_are_not(any_engine: Engine) -> None:
    binding_id = _binding(any_engine)
    other_id = _binding_with_stats(any_engine, {"created": 3, "note": None})
    with any_engine.begin() as conn:
        conn.execute(update(bindings).where(bindings.c.id == binding_id).values(last_sync_stats=None))
        null_ids = conn.execute(select(bindings.c.id).where(bindings.c.last_sync_stats.is_(None))).scalars().all()
        assert null_ids == [binding_id]  # SQL NULL, not the JSON text 'null'
        raw_sql = text("SELECT id, last_sync_stats IS NULL FROM bindings")
        raw = {row[0]: bool(row[1]) for row in conn.execute(raw_sql)}
        assert raw == {binding_id: True, other_id: False}
        stats = conn.execute(select(bindings.c.last_sync_stats).where(bindings.c.id == other_id)).scalar_one()
        assert stats == {"created": 3, "note": None}


def _binding_with_stats(engine: Engine, stats: dict[str, Any]) -> str:
    with engine.begin() as conn:
        account = account_store.create_account(conn, "google", "bob", None, {"token": "u"})
        calendar = account_store.create_calendar(conn, "Home")
        binding_id = account_store.create_binding(conn, calendar, account, "primary", "two-way")
        conn.execute(update(bindings).where(bindings.c.id == binding_id).values(last_sync_stats=stats))
        return binding_id


def test_aware_datetimes_round_trip_as_utc(any_engine: Engine) -> None:
    binding_id = _binding(any_engine)
    ist = timezone(timedelta(hours=5, minutes=30))
    written = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=ist)
    with any_engine.begin() as conn:
        conn.execute(update(bindings).where(bindings.c.id == binding_id).values(last_sync_at=written))
    with any_engine.begin() as conn:
        read = conn.execute(select(bindings.c.last_sync_at).where(bindings.c.id == binding_id)).scalar_one()
        created = conn.execute(select(bindings.c.created_at).where(bindings.c.id == binding_id)).scalar_one()
        # comparisons in SQL see the instant, not the offset it was written with
        later = conn.execute(select(func.count()).select_from(bindings).where(
            bindings.c.last_sync_at > datetime(2026, 3, 28, 19, 59, tzinfo=UTC))).scalar_one()
    assert read == written and read.tzinfo == UTC and read.utcoffset() == timedelta(0)
    assert read.hour == 20 and read.day == 28 and read.microsecond == 123456
    assert created.tzinfo == UTC
    assert later == 1
    with pytest.raises(StatementError, match="naive"), any_engine.begin() as conn:
        conn.execute(update(bindings).where(bindings.c.id == binding_id).values(last_sync_at=datetime(2026, 1, 1)))


def test_datetimes_read_as_utc_whatever_the_session_time_zone(pg_engine: Engine) -> None:
    binding_id = _binding(pg_engine)
    written = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    with pg_engine.begin() as conn:
        conn.execute(text("SET TIME ZONE 'America/New_York'"))
        conn.execute(update(bindings).where(bindings.c.id == binding_id).values(last_sync_at=written))
        read = conn.execute(select(bindings.c.last_sync_at).where(bindings.c.id == binding_id)).scalar_one()
        assert conn.execute(text("SHOW TIME ZONE")).scalar_one() == "America/New_York"
    assert read == written and read.tzinfo == UTC and read.hour == 12


# --- end to end: inbound sync from the Google emulator into PostgreSQL ----------------------------


def run(engine: Engine, *, page_size: int) -> SyncResult:
    def make(account: Account) -> GoogleProvider:
        return GoogleProvider.from_account(account, page_size=page_size, retry=RetryPolicy(base_delay=0.05))

    results = sync_once(engine, make_provider=make).inbound
    assert len(results) == 1
    return results[0]


def assert_mirrors(engine: Engine, binding_id: str, api: GoogleApi, calendar_id: str) -> None:
    """The store holds exactly the remote calendar: same ids, same titles, nothing extra, nothing twice."""
    local = {rid: row["title"] for rid, row in local_events(engine, binding_id).items()}
    assert local == {e["id"]: e.get("summary", "") for e in api.list_all(calendar_id)}


def test_inbound_sync_end_to_end_on_postgresql(pg_engine: Engine, google_url: str) -> None:
    alice = GoogleApi(google_url, "alice")
    calendar = alice.primary_id()
    alice.seed(calendar, 300)
    binding = bind(pg_engine, google_url, "alice", calendar)

    # full sync, three pages
    result = run(pg_engine, page_size=100)
    assert result.status == "ok" and result.full
    assert (result.pages, result.created) == (3, 300)
    first_token = token_of(pg_engine, binding)
    assert first_token
    assert_mirrors(pg_engine, binding, alice, calendar)

    # incremental: a few remote changes
    remote_ids = [e["id"] for e in alice.list_all(calendar)]
    edited, doomed = remote_ids[0], remote_ids[1]
    alice.patch(calendar, edited, summary="Edited remotely")
    alice.delete(calendar, doomed)
    born = alice.insert(calendar, "Born remotely")
    result = run(pg_engine, page_size=100)
    assert result.status == "ok" and not result.full
    assert (result.created, result.updated, result.deleted) == (1, 1, 1)
    assert token_of(pg_engine, binding) != first_token
    mirrored = local_events(pg_engine, binding, include_deleted=True)
    assert mirrored[edited]["title"] == "Edited remotely" and mirrored[edited]["version"] == 2
    assert mirrored[doomed]["deleted"] is True
    assert mirrored[born["id"]]["version"] == 1
    assert_mirrors(pg_engine, binding, alice, calendar)

    # nothing changed: one request
    assert run(pg_engine, page_size=100).requests == 1

    # the token is invalidated while the remote changes: a full sync that reconciles deletions
    for event_id in remote_ids[2:5]:
        alice.delete(calendar, event_id)
    alice.insert(calendar, "Born during the outage")
    admin(google_url, "POST", f"/calendars/{calendar}/invalidate-tokens")
    result = run(pg_engine, page_size=100)
    assert result.token_reset and result.full and result.status == "ok"
    assert (result.created, result.deleted) == (1, 3)
    assert_mirrors(pg_engine, binding, alice, calendar)
    assert run(pg_engine, page_size=100).requests == 1  # the new token works incrementally again

    with pg_engine.begin() as conn:
        live = conn.execute(select(func.count()).select_from(events).where(events.c.deleted.is_(False))).scalar()
        links = conn.execute(select(func.count()).select_from(event_links)).scalar()
        stats = conn.execute(select(bindings.c.last_sync_stats, bindings.c.last_sync_at)
                             .where(bindings.c.id == binding)).one()
        account_id = conn.execute(select(accounts.c.id)).scalar_one()
        credentials = account_store.get_account(conn, account_id).credentials
    assert live == len(alice.list_all(calendar)) == 300 - 1 + 1 - 3 + 1
    assert links == 300 + 1 + 1  # tombstoned events keep their links
    assert isinstance(stats.last_sync_stats, dict) and stats.last_sync_stats  # JSONB back as a dict
    assert stats.last_sync_at is not None and stats.last_sync_at.tzinfo == UTC
    assert credentials == {"token": "alice"}
