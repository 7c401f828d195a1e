"""Connecting and reconnecting an account from the web page, in a real browser (Debian's Chromium driven by
Playwright): the service with Google's OAuth client configured, the Google emulator's authorization server
and consent page, and a revoked grant that a sync turns into `reauth-required`.

A screenshot of the accounts part of the sidebar, with an account to reconnect, goes to artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from calsync.emulators.google import GoogleEmulator
from calsync.emulators.google import create_app as google_app
from calsync.emulators.graph import GraphEmulator
from calsync.emulators.graph import create_app as graph_app
from calsync.emulators.oauth.tls import TlsFiles, ensure_tls_files
from calsync.emulators.server import RunningServer, serve_in_thread
from calsync.engine import setup
from calsync.engine.sync import sync_once
from calsync.service.app import create_app
from calsync.service.oauth_routes import OAuthClients
from calsync.store import accounts as account_store
from tests.helpers import page_user
from tests.test_web import SHOTS

CLIENT_ID, CLIENT_SECRET = "calsync-test.apps.googleusercontent.com", "test-secret"
MS_CLIENT = "11111111-2222-3333-4444-555555555555"
ALICE, CAROL = "alice@example.com", "carol@contoso.example"


@pytest.fixture(scope="module")
def google_server() -> Iterator[RunningServer]:
    server = serve_in_thread(google_app(GoogleEmulator(oauth=True)))
    yield server
    server.stop()


@pytest.fixture()
def google(google_server: RunningServer) -> str:
    httpx.post(f"{google_server.url}/emulator/reset").raise_for_status()
    body = {"count": 3, "start": "2026-12-01T00:00:00Z", "days": 10, "seed": 5}
    httpx.post(f"{google_server.url}/emulator/calendars/{ALICE}/seed", json=body).raise_for_status()
    return google_server.url


@pytest.fixture()
def service(engine: Engine, google: str) -> Iterator[str]:
    """The service with Google's OAuth client only (no worker: the test syncs when it means to)."""
    clients = OAuthClients.from_settings({
        "CALSYNC_GOOGLE_CLIENT_ID": CLIENT_ID, "CALSYNC_GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
        "CALSYNC_GOOGLE_BASE_URL": google,
    })
    server = serve_in_thread(create_app(engine, oauth=clients, open_page_user=page_user(engine)))
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture()
def graph(tls: TlsFiles) -> Iterator[str]:
    """The Graph emulator and its Microsoft authorization server, over TLS (msal wants an https authority)."""
    server = serve_in_thread(graph_app(GraphEmulator(oauth=True)), certfile=tls.cert, keyfile=tls.key)
    yield server.url.replace("http://", "https://")
    server.stop()


@pytest.fixture()
def page(browser: Any, service: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(service)
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"


def accounts(engine: Engine) -> list[Any]:
    with engine.begin() as conn:
        return [account_store.get_account(conn, a["id"]) for a in account_store.list_accounts(conn)]


def allow_on_consent_page(page: Any, google: str, fill_in: str | None) -> None:
    """On the emulator's consent page: type `fill_in` as the user when it asks (no login_hint was
    given), or check it already knows who (None), then Allow."""
    page.wait_for_url(f"{google}/o/oauth2/v2/auth?**")
    if fill_in is None:
        assert page.locator("#user").count() == 1, "the login_hint was passed: nobody to ask for"
    else:
        page.get_by_label("Account").fill(fill_in)
    page.get_by_role("button", name="Allow").click()


# --- the API the page reads ---------------------------------------------------------------------------


def test_the_page_is_told_which_providers_it_may_offer(service: str) -> None:
    assert httpx.get(f"{service}/api/v1/oauth/providers").json() == {"providers": ["google"]}
    start = httpx.get(f"{service}/oauth/microsoft/start")
    assert start.status_code == 404, "what is not offered is not configured either"


# --- connect, lose the grant, reconnect -------------------------------------------------------------


def test_connect_then_reconnect_a_google_account_from_the_page(
        page: Any, service: str, google: str, engine: Engine) -> None:
    panel = page.locator("#accounts-panel")
    connect = panel.get_by_role("button", name="Connect Google account")
    connect.wait_for()
    assert panel.get_by_role("button", name="Connect Microsoft account").count() == 0, "not configured here"
    # the providers' list can arrive before the first status: wait for the status to be read
    panel.get_by_text("No accounts yet.").wait_for()

    connect.click()
    allow_on_consent_page(page, google, ALICE)  # no login_hint: the consent page asks who
    page.wait_for_url(f"{service}/")  # ?connected=<id> taken off the address once read
    (account,) = accounts(engine)
    assert account.state == "ok" and account.credentials["user"] == ALICE
    (entry,) = httpx.get(f"{service}/api/v1/status").json()["accounts"]
    assert (entry["user"], entry["connect"]) == (ALICE, "google"), "what Reconnect needs"
    assert not {"credentials", "token", "access_token", "refresh_token"} & set(entry), "and never a secret"
    note = page.locator("#account-note")
    note.wait_for()
    assert f"Connected {ALICE} (Google)" in note.inner_text()
    item = page.locator(f'.account-item[data-account-id="{account.id}"]')
    item.wait_for()
    assert "Google" in item.inner_text() and "Connected" in item.inner_text()
    assert item.get_by_role("button", name="Reconnect").count() == 0
    assert "connected=" not in page.evaluate("location.href")

    # a calendar syncs, then the user's grant is revoked: the next sync stops the account
    binding = setup.bind_calendar(engine, account.id, ALICE, setup.NewCalendar("Alice")).binding_id
    assert sync_once(engine, binding_ids=[binding]).inbound[0].status == "ok"
    httpx.post(f"{google}/emulator/oauth/revoke", json={"user": ALICE}).raise_for_status()
    httpx.post(f"{google}/emulator/oauth/expire-access-tokens").raise_for_status()
    assert sync_once(engine, binding_ids=[binding]).inbound[0].status == "auth-failed"
    (stopped,) = accounts(engine)
    assert stopped.state == "reauth-required"

    page.reload()
    item = page.locator(f'.account-item[data-account-id="{account.id}"][data-state="reauth-required"]')
    item.wait_for()
    text = item.inner_text()
    assert "Reauthorisation required" in text and stopped.last_error and stopped.last_error in text, text
    assert page.locator("#account-note").is_hidden(), "a reload confirms nothing again"
    reconnect = item.get_by_role("button", name=f"Reconnect {ALICE}")
    assert reconnect.inner_text() == "Reconnect", "the visible label"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#accounts-panel").screenshot(path=str(SHOTS / "accounts-reconnect.png"))

    reconnect.focus()
    page.keyboard.press("Enter")  # a real button: the keyboard reaches it
    allow_on_consent_page(page, google, None)  # the account's user went along as login_hint
    page.wait_for_url(f"{service}/")
    page.locator("#account-note").wait_for()
    again = page.locator(f'.account-item[data-account-id="{account.id}"][data-state="ok"]')
    again.wait_for()
    assert "Connected" in again.inner_text() and again.get_by_role("button", name="Reconnect").count() == 0
    (renewed,) = accounts(engine)
    assert renewed.id == account.id and renewed.state == "ok", "the same account, renewed"
    resumed = sync_once(engine, binding_ids=[binding]).inbound[0]
    assert resumed.status == "ok" and not resumed.full, "sync resumes from its stored token"


def test_names_and_errors_from_outside_are_text(page: Any, engine: Engine) -> None:
    """An account's name and its provider's error are shown as written, never run as markup."""
    markup = '<img src=x onerror="window.pwned=1">'
    account = setup.add_account(engine, "google", f"{markup} team", None, {"token": "t"})
    with engine.begin() as conn:
        account_store.set_account_state(conn, account, "reauth-required", f"invalid_grant: {markup}")
    page.reload()
    item = page.locator(f'.account-item[data-account-id="{account}"]')
    item.wait_for()
    text = item.inner_text()
    assert f"{markup} team" in text and f"invalid_grant: {markup}" in text
    assert item.locator("img").count() == 0 and page.evaluate("window.pwned") is None
    # a token account has no consent flow to go through: the page says how to renew it instead
    assert item.get_by_role("button", name="Reconnect").count() == 0
    assert "calsync command" in text


def test_connect_a_microsoft_account_from_the_page(browser: Any, engine: Engine, graph: str, tls: TlsFiles) -> None:
    """Both providers configured: two Connect buttons; the Microsoft one ends with a Graph account."""
    clients = OAuthClients.from_settings({
        "CALSYNC_GOOGLE_CLIENT_ID": CLIENT_ID, "CALSYNC_GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
        "CALSYNC_MICROSOFT_CLIENT_ID": MS_CLIENT, "CALSYNC_MICROSOFT_TENANT": "organizations",
        "CALSYNC_MICROSOFT_AUTHORITY_URL": graph, "CALSYNC_MICROSOFT_CA_FILE": tls.ca_cert,
        "CALSYNC_GRAPH_BASE_URL": graph,
    })
    server = serve_in_thread(create_app(engine, oauth=clients, open_page_user=page_user(engine)))
    # the emulator's certificate is signed by a local CA the browser does not know
    context = browser.new_context(viewport={"width": 1280, "height": 900}, ignore_https_errors=True)
    try:
        page = context.new_page()
        page.goto(server.url)
        panel = page.locator("#accounts-panel")
        panel.get_by_role("button", name="Connect Google account").wait_for()
        panel.get_by_role("button", name="Connect Microsoft account").click()
        page.wait_for_url(f"{graph}/organizations/oauth2/v2.0/authorize?**")
        page.get_by_label("Account").fill(CAROL)
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(f"{server.url}/")
        page.locator("#account-note").wait_for()
        (account,) = accounts(engine)
        assert account.provider == "graph" and account.credentials["user"] == CAROL
        item = page.locator(f'.account-item[data-account-id="{account.id}"][data-state="ok"]')
        item.wait_for()
        assert "Microsoft" in item.inner_text() and "Connected" in item.inner_text()
    finally:
        context.close()
        server.stop()
