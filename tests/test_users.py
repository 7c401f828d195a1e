"""Users and API keys in the store: migration 0012 gives existing rows to a default user, keys are
stored as hashes only, and set-up keeps each binding within one user."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, select, text

from calsync.engine import setup
from calsync.store import accounts as account_store
from calsync.store import users
from calsync.store.db import alembic_config, open_engine
from calsync.store.schema import api_keys, metadata


def test_migration_0012_gives_every_existing_row_to_a_default_admin(db_url: str) -> None:
    old = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    config = alembic_config()
    with old.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0011")
    with old.begin() as conn:
        now = "2026-01-01 00:00:00"
        conn.execute(text("INSERT INTO accounts (id, provider, name, credentials_sealed, state, backoff_attempts, "
                          "created_at, updated_at) VALUES ('a1', 'caldav', 'a', '', 'ok', 0, :n, :n)"), {"n": now})
        conn.execute(text("INSERT INTO calendars (id, name, created_at, updated_at) VALUES ('c1', 'c', :n, :n)"),
                     {"n": now})
        conn.execute(text("INSERT INTO bindings (id, calendar_id, account_id, remote_calendar_id, direction, "
                          "conflict_policy, full_sync_generation, created_at, updated_at) "
                          "VALUES ('b1', 'c1', 'a1', 'primary', 'two-way', 'ask', 0, :n, :n)"), {"n": now})
        conn.execute(text(
            "INSERT INTO events (id, calendar_id, title, start, \"end\", range_start, range_end, all_day, status, "
            "attendees, sequence, extra, content_hash, version, source, updated_at_source, created_at, updated_at, "
            "deleted) VALUES ('e1', 'c1', 't', 's', 'e', 's', 'e', false, 'confirmed', '[]', 0, '{}', 'h', 1, 'x', "
            "'x', :n, :n, false)"), {"n": now})
    old.dispose()
    engine = open_engine(db_url)
    with engine.begin() as conn:
        (default,) = users.list_users(conn)
        assert default["name"] == "default" and default["is_admin"]
        assert [a["user_id"] for a in account_store.list_accounts(conn)] == [default["id"]]
        assert [c["user_id"] for c in account_store.list_calendars(conn)] == [default["id"]]
        # the rebuilt tables kept what refers to them (SQLite copies a table to change a column)
        assert [b["id"] for b in account_store.list_bindings(conn, user_id=default["id"])] == ["b1"]
        assert conn.execute(text("SELECT count(*) FROM events")).scalar_one() == 1
        assert users.event_owner(conn, "e1") == default["id"]
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        with pytest.raises(Exception):  # the owner is required now
            conn.execute(text("INSERT INTO calendars (id, name, created_at, updated_at) VALUES ('c2', 'c', :n, :n)"),
                         {"n": "2026-01-01 00:00:00"})
    engine.dispose()


def test_keys_are_stored_as_hashes_and_revoked_keys_are_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        alice = users.create_user(conn, "alice")
        key_id, key = users.create_api_key(conn, alice, "read", "laptop")
        with pytest.raises(users.NameTaken):
            users.create_user(conn, "alice")
    assert key.startswith(f"cs_{key_id}_") and len(key.split("_", 2)[2]) == 43
    with engine.begin() as conn:
        stored = conn.execute(select(api_keys)).mappings().one()
        assert key not in " ".join(str(v) for v in stored.values())
        assert stored["secret_hash"] == hashlib.sha256(key.split("_", 2)[2].encode()).hexdigest()
        owner = users.check_api_key(conn, key)
        assert owner is not None and (owner.user_id, owner.scope, owner.key_id) == (alice, "read", key_id)
        assert "secret_hash" not in users.list_api_keys(conn, alice)[0]
        for wrong in (key[:-1] + ("A" if key[-1] != "A" else "B"), "cs_x_y", "nonsense", key.replace("cs_", "")):
            assert users.check_api_key(conn, wrong) is None
        assert users.list_api_keys(conn)[0]["last_used_at"] is not None
        assert users.revoke_api_key(conn, key_id) is True
        assert users.revoke_api_key(conn, key_id) is False
        assert users.check_api_key(conn, key) is None


def test_a_binding_stays_within_one_user(engine: Engine) -> None:
    with engine.begin() as conn:
        alice = users.create_user(conn, "alice")
        bob = users.create_user(conn, "bob")
    account = setup.add_account(engine, "google", "g", None, {"token": "t"}, owner="alice")
    bobs_calendar = setup.add_calendar(engine, "Bob's", owner=bob)
    with pytest.raises(setup.SetupError, match="different users"):
        setup.bind_calendar(engine, account, "primary", bobs_calendar)
    with pytest.raises(setup.SetupError, match="another user"):
        setup.bind_calendar(engine, account, "primary", setup.NewCalendar("X"), owner="bob")
    bound = setup.bind_calendar(engine, account, "primary", setup.NewCalendar("X"), owner=alice)
    with engine.begin() as conn:
        assert users.calendar_owner(conn, bound.calendar_id) == alice
        assert users.binding_owner(conn, bound.binding_id) == alice
        assert account_store.list_bindings(conn, user_id=bob) == []


def test_reconnecting_matches_the_same_person_within_one_owner_only(engine: Engine) -> None:
    with engine.begin() as conn:
        users.create_user(conn, "alice")
        users.create_user(conn, "bob")
    grant = {"grant": "google-user", "user": "pat@example.com", "refresh_token": "r"}
    first = setup.connect_account(engine, "google", "pat", None, grant, owner="alice")
    again = setup.connect_account(engine, "google", "pat", None, grant, owner="alice")
    other = setup.connect_account(engine, "google", "pat", None, grant, owner="bob")
    assert again == setup.Connected(first.account_id, True)
    assert not other.reconnected and other.account_id != first.account_id


def test_a_new_database_has_no_user_until_one_is_needed(tmp_path: Path) -> None:
    """The first user made is the first admin; only rows made without a user make "default"."""
    engine = open_engine(f"sqlite:///{tmp_path / 'new.db'}")
    with engine.begin() as conn:
        assert users.list_users(conn) == []
        alice = users.create_user(conn, "alice", is_admin=True)
        assert users.default_owner(conn) == alice
    other = open_engine(f"sqlite:///{tmp_path / 'other.db'}")
    calendar = setup.add_calendar(other, "c")
    with other.begin() as conn:
        (default,) = users.list_users(conn)
        assert (default["name"], default["is_admin"]) == ("default", True)
        assert users.calendar_owner(conn, calendar) == default["id"]


def test_a_new_password_ends_the_users_sessions_and_no_one_elses(engine: Engine) -> None:
    from calsync.store import sessions

    with engine.begin() as conn:
        ann, bob = users.create_user(conn, "ann"), users.create_user(conn, "bob")
        sessions.set_password(conn, ann, "first password")
        anns, _ = sessions.create_session(conn, ann)
        bobs, _ = sessions.create_session(conn, bob)
        sessions.set_password(conn, ann, "second password")
        assert sessions.find_session(conn, anns) is None, "a stolen session dies with the old password"
        assert sessions.find_session(conn, bobs) is not None
        assert sessions.check_password(conn, "ann", "second password") == ann
        assert sessions.check_password(conn, "ann", "first password") is None
