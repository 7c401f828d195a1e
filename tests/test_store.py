"""The store: migrations make the schema (not create_all), and match the tables the code uses."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, Engine, event, inspect

from calsync.store import repo
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
        repo.create_calendar(conn, "kept")
    with open_engine(url).begin() as conn:
        assert [c["name"] for c in repo.list_calendars(conn)] == ["kept"]


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
        repo.create_binding(conn, "no-such-calendar", "no-such-account", "x", "two-way")


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
    plans = _plans_of(engine, lambda conn: repo.attach_orphan_exceptions(conn, "x", {"a": "event-a", "b": "event-b"}))
    plans += _plans_of(engine, lambda conn: repo.live_series_members(conn, "x", ["a", "b"]))
    assert len(plans) == 3, plans
    for plan in plans:
        assert "SEARCH event_links USING" in plan and "(binding_id=? AND " in plan, plan
    assert "ix_event_links_binding_id_series_remote_id_event_id (binding_id=? AND series_remote_id=?)" in plans[0]
