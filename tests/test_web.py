"""The web page in a real browser (Debian's Chromium driven by Playwright) against the demo service:
emulated Google and Zoom in-process, the service with its worker and real push notifications.

Screenshots of the week view, the event dialog and the conflicts panel go to artifacts/screenshots/.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from dateutil.rrule import rrulestr
from sqlalchemy import Engine

from calsync.emulators.server import serve_in_thread
from calsync.service.app import create_app
from calsync.store import accounts as account_store
from calsync.store import events as event_store
from calsync.store.db import open_engine
from tests.helpers import migrated_sqlite, page_user

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ZONE = "Europe/Berlin"  # the browser's zone: times on the page are local, the API's are UTC
BERLIN = ZoneInfo(ZONE)


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run)", pytrace=False)
    print(f"\ntest_web: skipped: {reason}")
    pytest.skip(reason)


def _chromium() -> str:
    """Debian's Chromium (scripts/browser.sh installs it when we are root); never a downloaded browser."""
    if not os.access(CHROMIUM, os.X_OK):
        script = ROOT / "scripts" / "browser.sh"
        try:
            subprocess.run(["bash", str(script)], check=False, timeout=900, stdout=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            pass
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no Chromium at {CHROMIUM}: run scripts/browser.sh as root (apt-get install chromium)")
    return CHROMIUM


# --- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> Iterator[Any]:
    from calsync.demo import start_demo

    running = start_demo(open_page=True)
    # the worker sets up a notification channel per Google calendar after its first pass: wait for them
    # (the page's tests change Google calendars; the demo's CalDAV calendar has no channel at all)
    wait_for(lambda: all(b["channel"] and b["channel"]["confirmed"] for b in google_bindings(status(running))),
             timeout=60, what="confirmed notification channels")  # (about 6 s on an idle machine)
    yield running
    running.stop()


@pytest.fixture()
def page(browser: Any, demo: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id=ZONE, locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(demo.url)
    page.wait_for_selector(".fc-event[data-event-id]", timeout=15000)
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"


# --- helpers ------------------------------------------------------------------------------------------


def status(demo: Any) -> dict[str, Any]:
    return httpx.get(f"{demo.url}/api/v1/status").raise_for_status().json()


def google_bindings(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    google = {a["id"] for a in snapshot["accounts"] if a["provider"] == "google"}
    return [b for b in snapshot["bindings"] if b["account_id"] in google]


def api_event(demo: Any, event_id: str) -> dict[str, Any]:
    return httpx.get(f"{demo.url}/api/v1/events/{event_id}").raise_for_status().json()


def api_events(demo: Any, start: str, end: str, calendar_id: str | None = None) -> list[dict[str, Any]]:
    params: dict[str, str | int] = {"start": start, "end": end, "limit": 2500}
    if calendar_id:
        params["calendar_id"] = calendar_id
    return httpx.get(f"{demo.url}/api/v1/events", params=params).raise_for_status().json()["events"]


def google(demo: Any, user: str = "alice") -> httpx.Client:
    """Google Calendar's API as the user's own calendar app (the demo's other OAuth client) uses it."""
    return demo._google(user)


def remote_event(demo: Any, event: dict[str, Any]) -> dict[str, Any]:
    """The Google copy of a local event (through its first link)."""
    link = event["links"][0]
    with demo.engine.begin() as conn:
        binding = account_store.get_binding(conn, link["binding_id"])
    with google(demo, demo.user_of(binding["account_id"])) as api:
        return api.get(f"/calendars/{binding['remote_calendar_id']}/events/{link['remote_id']}").raise_for_status().json()


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def untouched_events(demo: Any, *, with_conference: bool | None, skip: set[str]) -> list[dict[str, Any]]:
    """Single upcoming events of the first calendar that other tests and the demo control leave alone
    (the demo control picks among the first few upcoming ones)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with demo.engine.begin() as conn:
        calendar = account_store.list_calendars(conn)[0]["id"]
        rows = [r for r in event_store.list_events(conn, calendar_id=calendar, start=now)
                if r["recurrence"] is None and r["recurring_event_id"] is None and r["start"] >= now]
    rows = rows[8:]
    if with_conference is not None:
        rows = [r for r in rows if bool((r["conference"] or {}).get("provider")) == with_conference]
    return [r for r in rows if r["id"] not in skip]


def show_day(page: Any, start: str, view: str = "timeGridDay") -> None:
    """Put the calendar on the day of `start` (as the browser's zone sees it)."""
    day = instant(start).astimezone(BERLIN).strftime("%Y-%m-%d")
    page.evaluate("([view, day]) => window.calsync.calendar.changeView(view, day)", [view, day])
    page.wait_for_function("""() => window.calsync.state.range && !window.calsync.state.loading""")


def point_on(page: Any, selector: str) -> tuple[float, float]:
    """A point inside the element where it is the topmost event (overlapping events cover each other)."""
    point = page.evaluate("""(selector) => {
        const node = document.querySelector(selector);
        node.scrollIntoView({block: 'center'});
        const box = node.getBoundingClientRect();
        for (const fy of [0.3, 0.15, 0.5, 0.7]) {
          for (const fx of [0.5, 0.25, 0.75, 0.1, 0.9]) {
            const x = box.left + box.width * fx, y = box.top + box.height * fy;
            const hit = document.elementFromPoint(x, y);
            if (hit && hit.closest('.fc-event') === node) return [x, y];
          }
        }
        return null;
    }""", selector)
    assert point, f"no visible point on {selector}"
    return point[0], point[1]


def shoot(target: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    target.screenshot(path=str(path))
    return path


# --- tests --------------------------------------------------------------------------------------------


def test_the_page_shows_the_demo_calendars_and_events(page: Any, demo: Any) -> None:
    calendars = httpx.get(f"{demo.url}/api/v1/calendars").json()["calendars"]
    assert page.locator(".calendar-item").count() == len(calendars) >= 3  # Google, Outlook, CalDAV, the mirror
    page.wait_for_function("() => window.calsync.state.events.size > 0 && !window.calsync.state.loading")
    page.wait_for_timeout(300)
    shown = set(page.eval_on_selector_all(".fc-event[data-event-id]", "els => els.map(e => e.dataset.eventId)"))
    visible = page.evaluate("() => window.calsync.state.range")
    expected = api_events(demo, visible["start"], visible["end"])
    singles = {e["id"] for e in expected if not e["recurrence"] and e["status"] != "cancelled"}
    assert singles and singles <= shown <= {e["id"] for e in expected}
    # every event carries a sync badge per binding; the calendar's colour is the event's colour
    # recurring series are expanded on the page as the provider's rule says
    low, high = instant(visible["start"]), instant(visible["end"])
    assert any(e["recurrence"] for e in expected)
    for series in (e for e in expected if e["recurrence"]):
        first_start, length = instant(series["start"]), instant(series["end"]) - instant(series["start"])
        rule = rrulestr("\n".join(series["recurrence"]), dtstart=first_start)
        wanted = [t for t in rule.between(low - length, high, inc=False) if t + length > low and t < high]
        assert page.locator(f'.fc-event[data-event-id="{series["id"]}"]').count() == len(wanted), series
    first = page.locator(".fc-event[data-event-id] .badge").first
    assert first.get_attribute("data-state") in ("synced", "pending")
    # the demo's meetings are on the next events after now: on a Sunday evening, that is next week
    show_day(page, api_event(demo, demo.conferences[0]["event_id"])["start"], "timeGridWeek")
    assert page.locator(".fc-event .conf-icon").count() >= 1
    shoot(page, "week-view.png")
    show_day(page, visible["start"], "timeGridWeek")  # back to the week the checks below count on

    # a calendar's toggle hides and shows its events
    bob = next(c for c in calendars if c["name"].startswith("bob"))
    bob_ids = [e["id"] for e in api_events(demo, visible["start"], visible["end"], bob["id"])
               if not e["recurrence"]]
    toggle = page.locator(f'.calendar-item[data-calendar-id="{bob["id"]}"] input')
    toggle.uncheck()
    page.wait_for_function("(id) => !document.querySelector(`.fc-event[data-event-id='${id}']`)", arg=bob_ids[0])
    toggle.check()
    page.wait_for_selector(f'.fc-event[data-event-id="{bob_ids[0]}"]', timeout=5000)

    # month and day views
    page.click(".fc-dayGridMonth-button")
    page.wait_for_selector(".fc-dayGridMonth-view .fc-event[data-event-id]")
    page.click(".fc-timeGridDay-button")
    page.wait_for_selector(".fc-timeGridDay-view")


def test_clicking_an_empty_slot_creates_an_event_that_reaches_google(page: Any, demo: Any) -> None:
    day = page.evaluate("() => window.calsync.state.range.start")
    column = instant(day).astimezone(BERLIN) + timedelta(days=2)
    date = column.strftime("%Y-%m-%d")
    col = page.locator(f'td.fc-timegrid-col[data-date="{date}"]').bounding_box()
    slot = page.locator('td.fc-timegrid-slot-lane[data-time="07:00:00"]')
    slot.scroll_into_view_if_needed()
    lane = slot.bounding_box()
    col = page.locator(f'td.fc-timegrid-col[data-date="{date}"]').bounding_box()
    page.mouse.click(col["x"] + col["width"] / 2, lane["y"] + lane["height"] / 2)
    page.wait_for_selector("#event-dialog[open]")
    assert page.locator("#dialog-title").inner_text() == "New event"
    page.fill("#event-title", "Breakfast with Ada (made on the page)")
    page.fill("#event-description", "Made by a click on an empty slot.")
    page.fill("#event-attendees", "ada@example.org, grace@example.org")
    page.click("#event-save")
    page.wait_for_selector("#event-dialog", state="hidden")

    start = datetime.fromisoformat(f"{date}T07:00:00").replace(tzinfo=BERLIN).astimezone(UTC)
    made = wait_for(lambda: [e for e in api_events(demo, date, (column + timedelta(days=1)).strftime("%Y-%m-%d"))
                             if e["title"] == "Breakfast with Ada (made on the page)"], what="the new event")
    (event,) = made
    assert instant(event["start"]) == start and instant(event["end"]) == start + timedelta(hours=1)
    assert [a["email"] for a in event["attendees"]] == ["ada@example.org", "grace@example.org"]
    # the worker pushes it to Google; the page's badge turns to synced without a reload
    wait_for(lambda: api_event(demo, event["id"])["links"], what="the push to Google")
    remote = remote_event(demo, api_event(demo, event["id"]))
    assert remote["summary"] == "Breakfast with Ada (made on the page)"
    assert instant(remote["start"]["dateTime"]) == start
    page.wait_for_selector(f'.fc-event[data-event-id="{event["id"]}"][data-sync-state="synced"]', timeout=8000)


def test_dragging_an_event_moves_it_on_google_and_its_zoom_meeting_follows(page: Any, demo: Any) -> None:
    meetings = {c["event_id"]: c for c in demo.conferences}
    candidates = [r for r in untouched_events(demo, with_conference=True, skip=set()) if r["id"] in meetings]
    event = api_event(demo, candidates[-1]["id"])
    meeting = meetings[event["id"]]["conference_id"]
    before = instant(event["start"])
    assert instant(demo.adapter.get(meeting).details["start_time"]) == before

    show_day(page, event["start"])
    selector = f'.fc-event[data-event-id="{event["id"]}"]'
    page.wait_for_selector(selector)
    x, y = point_on(page, selector)
    slot = page.locator("td.fc-timegrid-slot-lane").first.bounding_box()["height"]  # 30 minutes
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x, y + slot, steps=5)
    page.mouse.move(x, y + 2 * slot, steps=5)
    page.mouse.up()

    after = before + timedelta(hours=1)
    wait_for(lambda: instant(api_event(demo, event["id"])["start"]) == after, what="the local move")
    wait_for(lambda: instant(remote_event(demo, event)["start"]["dateTime"]) == after, what="the move on Google")
    wait_for(lambda: instant(demo.adapter.get(meeting).details["start_time"]) == after, what="the Zoom meeting")


def test_a_remote_change_appears_without_a_reload(page: Any, demo: Any) -> None:
    page.evaluate("() => { window.notReloaded = true; }")
    # the demo control: another Google client creates an event
    started = time.monotonic()
    page.click('button[data-demo="create"]')
    page.wait_for_function("() => /Waiting|Arrived/.test(document.querySelector('#demo-result').textContent)")
    title = page.locator("#demo-result").inner_text().split("'")[1]
    page.wait_for_selector(f'.fc-event[data-title="{title}"]', timeout=6000)
    arrived = time.monotonic() - started
    # and a plain rename through Google's API, as any other client would make it
    (event,) = untouched_events(demo, with_conference=False, skip=set())[:1]
    show_day(page, event["start"], "timeGridWeek")
    page.wait_for_selector(f'.fc-event[data-event-id="{event["id"]}"]')
    link = event["links"][0]
    with demo.engine.begin() as conn:
        remote_calendar = account_store.get_binding(conn, link["binding_id"])["remote_calendar_id"]
    started = time.monotonic()
    with google(demo) as api:
        api.patch(f"/calendars/{remote_calendar}/events/{link['remote_id']}",
                  json={"summary": "Renamed by another Google client"}).raise_for_status()
    page.wait_for_selector('.fc-event[data-title="Renamed by another Google client"]', timeout=6000)
    renamed = time.monotonic() - started
    assert page.evaluate("() => window.notReloaded") is True
    print(f"remote create shown after {arrived:.1f}s, remote rename after {renamed:.1f}s")
    assert max(arrived, renamed) < 5.0


def test_a_conflict_shows_in_the_panel_and_keep_remote_resolves_it(page: Any, demo: Any) -> None:
    page.click('button[data-demo="conflict"]')
    page.wait_for_function("() => document.querySelector('#conflict-count').dataset.count !== '0'", timeout=8000)
    page.click("#tab-btn-conflicts")
    card = page.locator(".conflict").first
    card.wait_for()
    event_id = card.get_attribute("data-event-id")
    conflict_id = card.get_attribute("data-conflict-id")
    title_row = card.locator('tr[data-field="title"]')
    assert "differs" in (title_row.get_attribute("class") or "")
    cells = title_row.locator("td").all_inner_texts()
    assert cells[1].endswith("(edited here)") and cells[2].endswith("(edited in Google)")
    assert card.locator('tr[data-field="start"]').get_attribute("class") == ""
    shoot(page.locator("#tab-conflicts"), "conflicts-panel.png")
    show_day(page, api_event(demo, event_id)["start"], "timeGridWeek")  # (it may lie beyond this week)
    page.wait_for_selector(f'.fc-event[data-event-id="{event_id}"][data-sync-state="conflict"]', state="attached")

    card.locator("button.keep-remote").click()
    page.wait_for_selector(f'.conflict[data-conflict-id="{conflict_id}"]', state="detached", timeout=8000)
    kept = api_event(demo, event_id)
    assert kept["title"].endswith("(edited in Google)")
    assert remote_event(demo, kept)["summary"] == kept["title"]
    listed = httpx.get(f"{demo.url}/api/v1/conflicts").json()["conflicts"]
    assert conflict_id not in {c["id"] for c in listed}
    page.click("#tab-btn-calendar")
    page.wait_for_selector(f'.fc-event[data-event-id="{event_id}"][data-sync-state="synced"]', state="attached",
                           timeout=8000)


def test_a_stale_edit_is_refused_with_a_message_and_the_event_reloaded(page: Any, demo: Any) -> None:
    (event,) = untouched_events(demo, with_conference=False, skip=set())[1:2]
    show_day(page, event["start"])
    selector = f'.fc-event[data-event-id="{event["id"]}"]'
    page.wait_for_selector(selector)
    page.mouse.click(*point_on(page, selector))
    page.wait_for_selector("#event-dialog[open]")
    # someone else changes the event while the dialog is open
    current = api_event(demo, event["id"])
    httpx.patch(f"{demo.url}/api/v1/events/{event['id']}", json={"title": "Changed elsewhere"},
                headers={"If-Match": current["etag"]}).raise_for_status()
    page.fill("#event-title", "My edit")
    page.click("#event-save")
    message = page.locator("#dialog-message")
    message.wait_for()
    assert "changed somewhere else" in message.inner_text()
    assert page.input_value("#event-title") == "Changed elsewhere"  # reloaded, not overwritten
    assert api_event(demo, event["id"])["title"] == "Changed elsewhere"
    page.fill("#event-title", "My edit, made again")
    page.click("#event-save")
    page.wait_for_selector("#event-dialog", state="hidden")
    assert api_event(demo, event["id"])["title"] == "My edit, made again"


def test_a_conference_is_added_and_removed_from_the_dialog(page: Any, demo: Any) -> None:
    (event,) = untouched_events(demo, with_conference=False, skip=set())[2:3]
    show_day(page, event["start"])
    selector = f'.fc-event[data-event-id="{event["id"]}"]'
    page.wait_for_selector(selector)
    page.mouse.click(*point_on(page, selector))
    page.wait_for_selector("#event-dialog[open]")
    assert page.locator("#conference-provider option").all_inner_texts() == ["Zoom"]
    page.click("#conference-add")
    page.wait_for_selector("#conference-info .join-link")
    assert page.locator("#conference-info .conf-provider").inner_text() == "Zoom"
    added = api_event(demo, event["id"])
    assert added["conference"]["provider"] == "zoom"
    meeting = added["conference"]["conference_id"]
    assert remote_event(demo, added)["conferenceData"]["conferenceId"] == meeting
    shoot(page, "event-dialog.png")

    page.click("#conference-remove")
    page.wait_for_selector("#conference-add")
    assert api_event(demo, event["id"])["conference"] is None
    wait_for(lambda: "conferenceData" not in remote_event(demo, added), what="the conference off the Google event")
    wait_for(lambda: demo.adapter.get(meeting) is None, what="the Zoom meeting deleted")
    page.click("#event-dialog [data-action=close] >> nth=1")


# --- the routes without a browser --------------------------------------------------------------------


@pytest.fixture()
def plain_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    yield engine
    engine.dispose()


def test_the_page_is_served_and_demo_routes_exist_only_in_demo_mode(plain_engine: Engine) -> None:
    server = serve_in_thread(create_app(plain_engine, open_page_user=page_user(plain_engine)))
    try:
        with httpx.Client(base_url=server.url) as client:
            page = client.get("/")
            assert page.status_code == 200 and "calsync" in page.text
            # scripts by src only, the page's own as ES modules; no inline script or handler (a CSP without
            # 'unsafe-inline' must not break the page)
            scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page.text, re.DOTALL)
            sources = [re.findall(r'\ssrc="([^"]+)"', attrs) for attrs, _ in scripts]
            assert scripts and all(src for src in sources) and not any(body.strip() for _, body in scripts)
            assert '<script type="module" src="/static/js/main.js"></script>' in page.text
            assert not re.search(r"\son[a-z]+\s*=", page.text) and "javascript:" not in page.text
            for (src,) in sources:
                served = client.get(src)
                assert served.status_code == 200 and "javascript" in served.headers["content-type"], src
            module = client.get("/static/js/main.js")
            imported = re.findall(r"from '\./([a-z]+\.js)'", module.text)
            assert imported and all(client.get(f"/static/js/{name}").status_code == 200 for name in imported)
            bundle = client.get("/static/vendor/fullcalendar/index.global.min.js")
            assert bundle.status_code == 200 and "FullCalendar" in bundle.text[:300]
            plugin = client.get("/static/vendor/fullcalendar-rrule/index.global.min.js").text[:300]
            versions = [re.findall(r"FullCalendar [A-Za-z ]+ v(\d+\.\d+\.\d+)", head)
                        for head in (bundle.text[:300], plugin)]
            assert versions[0] and versions[0] == versions[1]  # the plugin is the bundle's version
            for license_file in ("fullcalendar/LICENSE.md", "fullcalendar-rrule/LICENSE.md", "rrule/LICENCE"):
                assert client.get(f"/static/vendor/{license_file}").status_code == 200, license_file
            assert client.get("/api/v1/conference-providers").json() == {"providers": []}
            assert client.get("/api/v1/demo").status_code == 404
            assert client.post("/api/v1/demo/remote-change", json={"kind": "create"}).status_code == 404
    finally:
        server.stop()


def test_conference_routes_answer_4xx_for_bad_requests(demo: Any) -> None:
    url = f"{demo.url}/api/v1"
    assert httpx.get(f"{url}/conference-providers").json() == {"providers": [{"name": "zoom", "label": "Zoom"}]}
    with_one = demo.conferences[0]["event_id"]
    (plain,) = untouched_events(demo, with_conference=False, skip=set())[3:4]
    assert httpx.post(f"{url}/events/{plain['id']}/conference", json={"provider": "teams"}).status_code == 422
    assert httpx.post(f"{url}/events/{plain['id']}/conference", json={}).status_code == 422
    assert httpx.post(f"{url}/events/{with_one}/conference", json={"provider": "zoom"}).status_code == 409
    assert httpx.post(f"{url}/events/{'0' * 32}/conference", json={"provider": "zoom"}).status_code == 404
    assert httpx.delete(f"{url}/events/{plain['id']}/conference").status_code == 409
    stale = httpx.delete(f"{url}/events/{with_one}/conference", headers={"If-Match": '"1-00000000"'})
    assert stale.status_code == 412
    assert httpx.post(f"{url}/demo/remote-change", json={"kind": "explode"}).status_code == 422



def test_a_conference_added_while_the_first_push_is_in_flight_reaches_google(
        plain_engine: Engine, google_url: str, zoom_url: str) -> None:
    """The conference is made after the event's insert reached Google but before its checkpoint: it goes onto
    the local event only, so the route queues that version, and the next sync pushes it."""
    from calsync.conferencing.zoom import ZoomAdapter
    from calsync.engine.sync import sync_once
    from tests.helpers import GoogleApi, bind, zoom_settings

    alice = GoogleApi(google_url, "alice")
    calendar = alice.primary_id()
    binding = bind(plain_engine, google_url, "alice", calendar)
    sync_once(plain_engine)
    adapter = ZoomAdapter.from_settings(zoom_settings(zoom_url))
    assert adapter is not None
    server = serve_in_thread(create_app(plain_engine, adapters={"zoom": adapter}, open_page_user=page_user(plain_engine)))
    url = f"{server.url}/api/v1"
    answers: list[httpx.Response] = []

    def add_conference(event_id: str, what: str) -> None:  # after the remote write, before the checkpoint
        if what == "created" and not answers:
            answers.append(httpx.post(f"{url}/events/{event_id}/conference", json={"provider": "zoom"}, timeout=30))

    try:
        with plain_engine.begin() as conn:
            local_calendar = account_store.get_binding(conn, binding)["calendar_id"]
        made = httpx.post(f"{url}/events", json={"calendar_id": local_calendar, "title": "Born with a meeting",
                                                 "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z"})
        sync_once(plain_engine, adapters={"zoom": adapter}, after_write=add_conference)
        assert answers and answers[0].status_code == 201, answers and answers[0].text
        sync_once(plain_engine, adapters={"zoom": adapter})
        event = httpx.get(f"{url}/events/{made.json()['id']}").json()
        assert [s["state"] for s in event["sync"]] == ["synced"]
        (remote,) = [e for e in alice.list_all(calendar) if e["summary"] == "Born with a meeting"]
        assert remote["conferenceData"]["conferenceId"] == event["conference"]["conference_id"]
    finally:
        server.stop()
        adapter.close()
