"""Secrets sealed at rest (store/sealing.py, store/keys.py, `calsync keys`): no known secret in the
database file, the logs, the CLI's output or any API answer; a missing or wrong key is one clear
error that wipes nothing; rotation under load loses nothing, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import logging
import os
import random
import secrets
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from sqlalchemy import create_engine, select, text

from calsync import caldav_server
from calsync.caldav_server import CalDAVServer
from calsync.conferencing.webhook import WebhookAdapter
from calsync.emulators.server import serve_in_thread
from calsync.engine.sync import sync_once
from calsync.service.app import create_app
from calsync.store import accounts as account_store
from calsync.store import keys as key_store
from calsync.store import scheduling, sealing
from calsync.store.common import new_id
from calsync.store.db import alembic_config, open_engine
from calsync.store.schema import accounts, channels
from tests.helpers import auth_headers, page_user
from tests.helpers import GoogleApi


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test picks its key source itself."""
    monkeypatch.delenv(sealing.ENV_KEYS, raising=False)
    monkeypatch.delenv(sealing.ENV_KEY_FILE, raising=False)


def calsync(
    *args: str, db: Path, env: dict[str, str] | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    run_env.update({"COLUMNS": "200", **(env or {})})
    done = subprocess.run(
        [sys.executable, "-m", "calsync.cli", *args, "--db", str(db)],
        capture_output=True, text=True, env=run_env, stdin=subprocess.DEVNULL, timeout=120, check=False,
    )
    if ok:
        assert done.returncode == 0, done.stderr + done.stdout
    return done


def database_bytes(db: Path) -> bytes:
    """The SQLite file and its write-ahead log, as a thief would copy them."""
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*") if not p.name.endswith(".key"))


# --- the key ring -------------------------------------------------------------------------------


def test_a_key_file_is_made_on_first_use_owner_only_and_refused_when_others_may_read_it(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    engine = open_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        account_store.create_account(conn, "google", "a", None, {"token": "t"})
        key_file = Path(key_store.key_file(conn))
    assert key_file == tmp_path / "k.db.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_file.chmod(0o640)  # noticed by a running process too
    with pytest.raises(sealing.KeyFileUnsafe, match=r"chmod 600"), engine.begin() as conn:
        account_store.get_account(conn, conn.execute(select(accounts.c.id)).scalar_one())
    engine.dispose()


def test_sealed_values_round_trip_and_name_the_key_they_need(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = sealing.new_key(), sealing.new_key()
    monkeypatch.setenv(sealing.ENV_KEYS, f"{first}, {second}")
    ring = sealing.load(None)
    assert ring.ids == (sealing.key_id(first), sealing.key_id(second))
    sealed = ring.seal("hunter2")
    assert sealed.startswith(f"v1:{sealing.key_id(first)}:") and "hunter2" not in sealed
    assert ring.open(sealed, "x") == "hunter2"
    old_only = sealing.Keyring((second,), "test")
    under_old = old_only.seal("kept")
    assert ring.open(under_old, "x") == "kept"  # an old key still opens
    assert sealing.sealed_key_id(ring.reseal(under_old, "x")) == sealing.key_id(first)
    with pytest.raises(sealing.SecretKeyWrong, match=rf"account 7.*{sealing.key_id(first)}.*not in test"):
        old_only.open(sealed, "account 7")
    damaged = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(sealing.SecretKeyWrong, match="damaged"):
        ring.open(damaged, "x")
    monkeypatch.setenv(sealing.ENV_KEYS, "not-a-key")
    with pytest.raises(sealing.SecretKeyError, match="not a Fernet key"):
        sealing.load(None)


def test_migration_0009_seals_plain_rows_and_drops_the_plain_column(db_url: str) -> None:
    token, channel_token = "plain" + secrets.token_hex(12), "chan" + secrets.token_hex(12)
    old = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    config = alembic_config()
    with old.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0008")
    with old.begin() as conn:
        now = "2026-01-01 00:00:00"
        conn.execute(text("INSERT INTO accounts (id, provider, name, credentials, state, created_at, updated_at) "
                          "VALUES ('a1', 'google', 'a', :c, 'ok', :n, :n)"),
                     {"c": json.dumps({"token": token}), "n": now})
        conn.execute(text("INSERT INTO calendars (id, name, created_at, updated_at) VALUES ('c1', 'c', :n, :n)"),
                     {"n": now})
        conn.execute(text("INSERT INTO bindings (id, calendar_id, account_id, remote_calendar_id, direction, "
                          "conflict_policy, full_sync_generation, created_at, updated_at) "
                          "VALUES ('b1', 'c1', 'a1', 'primary', 'two-way', 'ask', 0, :n, :n)"), {"n": now})
        conn.execute(text("INSERT INTO channels (id, binding_id, state, channel_id, token, created_at, updated_at) "
                          "VALUES ('h1', 'b1', 'active', 'h1', :t, :n, :n)"), {"t": channel_token, "n": now})
    old.dispose()
    engine = open_engine(db_url)
    with engine.begin() as conn:
        assert account_store.get_account(conn, "a1").credentials == {"token": token}
        assert account_store.list_bindings(conn)[0]["account_id"] == "a1"  # the bindings came through
        stored_token = conn.execute(select(channels.c.token)).scalar_one()
        assert sealing.is_sealed(stored_token)
        channel = scheduling.channel_by_channel_id(conn, "h1")
        assert channel is not None and channel["token"] == channel_token
        dump = " ".join(str(v) for row in conn.execute(select(accounts)) for v in row)
    assert token not in dump and "credentials" not in {c.name for c in accounts.c}
    engine.dispose()
    if db_url.startswith("sqlite"):
        assert token.encode() not in database_bytes(Path(db_url.split(":///", 1)[1]))


# --- nothing leaks ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def radicale() -> Iterator[CalDAVServer]:
    """A real Radicale, asked with a secret password (it accepts any: the point is what calsync sends and keeps)."""
    if not caldav_server.available("radicale"):
        pytest.skip("radicale is not installed")
    server = caldav_server.start_server("radicale", password="dpw" + secrets.token_hex(16))
    yield server
    server.close()


def test_no_known_secret_in_the_database_file_logs_cli_output_or_api_answers(
    tmp_path: Path, radicale: CalDAVServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A CalDAV account whose (secret) password syncs a real server, a Google account whose token is
    only stored, listed, rotated and sent to a server that refuses it (the Google emulator takes a
    token for the user's name, which its answers repeat), a push channel's token, and a conference
    webhook's secret from the settings: none of them in the SQLite file, the logs, the CLI's output or
    any answer of the service."""
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "s.db"
    google_token = "gtok" + secrets.token_hex(16)
    caldav_password = radicale.password
    channel_token = "chtk" + secrets.token_hex(16)
    webhook_secret = "hook" + secrets.token_hex(16)  # a conference system's secret (settings, never stored)
    known = {"Google token": google_token, "CalDAV password": caldav_password,
             "channel token": channel_token, "webhook secret": webhook_secret}
    seen: dict[str, str] = {}
    collection = caldav_server.make_calendar(radicale, f"cal-{secrets.token_hex(6)}")
    with radicale.client() as dav:
        dav.put(f"{collection}standup.ics", content=caldav_server.ics("standup-1", "Standup").encode(),
                headers={"Content-Type": "text/calendar"}).raise_for_status()

    def cli(*args: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        done = calsync(*args, db=db, ok=ok, env={"CALSYNC_CONFHOOK_URL": "http://127.0.0.1:9/hook",
                                                 "CALSYNC_CONFHOOK_SECRET": webhook_secret, **env})
        seen[f"calsync {' '.join(args)}"] = done.stdout + done.stderr
        return done

    # a server that is not Google: every call of the account fails at once, and the error is printed
    google = cli("account", "add", "google", "--name", "work", "--base-url", f"{radicale.url}not-google/",
                 "--no-verify", CALSYNC_TOKEN=google_token).stdout.strip()
    caldav = cli("account", "add", "caldav", "--url", radicale.url, "--username", radicale.username,
                 CALSYNC_CALDAV_PASSWORD=caldav_password).stdout.strip()
    cli("calendar", "remote", caldav, "--json")
    cli("calendar", "remote", google, ok=False)
    cli("calendar", "bind", caldav, collection, "--name", "Work", "--json")
    cli("calendar", "bind", google, "primary", "--name", "Dead", "--json", ok=False)
    cli("sync", "--json", ok=False)
    for args in (("account", "list"), ("account", "list", "--json"), ("calendar", "list", "--json"),
                 ("status",), ("status", "--json"), ("events", "list", "--json"), ("keys", "status"),
                 ("keys", "status", "--json"), ("conference", "providers")):
        cli(*args, ok=False)
    cli("keys", "rotate", "--grace", "0", "--json")

    engine = open_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        binding = account_store.list_bindings(conn, caldav)[0]["id"]
        row_id = new_id()
        scheduling.add_channel(conn, row_id, binding, {"state": "pending", "channel_id": row_id,
                                                       "token": channel_token, "address": "http://x/"})
        scheduling.activate_channel(conn, row_id, "res-1", None)
    sync_once(engine, force=True)  # in this process: its logs are captured too
    adapters = {"webhook": WebhookAdapter("http://127.0.0.1:9/hook", webhook_secret)}
    app = create_app(engine, adapters=adapters, open_page_user=page_user(engine))
    server = serve_in_thread(app)
    answers: dict[str, str] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            def ask(method: str, path: str, **kwargs: Any) -> httpx.Response:
                response = http.request(method, path, **kwargs)
                answers[f"{method} {path} {kwargs.get('headers', '')}"] = f"{response.headers}\n{response.text}"
                return response

            paths = {r.path for r in app.routes if "GET" in getattr(r, "methods", ())}
            for path in sorted(p for p in paths if "{" not in p):
                ask("GET", path)
            calendar_id = next(c["id"] for c in ask("GET", "/api/v1/calendars").json()["calendars"]
                               if c["name"] == "Work")
            page = ask("GET", "/api/v1/events", params={"calendar_id": calendar_id}).json()
            assert page["events"], "the sync with the sealed password brought the remote event"
            for event in page["events"]:
                ask("GET", f"/api/v1/events/{event['id']}")
            google_headers = {"x-goog-channel-id": row_id, "x-goog-resource-id": "res-1",
                              "x-goog-resource-state": "exists"}
            assert ask("POST", "/webhooks/google",
                       headers={**google_headers, "x-goog-channel-token": channel_token}).status_code == 200
            assert ask("POST", "/webhooks/google",
                       headers={**google_headers, "x-goog-channel-token": "wrong"}).status_code == 403
    finally:
        server.stop()
        engine.dispose()

    stored = database_bytes(db)
    logs = caplog.text + "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    for name, value in known.items():
        assert value.encode() not in stored, f"the {name} is in the database file"
        assert value not in logs, f"the {name} is in the logs"
        for command_line, output in seen.items():
            assert value not in output, f"the {name} is in the output of {command_line}"
        for request, answer in answers.items():
            assert value not in answer, f"the {name} is in the answer to {request}"
    assert len(answers) >= 8 and len(seen) >= 15


def test_the_scan_would_see_a_secret_stored_plain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan above is not blind: without sealing, the secret is in the file's bytes."""
    db = tmp_path / "plain.db"
    secret = "plain" + secrets.token_hex(16)
    monkeypatch.setattr(account_store, "seal", lambda conn, plain: plain)
    engine = open_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        account_store.create_account(conn, "google", "a", None, {"token": secret})
    engine.dispose()
    assert secret.encode() in database_bytes(db)


# --- a missing or wrong key --------------------------------------------------------------------------


def test_a_missing_key_file_is_a_clear_error_and_wipes_nothing(tmp_path: Path, google_url: str) -> None:
    db = tmp_path / "m.db"
    remote = GoogleApi(google_url, "dora").primary_id()
    account = calsync("account", "add", "google", "--name", "d", "--base-url", google_url,
                      env={"CALSYNC_TOKEN": "dora"}, db=db).stdout.strip()
    calsync("calendar", "bind", account, remote, "--name", "D", db=db)
    key_file = tmp_path / "m.db.key"
    hidden = key_file.rename(tmp_path / "elsewhere.key")

    for args in (("calendar", "remote", account), ("sync",), ("worker",)):
        done = calsync(*args, db=db, ok=False)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        message = " ".join(done.stderr.split())
        assert "Traceback" not in done.stderr
        assert "no secret key" in message and str(key_file) in message, message
    # a new account would be sealed under a new key beside values under the lost one: refused
    done = calsync("account", "add", "google", "--name", "e", "--base-url", google_url, "--no-verify",
                   env={"CALSYNC_TOKEN": "eve"}, db=db, ok=False)
    assert done.returncode == 1 and "restore that key file" in " ".join(done.stderr.split())
    assert not key_file.exists()
    status = calsync("keys", "status", "--json", db=db, ok=False)
    assert status.returncode == 1 and json.loads(status.stdout)["keys"][0]["state"] == "missing"

    hidden.rename(key_file)  # restored: everything is still there
    assert json.loads(calsync("calendar", "remote", account, "--json", db=db).stdout)[0]["remote_id"] == remote
    assert json.loads(calsync("sync", "--json", db=db).stdout)["inbound"][0]["status"] == "ok"
    listed = json.loads(calsync("account", "list", "--json", db=db).stdout)
    assert [a["id"] for a in listed] == [account]


def test_a_wrong_key_names_the_key_the_value_needs(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    calsync("account", "add", "caldav", "--url", "http://127.0.0.1:9/", "--username", "bob", "--no-verify",
            env={"CALSYNC_CALDAV_PASSWORD": "pw"}, db=db)
    needed = sealing.key_id(sealing.read_key_file(tmp_path / "w.db.key")[0])
    wrong = sealing.new_key()
    account = json.loads(calsync("account", "list", "--json", db=db).stdout)[0]["id"]
    done = calsync("calendar", "remote", account, db=db, env={"CALSYNC_SECRET_KEY": wrong}, ok=False)
    message = " ".join(done.stderr.split())
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"account {account}" in message and needed in message and "CALSYNC_SECRET_KEY" in message, message
    assert wrong not in done.stdout + done.stderr  # never the key itself
    # the service refuses to start rather than failing account by account
    done = calsync("worker", db=db, env={"CALSYNC_SECRET_KEY": wrong}, ok=False)
    assert done.returncode == 1 and needed in done.stderr and "Traceback" not in done.stderr
    # the right key through the variable opens it
    right = sealing.read_key_file(tmp_path / "w.db.key")[0]
    done = calsync("keys", "status", "--json", db=db, env={"CALSYNC_SECRET_KEY": f"{wrong},{right}"})
    assert [k["state"] for k in json.loads(done.stdout)["keys"]] == ["current", "old"]


# --- rotation under load --------------------------------------------------------------------------


def test_rotation_under_load_loses_nothing(db_url: str) -> None:
    engine = open_engine(db_url)
    expected: dict[str, dict[str, Any]] = {}  # account id -> its credentials, as last committed
    channel_tokens: dict[str, str] = {}
    lock = threading.Lock()
    with engine.begin() as conn:
        calendar = account_store.create_calendar(conn, "c")
        for n in range(40):
            credentials = {"token": f"t-{n}-{secrets.token_hex(8)}", "n": 0}
            account = account_store.create_account(conn, "google", f"a{n}", None, credentials)
            expected[account] = credentials
            binding = account_store.create_binding(conn, calendar, account, f"r{n}", "two-way")
            row_id = new_id()
            channel_tokens[row_id] = secrets.token_urlsafe(16)
            scheduling.add_channel(conn, row_id, binding, {"state": "pending", "channel_id": row_id,
                                                           "token": channel_tokens[row_id]})
    before = key_store.keyring(engine.connect()).current_id
    stop = threading.Event()
    failures: list[BaseException] = []
    counts = {"writes": 0, "reads": 0}

    def writer(seed: int) -> None:
        chance = random.Random(seed)
        try:
            while not stop.is_set():
                with lock:
                    ids = list(expected)
                if chance.random() < 0.3:
                    credentials = {"token": secrets.token_hex(8), "n": 0}
                    with engine.begin() as conn:
                        account = account_store.create_account(conn, "google", "new", None, credentials)
                else:
                    account = chance.choice(ids)
                    with lock:
                        credentials = {**expected[account], "n": expected[account]["n"] + 1}
                    with engine.begin() as conn:
                        account_store.update_credentials(conn, account, credentials)
                with lock:
                    expected[account] = credentials
                    counts["writes"] += 1
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            failures.append(exc)

    def reader(seed: int) -> None:
        chance = random.Random(seed)
        try:
            while not stop.is_set():
                with lock:
                    account = chance.choice(list(expected))
                with engine.connect() as conn:
                    got = account_store.get_account(conn, account).credentials
                    channel = scheduling.channel_by_channel_id(conn, chance.choice(list(channel_tokens)))
                assert channel is not None and channel["token"] == channel_tokens[channel["id"]]
                assert set(got) == {"token", "n"}
                with lock:
                    counts["reads"] += 1
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    # one writer on SQLite (one writer at a time anyway), two on PostgreSQL
    writers = 1 if db_url.startswith("sqlite") else 2
    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    threads += [threading.Thread(target=reader, args=(10 + i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        first = key_store.rotate(engine, grace=0.2, batch_size=7)
        second = key_store.rotate(engine, grace=0.2, batch_size=7)  # straight again, still under load
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not failures, failures
    assert counts["writes"] > 20 and counts["reads"] > 20, counts
    assert first.retired == [before] and second.retired == [first.new_id]
    with engine.connect() as conn:
        ring = key_store.keyring(conn)
        assert ring.ids == (second.new_id,)  # the old keys are gone from the file
        for account, credentials in expected.items():
            assert account_store.get_account(conn, account).credentials == credentials
        for row_id, token in channel_tokens.items():
            channel = scheduling.channel_by_channel_id(conn, row_id)
            assert channel is not None and channel["token"] == token
        assert key_store.sealed_counts(conn) == {
            "accounts.credentials_sealed": {second.new_id: len(expected)},
            "channels.token": {second.new_id: len(channel_tokens)},
        }
    engine.dispose()


def test_rotation_with_the_keys_in_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = sealing.new_key()
    monkeypatch.setenv(sealing.ENV_KEYS, old)
    engine = open_engine(f"sqlite:///{tmp_path / 'e.db'}")
    with engine.begin() as conn:
        account = account_store.create_account(conn, "google", "a", None, {"token": "x"})
    assert not (tmp_path / "e.db.key").exists()  # the variable is the source: no file made
    with pytest.raises(key_store.RotationError, match="keys generate"):
        key_store.rotate(engine, grace=0)
    new = sealing.new_key()
    monkeypatch.setenv(sealing.ENV_KEYS, f"{new},{old}")
    done = key_store.rotate(engine, grace=0)
    assert done.report.resealed == 1 and done.kept == [sealing.key_id(old)] and not done.retired
    monkeypatch.setenv(sealing.ENV_KEYS, new)  # the old key dropped from the variable: all still opens
    with engine.begin() as conn:
        assert account_store.get_account(conn, account).credentials == {"token": "x"}
    engine.dispose()


def test_one_rotation_at_a_time(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'r.db'}")
    with engine.begin() as conn:
        account = account_store.create_account(conn, "google", "a", None, {"token": "x"})
    key_file = tmp_path / "r.db.key"
    with sealing.changing(key_file), pytest.raises(sealing.RotationBusy, match="another process"):
        key_store.rotate(engine, grace=0)
    assert len(sealing.read_key_file(key_file)) == 1  # untouched
    done = key_store.rotate(engine, grace=0, keep_old=True)
    assert len(sealing.read_key_file(key_file)) == 2 and done.kept
    assert key_store.retire_unused(engine) == done.kept
    with engine.begin() as conn:
        assert account_store.get_account(conn, account).credentials == {"token": "x"}
    engine.dispose()


def test_the_service_answers_503_naming_the_key_when_a_secret_cannot_be_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'h.db'}")
    token = secrets.token_urlsafe(12)
    with engine.begin() as conn:
        account = account_store.create_account(conn, "google", "a", None, {"token": "x"})
        calendar = account_store.create_calendar(conn, "c")
        binding = account_store.create_binding(conn, calendar, account, "primary", "two-way")
        scheduling.add_channel(conn, "ch1", binding, {"state": "pending", "channel_id": "ch1", "token": token})
        scheduling.activate_channel(conn, "ch1", "res", None)
    needed = sealing.key_id(sealing.read_key_file(tmp_path / "h.db.key")[0])
    monkeypatch.setenv(sealing.ENV_KEYS, sealing.new_key())
    server = serve_in_thread(create_app(engine))
    try:
        answer = httpx.post(f"{server.url}/webhooks/google", headers={
            "x-goog-channel-id": "ch1", "x-goog-channel-token": token, "x-goog-resource-id": "res",
            "x-goog-resource-state": "exists"}, timeout=30)
    finally:
        server.stop()
    assert answer.status_code == 503
    assert "push channel ch1" in answer.json()["detail"] and needed in answer.json()["detail"]
    monkeypatch.delenv(sealing.ENV_KEYS)
    with engine.begin() as conn:  # nothing was written or wiped
        channel = scheduling.channel_by_channel_id(conn, "ch1")
        assert channel is not None and channel["token"] == token and channel["messages"] == 0
    engine.dispose()


def test_keys_generate_prints_one_key_and_stores_it_nowhere(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "calsync.cli", "keys", "generate"], capture_output=True, text=True, timeout=60,
        check=True, env={k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")})
    key = done.stdout.strip()
    assert sealing.Keyring((key,), "test").ids == (sealing.key_id(key),)  # a valid Fernet key
    assert "stored nowhere" in " ".join(done.stderr.split()) and key not in done.stderr
    assert list(tmp_path.iterdir()) == []
