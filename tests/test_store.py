"""The store: migrations make the schema (not create_all), and match the tables the code uses."""
from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

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


def test_orphan_exceptions_are_found_through_the_exception_link_index(tmp_path: Path) -> None:
    """Attaching orphans runs on every page that links a new event: it must cost what the page
    holds, an index lookup per new series, not a read of the binding's link rows."""
    from sqlalchemy import text

    engine = open_engine(f"sqlite:///{tmp_path / 'calsync.db'}")
    with engine.begin() as conn:
        plan = conn.execute(text(
            "EXPLAIN QUERY PLAN SELECT event_links.event_id, event_links.series_remote_id FROM event_links "
            "JOIN events ON events.id = event_links.event_id WHERE event_links.binding_id = :b "
            "AND event_links.series_remote_id IN (:s1, :s2) AND events.recurring_event_id IS NULL"),
            {"b": "x", "s1": "a", "s2": "b"}).all()
        assert repo.attach_orphan_exceptions(conn, "x", {"a": "event-a", "b": "event-b"}) == 0
    detail = " ".join(str(row[-1]) for row in plan)
    assert "COVERING INDEX ix_event_links_binding_id_series_remote_id_event_id (binding_id=? AND series_remote_id=?)" \
        in detail, detail
