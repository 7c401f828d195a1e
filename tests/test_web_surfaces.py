"""What people see, at a wide screen (1400x900) and a phone (390x844), in Debian's Chromium against the demo
service: every view and dialog fits (no horizontal scroll, every panel inside the window), axe-core finds no
serious or critical accessibility violation in any of them, and everything can be done with the keyboard.

axe-core is vendored in tests/vendor/axe-core (npm package axe-core; MPL-2.0) and injected by the tests only:
the service never serves it. Screenshots of each view and dialog at both sizes are committed in artifacts/screenshots/
(`<view>-<width>x<height>.png`); a run with `CALSYNC_SCREENSHOTS=artifacts/screenshots` refreshes them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_web import ROOT, ZONE, api_event, google_bindings, status, wait_for

AXE = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
WIDE = (1400, 900)
PHONE = (390, 844)
SIZES = [pytest.param(WIDE, id="1400x900"), pytest.param(PHONE, id="390x844")]
AXE_RESULTS: dict[str, list[dict[str, Any]]] = {}  # what axe found per surface (all impacts), for the report


@pytest.fixture(scope="module")
def demo() -> Iterator[Any]:
    """The demo service, as tests/test_web.py starts it (its notification channels confirmed)."""
    from calsync.demo import start_demo

    running = start_demo(open_page=True)
    wait_for(
        lambda: all(b["channel"] and b["channel"]["confirmed"] for b in google_bindings(status(running))),
        timeout=60,  # (about 6 s after the start on an idle machine; CI saw more than 15)
        what="confirmed notification channels",
    )
    yield running
    running.stop()


@pytest.fixture()
def sized(browser: Any, demo: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    width, height = request.param
    context = browser.new_context(
        viewport={"width": width, "height": height}, timezone_id=ZONE, locale="en-GB", bypass_csp=True
    )  # (the tests inject axe-core as a script of the page)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(demo.url)
    page.wait_for_selector(".fc-event[data-event-id]", timeout=15000)
    page.wait_for_function("() => window.calsync.state.status && !window.calsync.state.loading")
    yield page
    context.close()
    assert not errors, f"errors in the page: {errors}"


# --- checks -------------------------------------------------------------------------------------------


def axe(page: Any, name: str, context: str = "document") -> list[dict[str, Any]]:
    """axe-core's violations on the page (or the part `context` selects); records them; returns the serious
    and critical ones."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async (context) => {
            const target = context === 'document' ? document : document.querySelector(context);
            const result = await window.axe.run(target, { resultTypes: ['violations'] });
            return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
              nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ') + ': ' + n.failureSummary) }));
        }""",
        context,
    )
    AXE_RESULTS[name] = found
    return [v for v in found if v["impact"] in ("serious", "critical")]


def assert_fits(page: Any, what: str, panels: list[str]) -> None:
    """No horizontal scroll on the page, and each panel lies wholly inside the window's width (a panel's own
    tables are not cut off either: nothing in it scrolls sideways)."""
    width = page.evaluate("() => window.innerWidth")
    scroll = page.evaluate("() => document.documentElement.scrollWidth")
    assert scroll <= width, f"{what}: the page scrolls sideways ({scroll} > {width})"
    for selector in panels:
        box = page.evaluate(
            """(sel) => {
            const node = document.querySelector(sel);
            if (!node) return null;
            const r = node.getBoundingClientRect();
            const wide = [...node.querySelectorAll('.table-wrap, table, .note, .dialog-body, .conflict')]
              .filter((t) => t.scrollWidth > t.clientWidth + 1).map((t) => t.id || t.className);
            return { left: r.left, right: r.right, width: r.width, height: r.height, wide };
        }""",
            selector,
        )
        assert box, f"{what}: no {selector}"
        assert box["width"] > 0 and box["height"] > 0, f"{what}: {selector} is not shown"
        assert box["left"] >= -0.5 and box["right"] <= width + 0.5, f"{what}: {selector} sticks out: {box}"
        assert not box["wide"], f"{what}: {selector} has content cut off on the right: {box['wide']}"

# the committed screenshots are refreshed on purpose (CALSYNC_SCREENSHOTS=artifacts/screenshots); an ordinary
# run writes its own elsewhere, so it leaves the working tree as it found it
SHOTS = Path(os.environ.get("CALSYNC_SCREENSHOTS") or Path(tempfile.gettempdir()) / "calsync-screenshots")


def shoot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    path = SHOTS / f"{name}-{width}x{height}.png"
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    small = shutil.which("pngquant")  # the committed screenshots stay small: 256 colours where it is installed
    if small:
        subprocess.run(  # noqa: S603 (our own arguments)
            [small, "--force", "--skip-if-larger", "--quality", "65-90", "--output", str(path), str(path)],
            check=False,
            timeout=60,
        )
    return path


def settle(page: Any) -> None:
    page.wait_for_function("() => window.calsync.state.range && !window.calsync.state.loading")
    page.wait_for_timeout(250)


def view(page: Any, name: str) -> None:
    """Pick a view with the toolbar's own button, as a person would."""
    page.click(f".fc-{name}-button")
    page.wait_for_selector(f".fc-{name}-view")
    settle(page)


def open_sidebar_if_folded(page: Any) -> None:
    toggle = page.locator("#sidebar-toggle")
    if toggle.is_visible() and toggle.get_attribute("aria-expanded") == "false":
        toggle.click()
        page.wait_for_selector("#sidebar", state="visible")


def serious(found: list[dict[str, Any]]) -> str:
    return json.dumps(found, indent=1)


def assert_a_readable_week(page: Any) -> None:
    """The demo's week reads like a person's: a few dozen timed events, few of them at the same time as
    another, and no event drawn over another (a click lands on the event it is aimed at)."""
    view(page, "timeGridWeek")
    week = page.evaluate("""() => {
        const events = [...document.querySelectorAll('.fc-timegrid-event[data-start]')].map((node) => {
          const r = node.getBoundingClientRect();
          return { s: Date.parse(node.dataset.start), e: Date.parse(node.dataset.end), id: node.dataset.eventId,
                   box: [r.left, r.top, r.right, r.bottom] };
        });
        const overlapping = events.filter((a) => events.some((b) => a !== b && a.s < b.e && b.s < a.e)).length;
        const meet = (a, b) => a.box[0] < b.box[2] - 1 && b.box[0] < a.box[2] - 1
          && a.box[1] < b.box[3] - 1 && b.box[1] < a.box[3] - 1;
        let covered = 0;
        for (const a of events) if (events.some((b) => a !== b && meet(a, b))) covered += 1;
        return { timed: events.length, overlapping, covered };
    }""")
    print(f"\nthe demo's week: {week}")  # noqa: T201 (the report)
    assert 20 <= week["timed"] <= 60, week
    assert week["overlapping"] <= week["timed"] // 3, week
    assert week["covered"] == 0, f"events drawn over others: {week}"


# --- every view and dialog, at both sizes ------------------------------------------------------------


@pytest.mark.parametrize("sized", SIZES, indirect=True)
def test_every_view_and_dialog_fits_and_passes_axe(sized: Any, demo: Any) -> None:
    page = sized
    size = "x".join(str(n) for n in page.viewport_size.values())
    narrow = page.viewport_size["width"] < 700
    # a phone starts on the list, a wide screen on the week; the sidebar is folded on a phone
    assert page.locator(".fc-listWeek-view" if narrow else ".fc-timeGridWeek-view").count() == 1
    assert page.locator("#sidebar").is_visible() is not narrow
    # the calendar is the first thing on the screen: its top within the first screenful
    top = page.evaluate("() => document.querySelector('#calendar').getBoundingClientRect().top")
    assert top < 160, f"the calendar starts at {top}px"

    if not narrow:
        assert_a_readable_week(page)
    problems: dict[str, list[dict[str, Any]]] = {}
    for name, fc_view in (
        ("week", "timeGridWeek"),
        ("month", "dayGridMonth"),
        ("day", "timeGridDay"),
        ("list", "listWeek"),
    ):
        view(page, fc_view)
        assert_fits(page, f"{name} at {size}", ["#calendar", ".topbar"])
        if fc_view == "dayGridMonth":  # the month's columns are weekdays, with no date in their heading
            headings = page.locator(".fc-col-header-cell").all_inner_texts()
            assert len(headings) == 7 and not any(ch.isdigit() for h in headings for ch in h), headings
        problems[name] = axe(page, f"{name}-{size}")
        shoot(page, name)

    # a day's "+n more" opens a popover in the month view (overlapping events stay reachable)
    view(page, "dayGridMonth")
    more = page.locator(".fc-daygrid-more-link")
    if more.count():
        more.first.click()
        page.wait_for_selector(".fc-popover")
        problems["more-popover"] = axe(page, f"more-popover-{size}", ".fc-popover")
        page.keyboard.press("Escape")
        page.locator(".fc-popover-close").click() if page.locator(".fc-popover").count() else None

    # the event dialog, opened on an event of the week (the first one of the list on a phone)
    view(page, "listWeek" if narrow else "timeGridWeek")
    page.evaluate("""() => {
        const event = document.querySelector('.fc-event[data-event-id]');
        (event.matches('a[href], button, [tabindex]') ? event : event.querySelector('a[href], button, [tabindex]'))
          .focus();
    }""")
    page.keyboard.press("Enter")
    page.wait_for_selector("#event-dialog[open]")
    page.wait_for_timeout(200)
    assert_fits(page, f"dialog at {size}", ["#event-dialog"])
    problems["dialog"] = axe(page, f"dialog-{size}")
    shoot(page, "event-dialog")
    page.keyboard.press("Escape")
    page.wait_for_selector("#event-dialog", state="hidden")

    # the sidebar (unfolded on a phone): each binding says its provider and account
    open_sidebar_if_folded(page)
    lines = page.locator("#health-summary .health-line")
    texts = lines.all_inner_texts()
    mirror = [t for t in texts if t.startswith("Shared: Google + Outlook")]
    assert len(mirror) == 2 and "Google" in mirror[0] + mirror[1] and "Microsoft" in mirror[0] + mirror[1], texts
    assert len(set(mirror)) == 2, f"the two bindings of the shared calendar read the same: {mirror}"
    for line in texts:  # the state is said in words, not only by the dot's colour
        assert any(word in line for word in ("in sync", "syncing", "error")), line
    assert_fits(page, f"sidebar at {size}", ["#sidebar"])
    problems["sidebar"] = axe(page, f"sidebar-{size}", "#sidebar")
    if narrow:
        page.locator("#sidebar").scroll_into_view_if_needed()
        shoot(page, "sidebar")

    # conflicts: one made by the demo control, on the Conflicts tab
    page.click('button[data-demo="conflict"]')
    page.wait_for_function("() => document.querySelector('#conflict-count').dataset.count !== '0'", timeout=10000)
    page.evaluate("() => window.scrollTo(0, 0)")
    page.click("#tab-btn-conflicts")
    page.locator(".conflict").first.wait_for()
    assert_fits(page, f"conflicts at {size}", ["#tab-conflicts", ".conflict"])
    problems["conflicts"] = axe(page, f"conflicts-{size}")
    shoot(page, "conflicts")

    # sync health: the tables are whole (not cut off on the right)
    page.click("#tab-btn-health")
    page.wait_for_selector("#binding-health tbody tr")
    assert_fits(page, f"health at {size}", ["#tab-health", "#binding-health", "#account-health"])
    problems["health"] = axe(page, f"health-{size}")
    shoot(page, "health")
    page.click("#tab-btn-calendar")

    bad = {k: v for k, v in problems.items() if v}
    found = {k: AXE_RESULTS[f"{k}-{size}"] for k in problems}
    shown = {k: ", ".join(f"{v['id']}/{v['impact']}" for v in found[k]) or "none" for k in problems}
    print(f"\naxe at {size}: " + "; ".join(f"{k}: {shown[k]}" for k in problems))  # noqa: T201 (the report)
    assert not bad, f"serious or critical axe violations: {serious([*bad.items()])}"


# --- the demo control when the changed event is not on screen ----------------------------------------


@pytest.mark.parametrize("sized", [pytest.param(WIDE, id="1400x900")], indirect=True)
def test_a_demo_change_outside_the_dates_shown_says_where_it_is_and_goes_there(sized: Any, demo: Any) -> None:
    page = sized
    view(page, "timeGridDay")
    # last Saturday: the first calendar has no single timed event on a weekend, so the control changes one
    # on a later day, outside the day shown
    page.evaluate("""() => {
        const d = new Date();
        d.setDate(d.getDate() - (((d.getDay() + 1) % 7) || 7));
        window.calsync.calendar.gotoDate(d);
    }""")
    settle(page)
    page.click('button[data-demo="rename"]')
    go = page.locator("#demo-go")
    go.wait_for(timeout=8000)
    assert "outside the dates shown" in page.locator("#demo-result").inner_text()
    go.click()
    page.wait_for_function(
        "() => /Arrived on the page/.test(document.querySelector('#demo-result').textContent)", timeout=10000
    )


# --- the keyboard only ------------------------------------------------------------------------------


def active(page: Any) -> dict[str, Any]:
    return page.evaluate("""() => {
        const a = document.activeElement;
        return { id: a.id, cls: String(a.className || ''), title: a.dataset ? a.dataset.title || '' : '',
                 inDialog: !!a.closest('#event-dialog'), text: (a.innerText || '').trim().slice(0, 60),
                 outline: getComputedStyle(a).outlineStyle, eventId: a.dataset ? a.dataset.eventId || '' : '' };
    }""")


def tab_to(page: Any, match: Any, *, back: bool = False, limit: int = 400) -> dict[str, Any]:
    """Press Tab (Shift+Tab) until the focused element matches; each focused element shows its focus."""
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        now = active(page)
        if match(now):
            assert now["outline"] != "none", f"the focus is not visible on {now}"
            return now
    raise AssertionError(f"never reached by Tab: last focus {active(page)}")


@pytest.mark.parametrize("sized", [pytest.param(WIDE, id="1400x900")], indirect=True)
def test_create_edit_save_and_resolve_a_conflict_with_the_keyboard_only(sized: Any, demo: Any) -> None:
    page = sized
    title = f"Made with the keyboard {int(time.time())}"
    page.focus("body")

    # create: New event in the toolbar, type a title, Tab to Save
    tab_to(page, lambda a: "fc-newEvent-button" in a["cls"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#event-dialog[open]")
    assert active(page)["id"] == "event-title"
    page.keyboard.type(title)
    # the focus stays in the dialog however far one tabs (and back)
    for key in ["Tab"] * 25 + ["Shift+Tab"] * 25:
        page.keyboard.press(key)
        assert active(page)["inDialog"], f"the focus left the dialog: {active(page)}"
    tab_to(page, lambda a: a["id"] == "event-save", limit=40)
    page.keyboard.press("Enter")
    page.wait_for_selector("#event-dialog", state="hidden")
    assert "fc-newEvent-button" in active(page)["cls"], "the focus went back to New event"
    made = page.wait_for_selector(f'.fc-event[data-title="{title}"]', timeout=8000)
    event_id = made.get_attribute("data-event-id")

    # edit: Tab to the new event, Enter opens it, change the title, Save
    tab_to(page, lambda a: a["eventId"] == event_id)
    page.keyboard.press("Enter")
    page.wait_for_selector("#event-dialog[open]")
    assert page.locator("#dialog-title").inner_text() == "Edit event"
    page.keyboard.press("Control+A")
    page.keyboard.type(f"{title} (edited)")
    tab_to(page, lambda a: a["id"] == "event-save", limit=40)
    page.keyboard.press("Enter")
    page.wait_for_selector("#event-dialog", state="hidden")
    wait_for(lambda: api_event(demo, event_id)["title"] == f"{title} (edited)", what="the saved title")
    assert active(page)["eventId"] == event_id, f"the focus went back to the event: {active(page)}"
    # Escape closes the dialog and returns the focus too
    page.keyboard.press("Enter")
    page.wait_for_selector("#event-dialog[open]")
    page.keyboard.press("Escape")
    page.wait_for_selector("#event-dialog", state="hidden")
    assert active(page)["eventId"] == event_id

    # resolve a conflict: the Conflicts tab, then Keep remote, all by keyboard
    demo.remote_change("conflict")
    page.wait_for_function("() => document.querySelector('#conflict-count').dataset.count !== '0'", timeout=10000)
    tab_to(page, lambda a: a["id"] == "tab-btn-conflicts", back=True)
    page.keyboard.press("Enter")
    page.locator(".conflict").first.wait_for()
    conflict_id = page.locator(".conflict").first.get_attribute("data-conflict-id")
    focused = tab_to(page, lambda a: "keep-remote" in a["cls"], limit=60)
    assert focused["text"].startswith("Keep remote")
    page.keyboard.press("Enter")
    page.wait_for_selector(f'.conflict[data-conflict-id="{conflict_id}"]', state="detached", timeout=10000)
    listed = httpx.get(f"{demo.url}/api/v1/conflicts").json()["conflicts"]
    assert conflict_id not in {c["id"] for c in listed}


# --- times in the viewer's zone, the event's own zone named ------------------------------------------


@pytest.mark.parametrize("sized", [pytest.param(WIDE, id="1400x900")], indirect=True)
def test_an_event_made_in_another_zone_says_its_times_there(sized: Any, demo: Any) -> None:
    page = sized
    events = httpx.get(
        f"{demo.url}/api/v1/events", params={"start": "2000-01-01", "end": "2100-01-01", "limit": 2500}
    ).json()["events"]
    (event, *_) = [e for e in events if e["time_zone"] == "America/New_York" and not e["recurrence"]]
    page.evaluate("(start) => window.calsync.calendar.changeView('timeGridDay', new Date(start))", event["start"])
    settle(page)
    page.evaluate("(id) => document.querySelector(`.fc-event[data-event-id='${id}']`).focus()", event["id"])
    page.keyboard.press("Enter")
    page.wait_for_selector("#event-dialog[open]")
    note = page.locator("#zone-note")
    note.wait_for()
    text = note.inner_text()
    # the form is in the viewer's zone (Berlin, the browser's); the note gives the New York wall clock
    assert "Europe/Berlin" in text and "America/New_York" in text, text
    berlin = page.input_value("#event-start")
    assert berlin.endswith(("16:00", "16:30", "17:00")), berlin
    assert any(f"{h}:" in text for h in ("10", "11")), text
    page.keyboard.press("Escape")


@pytest.mark.parametrize("sized", [pytest.param(WIDE, id="1400x900")], indirect=True)
def test_another_locale_chosen_on_the_page_writes_the_dates(sized: Any, demo: Any) -> None:
    page = sized
    assert "Europe/Berlin" in page.locator("#zone-line").inner_text()  # the browser's zone, said
    with page.expect_navigation():  # the choice reloads the page
        page.select_option("#locale-choice", "de-DE")
    page.wait_for_selector(".fc-event[data-event-id]", timeout=15000)
    view(page, "dayGridMonth")
    title = page.locator(".fc-toolbar-title").text_content() or ""
    months = (
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    )
    assert any(m in title for m in months), title
    with page.expect_navigation():
        page.select_option("#locale-choice", "")  # back to the browser's
    page.wait_for_selector(".fc-event[data-event-id]", timeout=15000)
    assert page.evaluate("() => localStorage.getItem('calsync.locale')") is None


@pytest.mark.parametrize(
    "sized",
    [
        pytest.param((360, 640), id="360x640"),
        pytest.param((800, 900), id="800x900"),
        pytest.param((1920, 1080), id="1920x1080"),
    ],
    indirect=True,
)
def test_the_page_fits_from_a_small_phone_to_a_wide_screen(sized: Any) -> None:
    page = sized
    size = "x".join(str(n) for n in page.viewport_size.values())
    top = page.evaluate("() => document.querySelector('#calendar').getBoundingClientRect().top")
    assert top < 160, f"{size}: the calendar starts at {top}px"
    for fc_view in ("timeGridWeek", "dayGridMonth", "timeGridDay", "listWeek"):
        view(page, fc_view)
        assert_fits(page, f"{fc_view} at {size}", ["#calendar", ".topbar"])
    for tab, panels in (("conflicts", ["#tab-conflicts"]), ("health", ["#tab-health", "#binding-health"])):
        page.click(f"#tab-btn-{tab}")
        page.wait_for_selector(f"#tab-{tab}:not([hidden])")
        page.wait_for_timeout(200)
        assert_fits(page, f"{tab} at {size}", panels)


@pytest.mark.parametrize("sized", [pytest.param(WIDE, id="1400x900")], indirect=True)
def test_a_window_turned_narrow_gets_the_list_and_its_week_back_when_wide(sized: Any) -> None:
    page = sized
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_selector(".fc-listWeek-view")
    assert not page.locator("#sidebar").is_visible()  # folded behind its button
    page.set_viewport_size({"width": 390, "height": 700})  # a phone's address bar: no change of view
    page.wait_for_timeout(300)
    assert page.locator(".fc-listWeek-view").count() == 1
    page.set_viewport_size({"width": 1400, "height": 900})
    page.wait_for_selector(".fc-timeGridWeek-view")
    assert page.locator("#sidebar").is_visible()
