"""The event dialog's history in a real browser (Debian's Chromium, Playwright): each version with who
made it, when and what changed (outside text shown as text, never markup), and a version restored from
its Restore button, which the API then shows as the event's new version, made by the web user."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from calsync.emulators.server import serve_in_thread
from calsync.engine import local
from calsync.service.app import create_app
from calsync.store import accounts as account_store
from calsync.store.db import open_engine
from calsync.store.journal import Author
from tests.helpers import migrated_sqlite, page_user
from tests.test_web import ZONE, point_on, shoot

MARKUP = '<img src=x id="injected">'
SLOT = {"start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z"}


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, Engine, str]]:
    """A service over a store with one local event edited twice by an API key; the page opens as its user."""
    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    with engine.begin() as conn:
        calendar = account_store.create_calendar(conn, "Team")
    bot = Author("local", "api key deploy-bot")
    event = local.create_event(engine, calendar, {"title": "Design review", "location": "Room 1", **SLOT},
                               author=bot).event_id
    local.update_event(engine, event, {"title": f"Design review {MARKUP}", "location": "Room 2"}, None, author=bot)
    server = serve_in_thread(create_app(engine, open_page_user=page_user(engine)))
    yield server.url, engine, event
    server.stop()
    engine.dispose()


def test_the_dialog_shows_the_history_and_restores_a_version(browser: Any, served: tuple[str, Engine, str]) -> None:
    url, _engine, event_id = served
    context = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id=ZONE, locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(url)
        page.wait_for_function("() => window.calsync && window.calsync.calendar")
        page.evaluate("() => window.calsync.calendar.changeView('timeGridDay', '2026-12-01')")
        selector = f'.fc-event[data-event-id="{event_id}"]'
        page.wait_for_selector(selector, timeout=15000)
        page.mouse.click(*point_on(page, selector))
        page.wait_for_selector("#event-dialog[open]")
        page.wait_for_selector("#history-list .history-entry >> nth=1")

        items = page.locator("#history-list .history-entry")
        assert items.count() == 2
        newest = items.nth(0)
        assert newest.get_attribute("data-version") == "2"
        assert newest.locator(".history-author").inner_text() == "api key deploy-bot"
        changes = newest.locator(".history-change").all_inner_texts()
        assert f"title: Design review → Design review {MARKUP}" in changes
        assert "location: Room 1 → Room 2" in changes
        assert page.locator("#injected").count() == 0  # the title's markup stayed text
        assert newest.locator(".history-restore").count() == 0  # the current version has nothing to restore
        assert items.nth(1).locator(".history-kind").inner_text() == "created"
        shoot(page.locator("#event-dialog"), "event-history.png")

        items.nth(1).locator(".history-restore").click()
        page.wait_for_function("() => document.querySelector('#event-title').value === 'Design review'")
        page.wait_for_selector('#history-list .history-entry[data-version="3"]')
        restored = page.locator('#history-list .history-entry[data-version="3"]')
        assert restored.locator(".history-author").inner_text() == "web user default"
        assert "restored from version 1" in restored.inner_text()
        body = httpx.get(f"{url}/api/v1/events/{event_id}").json()
        assert (body["version"], body["title"], body["location"]) == (3, "Design review", "Room 1")
        page.click("#event-dialog [data-action=close] >> nth=1")
    finally:
        context.close()
    assert not errors, f"errors in the page: {errors}"
