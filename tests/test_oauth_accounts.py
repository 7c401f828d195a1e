"""Accounts held the way real clients hold them, end to end against the emulated authorization servers:
connect through the consent page (CLI loopback, web), tokens that expire mid-sync, revocation and
reconnect, Microsoft's refresh-token rotation across a crash, service accounts and app-only Graph."""

# ruff: noqa: S603 - the tests run calsync's own CLI
from __future__ import annotations

import functools
import json
import logging
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from calsync.credentials import grants, provider_maker
from calsync.credentials.tokens import StoredTokens
from calsync.emulators.google import GoogleEmulator
from calsync.emulators.google import create_app as google_app
from calsync.emulators.graph import GraphEmulator
from calsync.emulators.graph import create_app as graph_app
from calsync.emulators.oauth.tls import TlsFiles, ensure_tls_files
from calsync.emulators.server import RunningServer, serve_in_thread
from calsync.engine import setup
from calsync.engine.sync import sync_once
from calsync.store import accounts as account_store
from tests.helpers import auth_headers, page_user
from tests.helpers import auth_headers, local_events, token_of
from tests.oauth_helpers import answer_consent

CLIENT_ID, CLIENT_SECRET = "calsync-test.apps.googleusercontent.com", "test-secret"
MS_CLIENT = "11111111-2222-3333-4444-555555555555"
ALICE, BOB = "alice@example.com", "bob@example.com"


# --- servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def google_oauth_server() -> Iterator[RunningServer]:
    server = serve_in_thread(google_app(GoogleEmulator(oauth=True)))
    yield server
    server.stop()


@pytest.fixture()
def google(google_oauth_server: RunningServer) -> str:
    httpx.post(f"{google_oauth_server.url}/emulator/reset").raise_for_status()
    return google_oauth_server.url


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def graph_oauth_server(tls: TlsFiles) -> Iterator[RunningServer]:
    server = serve_in_thread(graph_app(GraphEmulator(oauth=True)), certfile=tls.cert, keyfile=tls.key)
    yield server
    server.stop()


@pytest.fixture()
def graph(graph_oauth_server: RunningServer, tls: TlsFiles) -> str:
    url = graph_oauth_server.url.replace("http://", "https://")
    httpx.post(f"{url}/emulator/reset", verify=trust(tls)).raise_for_status()
    return url


@functools.cache
def _context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def trust(tls: TlsFiles) -> ssl.SSLContext:
    """Trust the emulator's CA (certificate checks stay on)."""
    return _context(tls.ca_cert)


def seed(base: str, calendar: str, count: int, verify: Any = True) -> None:
    body = {"count": count, "start": "2026-12-01T00:00:00Z", "days": 30, "seed": 5}
    httpx.post(f"{base}/emulator/calendars/{calendar}/seed", json=body, verify=verify).raise_for_status()


def token_requests(base: str, verify: Any = True) -> list[dict[str, Any]]:
    return list(httpx.get(f"{base}/emulator/oauth/requests", verify=verify).raise_for_status().json()["requests"])


def refreshes(base: str, verify: Any = True) -> int:
    return sum(1 for r in token_requests(base, verify) if r.get("grant_type") == "refresh_token")


# --- connecting --------------------------------------------------------------------------------------


def calsync(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "calsync.cli", *args, "--db", str(db)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done


def connect_by_cli(args: list[str], db: Path, decision: str = "allow", verify: Any = True
                   ) -> subprocess.CompletedProcess[str]:
    """Run `calsync account connect ...`, answer its consent page as a browser would (the URL is read
    from standard error), follow the redirect to its loopback listener, and wait for it to finish."""
    process = subprocess.Popen(
        [sys.executable, "-m", "calsync.cli", "account", "connect", *args, "--no-browser", "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )
    assert process.stderr is not None
    lines: list[str] = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith(("http://", "https://")) and "client_id=" in line:
            location = answer_consent(line.strip(), decision, verify=verify)
            httpx.get(location, timeout=30)  # the browser lands on calsync's loopback listener
            break
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, out, "".join(lines) + err)


def google_connect_args(base: str, user: str = ALICE) -> list[str]:
    return ["google", "--base-url", base, "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
            "--login-hint", user]


def test_cli_loopback_connect_google_ends_with_a_synced_calendar(tmp_path: Path, google: str) -> None:
    seed(google, ALICE, 25)
    db = tmp_path / "c.db"
    done = connect_by_cli(google_connect_args(google), db)
    assert done.returncode == 0, done.stderr
    account = done.stdout.split()[-1]
    assert len(account) == 32
    calsync("calendar", "bind", account, ALICE, "--name", "Alice", db=db)
    summary = json.loads(calsync("sync", "--json", db=db).stdout)["inbound"]
    assert summary[0]["status"] == "ok" and summary[0]["created"] == 25
    status = json.loads(calsync("status", "--json", db=db).stdout)
    assert [a["state"] for a in status["accounts"]] == ["ok"]


def test_cli_connect_denied_stores_nothing(tmp_path: Path, google: str) -> None:
    db = tmp_path / "c.db"
    done = connect_by_cli(google_connect_args(google), db, decision="deny")
    assert done.returncode != 0 and "access_denied" in done.stderr
    assert json.loads(calsync("account", "list", "--json", db=db).stdout) == []


def test_cli_loopback_connect_microsoft_ends_with_a_synced_calendar(tmp_path: Path, graph: str, tls: TlsFiles) -> None:
    db = tmp_path / "c.db"
    user = "carol@contoso.example"
    done = connect_by_cli(
        ["microsoft", "--client-id", MS_CLIENT, "--tenant", "organizations", "--authority-url", graph,
         "--ca-file", tls.ca_cert, "--base-url", graph, "--login-hint", user],
        db, verify=trust(tls),
    )
    assert done.returncode == 0, done.stderr
    account = done.stdout.split()[-1]
    remote = json.loads(calsync("calendar", "remote", account, "--json", db=db).stdout)
    calendar = remote[0]["remote_id"]
    seed(graph, calendar, 12, verify=trust(tls))
    calsync("calendar", "bind", account, calendar, "--name", "Carol", db=db)
    summary = json.loads(calsync("sync", "--json", db=db).stdout)["inbound"]
    assert summary[0]["status"] == "ok" and summary[0]["created"] == 12


# --- the token lifecycle ---------------------------------------------------------------------------


def connected_google(engine: Engine, base: str, user: str = ALICE) -> str:
    """An account connected through the consent page (the flow the CLI runs, driven in-process)."""
    from calsync.credentials.connect import Attempt, GoogleClient, check_answer, google_consent_url, google_redeem
    from tests.oauth_helpers import query_of

    client = GoogleClient(CLIENT_ID, CLIENT_SECRET, base)
    attempt, redirect = Attempt(), "http://127.0.0.1:9/"
    location = answer_consent(google_consent_url(client, redirect, attempt, user))
    credentials = google_redeem(client, check_answer(query_of(location), attempt), attempt, redirect)
    return setup.connect_account(engine, "google", user, base, credentials).account_id


def bind_primary(engine: Engine, account_id: str, calendar: str) -> str:
    return setup.bind_calendar(engine, account_id, calendar, setup.NewCalendar(calendar)).binding_id


def test_tokens_expiring_during_a_20_page_initial_sync_are_refreshed_once_each(engine: Engine, google: str) -> None:
    seed(google, ALICE, 200)
    account = connected_google(engine, google)
    binding = bind_primary(engine, account, ALICE)
    before = refreshes(google)
    pages: list[int] = []

    def expire_every_third_page(page: int, _result: Any) -> None:
        pages.append(page)
        if page % 3 == 0:
            httpx.post(f"{google}/emulator/oauth/expire-access-tokens").raise_for_status()

    make = provider_maker(engine, page_size=10)
    report = sync_once(engine, binding_ids=[binding], make_provider=make, after_page=expire_every_third_page)
    (result,) = report.inbound
    assert result.status == "ok" and result.created == 200, result.message
    assert len(pages) == 20
    assert len(local_events(engine, binding)) == 200, "no page lost or applied twice"
    assert refreshes(google) - before == 6, "one refresh per expiry (pages 3, 6, ..., 18)"


def test_tokens_living_two_seconds_are_renewed_ahead_during_a_20_page_sync(engine: Engine, google: str) -> None:
    """Access tokens that live two seconds (set on the emulator) while a slow 20-page initial sync runs:
    each is renewed at half its life, so no request meets an expired one and no page is lost or
    repeated; one refresh per token life, not one per request."""
    seed(google, ALICE, 200)
    account = connected_google(engine, google)
    binding = bind_primary(engine, account, ALICE)
    httpx.post(f"{google}/emulator/oauth/token-lifetime", json={"seconds": 2}).raise_for_status()
    httpx.post(f"{google}/emulator/oauth/expire-access-tokens").raise_for_status()
    httpx.delete(f"{google}/emulator/requests")
    before = refreshes(google)
    started = time.monotonic()
    report = sync_once(engine, binding_ids=[binding], make_provider=provider_maker(engine, page_size=10),
                       after_page=lambda _page, _result: time.sleep(0.2))
    elapsed = time.monotonic() - started
    (result,) = report.inbound
    assert result.status == "ok" and result.created == 200, result.message
    assert len(local_events(engine, binding)) == 200
    statuses = [r["status"] for r in httpx.get(f"{google}/emulator/requests").json()["requests"]]
    # one 401: the token expired on the emulator above (calsync could not know); never one afterwards
    assert statuses.count(401) == 1, "renewed before each two-second token expired"
    assert 2 <= refreshes(google) - before <= elapsed / 1.0 + 2


@pytest.fixture()
def pg_engine(pg_url: str) -> Iterator[Engine]:
    from calsync.store.db import open_engine

    engine = open_engine(pg_url)
    yield engine
    engine.dispose()


def test_two_workers_share_one_refresh_per_expiry(pg_engine: Engine, google: str) -> None:
    """Two threads, each with its own client of the same account (two workers on PostgreSQL), meet
    an expired token together: one asks the token endpoint, the other takes its answer."""
    account = connected_google(pg_engine, google)
    with pg_engine.begin() as conn:
        stored = account_store.get_account(conn, account)
    sources = [StoredTokens(pg_engine, stored) for _ in range(2)]
    first = sources[0].token()
    before = refreshes(google)
    for round_ in range(3):
        httpx.post(f"{google}/emulator/oauth/expire-access-tokens").raise_for_status()
        got: list[str] = []
        barrier = threading.Barrier(2)

        def renew(source: StoredTokens, rejected: str, barrier: threading.Barrier = barrier,
                  got: list[str] = got) -> None:
            barrier.wait()
            got.append(source.renew(rejected))

        threads = [threading.Thread(target=renew, args=(s, first)) for s in sources]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(got) == 2 and got[0] == got[1] != first, "both hold the one new token"
        assert refreshes(google) - before == round_ + 1, "exactly one refresh per expiry"
        first = got[0]


def test_a_revoked_grant_stops_the_account_until_it_is_connected_again(
        tmp_path: Path, engine: Engine, google: str) -> None:
    seed(google, ALICE, 5)
    account = connected_google(engine, google)
    binding = bind_primary(engine, account, ALICE)
    assert sync_once(engine, binding_ids=[binding]).inbound[0].status == "ok"
    token = token_of(engine, binding)
    httpx.post(f"{google}/emulator/oauth/revoke", json={"user": ALICE}).raise_for_status()
    httpx.post(f"{google}/emulator/oauth/expire-access-tokens").raise_for_status()
    httpx.delete(f"{google}/emulator/oauth/requests")
    (result,) = sync_once(engine, binding_ids=[binding]).inbound
    assert result.status == "auth-failed"
    with engine.begin() as conn:
        stopped = account_store.get_account(conn, account)
    assert stopped.state == "reauth-required" and "invalid_grant" in (stopped.last_error or "")
    for _ in range(3):  # later passes do not call the provider at all
        assert sync_once(engine, binding_ids=[binding]).inbound[0].status == "auth-failed"
    assert refreshes(google) == 1, "one refresh attempt, no retry loop"

    again = connected_google(engine, google)
    assert again == account, "the same user connected again is the same account"
    (resumed,) = sync_once(engine, binding_ids=[binding]).inbound
    assert resumed.status == "ok" and not resumed.full, "resumes from the stored sync token"
    assert token_of(engine, binding) is not None and token is not None


def test_a_token_endpoint_that_fails_for_a_while_does_not_stop_the_account(engine: Engine, google: str) -> None:
    account = connected_google(engine, google)
    binding = bind_primary(engine, account, ALICE)
    httpx.post(f"{google}/emulator/oauth/expire-access-tokens").raise_for_status()
    # google-auth tries a 503 three times before giving up: three failures outlast one refresh
    httpx.post(f"{google}/emulator/oauth/fail-token", json={"status": 503, "count": 3}).raise_for_status()
    (result,) = sync_once(engine, binding_ids=[binding]).inbound
    assert result.status == "error" and "token endpoint" in (result.message or "")
    with engine.begin() as conn:
        assert account_store.get_account(conn, account).state == "ok", "a passing failure does not stop it"
    assert sync_once(engine, binding_ids=[binding]).inbound[0].status == "ok"


def test_microsoft_rotation_survives_a_crash_between_the_answer_and_the_commit(
        engine: Engine, graph: str, tls: TlsFiles) -> None:
    """The answer's new refresh token is lost (the process dies before storing it): the stored, older
    one still works once, as Microsoft documents, and then the newest is kept. With strict rotation
    on (the old one refused), the account goes to reauth-required once: never a loop."""
    from calsync.credentials.connect import MicrosoftClient, microsoft_flow, microsoft_redeem
    from calsync.providers.base import ReauthRequired
    from tests.oauth_helpers import query_of

    client = MicrosoftClient(MS_CLIENT, None, "organizations", graph, tls.ca_cert)
    flow = microsoft_flow(client, "http://localhost:9/", "dave@contoso.example")
    credentials = microsoft_redeem(client, flow, query_of(answer_consent(flow["auth_uri"], verify=trust(tls))))
    account = setup.connect_account(engine, "graph", "dave", graph, credentials).account_id
    with engine.begin() as conn:
        stored = account_store.get_account(conn, account)

    class Crash(Exception):
        pass

    def crash_after_answer(c: Any) -> grants.Issued:
        grants.refresh(c)  # the token endpoint answered (and rotated) ...
        raise Crash  # ... and the process died before the store commit

    with pytest.raises(Crash):
        StoredTokens(engine, stored, refresher=crash_after_answer).renew(str(stored.credentials["access_token"]))
    with engine.begin() as conn:
        assert account_store.get_account(conn, account).credentials["refresh_token"] == credentials["refresh_token"]
    source = StoredTokens(engine, stored)
    assert source.renew(str(stored.credentials["access_token"])), "the stale refresh token works once"
    with engine.begin() as conn:
        kept = account_store.get_account(conn, account).credentials["refresh_token"]
    assert kept != credentials["refresh_token"], "the newest refresh token is kept"

    # strict rotation (a used refresh token is dead at once): the crash loses the only live one
    httpx.post(f"{graph}/emulator/oauth/rotation", json={"strict": True}, verify=trust(tls)).raise_for_status()
    with engine.begin() as conn:
        now = account_store.get_account(conn, account)
    with pytest.raises(Crash):
        StoredTokens(engine, now, refresher=crash_after_answer).renew(str(now.credentials["access_token"]))
    httpx.delete(f"{graph}/emulator/oauth/requests", verify=trust(tls))
    source = StoredTokens(engine, now)
    with pytest.raises(ReauthRequired):
        source.renew(str(now.credentials["access_token"]))
    with engine.begin() as conn:
        assert account_store.get_account(conn, account).state == "reauth-required"
    with pytest.raises(ReauthRequired):  # and then it stops asking: never a loop
        source.renew(str(now.credentials["access_token"]))
    assert refreshes(graph, trust(tls)) == 1


# --- accounts an organisation authorises once --------------------------------------------------------


def test_a_service_account_impersonating_two_users_syncs_both(tmp_path: Path, google: str) -> None:
    db = tmp_path / "c.db"
    key = httpx.post(f"{google}/emulator/oauth/service-accounts",
                     json={"users": [ALICE, BOB]}).raise_for_status().json()
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(key))
    for user, count in ((ALICE, 4), (BOB, 6)):
        seed(google, user, count)
        account = calsync("account", "add", "google-service-account", "--key-file", str(key_file),
                          "--subject", user, "--base-url", google, db=db).stdout.split()[-1]
        calsync("calendar", "bind", account, user, "--name", user, db=db)
    summary = json.loads(calsync("sync", "--json", db=db).stdout)["inbound"]
    assert sorted(s["created"] for s in summary) == [4, 6]
    from calsync.store import service_keys
    from calsync.store.db import open_engine

    engine = open_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            assert service_keys.count(conn) == 1, "the key is stored once for both users"
            for row in account_store.list_accounts(conn):
                assert account_store.get_account(conn, row["id"]).credentials["key"] == key
    finally:
        engine.dispose()


def test_app_only_graph_syncs_a_users_calendar_through_users_id(tmp_path: Path, graph: str, tls: TlsFiles) -> None:
    db = tmp_path / "c.db"
    user = "erin@contoso.example"
    httpx.post(f"{graph}/emulator/oauth/clients", verify=trust(tls),
               json={"client_id": MS_CLIENT, "client_secret": "app-secret",
                     "roles": ["Calendars.ReadWrite"]}).raise_for_status()
    account = calsync("account", "add", "graph-app", "--tenant", "contoso.example", "--client-id", MS_CLIENT,
                      "--client-secret", "app-secret", "--mailbox", user, "--authority-url", graph,
                      "--ca-file", tls.ca_cert, "--base-url", graph, db=db).stdout.split()[-1]
    remote = json.loads(calsync("calendar", "remote", account, "--json", db=db).stdout)
    calendar = remote[0]["remote_id"]
    seed(graph, calendar, 7, verify=trust(tls))
    calsync("calendar", "bind", account, calendar, "--name", "Erin", db=db)
    summary = json.loads(calsync("sync", "--json", db=db).stdout)["inbound"]
    assert summary[0]["status"] == "ok" and summary[0]["created"] == 7
    paths = [r["path"] for r in httpx.get(f"{graph}/emulator/requests", verify=trust(tls)).json()["requests"]]
    assert any(p.startswith("/v1.0/users/") for p in paths) and not any(p.startswith("/v1.0/me") for p in paths)


# --- the web front door --------------------------------------------------------------------------------


@pytest.fixture()
def web(engine: Engine, google: str) -> Iterator[str]:
    from calsync.service.app import create_app
    from calsync.service.oauth_routes import OAuthClients

    clients = OAuthClients.from_settings({
        "CALSYNC_GOOGLE_CLIENT_ID": CLIENT_ID, "CALSYNC_GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
        "CALSYNC_GOOGLE_BASE_URL": google,
    })
    server = serve_in_thread(create_app(engine, oauth=clients, open_page_user=page_user(engine)))
    yield server.url
    server.stop()


def test_web_connect_stores_the_account_and_refuses_tampered_or_replayed_answers(
        engine: Engine, google: str, web: str) -> None:
    start = httpx.get(f"{web}/oauth/google/start", params={"login_hint": ALICE})
    assert start.status_code == 303
    consent = start.headers["location"]
    assert consent.startswith(f"{google}/o/oauth2/v2/auth?") and "code_challenge=" in consent
    assert "code_verifier" not in consent, "the verifier stays on the server"
    answer = answer_consent(consent)
    assert answer.startswith(f"{web}/oauth/google/callback?")

    tampered = answer.replace("state=", "state=x")
    refused = httpx.get(tampered)
    assert refused.status_code == 400
    with engine.begin() as conn:
        assert account_store.list_accounts(conn) == [], "a tampered state stores nothing"

    done = httpx.get(answer)
    assert done.status_code == 303 and done.headers["location"].startswith("/?connected=")
    replayed = httpx.get(answer)
    assert replayed.status_code == 400
    with engine.begin() as conn:
        assert len(account_store.list_accounts(conn)) == 1, "a replayed answer stores nothing more"


# --- no OAuth secret shown or stored plain ---------------------------------------------------------


def test_no_oauth_secret_in_the_database_file_logs_cli_output_or_api_answers(
        tmp_path: Path, google: str, caplog: pytest.LogCaptureFixture) -> None:
    """Refresh and access tokens and the client secret of a connected account, after connecting,
    syncing (with a refresh), listing and asking the service: none appears in the SQLite files, the
    DEBUG logs, the CLI's output or any API answer."""
    from calsync.service.app import create_app
    from calsync.store.db import open_engine

    seed(google, ALICE, 3)
    db = tmp_path / "c.db"
    shown: list[str] = []
    done = connect_by_cli(google_connect_args(google), db)
    shown += [done.stdout, done.stderr]
    account = done.stdout.split()[-1]
    shown.append(calsync("calendar", "bind", account, ALICE, "--name", "Alice", db=db).stdout)
    caplog.set_level(logging.DEBUG)
    engine = open_engine(f"sqlite:///{db}")
    try:
        httpx.post(f"{google}/emulator/oauth/expire-access-tokens").raise_for_status()
        assert sync_once(engine).inbound[0].status == "ok"  # renews the token: a new one is stored
        with engine.begin() as conn:
            credentials = account_store.get_account(conn, account).credentials
        server = serve_in_thread(create_app(engine))
        headers = auth_headers(engine, "admin")
        try:
            for path in ("/api/v1/status", "/api/v1/accounts", "/api/v1/calendars", "/api/v1/events", "/metrics"):
                answer = httpx.get(server.url + path, headers=headers)
                assert answer.status_code in (200, 404), (path, answer.status_code)
                shown.append(answer.text)
        finally:
            server.stop()
    finally:
        engine.dispose()
    for args in (("account", "list", "--json"), ("status", "--json"), ("status",), ("account", "list")):
        done = calsync(*args, db=db)
        shown += [done.stdout, done.stderr]
    secrets_known = [credentials["refresh_token"], credentials["access_token"], CLIENT_SECRET]
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("c.db"))
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for secret in secrets_known:
        assert secret.encode() not in stored, "a secret in the database files"
        assert secret not in logs, "a secret in the logs"
        assert not any(secret in text for text in shown), "a secret in the CLI's output or an API answer"
    assert len(shown) > 10 and logs, "the scan saw something"


def test_an_answer_with_a_foreign_state_is_refused_even_when_it_is_not_ascii() -> None:
    from calsync.credentials.connect import Attempt, ConnectError, check_answer

    attempt = Attempt()
    for state in ("", "x" + attempt.state, "état-" + attempt.state, attempt.state[:-1]):
        with pytest.raises(ConnectError, match="state"):
            check_answer({"state": state, "code": "c"}, attempt)
    assert check_answer({"state": attempt.state, "code": "c"}, attempt) == "c"
