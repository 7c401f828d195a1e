"""Web login in a real browser (Debian's Chromium driven by Playwright) against the service without an
open page: the page needs a login; user + password, a write through the page's own code, logout; a
cross-site POST without the CSRF token is refused and writes nothing; a one-time login link works once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
from typer.testing import CliRunner

from calsync.cli import app as cli_app
from calsync.emulators.server import serve_in_thread
from calsync.service.app import create_app
from calsync.store import accounts as account_store
from calsync.store import events as event_store
from calsync.store import users
from calsync.store.schema import users as users_table

PASSWORD = "correct horse battery"


@pytest.fixture()
def ann(engine: Engine, tmp_path: Path) -> dict[str, str]:
    """User ann with a password set through the CLI, and a local calendar of hers."""
    with engine.begin() as conn:
        user_id = users.create_user(conn, "ann")
        calendar_id = account_store.create_calendar(conn, "Ann's", user_id=user_id)
    done = CliRunner().invoke(
        cli_app, ["user", "passwd", "ann", "--password-stdin", "--db", str(tmp_path / "calsync.db")], input=PASSWORD
    )
    assert done.exit_code == 0, done.output
    assert PASSWORD not in done.output
    with engine.begin() as conn:
        stored = conn.execute(select(users_table.c.password_hash).where(users_table.c.id == user_id)).scalar()
    assert stored and stored.startswith("$argon2id$")
    return {"id": user_id, "calendar_id": calendar_id}


@pytest.fixture()
def service(engine: Engine) -> Iterator[str]:
    server = serve_in_thread(create_app(engine))
    yield server.url
    server.stop()


@pytest.fixture()
def context(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    yield context
    context.close()


def log_in(page: Any, service: str, password: str = PASSWORD) -> None:
    page.goto(service)
    page.wait_for_url(f"{service}/login")
    page.fill("#login-user", "ann")
    page.fill("#login-password", password)
    page.click("#login-submit")


def event_titles(engine: Engine, calendar_id: str) -> list[str]:
    with engine.begin() as conn:
        return [e["title"] for e in event_store.list_events(conn, calendar_id=calendar_id)]


def test_login_write_through_the_page_and_logout(context: Any, service: str, engine: Engine, ann: dict[str, str]) -> None:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    answer = httpx.get(service, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    login_page = httpx.get(f"{service}/login")
    assert "frame-ancestors 'none'" in login_page.headers["content-security-policy"]
    assert "unsafe-inline" not in login_page.headers["content-security-policy"].split("script-src")[1].split(";")[0]
    assert login_page.headers["x-content-type-options"] == "nosniff"
    assert login_page.headers["referrer-policy"] == "same-origin"

    log_in(page, service, "wrong password")  # the same generic error as for an unknown user
    assert page.locator(".login-error").inner_text() == "Wrong user name or password."
    log_in(page, service)
    page.wait_for_url(f"{service}/")
    cookie = next(c for c in context.cookies() if c["name"] == "calsync_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
    page.wait_for_selector("#user-name:text('ann')")
    page.wait_for_selector("#calendar .fc-view")
    assert page.locator("#logout").is_visible()

    # one write through the page's own code path (api.js adds the CSRF token)
    made = page.evaluate(
        """async (calendarId) => {
            const { api } = await import('/static/js/api.js');
            return api('POST', '/events', { calendar_id: calendarId, title: 'Made through the page',
              start: '2030-01-07T09:00:00Z', end: '2030-01-07T10:00:00Z' });
        }""",
        ann["calendar_id"],
    )
    assert made["title"] == "Made through the page"
    assert event_titles(engine, ann["calendar_id"]) == ["Made through the page"]

    page.click("#logout")
    page.wait_for_url(f"{service}/login")
    assert not [c for c in context.cookies() if c["name"] == "calsync_session"]
    gone = httpx.get(f"{service}/api/v1/calendars", cookies={"calsync_session": cookie["value"]})
    assert gone.status_code == 401, "a logged-out session opens nothing"
    assert httpx.get(f"{service}/api/v1/calendars").status_code == 401
    assert not errors, f"errors in the page: {errors}"


def test_a_cross_site_post_without_the_csrf_token_is_refused(
    context: Any, service: str, engine: Engine, ann: dict[str, str]
) -> None:
    page = context.new_page()
    log_in(page, service)
    page.wait_for_url(f"{service}/")
    # another origin (another port: same site, so the Lax cookie is sent along, and only the CSRF token stops it)
    evil = serve_in_thread(Starlette(routes=[Route("/", lambda _r: HTMLResponse("<h1>evil</h1>"))]))
    try:
        page.goto(evil.url)
        body = f'{{"calendar_id": "{ann["calendar_id"]}", "title": "Forged", "start": "2030-01-07T09:00:00Z", "end": "2030-01-07T10:00:00Z"}}'
        with page.expect_response(f"{service}/api/v1/events") as answer:
            page.evaluate(
                """([url, body]) => fetch(url, { method: 'POST', mode: 'no-cors', credentials: 'include',
                    headers: { 'Content-Type': 'text/plain' }, body })""",
                [f"{service}/api/v1/events", body],
            )
        assert answer.value.status == 403
    finally:
        evil.stop()
    assert event_titles(engine, ann["calendar_id"]) == [], "the forged request wrote nothing"


def test_a_one_time_login_link_works_once(context: Any, service: str, engine: Engine, ann: dict[str, str], tmp_path: Path) -> None:
    done = CliRunner().invoke(
        cli_app, ["user", "login-link", "ann", "--base-url", service, "--db", str(tmp_path / "calsync.db")]
    )
    assert done.exit_code == 0, done.output
    link = done.stdout.split()[-1]
    assert link.startswith(f"{service}/login/link?token=")
    token = link.split("token=")[1]
    with engine.begin() as conn:  # only the token's digest is stored
        from calsync.store.schema import login_tokens

        stored = conn.execute(select(login_tokens.c.token_hash)).scalars().all()
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]

    page = context.new_page()
    page.goto(link)
    page.wait_for_url(f"{service}/")
    page.wait_for_selector("#user-name:text('ann')")

    other = context.browser.new_context()
    try:
        again = other.new_page()
        again.goto(link)
        assert again.url.startswith(f"{service}/login/link")
        assert "unknown, used or expired" in again.locator(".login-error").inner_text()
        again.goto(service)
        again.wait_for_url(f"{service}/login")
    finally:
        other.close()


def test_the_page_logged_in_as_one_user_never_shows_anothers_events(
    context: Any, service: str, engine: Engine, ann: dict[str, str]
) -> None:
    """Ann and Bob each have a calendar with an event this week: logged in as Ann, the page lists her
    calendar and event only, and her session cannot read Bob's event through the API the page uses."""
    from datetime import UTC, datetime, timedelta

    from calsync.engine import local

    today = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0)
    with engine.begin() as conn:
        bob = users.create_user(conn, "bob")
        bobs_calendar = account_store.create_calendar(conn, "Bob's secret calendar", user_id=bob)
    hour = {"start": today.isoformat(), "end": (today + timedelta(hours=1)).isoformat()}
    local.create_event(engine, ann["calendar_id"], {"title": "Ann's standup", **hour})
    bobs = local.create_event(engine, bobs_calendar, {"title": "Bob's secret meeting", **hour})
    page = context.new_page()
    log_in(page, service)
    page.wait_for_url(f"{service}/")
    page.wait_for_selector(".fc-event:has-text(\"Ann's standup\")")
    shown = page.locator("body").inner_text()
    assert "Bob's secret" not in shown, "nothing of Bob's on Ann's page"
    read = page.evaluate(
        """async (id) => (await fetch(`/api/v1/events/${id}`, { credentials: 'include' })).status""",
        bobs.event_id,
    )
    assert read == 404, "Bob's event is missing for Ann's session, as one that never existed"
