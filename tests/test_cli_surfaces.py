"""What people see of the CLI (issue 22): tables that never cut ids (piped: tab-separated, whole values;
on a terminal: folded), ids taken as unique prefixes, outside text printed escaped, `status` and `sync`
readable at 80 columns, sync reports that agree with the binding's stats, CalDAV mistakes named as
such, and `events list` paging. Real processes, the emulators and a real Radicale over HTTP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from calsync.caldav_server import available, free_port
from calsync.emulators.server import serve_in_thread
from calsync.engine.sync import sync_once
from calsync.service.app import create_app
from calsync.store import accounts as account_store
from calsync.store import users
from calsync.store.db import open_engine
from tests.helpers import GoogleApi, auth_headers, google_account_bound, migrated_sqlite

ID = re.compile(r"\b[0-9a-f]{32}\b")
SGR = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # Rich's own colours, bold, cursor (its progress line) on a terminal
COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # styling only: a cursor move or screen clear stays visible
ELLIPSIS = "…"


def calsync(
    *args: str,
    db: Path,
    ok: bool = True,
    terminal: bool = False,
    columns: int = 200,
) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, stdout a pipe; `terminal` makes Rich treat it as a terminal of
    `columns` columns (TTY_COMPATIBLE=1), as a person's would be."""
    env = {**os.environ, "COLUMNS": str(columns)}
    for name in ("CALSYNC_DB", "TTY_COMPATIBLE", "FORCE_COLOR", "NO_COLOR", "CALSYNC_CLI"):
        env.pop(name, None)
    if terminal:
        env["TTY_COMPATIBLE"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "calsync.cli", *args, "--db", str(db)],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    if ok:
        assert done.returncode == 0, done.stderr + done.stdout
    return done


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


def visible(text: str) -> list[str]:
    """The lines a terminal shows (Rich's styling taken out)."""
    return SGR.sub("", text).splitlines()


def google_binding(
    db: Path, google_url: str, user: str, *, name: str = "Work", events: int = 0, account_name: str = "w"
) -> tuple[GoogleApi, str, str, dict[str, str]]:
    """A Google account (its emulator user `user`) with its primary calendar bound and synced once: made
    in this process, as `account add`, `calendar bind --name` and `sync` make it (those commands are
    tests/test_cli.py's; here the subject is what the commands after them print)."""
    api = GoogleApi(google_url, user)
    calendar = api.primary_id()
    if events:
        api.seed(calendar, events)
    engine = open_engine(migrated_sqlite(db))
    try:
        account, bound = google_account_bound(engine, google_url, user, calendar, account_name=account_name,
                                              name=name)
        assert sync_once(engine).ok
    finally:
        engine.dispose()
    return api, calendar, account, bound


# --- tables ------------------------------------------------------------------------------------


def test_piped_tables_keep_whole_ids(tmp_path: Path, google_url: str) -> None:
    db = tmp_path / "piped.db"
    _, _, account, bound = google_binding(db, google_url, "piper", events=3)
    calsync("apikey", "create", "--user", "default", "--scope", "read", "--name", "k", db=db)
    listings = {
        ("events", "list"): ("start", "end", "title", "status", "v", "source", "id"),
        ("account", "list"): ("id", "provider", "name", "state", "base url"),
        ("calendar", "list"): ("id", "name", "events", "bindings"),
        ("user", "list"): ("id", "name", "admin", "created"),
        ("apikey", "list"): ("id", "user", "name", "scope", "starts", "last used", "revoked"),
    }
    for command, header in listings.items():
        done = calsync(*command, db=db, columns=40)  # a narrow COLUMNS changes nothing in a pipe
        lines = done.stdout.splitlines()
        assert tuple(lines[0].split("\t")) == header, (command, lines[0])
        assert len(lines) > 1 and ELLIPSIS not in done.stdout, (command, done.stdout)
        for line in lines[1:]:
            cells = line.split("\t")
            assert len(cells) == len(header), (command, line)
            if "id" in header:
                assert ID.fullmatch(cells[header.index("id")]), (command, line)
    events = as_json(calsync("events", "list", "--json", db=db))
    piped = calsync("events", "list", db=db).stdout
    assert {e["id"] for e in events} == {line.split("\t")[-1] for line in piped.splitlines()[1:]}
    (calendar_line,) = calsync("calendar", "list", db=db).stdout.splitlines()[1:]
    assert calendar_line.split("\t")[0] == bound["calendar_id"] and bound["binding_id"] in calendar_line
    assert calsync("account", "list", db=db).stdout.splitlines()[1].split("\t")[0] == account


def test_terminal_tables_fold_ids_instead_of_cutting_them(tmp_path: Path, google_url: str) -> None:
    db = tmp_path / "fold.db"
    google_binding(db, google_url, "folder", events=2)
    event_ids = {e["id"] for e in as_json(calsync("events", "list", "--json", db=db))}
    done = calsync("events", "list", db=db, terminal=True, columns=60)
    lines = visible(done.stdout)
    assert ELLIPSIS not in done.stdout and all(len(line) <= 60 for line in lines), done.stdout
    # each id, folded over lines of its column, is whole: its pieces read in order spell it
    id_column = "".join(re.sub(r"[^0-9a-f]", "", line.rsplit("│", 2)[-2]) for line in lines if line.count("│") >= 2)
    for event_id in event_ids:
        assert event_id in id_column, (event_id, done.stdout)


# --- ids as prefixes ---------------------------------------------------------------------------


def test_ids_are_taken_as_unique_prefixes_and_an_ambiguous_one_is_an_error(tmp_path: Path, google_url: str) -> None:
    db = tmp_path / "prefix.db"
    api, calendar, account, bound = google_binding(db, google_url, "prefixer", events=4)
    binding = bound["binding_id"]

    # unique prefixes: a calendar for `events list`, a binding for `sync --binding`, an account for
    # `calendar remote`
    listed = as_json(calsync("events", "list", "--calendar", bound["calendar_id"][:6], "--json", db=db))
    assert len(listed) == 4
    report = as_json(calsync("sync", "--binding", binding[:7], "--json", db=db))
    assert [r["binding_id"] for r in report["inbound"]] == [binding]
    remote = as_json(calsync("calendar", "remote", account[:8], "--json", db=db))
    assert [c["remote_id"] for c in remote] == [calendar]

    # API keys: enough of them that two share a first digit (17 ids, 16 digits); the first made by the
    # command, the others in this process (a process each cost 16 interpreter starts, and proved nothing more)
    created = calsync("apikey", "create", "--user", "default", "--scope", "read", "--name", "k0", db=db)
    keys = [re.search(r"API key ([0-9a-f]{32})", created.stderr).group(1)]  # type: ignore[union-attr]
    engine = open_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            owner = users.default_owner(conn)
            keys += [users.create_api_key(conn, owner, "read", f"k{n}")[0] for n in range(1, 17)]
    finally:
        engine.dispose()
    shared = next(k[0] for k in keys if sum(other.startswith(k[0]) for other in keys) > 1)
    ambiguous = calsync("apikey", "revoke", shared, db=db, ok=False)
    assert ambiguous.returncode == 1 and "Traceback" not in ambiguous.stderr
    message = " ".join(ambiguous.stderr.split())
    assert f"'{shared}' is ambiguous" in message
    for key in keys:
        if key.startswith(shared):
            assert key in message, "the error lists the ids the prefix matches"
    unique = next(k for k in keys if not any(o != k and o.startswith(k[:6]) for o in keys))
    revoked = calsync("apikey", "revoke", unique[:6], db=db)
    assert f"API key {unique} revoked" in " ".join(revoked.stdout.split())
    (row,) = [r for r in as_json(calsync("apikey", "list", "--json", db=db)) if r["id"] == unique]
    assert row["revoked_at"] is not None

    missing = calsync(
        "calendar", "unbind", "ffffffffff" if not binding.startswith("f") else "0000000000", db=db, ok=False
    )
    assert missing.returncode == 1 and "no binding with id" in missing.stderr
    gone = calsync("calendar", "unbind", binding[:5], db=db)
    assert f"binding {binding} removed" in " ".join(gone.stdout.split())
    assert as_json(calsync("status", "--json", db=db))["bindings"] == []


# --- outside text ------------------------------------------------------------------------------

EVIL = "\x1b]0;pwned\x07\x1b[2J\x1b[1;1HStandup [bold]x[/bold]\x9b31m"


def test_an_event_title_with_terminal_escapes_prints_escaped(tmp_path: Path, google_url: str) -> None:
    db = tmp_path / "evil.db"
    api = GoogleApi(google_url, "mallory")
    calendar = api.primary_id()
    api.insert(calendar, EVIL)
    google_binding(db, google_url, "mallory")
    (event,) = as_json(calsync("events", "list", "--json", db=db))
    assert event["title"] == EVIL, "the store keeps the title as it came; only printing escapes it"
    shown = "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[1;1HStandup [bold]x[/bold]\\x9b31m"
    for terminal in (False, True):
        out = calsync("events", "list", db=db, terminal=terminal, columns=250).stdout
        text = COLOURS.sub("", out)
        assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text, repr(out)
        assert shown in text, (terminal, text)  # markup printed as written, escapes visible
    # an error quoting outside text is escaped too
    bad = calsync("events", "list", "--calendar", "\x1b[2Jx", db=db, ok=False)
    assert "\x1b" not in bad.stderr and "\\x1b[2Jx" in bad.stderr


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[tuple[httpx.Client, Engine]]:
    engine = open_engine(f"sqlite:///{tmp_path / 'api.db'}")
    server = serve_in_thread(create_app(engine))
    try:
        with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30, headers=auth_headers(engine)) as client:
            yield client, engine
    finally:
        server.stop()
        engine.dispose()


def test_the_api_refuses_control_characters_in_event_text(api: tuple[httpx.Client, Engine]) -> None:
    client, engine = api
    with engine.begin() as conn:
        calendar = account_store.create_calendar(conn, "Team")
    slot = {"calendar_id": calendar, "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z"}
    for field, value in (
        ("title", "a\x1b[2Jb"),
        ("description", "x\x07"),
        ("location", "\x01room"),
        ("title", "carriage\rreturn"),
    ):
        answer = client.post("/events", json={"title": "t", **slot, field: value})
        assert answer.status_code == 422, (field, answer.text)
        assert field in answer.text and "control characters" in answer.text
    fine = client.post("/events", json={**slot, "title": "tab\there", "description": "two\nlines"})
    assert fine.status_code == 201, fine.text
    event = fine.json()
    patched = client.patch(
        f"/events/{event['id']}", json={"title": "\x1b]0;x\x07"}, headers={"If-Match": fine.headers["etag"]}
    )
    assert patched.status_code == 422 and "title" in patched.text


# --- status and sync at 80 columns -------------------------------------------------------------

LONG_USER = "alexandra-maria-konstantinopoulou-whitfield-smythe"
LONG_NAME = "Quarterly planning and engineering all-hands (Europe, Middle East and Africa)"


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "piped"])
def test_status_and_sync_fit_80_columns_for_a_binding_with_long_names(
    tmp_path: Path, google_url: str, terminal: bool
) -> None:
    db = tmp_path / "wide.db"
    _, calendar, _, bound = google_binding(
        db, google_url, LONG_USER, name=LONG_NAME, events=2, account_name=f"{LONG_USER}-work-account"
    )
    assert len(calendar) > 60
    status = calsync("status", db=db, terminal=terminal, columns=80)
    synced = calsync("sync", db=db, terminal=terminal, columns=80)
    for done in (status, synced):
        lines = visible(done.stdout)
        assert lines and all(len(line) <= 80 for line in lines), "\n".join(lines)
        assert ELLIPSIS not in done.stdout and "..." not in done.stdout, done.stdout
        assert bound["binding_id"] in done.stdout, "the whole binding id, on one line"
    text = "".join(line.strip() for line in visible(status.stdout))
    squeezed = text.replace(" ", "")
    for whole in (calendar, LONG_NAME, f"{LONG_USER}-work-account"):
        assert whole.replace(" ", "") in squeezed, (whole, status.stdout)  # folded, never cut
    assert "incremental" in synced.stdout and "ok" in synced.stdout


def test_sync_report_and_the_binding_stats_agree(tmp_path: Path, google_url: str) -> None:
    db = tmp_path / "stats.db"
    api = GoogleApi(google_url, "statler")
    calendar = api.primary_id()
    api.seed(calendar, 5)
    engine = open_engine(migrated_sqlite(db))
    try:
        google_account_bound(engine, google_url, "statler", calendar, account_name="w")
    finally:
        engine.dispose()
    for args in (("sync", "--json"), ("sync", "--json"), ("sync", "--full", "--json")):
        (reported,) = as_json(calsync(*args, db=db))["inbound"]
        (binding,) = as_json(calsync("status", "--json", db=db))["bindings"]
        kept = binding["last_sync_stats"]
        assert reported["pages"] >= 1 and reported["requests"] >= 1, reported
        for key in ("pages", "requests", "created", "updated", "deleted", "unchanged", "conflicts"):
            assert kept[key] == reported[key], (args, key, kept, reported)


# --- CalDAV mistakes ---------------------------------------------------------------------------


@pytest.fixture()
def radicale_with_passwords() -> Iterator[str]:
    """A real Radicale that checks passwords (htpasswd, user alice, password right-one)."""
    if not available("radicale"):
        pytest.skip("radicale is not installed: pip install -e '.[dev]'")
    storage = Path(tempfile.mkdtemp(prefix="calsync-radicale-auth-"))
    (storage / "users").write_text("alice:right-one\n")
    (storage / "radicale.conf").write_text("")
    port = free_port()
    process = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "radicale",
            "--config",
            str(storage / "radicale.conf"),
            "--server-hosts",
            f"127.0.0.1:{port}",
            "--storage-filesystem-folder",
            str(storage / "collections"),
            "--auth-type",
            "htpasswd",
            "--auth-htpasswd-filename",
            str(storage / "users"),
            "--auth-htpasswd-encryption",
            "plain",
            "--logging-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_wrong_caldav_password_is_named_as_refused_credentials(
    tmp_path: Path, radicale_with_passwords: str, google_url: str
) -> None:
    db = tmp_path / "dav.db"
    wrong = calsync(
        "account",
        "add",
        "caldav",
        "--url",
        radicale_with_passwords,
        "--username",
        "alice",
        "--password",
        "wrong-one",
        db=db,
        ok=False,
    )
    message = " ".join(wrong.stderr.split())
    assert wrong.returncode == 1 and "the server refused the credentials" in message, message
    assert "does not answer" not in message and "wrong-one" not in message
    calsync(
        "account",
        "add",
        "caldav",
        "--url",
        radicale_with_passwords,
        "--username",
        "alice",
        "--password",
        "right-one",
        db=db,
    )

    # a web server that is no CalDAV server: the Google emulator
    elsewhere = calsync(
        "account", "add", "caldav", "--url", google_url, "--username", "alice", "--password", "x", db=db, ok=False
    )
    message = " ".join(elsewhere.stderr.split())
    assert elsewhere.returncode == 1 and "is not a CalDAV server" in message, message


def test_a_page_that_answers_everything_is_not_a_caldav_server(tmp_path: Path) -> None:
    """A web server that answers PROPFIND like GET (200, a page) is no CalDAV server either."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Page(BaseHTTPRequestHandler):
        def do_PROPFIND(self) -> None:  # noqa: N802 (the method's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html><body>Welcome</body></html>")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = calsync(
            "account",
            "add",
            "caldav",
            "--url",
            f"http://127.0.0.1:{server.server_port}/",
            "--username",
            "u",
            "--password",
            "p",
            db=tmp_path / "page.db",
            ok=False,
        )
    finally:
        server.shutdown()
    assert done.returncode == 1 and "is not a CalDAV server" in " ".join(done.stderr.split()), done.stderr


# --- events list paging ------------------------------------------------------------------------


def test_events_list_shows_a_screenful_and_says_how_many_more(tmp_path: Path, google_url: str) -> None:
    db = tmp_path / "pages.db"
    google_binding(db, google_url, "pager", events=27)
    first = calsync("events", "list", db=db)
    assert len(first.stdout.splitlines()) == 1 + 20
    assert "7 more event(s) not shown" in " ".join(first.stderr.split())
    limited = calsync("events", "list", "--limit", "5", db=db)
    assert len(limited.stdout.splitlines()) == 1 + 5 and "22 more" in limited.stderr
    everything = calsync("events", "list", "--all", db=db)
    assert len(everything.stdout.splitlines()) == 1 + 27 and "more" not in everything.stderr
    assert len(as_json(calsync("events", "list", "--json", db=db))) == 27, "--json lists all unless --limit"
    assert len(as_json(calsync("events", "list", "--json", "--limit", "3", db=db))) == 3


def test_scripts_calsync_runs_the_project_virtualenv(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "CALSYNC_VENV": str(Path(sys.executable).parent.parent)}
    if not (Path(env["CALSYNC_VENV"]) / "bin" / "calsync").exists():
        pytest.skip("this interpreter's environment has no calsync command")
    done = subprocess.run(
        [str(root / "scripts" / "calsync"), "--help"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0 and "events" in done.stdout, done.stderr
    missing = subprocess.run(
        [str(root / "scripts" / "calsync"), "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "CALSYNC_VENV": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1 and "run ./scripts/demo" in missing.stderr
