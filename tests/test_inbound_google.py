"""Inbound sync against the Google emulator over real HTTP, into a real SQLite store."""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from calsync.engine.inbound import MassDeleteGuard, SyncResult
from calsync.engine.sync import sync_once
from calsync.model import Account, EventData
from calsync.providers.google import GoogleProvider
from calsync.providers.http import RetryPolicy
from calsync.store import repo
from calsync.store.schema import conflicts, event_links, events
from tests.helpers import (
    GoogleApi,
    admin,
    bind,
    event_data,
    local_create,
    local_edit,
    local_events,
    token_of,
)




def run(
    engine: Engine, *, page_size: int = 2500, binding_ids: list[str] | None = None, full: bool = False,
    force: bool = False, after_page: Callable[[int, SyncResult], None] | None = None,
    guard: MassDeleteGuard | None = None,
) -> list[SyncResult]:
    def make(account: Account) -> GoogleProvider:
        return GoogleProvider.from_account(account, page_size=page_size, retry=RetryPolicy(base_delay=0.05))

    return sync_once(engine, binding_ids=binding_ids, full=full, force=force, after_page=after_page,
                     make_provider=make, guard=guard).inbound


def one(results: list[SyncResult]) -> SyncResult:
    assert len(results) == 1
    return results[0]


def remote_titles(api: GoogleApi, calendar_id: str) -> dict[str, str]:
    return {e["id"]: e.get("summary", "") for e in api.list_all(calendar_id)}


def assert_mirrors(engine: Engine, binding_id: str, api: GoogleApi, calendar_id: str) -> None:
    """The store holds exactly the remote calendar: same ids, same titles, nothing extra, nothing twice."""
    local = {rid: row["title"] for rid, row in local_events(engine, binding_id).items()}
    assert local == remote_titles(api, calendar_id)


def test_initial_full_sync_pages_through_everything(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    alice.seed(calendar, 350)
    binding = bind(engine, google_url, "alice", calendar)
    result = one(run(engine, page_size=100))
    assert result.status == "ok" and result.full
    assert (result.pages, result.requests, result.created) == (4, 4, 350)
    assert token_of(engine, binding)
    assert_mirrors(engine, binding, alice, calendar)
    sample = next(iter(local_events(engine, binding).values()))
    assert sample["version"] == 1 and sample["source"] == f"google:{binding}"
    assert sample["updated_at_source"] == f"google:{binding}"
    assert sample["links"][0]["etag"]


def test_incremental_sees_creates_updates_and_deletes(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    keep = alice.insert(calendar, "Standup")
    doomed = alice.insert(calendar, "Retro")
    binding = bind(engine, google_url, "alice", calendar)
    run(engine)
    first_token = token_of(engine, binding)

    alice.insert(calendar, "Planning")
    alice.patch(calendar, keep["id"], summary="Standup (room 4)")
    alice.delete(calendar, doomed["id"])
    result = one(run(engine))
    assert not result.full
    assert (result.created, result.updated, result.deleted) == (1, 1, 1)
    assert token_of(engine, binding) != first_token
    mirrored = local_events(engine, binding, include_deleted=True)
    assert mirrored[keep["id"]]["title"] == "Standup (room 4)"
    assert mirrored[keep["id"]]["version"] == 2
    assert mirrored[doomed["id"]]["deleted"] is True
    assert_mirrors(engine, binding, alice, calendar)


def test_nothing_changed_costs_exactly_one_request(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    alice.seed(calendar, 300)
    bind(engine, google_url, "alice", calendar)
    run(engine, page_size=100)
    admin(google_url, "DELETE", "/requests")
    result = one(run(engine, page_size=100))
    assert result.requests == 1
    assert (result.created, result.updated, result.deleted) == (0, 0, 0)
    log = admin(google_url, "GET", "/requests").json()["requests"]
    assert len(log) == 1 and "syncToken" in str(log[0]["query"])


def test_invalid_token_means_full_sync_that_reconciles_deletions(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    calendar = alice.primary_id()
    alice.seed(calendar, 60)
    binding = bind(engine, google_url, "alice", calendar)
    run(engine, page_size=25)
    ids = list(remote_titles(alice, calendar))
    for event_id in ids[:3]:
        alice.delete(calendar, event_id)
    alice.insert(calendar, "Born during the outage")
    admin(google_url, "POST", f"/calendars/{calendar}/invalidate-tokens")

    result = one(run(engine, page_size=25))
    assert result.token_reset and result.full and result.status == "ok"
    assert (result.created, result.deleted) == (1, 3)
    assert_mirrors(engine, binding, alice, calendar)
    # and the new token works incrementally again
    assert one(run(engine, page_size=25)).requests == 1


def test_crash_between_pages_of_a_full_sync_converges(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    alice.seed(calendar, 500)
    binding = bind(engine, google_url, "alice", calendar)

    def crash_after_second(page: int, _result: SyncResult) -> None:
        if page == 2:
            raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        run(engine, page_size=100, after_page=crash_after_second)
    assert token_of(engine, binding) is None  # the token is only written with the last page
    assert len(local_events(engine, binding)) == 200
    alice.delete(calendar, next(iter(remote_titles(alice, calendar))))  # the world moves on meanwhile

    result = one(run(engine, page_size=100))
    assert result.status == "ok" and token_of(engine, binding)
    assert_mirrors(engine, binding, alice, calendar)
    with engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(event_links)).scalar_one() == 500


def test_crash_between_pages_of_an_incremental_sync_converges(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    calendar = alice.primary_id()
    alice.seed(calendar, 120)
    binding = bind(engine, google_url, "alice", calendar)
    run(engine, page_size=50)
    old_token = token_of(engine, binding)
    ids = list(remote_titles(alice, calendar))
    for event_id in ids[:40]:
        alice.patch(calendar, event_id, summary=f"edited {event_id}")
    for event_id in ids[40:70]:
        alice.delete(calendar, event_id)
    for n in range(50):
        alice.insert(calendar, f"new {n}")

    def crash(page: int, _result: SyncResult) -> None:
        if page == 1:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        run(engine, page_size=50, after_page=crash)
    assert token_of(engine, binding) == old_token
    result = one(run(engine, page_size=50))
    assert result.status == "ok" and not result.full
    assert_mirrors(engine, binding, alice, calendar)
    # re-applied pages were harmless: an edited event was bumped exactly once
    assert local_events(engine, binding)[ids[0]]["version"] == 2


def test_two_calendars_of_one_account_keep_their_own_tokens(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    work = alice.primary_id()
    team = alice.create_calendar("Team")
    alice.insert(work, "Work thing")
    alice.insert(team, "Team thing")
    b_work = bind(engine, google_url, "alice", work)
    b_team = bind(engine, google_url, "alice", team)
    run(engine)
    assert token_of(engine, b_work) and token_of(engine, b_team)
    assert token_of(engine, b_work) != token_of(engine, b_team)

    alice.insert(team, "Another team thing")
    admin(google_url, "POST", f"/calendars/{team}/invalidate-tokens")
    by_binding = {r.binding_id: r for r in run(engine)}
    assert not by_binding[b_work].full and by_binding[b_work].requests == 1
    assert by_binding[b_team].full and by_binding[b_team].token_reset
    assert by_binding[b_team].created == 1
    assert_mirrors(engine, b_work, alice, work)
    assert_mirrors(engine, b_team, alice, team)


@pytest.mark.parametrize("status", [503, 429])
def test_error_burst_is_retried_honouring_retry_after(
    engine: Engine, alice: GoogleApi, google_url: str, status: int
) -> None:
    calendar = alice.primary_id()
    alice.seed(calendar, 30)
    binding = bind(engine, google_url, "alice", calendar)
    admin(google_url, "DELETE", "/requests")
    admin(google_url, "POST", "/faults", json={"status": status, "count": 2, "retry_after": 1, "methods": ["GET"]})
    started = time.monotonic()
    result = one(run(engine))
    elapsed = time.monotonic() - started
    assert result.status == "ok" and result.created == 30
    assert result.requests == 3
    assert elapsed >= 2.0, "Retry-After: 1 twice must wait at least two seconds"
    log = admin(google_url, "GET", "/requests").json()["requests"]
    assert [entry["status"] for entry in log] == [status, status, 200]
    assert_mirrors(engine, binding, alice, calendar)


def test_retries_give_up_and_record_the_error(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar)
    admin(google_url, "POST", "/faults", json={"status": 500})
    result = one(run(engine))
    assert result.status == "error" and "500" in (result.message or "")
    with engine.begin() as conn:
        row = repo.get_binding(conn, binding)
    assert row["last_sync_status"] == "error" and row["sync_token"] is None


def test_rejected_credentials_mark_the_account(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar)
    admin(google_url, "POST", "/faults", json={"status": 401, "count": 1})
    assert one(run(engine)).status == "auth-failed"
    with engine.begin() as conn:
        assert repo.list_accounts(conn)[0]["state"] == "auth-failed"
    # not retried in a loop: the next pass does not even call the provider
    admin(google_url, "DELETE", "/requests")
    assert one(run(engine)).status == "auth-failed"
    assert admin(google_url, "GET", "/requests").json()["requests"] == []
    assert binding


def test_mass_delete_guard_stops_a_suspicious_full_sync(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    alice.seed(calendar, 40)
    binding = bind(engine, google_url, "alice", calendar)
    run(engine)
    for event_id in list(remote_titles(alice, calendar))[:30]:
        alice.delete(calendar, event_id)
    admin(google_url, "POST", f"/calendars/{calendar}/invalidate-tokens")

    blocked = one(run(engine))
    assert blocked.status == "blocked" and "30 of 40" in (blocked.message or "")
    assert len(local_events(engine, binding)) == 40
    assert token_of(engine, binding) is None
    forced = one(run(engine, force=True))
    assert forced.status == "ok" and forced.deleted == 30
    assert_mirrors(engine, binding, alice, calendar)


def test_reapplying_a_full_listing_changes_nothing(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    alice.seed(calendar, 80, conference_every=4, recurring_every=10)
    binding = bind(engine, google_url, "alice", calendar)
    run(engine)
    before = {rid: (r["version"], r["updated_at"]) for rid, r in local_events(engine, binding).items()}
    again = one(run(engine, full=True))
    assert again.full and (again.created, again.updated, again.deleted) == (0, 0, 0)
    assert again.unchanged == 80
    after = {rid: (r["version"], r["updated_at"]) for rid, r in local_events(engine, binding).items()}
    assert after == before


def test_recurring_series_stored_as_given_with_exceptions(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    start = datetime(2026, 12, 7, 9, tzinfo=UTC)
    # Google requires a time zone on a recurring event's start: it is the zone the rule expands in
    series = alice.insert(
        calendar, "Weekly sync", recurrence=["RRULE:FREQ=WEEKLY;COUNT=10"],
        start={"dateTime": start.isoformat(), "timeZone": "UTC"},
        end={"dateTime": (start + timedelta(hours=1)).isoformat(), "timeZone": "UTC"},
    )
    instances = alice.http.get(f"/calendars/{calendar}/events/{series['id']}/instances").raise_for_status().json()
    moved, cancelled = instances["items"][1], instances["items"][2]
    alice.patch(calendar, moved["id"], summary="Weekly sync (moved)",
                start={"dateTime": (start + timedelta(days=8)).isoformat(), "timeZone": "UTC"},
                end={"dateTime": (start + timedelta(days=8, hours=1)).isoformat(), "timeZone": "UTC"})
    alice.delete(calendar, cancelled["id"])
    binding = bind(engine, google_url, "alice", calendar)
    run(engine)

    stored = local_events(engine, binding)
    assert len(stored) == 3, "a series and two exceptions, not ten expanded instances"
    parent = stored[series["id"]]
    assert parent["recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=10"] and parent["recurring_event_id"] is None
    assert stored[moved["id"]]["recurring_event_id"] == parent["id"]
    assert stored[moved["id"]]["original_start"] == "2026-12-14T09:00:00Z"
    assert stored[moved["id"]]["title"] == "Weekly sync (moved)"
    assert stored[cancelled["id"]]["status"] == "cancelled"
    assert stored[cancelled["id"]]["recurring_event_id"] == parent["id"]

    alice.delete(calendar, series["id"])
    run(engine)
    assert local_events(engine, binding) == {}


def test_own_write_echo_is_a_no_op(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    alice.insert(calendar, "Echo")
    binding = bind(engine, google_url, "alice", calendar)
    run(engine)
    (row,) = local_events(engine, binding).values()
    # the provider write path returns the new ETag; once recorded on the link, the echo changes nothing
    provider = GoogleProvider("alice", google_url)
    data = event_data(engine, row["id"])
    data.title = "Echo (written by calsync)"
    written = provider.update_event(calendar, row["links"][0]["remote_id"], data, if_match=row["links"][0]["etag"])
    provider.close()
    with engine.begin() as conn:
        conn.execute(event_links.update().values(etag=written.etag))
    result = one(run(engine))
    assert (result.updated, result.unchanged) == (0, 1)
    assert binding


def test_local_and_remote_edit_make_a_conflict(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    created = alice.insert(calendar, "Budget review")
    binding = bind(engine, google_url, "alice", calendar)
    run(engine)
    event_id = local_events(engine, binding)[created["id"]]["id"]
    local_edit(engine, event_id, title="Budget review (local)")
    alice.patch(calendar, created["id"], summary="Budget review (remote)")

    result = one(run(engine))
    assert result.conflicts == 1 and result.updated == 0
    with engine.begin() as conn:
        (conflict,) = conn.execute(select(conflicts)).mappings().all()
    assert conflict["kind"] == "edit-edit" and conflict["status"] == "open"
    assert conflict["local"]["title"] == "Budget review (local)"
    assert conflict["remote"]["title"] == "Budget review (remote)"
    assert conflict["base"]["title"] == "Budget review"
    assert event_data(engine, event_id).title == "Budget review (local)", "the local edit is kept, not overwritten"
    # a second remote edit refreshes the same conflict rather than opening another
    alice.patch(calendar, created["id"], summary="Budget review (remote 2)")
    run(engine)
    with engine.begin() as conn:
        rows = conn.execute(select(conflicts)).mappings().all()
    assert len(rows) == 1 and rows[0]["remote"]["title"] == "Budget review (remote 2)"


def test_same_edit_on_both_sides_fast_forwards(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    created = alice.insert(calendar, "Lunch")
    binding = bind(engine, google_url, "alice", calendar)
    run(engine)
    row = local_events(engine, binding)[created["id"]]
    local_edit(engine, row["id"], title="Lunch at noon")
    alice.patch(calendar, created["id"], summary="Lunch at noon")
    result = one(run(engine))
    assert result.conflicts == 0
    link = local_events(engine, binding)[created["id"]]["links"][0]
    assert link["base_version"] == row["version"] + 1


def test_remote_delete_of_locally_edited_event_is_a_conflict(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    calendar = alice.primary_id()
    created = alice.insert(calendar, "Offsite")
    binding = bind(engine, google_url, "alice", calendar)
    run(engine)
    event_id = local_events(engine, binding)[created["id"]]["id"]
    local_edit(engine, event_id, title="Offsite (agenda added)")
    alice.delete(calendar, created["id"])
    result = one(run(engine))
    assert result.conflicts == 1 and result.deleted == 0
    with engine.begin() as conn:
        assert conn.execute(select(conflicts.c.kind)).scalar_one() == "remote-delete"
        assert conn.execute(select(events.c.deleted).where(events.c.id == event_id)).scalar_one() is False


@pytest.mark.parametrize("policy,expected", [("remote-wins", "Plan (remote)"), ("local-wins", "Plan (local)")])
def test_conflict_policies(engine: Engine, alice: GoogleApi, google_url: str, policy: str, expected: str) -> None:
    calendar = alice.primary_id()
    created = alice.insert(calendar, "Plan")
    binding = bind(engine, google_url, "alice", calendar, policy=policy)
    run(engine)
    event_id = local_events(engine, binding)[created["id"]]["id"]
    local_edit(engine, event_id, title="Plan (local)")
    remote = alice.patch(calendar, created["id"], summary="Plan (remote)")
    result = one(run(engine))
    assert result.conflicts == 0
    assert event_data(engine, event_id).title == expected
    if policy == "local-wins":  # the queued push will now carry the remote's current ETag
        assert local_events(engine, binding)[created["id"]]["links"][0]["etag"] == remote["etag"]


def test_event_fields_are_mapped(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    created = alice.insert(
        calendar, "Design review", at=datetime(2026, 12, 3, 15, tzinfo=UTC),
        description="Bring sketches", location="Room 2",
        attendees=[{"email": "bob@example.com", "displayName": "Bob", "responseStatus": "accepted"}],
        extendedProperties={"private": {"crm": "42"}},
    )
    alice.http.post(f"/calendars/{calendar}/events", json={
        "summary": "Holiday", "start": {"date": "2026-12-24"}, "end": {"date": "2026-12-27"},
    }).raise_for_status()
    binding = bind(engine, google_url, "alice", calendar)
    run(engine)
    stored = local_events(engine, binding)
    review = stored[created["id"]]
    assert (review["start"], review["end"], review["all_day"]) == ("2026-12-03T15:00:00Z", "2026-12-03T16:00:00Z", False)
    assert review["description"] == "Bring sketches" and review["location"] == "Room 2"
    assert review["attendees"][0]["email"] == "bob@example.com" and review["attendees"][0]["response"] == "accepted"
    assert review["extra"]["google"]["extendedProperties"] == {"private": {"crm": "42"}}
    holiday = next(r for r in stored.values() if r["title"] == "Holiday")
    assert (holiday["start"], holiday["end"], holiday["all_day"]) == ("2026-12-24", "2026-12-27", True)


def test_conferences_are_kept(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    alice.seed(calendar, 12, conference_every=3)
    binding = bind(engine, google_url, "alice", calendar)
    run(engine)
    with_conference = [r for r in local_events(engine, binding).values() if r["conference"]]
    assert len(with_conference) == 4
    assert all(r["conference"]["join_url"].startswith("https://") for r in with_conference)


def test_pull_only_and_push_only_bindings(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    pull_cal = alice.primary_id()
    push_cal = alice.create_calendar("Outbound only")
    alice.insert(pull_cal, "pulled")
    alice.insert(push_cal, "never pulled")
    b_pull = bind(engine, google_url, "alice", pull_cal, direction="pull")
    b_push = bind(engine, google_url, "alice", push_cal, direction="push")
    by_binding = {r.binding_id: r for r in run(engine)}
    assert by_binding[b_pull].created == 1
    assert by_binding[b_push].status == "skipped" and by_binding[b_push].requests == 0
    assert local_events(engine, b_push) == {}



def test_remote_copy_of_a_local_event_is_adopted_not_duplicated(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    """Our outbox creates remote events with the local id; if it crashed before recording the link,
    the inbound sync must link the remote copy instead of importing a second event."""
    calendar = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar)
    with engine.begin() as conn:
        local_calendar = repo.get_binding(conn, binding)["calendar_id"]
    data = EventData(title="Pushed by calsync", start="2026-12-02T10:00:00Z", end="2026-12-02T11:00:00Z")
    event_id = local_create(engine, local_calendar, data)
    alice.insert(calendar, "Pushed by calsync", at=datetime(2026, 12, 2, 10, tzinfo=UTC), id=event_id)
    result = one(run(engine))
    assert result.created == 0
    stored = local_events(engine, binding)
    assert list(stored) == [event_id] and stored[event_id]["id"] == event_id
    assert stored[event_id]["links"][0]["base_version"] == 1  # same content: already agreed
