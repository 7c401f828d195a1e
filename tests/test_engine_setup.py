"""engine/setup.py against a real SQLite store: accounts, local calendars and bindings are set up
through the engine (the CLI and the demo call it), with bad input refused before anything is written."""
from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import Connection, Engine

from calsync.engine import local, setup
from calsync.engine.setup import NewCalendar, SetupError
from calsync.model import Account, utcnow
from calsync.store import accounts as account_store
from calsync.store import users
from calsync.store import outbox as outbox_store
from calsync.store.common import NotFound

ALREADY_BOUND = re.escape("'x@example.com' is already bound for this account")


def _counts(engine: Engine) -> tuple[int, int, int]:
    """(accounts, calendars, bindings) in the store."""
    with engine.begin() as conn:
        return (len(account_store.list_accounts(conn)), len(account_store.list_calendars(conn)),
                len(account_store.list_bindings(conn)))


def _queued(engine: Engine, binding_id: str) -> list[str]:
    with engine.begin() as conn:
        return [r["event_id"] for r in outbox_store.pending_for_binding(conn, binding_id, utcnow())]


def _event(engine: Engine, calendar_id: str, title: str) -> str:
    return local.create_event(engine, calendar_id, {
        "title": title, "start": "2026-03-02T09:00:00Z", "end": "2026-03-02T10:00:00Z"}).event_id


# --- accounts ---------------------------------------------------------------------------------------


def test_add_account_stores_what_a_provider_client_is_made_from(engine: Engine) -> None:
    google = setup.add_account(engine, "google", "work", "http://127.0.0.1:9", {"token": "t0k"})
    caldav = setup.add_account(engine, "caldav", "me@dav", "https://dav.example/", {"username": "me", "password": ""})
    with engine.begin() as conn:
        assert account_store.get_account(conn, google) == Account(
            google, "google", "work", "http://127.0.0.1:9", {"token": "t0k"}, "ok")
        assert account_store.get_account(conn, caldav).credentials == {"username": "me", "password": ""}
    assert _counts(engine) == (2, 0, 0)


@pytest.mark.parametrize("provider,name,base_url,credentials,message", [
    ("outlook2", "x", None, {"token": "t"}, "unknown provider 'outlook2'; supported: google, caldav, graph"),
    ("google", "  ", None, {"token": "t"}, "an account needs a name"),
    ("google", "x", None, {}, "Google Calendar needs a bearer token ('token')"),
    ("graph", "x", None, {"token": " "}, "the token must not be empty"),
    ("google", "x", None, {"token": 42}, "the token must be a string"),
    ("google", "x", None, {"token": "t", "tokn": "t"}, "Google Calendar takes no credential 'tokn' (it takes token)"),
    ("caldav", "x", None, {"username": "u", "password": "p"}, "CalDAV needs a server URL"),
    ("caldav", "x", "https://dav.example/", {"password": "p"}, "CalDAV needs a user name ('username')"),
])
def test_add_account_refuses_bad_input_and_writes_nothing(
    engine: Engine, provider: str, name: str, base_url: str | None, credentials: dict[str, Any], message: str,
) -> None:
    with pytest.raises(SetupError) as refused:
        setup.add_account(engine, provider, name, base_url, credentials)
    assert str(refused.value) == message
    assert isinstance(refused.value, ValueError)  # what a caller that knows no SetupError catches
    assert _counts(engine) == (0, 0, 0)


# --- calendars --------------------------------------------------------------------------------------


def test_add_calendar_makes_an_unbound_calendar_and_refuses_a_blank_name(engine: Engine) -> None:
    calendar_id = setup.add_calendar(engine, "Shared", "Europe/Berlin", "#c0392b")
    with engine.begin() as conn:
        (row,) = account_store.list_calendars(conn)
    assert (row["id"], row["name"], row["time_zone"], row["color"]) == (calendar_id, "Shared", "Europe/Berlin",
                                                                         "#c0392b")
    with pytest.raises(SetupError, match="a calendar needs a name"):
        setup.add_calendar(engine, " ")
    assert _counts(engine) == (0, 1, 0)


# --- bindings ---------------------------------------------------------------------------------------


def test_bind_with_a_new_calendar_makes_both(engine: Engine) -> None:
    account = setup.add_account(engine, "google", "work", None, {"token": "t"})
    bound = setup.bind_calendar(engine, account, "work@example.com", NewCalendar("Work", "UTC", "#123456"),
                                direction="push", conflict_policy="local-wins")
    assert bound.queued == 0
    with engine.begin() as conn:
        binding = account_store.get_binding(conn, bound.binding_id)
        (calendar,) = account_store.list_calendars(conn)
    assert (binding["calendar_id"], binding["account_id"], binding["remote_calendar_id"]) == (
        bound.calendar_id, account, "work@example.com")
    assert (binding["direction"], binding["conflict_policy"]) == ("push", "local-wins")
    assert (calendar["id"], calendar["name"], calendar["time_zone"], calendar["color"]) == (
        bound.calendar_id, "Work", "UTC", "#123456")


def test_bind_defaults_to_two_way_and_merge(engine: Engine) -> None:
    account = setup.add_account(engine, "google", "work", None, {"token": "t"})
    bound = setup.bind_calendar(engine, account, "work@example.com", NewCalendar("Work"))
    with engine.begin() as conn:
        binding = account_store.get_binding(conn, bound.binding_id)
    assert (binding["direction"], binding["conflict_policy"]) == ("two-way", "merge")


def test_a_pushing_binding_added_to_a_calendar_with_events_gets_them_queued(engine: Engine) -> None:
    """Mirroring: what the calendar holds before the second binding reaches the second side too."""
    google = setup.add_account(engine, "google", "g", None, {"token": "t"})
    graph = setup.add_account(engine, "graph", "o", None, {"token": "t"})
    calendar = setup.add_calendar(engine, "Shared")
    first = setup.bind_calendar(engine, google, "shared@example.com", calendar)
    assert first.queued == 0
    events = [_event(engine, calendar, f"event {n}") for n in range(3)]
    assert sorted(_queued(engine, first.binding_id)) == sorted(events)  # local.create_event queued them there
    second = setup.bind_calendar(engine, graph, "AAMk-shared", calendar)
    assert (second.calendar_id, second.queued) == (calendar, 3)
    assert sorted(_queued(engine, second.binding_id)) == sorted(events)
    assert sorted(_queued(engine, first.binding_id)) == sorted(events)  # the first binding's queue is as it was


def test_a_pulling_binding_added_to_a_calendar_with_events_queues_nothing(engine: Engine) -> None:
    account = setup.add_account(engine, "google", "g", None, {"token": "t"})
    calendar = setup.add_calendar(engine, "Shared")
    _event(engine, calendar, "made here")
    bound = setup.bind_calendar(engine, account, "shared@example.com", calendar, direction="pull")
    assert bound.queued == 0
    assert _queued(engine, bound.binding_id) == []


@pytest.mark.parametrize("options,message", [
    ({"direction": "sideways"}, "direction must be one of two-way, pull, push, not 'sideways'"),
    ({"conflict_policy": "never"},
     "conflict policy must be one of ask, local-wins, remote-wins, latest-wins, merge, not 'never'"),
])
def test_bind_refuses_an_unknown_direction_or_policy(engine: Engine, options: dict[str, str], message: str) -> None:
    account = setup.add_account(engine, "google", "g", None, {"token": "t"})
    with pytest.raises(SetupError) as refused:
        setup.bind_calendar(engine, account, "x@example.com", NewCalendar("X"), **options)
    assert str(refused.value) == message
    assert _counts(engine) == (1, 0, 0)


def test_bind_refusals_write_nothing(engine: Engine) -> None:
    account = setup.add_account(engine, "google", "g", None, {"token": "t"})
    with pytest.raises(SetupError, match="a calendar needs a name"):
        setup.bind_calendar(engine, account, "x@example.com", NewCalendar(""))
    with pytest.raises(NotFound, match="no account with id 'nope'"):
        setup.bind_calendar(engine, "nope", "x@example.com", NewCalendar("X"))
    with pytest.raises(NotFound, match="no local calendar with id 'nope'"):
        setup.bind_calendar(engine, account, "x@example.com", "nope")
    assert _counts(engine) == (1, 0, 0)
    setup.bind_calendar(engine, account, "x@example.com", NewCalendar("X"))
    with pytest.raises(SetupError, match=ALREADY_BOUND):
        setup.bind_calendar(engine, account, "x@example.com", NewCalendar("X again"))
    assert _counts(engine) == (1, 1, 1)  # the refused binding's new calendar was not left behind


def test_bind_meets_a_binding_made_at_the_same_moment_with_the_same_refusal(
    engine: Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two writers check before either inserts: the unique constraint catches the second, and it is
    refused as the check would have, not with the database's error."""
    account = setup.add_account(engine, "google", "g", None, {"token": "t"})
    setup.bind_calendar(engine, account, "x@example.com", NewCalendar("X"))

    def not_seen_yet(
        conn: Connection, account_id: str, _remote: str, _calendar: str | None, _owner: str | None
    ) -> tuple[Account, str]:
        # as if the other writer had not committed yet
        return account_store.get_account(conn, account_id), users.account_owner(conn, account_id) or ""

    monkeypatch.setattr(setup, "_check_binding", not_seen_yet)
    with pytest.raises(SetupError, match=ALREADY_BOUND):
        setup.bind_calendar(engine, account, "x@example.com", NewCalendar("X again"))
    assert _counts(engine) == (1, 1, 1)


def test_check_binding_refuses_what_bind_would_without_writing(engine: Engine) -> None:
    account = setup.add_account(engine, "google", "g", None, {"token": "t"})
    calendar = setup.add_calendar(engine, "X")
    assert setup.check_binding(engine, account, "x@example.com").id == account
    assert setup.check_binding(engine, account, "x@example.com", calendar).provider == "google"
    with pytest.raises(NotFound, match="no account with id 'nope'"):
        setup.check_binding(engine, "nope", "x@example.com")
    with pytest.raises(NotFound, match="no local calendar with id 'nope'"):
        setup.check_binding(engine, account, "x@example.com", "nope")
    setup.bind_calendar(engine, account, "x@example.com", calendar)
    with pytest.raises(SetupError, match=ALREADY_BOUND):
        setup.check_binding(engine, account, "x@example.com", calendar)
    assert _counts(engine) == (1, 1, 1)


def test_setup_imports_no_http_client_service_cli_or_conferences() -> None:
    """The rule service and CLI -> engine -> store: setting up needs neither HTTP nor conferences."""
    code = ("import sys, calsync.engine.setup; print(sorted(m for m in sys.modules if 'httpx' in m"
            " or 'conferencing' in m"
            " or m.startswith(('calsync.service', 'calsync.cli', 'calsync.engine.conferences'))))")
    done = subprocess.run(  # noqa: S603 (our own interpreter, a fixed program)
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
