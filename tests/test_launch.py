"""`calsync sync` hands its work to the service that owns a SQLite database (calsync.launch): real
processes, a real `calsync serve`, the Google emulator over HTTP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from calsync.engine.sync import BindingBusy, sync_held
from calsync.launch import ServiceLost, SyncArgs, parse_sync_args, post, service_address
from calsync.model import utcnow
from calsync.service import runtime
from calsync.store import accounts as account_store
from calsync.store import scheduling
from calsync.store.db import open_engine
from tests.helpers import GoogleApi, google_account_bound, migrated_sqlite


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")} | {"COLUMNS": "200"}


def calsync(*args: str, db: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """`python -m calsync`: the same entry point as the installed `calsync` command."""
    done = subprocess.run([sys.executable, "-m", "calsync", *args, "--db", str(db)], env=clean_env(),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    if ok:
        assert done.returncode == 0, done.stderr + done.stdout
    return done


def start_service(db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "calsync", "serve", "--no-workers", "--port", "0",
                             "--db", str(db)], env=clean_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_record(db: Path, process: subprocess.Popen[str]) -> runtime.ServiceRecord:
    for _ in range(400):
        record = runtime.read(db)
        if record is not None and record.pid == process.pid:
            httpx.get(f"{record.url}/healthz", timeout=5).raise_for_status()
            return record
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.05)
    raise AssertionError("the service wrote no record")


@pytest.fixture()
def bound_db(tmp_path: Path, google_url: str) -> tuple[Path, GoogleApi, str]:
    """erin's Google account with her primary calendar bound, made in this process (what `account add`
    and `calendar bind` make; those commands are tests/test_cli.py's): the subject here is `sync`."""
    db = tmp_path / "calsync.db"
    api = GoogleApi(google_url, "erin")
    calendar = api.primary_id()
    api.seed(calendar, 12)
    engine = open_engine(migrated_sqlite(db))
    try:
        google_account_bound(engine, google_url, "erin", calendar)
    finally:
        engine.dispose()
    return db, api, calendar


@pytest.fixture()
def service(bound_db: tuple[Path, GoogleApi, str]) -> Iterator[tuple[runtime.ServiceRecord, Path]]:
    db = bound_db[0]
    process = start_service(db)
    try:
        yield wait_for_record(db, process), db
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert not os.path.exists(runtime.record_path(db)), "a stopped service leaves its record behind"


def test_sync_is_done_by_the_running_service(service: tuple[runtime.ServiceRecord, Path],
                                             bound_db: tuple[Path, GoogleApi, str]) -> None:
    record, db = service
    _, api, calendar = bound_db
    first = calsync("sync", db=db)
    assert f"synced by the calsync service at {record.url}" in first.stderr
    assert "full" in first.stdout and "12" in first.stdout

    api.insert(calendar, "Added remotely")
    report = json.loads(calsync("sync", "--json", db=db).stdout)
    assert report["inbound"][0]["created"] == 1 and report["inbound"][0]["requests"] == 1
    assert set(report) == {"inbound", "outbound", "conferences"}  # the same JSON as a sync in this process
    key = calsync("apikey", "create", "--user", "default", "--scope", "read", db=db).stdout.split()[-1]
    listed = httpx.get(f"{record.url}/api/v1/events", params={"limit": 100}, headers={"Authorization": f"Bearer {key}"})
    assert len(listed.json()["events"]) == 13

    here = calsync("sync", "--local", db=db)
    assert "synced by" not in here.stderr and "incremental" in here.stdout


def test_a_record_whose_process_is_gone_is_ignored(bound_db: tuple[Path, GoogleApi, str]) -> None:
    db = bound_db[0]
    finished = subprocess.Popen(["true"])
    finished.wait()
    runtime.claim(db, runtime.ServiceRecord("http://127.0.0.1:9", finished.pid, "x", None))
    assert runtime.read(db) is None
    done = calsync("sync", "--json", db=db)
    assert json.loads(done.stdout)["inbound"][0]["created"] == 12


def test_a_service_that_does_not_answer_leaves_the_sync_to_this_process(
        bound_db: tuple[Path, GoogleApi, str]) -> None:
    db = bound_db[0]
    closed = unused_port()
    runtime.claim(db, runtime.ServiceRecord(f"http://127.0.0.1:{closed}", os.getpid(), "x", None))
    done = calsync("sync", "--json", db=db)
    assert "does not answer" in done.stderr and "syncing in this process" in done.stderr
    assert json.loads(done.stdout)["inbound"][0]["created"] == 12


def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_bad_requests_to_the_service_get_clear_errors(service: tuple[runtime.ServiceRecord, Path]) -> None:
    record, db = service
    nobody = "0" * 32  # a whole id goes to the service (a prefix is resolved, and synced, by the command)
    unknown = calsync("sync", "--binding", nobody, db=db, ok=False)
    assert unknown.returncode == 1 and "404" in unknown.stderr and f"no binding with id '{nobody}'" in unknown.stderr
    prefix = calsync("sync", "--binding", "nope", db=db, ok=False)
    assert prefix.returncode == 1 and "no binding with id 'nope'" in prefix.stderr and "Traceback" not in prefix.stderr

    control = f"{record.url}/control/sync"
    assert httpx.post(control, json={}).status_code == 401
    assert httpx.post(control, json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": f"Bearer {record.token}"}
    assert httpx.post(control, json={"bindings": "x"}, headers=auth).status_code == 422
    assert httpx.post(control, json={"fast": True}, headers=auth).status_code == 422

    runtime.claim(db, record._replace(token="stolen"))  # a client with a wrong secret: refused, told why
    refused = calsync("sync", db=db, ok=False)
    assert refused.returncode == 1 and "401" in refused.stderr
    runtime.claim(db, record)


def test_a_database_failure_in_the_service_is_reported_not_a_bare_500(
        service: tuple[runtime.ServiceRecord, Path]) -> None:
    record, db = service
    import sqlite3

    with sqlite3.connect(db) as conn:  # the service's database loses a table under it
        conn.execute("ALTER TABLE bindings RENAME TO bindings_gone")
    try:
        failed = calsync("sync", db=db, ok=False)
    finally:
        with sqlite3.connect(db) as conn:
            conn.execute("ALTER TABLE bindings_gone RENAME TO bindings")
    assert failed.returncode == 1
    assert "503" in failed.stderr and "database failed: OperationalError" in failed.stderr, failed.stderr
    assert runtime.read(db) == record, "the service keeps running"
    assert calsync("sync", "--json", db=db).returncode == 0


def test_a_second_service_on_the_same_database_is_refused(service: tuple[runtime.ServiceRecord, Path]) -> None:
    record, db = service
    second = start_service(db)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2
    assert f"another calsync service (pid {record.pid})" in err
    assert runtime.read(db) == record


def test_a_sync_someone_asked_for_waits_for_a_workers_lease(bound_db: tuple[Path, GoogleApi, str]) -> None:
    db = bound_db[0]
    engine = open_engine(str(db))
    try:
        with engine.begin() as conn:
            (binding,) = account_store.list_bindings(conn)
            assert scheduling.claim_named_binding(conn, binding["id"], "worker-1", utcnow(), 30) is not None
        with pytest.raises(BindingBusy):
            sync_held(engine, "control-1", wait_seconds=0.2)
        with engine.begin() as conn:
            assert account_store.get_binding(conn, binding["id"])["lease_owner"] == "worker-1"  # left alone
            scheduling.release_binding(conn, binding["id"], "worker-1", utcnow(), 300, None)
            assert scheduling.claim_named_binding(conn, binding["id"], "worker-1", utcnow(), 0.5) is not None

        started = time.monotonic()
        report = sync_held(engine, "control-1", wait_seconds=10)
        assert time.monotonic() - started >= 0.3  # it waited for the worker's lease to run out
        assert report.ok and report.inbound[0].created == 12
        with engine.begin() as conn:
            after = account_store.get_binding(conn, binding["id"])
        assert after["lease_owner"] is None and after["next_poll_at"] is not None
    finally:
        engine.dispose()


@pytest.mark.parametrize("args,expected", [
    ([], SyncArgs()),
    (["--json", "--full", "--db", "x.db", "--binding", "a", "--binding=b", "--config=c.toml"],
     SyncArgs(bindings=("a", "b"), full=True, db="x.db", config="c.toml", as_json=True)),
    (["--force", "--no-force", "--local"], SyncArgs(force=False, local=True)),
    (["--help"], None),
    (["--db"], None),
    (["--db", "--json"], None),
    (["--jsn"], None),
    (["--json=1"], None),
])
def test_sync_options_are_read_or_left_to_the_full_cli(args: list[str], expected: SyncArgs | None) -> None:
    assert parse_sync_args(args) == expected


@pytest.mark.parametrize("url,expected", [
    ("http://127.0.0.1:8123", ("127.0.0.1", 8123)),
    ("http://[::1]:8123", ("::1", 8123)),
    ("http://localhost:9000/", ("localhost", 9000)),
    ("http://localhost", ("localhost", 80)),
    ("http://[::1]", ("::1", 80)),
])
def test_the_service_address_is_read_from_its_url(url: str, expected: tuple[str, int]) -> None:
    assert service_address(url) == expected


def test_the_launcher_imports_stay_light() -> None:
    """Every delegated `calsync sync` pays for these imports; the heavy ones stay out."""
    code = ("import sys, calsync.launch; heavy = {'pathlib', 'typing', 'urllib.parse', 'sqlalchemy', 'httpx'}; "
            "print(sorted(heavy & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def one_answer_server(answer: bytes) -> int:
    """A loopback server that reads one request and sends `answer` (raw bytes), then closes."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            conn.recv(65536)
            conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1])


def test_the_command_reads_plain_and_chunked_answers_and_notices_broken_ones() -> None:
    plain = one_answer_server(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
    assert post("127.0.0.1", plain, "/x", b"{}", {}) == (200, b'{"a":1}')
    chunked = one_answer_server(b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n")
    assert post("127.0.0.1", chunked, "/x", b"{}", {}) == (409, b'{"a":1}')
    for broken in (b"", b"HTTP/1.1 200 OK\r\nContent-Le", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        with pytest.raises(ServiceLost):
            post("127.0.0.1", one_answer_server(broken), "/x", b"{}", {})


def test_a_connection_that_breaks_during_the_sync_is_an_error_not_a_second_sync(
        bound_db: tuple[Path, GoogleApi, str]) -> None:
    db = bound_db[0]
    port = one_answer_server(b"")
    runtime.claim(db, runtime.ServiceRecord(f"http://127.0.0.1:{port}", os.getpid(), "x", None))
    done = calsync("sync", "--json", db=db, ok=False)
    assert done.returncode == 1 and "broke during the sync" in done.stderr and done.stdout == ""
    engine = open_engine(str(db))
    try:
        with engine.begin() as conn:
            binding_id = account_store.list_bindings(conn)[0]["id"]
            assert account_store.get_binding(conn, binding_id)["sync_token"] is None  # not synced here
    finally:
        engine.dispose()
