"""The store: migrations make the schema (not create_all), and match the tables the code uses."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, event, inspect

from calsync.store import accounts as account_store
from calsync.store import events as event_store
from calsync.store import links as link_store
from calsync.store.db import default_url, normalise_url, open_engine
from calsync.store.schema import metadata


def test_migrations_build_exactly_the_schema_the_code_declares(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'a.db'}")
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []
    assert set(inspect(engine).get_table_names()) >= {
        "accounts", "calendars", "bindings", "events", "event_links", "conflicts", "alembic_version"}


def test_opening_twice_is_harmless_and_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    with open_engine(url).begin() as conn:
        account_store.create_calendar(conn, "kept")
    with open_engine(url).begin() as conn:
        assert [c["name"] for c in account_store.list_calendars(conn)] == ["kept"]


def test_database_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CALSYNC_DB", "sqlite:///x.db")
    assert default_url() == "sqlite:///x.db"
    monkeypatch.delenv("CALSYNC_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_url().startswith(f"sqlite:///{tmp_path}")
    assert normalise_url("some/file.db").startswith("sqlite:////")
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(Exception), engine.begin() as conn:
        account_store.create_binding(conn, "no-such-calendar", "no-such-account", "x", "two-way")


def test_the_known_schema_head_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    from calsync.store.db import SCHEMA_HEAD, alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_HEAD


def _plans_of(engine: Engine, work: Callable[[Connection], object]) -> list[str]:
    """SQLite's query plan of every SELECT that `work` runs."""
    statements: list[tuple[str, object]] = []

    def capture(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with engine.begin() as conn:
            work(conn)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    with engine.connect() as conn:
        return [" ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
                for sql, params in statements]


def test_series_lookups_of_a_page_read_indexes_not_the_binding_links(tmp_path: Path) -> None:
    """Attaching orphans and finding a re-read series' members run on every page of an incremental
    sync: each must cost what the page holds (an index lookup per series), never a read of all the
    binding's links."""
    engine = open_engine(f"sqlite:///{tmp_path / 'calsync.db'}")
    plans = _plans_of(engine, lambda conn: link_store.attach_orphan_exceptions(conn, "x", {"a": "event-a",
                                                                                          "b": "event-b"}))
    plans += _plans_of(engine, lambda conn: link_store.live_series_members(conn, "x", ["a", "b"]))
    assert len(plans) == 3, plans
    for plan in plans:
        assert "SEARCH event_links USING" in plan and "(binding_id=? AND " in plan, plan
    assert "ix_event_links_binding_id_series_remote_id_event_id (binding_id=? AND series_remote_id=?)" in plans[0]


def test_bulk_inserts_store_what_sqlalchemy_would(db_url: str) -> None:
    """insert_events / insert_links hand rows to the driver's executemany themselves where it takes
    positional parameters (SQLite): every value must be stored exactly as SQLAlchemy stores it."""
    from datetime import UTC, datetime, timedelta, timezone

    from sqlalchemy import select, text

    from calsync.store.schema import event_links, events

    engine = open_engine(db_url)
    now = datetime(2026, 12, 6, 15, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    with engine.begin() as conn:
        calendar = account_store.create_calendar(conn, "c")
        account = account_store.create_account(conn, "caldav", "a", "http://x/", {"username": "u"})
        binding = account_store.create_binding(conn, calendar, account, "/cal/", "two-way")

    def row(event_id: str, **changes: object) -> dict[str, object]:
        base: dict[str, object] = {
            "id": event_id, "calendar_id": calendar, "source": "caldav", "created_at": now, "title": "Tö \"x\"",
            "description": None, "location": "Room; 1", "start": "2026-12-01T08:00:00Z", "end": "2026-12-01T09:00:00Z",
            "range_start": "2026-12-01T08:00:00Z", "range_end": "2026-12-01T09:00:00Z", "all_day": True,
            "time_zone": None, "status": "confirmed", "recurrence": None, "original_start": None,
            "attendees": [{"email": "é@x", "optional": False}], "conference": {"join_url": "https://j/1"},
            "ical_uid": "u", "sequence": 3, "extra": {"caldav": {"ics": "BEGIN:VCALENDAR\r\n"}},
            "content_hash": "h", "version": 1, "updated_at_source": "caldav", "updated_at": now.astimezone(UTC),
            "deleted": False, "deleted_at": None, "recurring_event_id": None}
        base.update(changes)
        return base

    def link(event_id: str) -> dict[str, object]:
        return {"event_id": event_id, "binding_id": binding, "remote_id": f"r-{event_id}", "etag": '"e"',
                "base_version": 1, "base_hash": "h", "base_snapshot": {"title": "t", "attendees": []},
                "series_remote_id": None, "remote_updated": None, "remote_deleted": False,
                "seen_generation": 2, "created_at": now, "updated_at": now}

    mine = ["a" * 32, "b" * 32]
    theirs = ["c" * 32, "d" * 32]
    with engine.begin() as conn:
        later = now + timedelta(minutes=5)  # rows share one `now` (converted once) or carry their own times
        event_store.insert_events(conn, [row(mine[0]), row(mine[1], recurrence=["RRULE:FREQ=DAILY"], all_day=False,
                                                           deleted=True, deleted_at=now, created_at=later)])
        conn.execute(events.insert(), [row(theirs[0]), row(theirs[1], recurrence=["RRULE:FREQ=DAILY"], all_day=False,
                                                                  deleted=True, deleted_at=now, created_at=later)])
        link_store.insert_links(conn, [link(mine[0]), link(mine[1])])
        conn.execute(event_links.insert(), [link(theirs[0]), link(theirs[1])])
    with engine.connect() as conn:
        read = {r["id"]: {k: v for k, v in r.items() if k != "id"}
                for r in conn.execute(select(events)).mappings()}
        links = {r["event_id"]: {k: v for k, v in r.items() if k not in ("id", "event_id", "remote_id")}
                 for r in conn.execute(select(event_links)).mappings()}
        assert read[mine[0]] == read[theirs[0]] and read[mine[1]] == read[theirs[1]]
        assert links[mine[0]] == links[theirs[0]] and links[mine[1]] == links[theirs[1]]
        assert read[mine[1]]["deleted_at"] == now and read[mine[0]]["attendees"][0]["email"] == "é@x"
        if engine.dialect.name == "sqlite":  # the stored text itself, as other queries compare it
            raw = {r[0]: r[1:] for r in conn.execute(text(
                "SELECT id, created_at, deleted_at, attendees, extra, all_day, recurrence FROM events"))}
            assert raw[mine[0]] == raw[theirs[0]] and raw[mine[1]] == raw[theirs[1]]


def test_upgrading_a_database_from_0005_keeps_its_links_and_lets_bases_be_null(tmp_path: Path) -> None:
    """0006 makes event_links.base_snapshot nullable (SQLite rebuilds the table): rows, indexes and
    constraints must come through, and the result must be the schema the code declares."""
    from alembic import command
    from sqlalchemy import create_engine, select

    from calsync.store.db import alembic_config
    from calsync.store.schema import event_links

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = create_engine(url)
    config = alembic_config()
    with old.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
    with old.begin() as conn:
        calendar = "c" * 32  # the calendars table of 0005 (no owner; 0012 gives it one)
        conn.exec_driver_sql("INSERT INTO calendars (id, name, created_at, updated_at) "
                             "VALUES (?, 'c', '2026-01-01 00:00:00', '2026-01-01 00:00:00')", (calendar,))
        account = "a" * 32  # the accounts table of 0005 (credentials plain; 0009 seals them)
        conn.exec_driver_sql(
            "INSERT INTO accounts (id, provider, name, base_url, credentials, state, created_at, updated_at) "
            "VALUES (?, 'caldav', 'a', 'http://x/', '{}', 'ok', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
            (account,))
        binding = account_store.create_binding(conn, calendar, account, "/cal/", "two-way")
        conn.exec_driver_sql(
            "INSERT INTO events (id, calendar_id, title, start, \"end\", range_start, range_end, all_day, status, "
            "attendees, sequence, extra, content_hash, version, source, updated_at_source, created_at, updated_at, "
            "deleted) VALUES ('e', ?, 't', 's', 'e', 's', 'e', 0, 'confirmed', '[]', 0, '{}', 'h', 1, 'x', 'x', "
            "'2026-01-01 00:00:00', '2026-01-01 00:00:00', 0)", (calendar,))
        conn.exec_driver_sql(
            "INSERT INTO event_links (event_id, binding_id, remote_id, base_version, base_hash, base_snapshot, "
            "remote_deleted, seen_generation, created_at, updated_at) VALUES ('e', ?, 'r', 1, 'h', "
            "'{\"title\": \"t\"}', 0, 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')", (binding,))
    old.dispose()
    engine = open_engine(url)  # migrates to the head
    with engine.begin() as conn:
        assert conn.execute(select(event_links.c.base_snapshot)).scalar() == {"title": "t"}
        conn.execute(event_links.update().values(base_snapshot=None))
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diffs == []
        with pytest.raises(Exception):  # the unique constraints came through the rebuild
            conn.exec_driver_sql(
                "INSERT INTO event_links (event_id, binding_id, remote_id, base_version, base_hash, remote_deleted, "
                "seen_generation, created_at, updated_at) VALUES ('e', ?, 'r', 1, 'h', 0, 0, "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00')", (binding,))


def test_bulk_inserts_refuse_rows_that_carry_different_columns(tmp_path: Path) -> None:
    """Every row of one bulk insert must carry the same columns: a row with an extra one is an error,
    not a value silently dropped."""
    from datetime import UTC, datetime

    engine = open_engine(f"sqlite:///{tmp_path / 'k.db'}")
    now = datetime(2026, 12, 6, tzinfo=UTC)
    with engine.begin() as conn:
        calendar = account_store.create_calendar(conn, "c")
        account = account_store.create_account(conn, "caldav", "a", "http://x/", {})
        binding = account_store.create_binding(conn, calendar, account, "/cal/", "two-way")
    link = {"event_id": "e", "binding_id": binding, "remote_id": "r", "etag": None, "base_version": 1,
            "base_hash": "h", "base_snapshot": None, "series_remote_id": None, "remote_updated": None,
            "remote_deleted": False, "seen_generation": 0, "created_at": now, "updated_at": now}
    with pytest.raises(ValueError, match="different columns"), engine.begin() as conn:
        link_store.insert_links(conn, [link, {**link, "remote_id": "r2", "surprise": 1}])
