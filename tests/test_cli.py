"""The CLI as a user runs it: real processes, the emulator over HTTP, a SQLite file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import GoogleApi, google_account_bound, migrated_sqlite


def calsync(*args: str, db: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("CALSYNC_DB", None)
    done = subprocess.run(
        [sys.executable, "-m", "calsync.cli", *args, "--db", str(db)],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120, check=False,
    )
    if ok:
        assert done.returncode == 0, done.stderr + done.stdout
    return done


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


def test_account_bind_sync_list(tmp_path: Path, google_url: str) -> None:
    db = tmp_path / "cli.db"
    api = GoogleApi(google_url, "carol")
    calendar = api.primary_id()
    api.seed(calendar, 30)
    account = calsync("account", "add", "google", "--name", "work", "--token", "carol",
                      "--base-url", google_url, db=db).stdout.strip()
    assert len(account) == 32
    remote = as_json(calsync("calendar", "remote", account, "--json", db=db))
    assert [c["remote_id"] for c in remote] == [calendar]
    bound = as_json(calsync("calendar", "bind", account, calendar, "--name", "Work", "--json", db=db))
    assert set(bound) == {"calendar_id", "binding_id"}

    summary = as_json(calsync("sync", "--json", db=db))["inbound"]
    assert summary[0]["created"] == 30 and summary[0]["full"] is True and summary[0]["status"] == "ok"
    again = as_json(calsync("sync", "--json", db=db))["inbound"]
    assert again[0]["requests"] == 1 and again[0]["full"] is False

    events = as_json(calsync("events", "list", "--calendar", bound["calendar_id"], "--json", db=db))
    assert len(events) == 30
    required = {"id", "calendar_id", "title", "description", "start", "end", "all_day", "status", "version",
                "source", "updated_at_source", "created_at", "updated_at", "links"}
    assert required <= set(events[0])
    assert events[0]["links"][0]["binding_id"] == bound["binding_id"]
    assert {"binding_id", "remote_id", "etag"} <= set(events[0]["links"][0])
    assert [e["start"] for e in events] == sorted(e["start"] for e in events)

    gone = events[0]
    api.delete(calendar, gone["links"][0]["remote_id"])
    calsync("sync", db=db)
    listed = as_json(calsync("events", "list", "--include-deleted", "--json", db=db))
    (tombstone,) = [e for e in listed if e["deleted"]]
    assert tombstone["id"] == gone["id"] and gone["deletion"] is None
    assert tombstone["deletion"]["by"] == f"google:{bound['binding_id']}"
    assert gone["links"][0]["remote_id"] in tombstone["deletion"]["proof"] and tombstone["deletion"]["at"]

    status = as_json(calsync("status", "--json", db=db))
    assert status["bindings"][0]["has_sync_token"] is True
    assert status["bindings"][0]["last_sync_status"] == "ok"
    human = calsync("sync", "--full", db=db).stdout
    assert "full" in human and "ok" in human


def test_sync_leases_each_binding_and_waits_for_one_synced_elsewhere(tmp_path: Path, google_url: str) -> None:
    """`calsync sync` in its own process (no service: PostgreSQL, or SQLite with none running) must
    not sync a binding a worker of another process is syncing: it waits for the lease, then syncs."""
    from datetime import timedelta

    from calsync.model import utcnow
    from calsync.store import accounts as account_store
    from calsync.store import scheduling
    from calsync.store.db import open_engine

    db = tmp_path / "lease.db"
    api = GoogleApi(google_url, "lease-user")
    calendar = api.primary_id()
    api.seed(calendar, 3)
    engine = open_engine(migrated_sqlite(db))
    try:
        # the account and binding made in this process, as `account add` and `calendar bind` make them
        # (test_account_bind_sync_list runs those commands): the subject here is `sync`
        binding = google_account_bound(engine, google_url, "lease-user", calendar, account_name="w")[1]["binding_id"]
        # a worker elsewhere holds the binding, with a lease far longer than the CLI takes to start on any
        # machine, and gives it back once the CLI says it waits (the lease used to be left to run out: 8 s
        # of every run waited out, and under load the CLI could start after it had, never waiting at all)
        with engine.begin() as conn:
            assert scheduling.claim_named_binding(conn, binding, "worker-elsewhere", utcnow(), 600.0) is not None
        env = {**os.environ, "COLUMNS": "200"}
        env.pop("CALSYNC_DB", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "calsync.cli", "sync", "--json", "--db", str(db)], env=env, text=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert process.stderr is not None
            heard = ""
            for line in process.stderr:  # until the CLI says it waits (the end of its output first: it did not)
                heard += line
                if "being synced elsewhere; waiting" in " ".join(heard.split()):
                    break
            assert "being synced elsewhere; waiting" in " ".join(heard.split()), heard
            with engine.begin() as conn:
                held = account_store.get_binding(conn, binding)
                assert held["lease_owner"] == "worker-elsewhere" and held["sync_token"] is None, "not synced meanwhile"
                scheduling.release_binding(conn, binding, "worker-elsewhere", utcnow(), 0.0, None)
                released = account_store.get_binding(conn, binding)["next_poll_at"]
            out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, heard + err + out
        assert json.loads(out)["inbound"][0]["created"] == 3
        with engine.begin() as conn:
            row = account_store.get_binding(conn, binding)
        assert row["lease_owner"] is None, "the CLI's own lease is released"
        put_off = max(released, utcnow() + timedelta(seconds=60))
        assert row["next_poll_at"] is not None and row["next_poll_at"] > put_off, \
            "the workers' next poll is put off: the binding was just synced"
    finally:
        engine.dispose()

    unknown = calsync("sync", "--binding", "nope", db=db, ok=False)
    assert unknown.returncode == 1 and "nope" in unknown.stderr and "Traceback" not in unknown.stderr


@pytest.mark.parametrize("args,message", [
    (["calendar", "bind", "nope", "x"], "no account with id 'nope'"),
    (["events", "list", "--calendar", "nope"], "no local calendar with id 'nope'"),
    (["account", "add", "outlook2", "--name", "x", "--token", "t"], "unknown provider"),
    (["account", "add", "google", "--name", "x"], "--token is required"),
    (["account", "add", "graph", "--name", "x", "--token", " "], "the token must not be empty"),
    (["account", "add", "caldav", "--username", "u"], "CalDAV needs --url and --username"),
    (["account", "add", "caldav", "--url", "http://127.0.0.1:9", "--username", "u"],
     "--password is required (or set CALSYNC_CALDAV_PASSWORD)"),
    (["conflicts", "resolve", "nope", "--keep", "local"], "no conflict with id 'nope'"),
    (["conflicts", "resolve", "nope", "--keep", "both"], "--keep must be local or remote"),
])
def test_bad_input_gets_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    done = calsync(*args, db=tmp_path / "bad.db", ok=False)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_bind_checks_direction_and_remote_calendar(tmp_path: Path, google_url: str) -> None:
    db = tmp_path / "bind.db"
    account = calsync("account", "add", "google", "--name", "w", "--token", "dave",
                      "--base-url", google_url, db=db).stdout.strip()
    wrong = calsync("calendar", "bind", account, "dave@example.com", "--direction", "sideways", db=db, ok=False)
    assert wrong.returncode == 2 and "--direction must be one of" in wrong.stderr
    missing = calsync("calendar", "bind", account, "nobody@example.com", db=db, ok=False)
    assert missing.returncode == 1 and "has no calendar" in missing.stderr
    calsync("calendar", "bind", account, "dave@example.com", db=db)
    twice = calsync("calendar", "bind", account, "dave@example.com", db=db, ok=False)
    assert "already bound" in twice.stderr
    assert len(as_json(calsync("calendar", "list", "--json", db=db))) == 1


def test_unreachable_account_is_refused(tmp_path: Path) -> None:
    done = calsync("account", "add", "google", "--name", "w", "--token", "t",
                   "--base-url", "http://127.0.0.1:9", db=tmp_path / "u.db", ok=False)
    assert done.returncode == 1 and "does not answer" in done.stderr


def test_conference_create_and_list(tmp_path: Path, google_url: str, zoom_url: str) -> None:
    from calsync.store.db import open_engine
    from tests.helpers import zoom_settings

    db = tmp_path / "conf.db"
    config = tmp_path / "calsync.toml"
    settings = zoom_settings(zoom_url)
    config.write_text("[zoom]\n" + "".join(
        f'{key.removeprefix("CALSYNC_ZOOM_").lower()} = "{value}"\n' for key, value in settings.items()))
    api = GoogleApi(google_url, "erin")
    calendar = api.primary_id()
    api.insert(calendar, "Sprint review")
    engine = open_engine(migrated_sqlite(db))  # account and binding as the commands make them (see above)
    try:
        google_account_bound(engine, google_url, "erin", calendar, account_name="w")
    finally:
        engine.dispose()
    calsync("sync", "--config", str(config), db=db)
    (event,) = as_json(calsync("events", "list", "--json", db=db))
    made = as_json(calsync("conference", "create", event["id"], "--provider", "zoom", "--config", str(config),
                           "--json", db=db))
    assert {"event_id", "provider", "conference_id", "join_url", "state", "last_synced_at"} <= set(made)
    assert made["state"] == "active" and made["provider"] == "zoom" and made["event_id"] == event["id"]
    assert as_json(calsync("conference", "list", "--json", db=db)) == [made]
    again = calsync("conference", "create", event["id"], "--provider", "zoom", "--config", str(config), db=db,
                    ok=False)
    assert again.returncode == 1 and "already has a conference" in again.stderr
    unknown = calsync("conference", "create", event["id"], "--provider", "jitsi", db=db, ok=False)
    assert "not configured" in unknown.stderr
    api.delete(calendar, api.list_all(calendar)[0]["id"])
    calsync("sync", "--config", str(config), db=db)
    assert as_json(calsync("conference", "list", "--json", db=db))[0]["state"] == "deleted"
    bad = calsync("sync", "--config", str(tmp_path / "missing.toml"), db=db, ok=False)
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_provider_registry_describes_every_kind() -> None:
    """Every kind has a factory and a credential description that `account add` can fill from its
    flags, and the factory makes a client from exactly those credentials."""
    import typer

    from calsync.cli import app
    from calsync.model import Account
    from calsync.providers import KINDS, SUPPORTED, provider_for

    assert SUPPORTED == tuple(KINDS) and set(SUPPORTED) >= {"google", "caldav", "graph"}
    add = typer.main.get_command(app).commands["account"].commands["add"]  # type: ignore[attr-defined]
    flags = {p.name: p for p in add.params}
    for name, kind in KINDS.items():
        assert kind.name == name and kind.label and callable(kind.factory)
        assert kind.credentials and kind.describe()
        for credential in kind.credentials:
            assert credential.key in flags, f"{name}: no --{credential.key} flag for {credential.description}"
            assert flags[credential.key].envvar == credential.envvar
            assert not credential.secret or credential.envvar, "a secret that cannot be prompted for names its envvar"
        credentials = {c.key: "x" for c in kind.credentials}
        client = provider_for(Account("", name, "n", "http://127.0.0.1:9", credentials))
        try:
            assert callable(client.list_calendars)
        finally:
            client.close()
    assert KINDS["google"].describe() == KINDS["graph"].describe() == "a bearer token"
    assert KINDS["caldav"].describe() == "the server URL, a user name and a password"


def test_unknown_provider_kind_lists_the_supported_ones() -> None:
    from calsync.model import Account
    from calsync.providers import (
        SUPPORTED,
        UnknownProvider,
        provider_for,
        provider_kind,
    )

    with pytest.raises(UnknownProvider) as raised:
        provider_kind("outlook2")
    assert str(raised.value) == f"unknown provider 'outlook2'; supported: {', '.join(SUPPORTED)}"
    with pytest.raises(ValueError, match="supported: google, caldav, graph"):
        provider_for(Account("", "outlook2", "n", None, {}))


def test_reading_the_provider_registry_imports_no_provider() -> None:
    code = ("import sys, calsync.providers; "
            "print(sorted(m for m in sys.modules if m.split('.')[-1] in ('google', 'caldav', 'graph')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
