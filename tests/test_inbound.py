"""Inbound sync, the same behaviours for every provider: Google and Graph (emulators), Radicale and
Xandikos (real servers). Remote changes are made by another client; faults come from the emulators'
switches or, for the real servers, from the fault proxy in front of them."""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from calsync.engine.inbound import SyncResult
from calsync.engine.sync import sync_once
from calsync.store import accounts as account_store
from calsync.store.schema import conflicts, event_links, events
from tests.helpers import event_data, local_edit, local_events, token_of
from tests.remotes import Remote

HOUR = timedelta(hours=1)


def run(engine: Engine, remote: Remote, *, page_size: int = 2500, binding_ids: list[str] | None = None,
        full: bool = False, force: bool = False,
        after_page: Callable[[int, SyncResult], None] | None = None) -> list[SyncResult]:
    return sync_once(engine, binding_ids=binding_ids, full=full, force=force, after_page=after_page,
                     make_provider=remote.make_provider(page_size)).inbound


def one(results: list[SyncResult]) -> SyncResult:
    assert len(results) == 1
    return results[0]


def assert_mirrors(engine: Engine, binding: str, remote: Remote, calendar: str | None = None) -> None:
    """The store holds exactly the remote calendar: same ids, same titles, nothing extra, nothing twice."""
    local = {rid: row["title"] for rid, row in local_events(engine, binding).items()}
    assert local == remote.titles(calendar)


def test_initial_full_sync_pages_through_everything(engine: Engine, remote: Remote) -> None:
    remote.seed(60)  # three pages, the last one short (a CalDAV seed is a PUT an event: kept small)
    binding = remote.bind(engine)
    remote.clear_requests()
    result = one(run(engine, remote, page_size=25))
    assert result.status == "ok" and result.full and result.created == 60
    assert result.requests == remote.full_requests(60, 25) == len(remote.requests())
    assert token_of(engine, binding)
    assert_mirrors(engine, binding, remote)
    sample = next(iter(local_events(engine, binding).values()))
    assert sample["version"] == 1 and sample["source"] == f"{remote.kind}:{binding}"
    assert sample["links"][0]["etag"]


def test_incremental_sees_creates_updates_and_deletes(engine: Engine, remote: Remote) -> None:
    keep = remote.insert("Standup")
    doomed = remote.insert("Retro", at=datetime(2026, 12, 2, 9, tzinfo=UTC))
    binding = remote.bind(engine)
    run(engine, remote)
    first_token = token_of(engine, binding)

    remote.insert("Planning", at=datetime(2026, 12, 3, 9, tzinfo=UTC))
    remote.change(keep, title="Standup (room 4)")
    remote.delete(doomed)
    result = one(run(engine, remote))
    assert result.status == "ok" and not result.full
    assert (result.created, result.updated, result.deleted) == (1, 1, 1)
    assert token_of(engine, binding) != first_token
    mirrored = local_events(engine, binding, include_deleted=True)
    assert mirrored[keep]["title"] == "Standup (room 4)" and mirrored[keep]["version"] == 2
    assert mirrored[doomed]["deleted"] is True
    assert_mirrors(engine, binding, remote)


def test_nothing_changed_costs_exactly_one_request(engine: Engine, remote: Remote) -> None:
    remote.seed(30)  # three pages in full
    remote.bind(engine)
    run(engine, remote, page_size=10)
    remote.clear_requests()
    result = one(run(engine, remote, page_size=10))
    assert result.requests == 1 and len(remote.requests()) == 1
    assert (result.created, result.updated, result.deleted) == (0, 0, 0)


def test_a_few_changes_cost_what_they_change_not_what_the_calendar_holds(engine: Engine, remote: Remote) -> None:
    remote.seed(40)  # four pages in full
    binding = remote.bind(engine)
    run(engine, remote, page_size=10)
    for n in range(3):
        remote.insert(f"late {n}", at=datetime(2026, 12, 5, 8 + n, tzinfo=UTC))
    remote.clear_requests()
    result = one(run(engine, remote, page_size=10))
    assert result.created == 3 and result.requests == remote.full_requests(3, 10) == len(remote.requests())
    assert_mirrors(engine, binding, remote)


def test_invalid_token_means_full_sync_that_reconciles_deletions(engine: Engine, remote: Remote) -> None:
    remote.seed(20)  # two pages in full
    binding = remote.bind(engine)
    run(engine, remote, page_size=10)
    for remote_id in list(remote.titles())[:3]:
        remote.delete(remote_id)
    remote.insert("Born during the outage")
    remote.invalidate_tokens(engine)

    result = one(run(engine, remote, page_size=10))
    assert result.token_reset and result.full and result.status == "ok"
    assert (result.created, result.deleted) == (1, 3)
    assert_mirrors(engine, binding, remote)
    assert one(run(engine, remote, page_size=10)).requests == 1  # the new token works incrementally


def test_crash_between_pages_of_a_full_sync_converges(engine: Engine, remote: Remote) -> None:
    remote.seed(40)  # four pages
    binding = remote.bind(engine)

    def crash_after_second(page: int, _result: SyncResult) -> None:
        if page == 2:
            raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        run(engine, remote, page_size=10, after_page=crash_after_second)
    assert token_of(engine, binding) is None  # the token is only written with the last page
    assert len(local_events(engine, binding)) == 20
    remote.delete(next(iter(remote.titles())))  # the world moves on meanwhile

    result = one(run(engine, remote, page_size=10))
    assert result.status == "ok" and token_of(engine, binding)
    assert_mirrors(engine, binding, remote)
    assert len(local_events(engine, binding)) == 39
    with engine.begin() as conn:  # the deleted one is a tombstone if it had been stored, else never was
        assert conn.execute(select(func.count()).select_from(event_links)).scalar_one() in (39, 40)


def test_crash_between_pages_of_an_incremental_sync_converges(engine: Engine, remote: Remote) -> None:
    remote.seed(60)
    binding = remote.bind(engine)
    run(engine, remote, page_size=20)
    old_token = token_of(engine, binding)
    ids = list(remote.titles())
    for remote_id in ids[:20]:
        remote.change(remote_id, title=f"edited {remote_id}")
    for remote_id in ids[20:30]:
        remote.delete(remote_id)
    for n in range(15):
        remote.insert(f"new {n}", at=datetime(2026, 12, 10, tzinfo=UTC) + n * HOUR)

    def crash(page: int, _result: SyncResult) -> None:
        if page == 1:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        run(engine, remote, page_size=20, after_page=crash)
    assert token_of(engine, binding) == old_token
    result = one(run(engine, remote, page_size=20))
    assert result.status == "ok" and not result.full
    assert_mirrors(engine, binding, remote)
    # re-applied pages were harmless: an edited event was bumped exactly once
    assert local_events(engine, binding)[ids[0]]["version"] == 2


def test_two_calendars_of_one_account_keep_their_own_tokens(engine: Engine, remote: Remote) -> None:
    work = remote.calendar
    team = remote.new_calendar("Team")
    remote.insert("Work thing")
    remote.insert("Team thing", calendar=team)
    b_work = remote.bind(engine)
    b_team = remote.bind(engine, team)
    run(engine, remote)
    assert token_of(engine, b_work) and token_of(engine, b_team)
    assert token_of(engine, b_work) != token_of(engine, b_team)

    remote.insert("Another team thing", calendar=team, at=datetime(2026, 12, 2, 9, tzinfo=UTC))
    by_binding = {r.binding_id: r for r in run(engine, remote)}
    assert by_binding[b_work].requests == 1 and by_binding[b_work].created == 0
    assert by_binding[b_team].created == 1
    assert_mirrors(engine, b_work, remote, work)
    assert_mirrors(engine, b_team, remote, team)


@pytest.mark.parametrize("status", [503, 429])
def test_error_burst_is_retried_honouring_retry_after(engine: Engine, remote: Remote, status: int) -> None:
    remote.seed(30)
    binding = remote.bind(engine)
    remote.clear_requests()
    remote.fault(status=status, count=2, retry_after=1)
    started = time.monotonic()
    result = one(run(engine, remote))
    elapsed = time.monotonic() - started
    assert result.status == "ok" and result.created == 30
    assert elapsed >= 2.0, "Retry-After: 1 twice must wait at least two seconds"
    statuses = [entry["status"] for entry in remote.requests()]
    assert statuses[:2] == [status, status] and all(s < 300 for s in statuses[2:])
    assert_mirrors(engine, binding, remote)


def test_retries_give_up_and_record_the_error(engine: Engine, remote: Remote) -> None:
    binding = remote.bind(engine)
    remote.fault(status=500)
    result = one(run(engine, remote))
    assert result.status == "error" and "500" in (result.message or "")
    with engine.begin() as conn:
        row = account_store.get_binding(conn, binding)
    assert row["last_sync_status"] == "error" and row["sync_token"] is None


def test_rejected_credentials_mark_the_account(engine: Engine, remote: Remote) -> None:
    remote.bind(engine)
    remote.fault(status=401, count=1)
    assert one(run(engine, remote)).status == "auth-failed"
    with engine.begin() as conn:
        assert account_store.list_accounts(conn)[0]["state"] == "auth-failed"
    remote.clear_requests()  # not retried in a loop: the next pass does not even call the provider
    assert one(run(engine, remote)).status == "auth-failed"
    assert remote.requests() == []


def test_mass_delete_guard_stops_a_suspicious_full_sync(engine: Engine, remote: Remote) -> None:
    remote.seed(20)  # the guard's minimum is 10 deletions, and more than half the events
    binding = remote.bind(engine)
    run(engine, remote)
    for remote_id in list(remote.titles())[:15]:
        remote.delete(remote_id)
    remote.invalidate_tokens(engine)

    blocked = one(run(engine, remote))
    assert blocked.status == "blocked" and "15 of 20" in (blocked.message or "")
    assert len(local_events(engine, binding)) == 20
    assert token_of(engine, binding) is None
    forced = one(run(engine, remote, force=True))
    assert forced.status == "ok" and forced.deleted == 15
    assert_mirrors(engine, binding, remote)


def test_reapplying_a_full_listing_changes_nothing(engine: Engine, remote: Remote) -> None:
    remote.seed(30)
    remote.insert("Described", location="Room 7", description="Agenda: everything")
    binding = remote.bind(engine)
    run(engine, remote)
    before = {rid: (r["version"], r["updated_at"]) for rid, r in local_events(engine, binding).items()}
    again = one(run(engine, remote, full=True))
    assert again.full and (again.created, again.updated, again.deleted) == (0, 0, 0)
    assert again.unchanged == 31
    after = {rid: (r["version"], r["updated_at"]) for rid, r in local_events(engine, binding).items()}
    assert after == before


def test_fields_and_moves_reach_the_store(engine: Engine, remote: Remote) -> None:
    made = remote.insert("Design review", at=datetime(2026, 12, 3, 15, tzinfo=UTC),
                         location="Room 2", description="Bring sketches")
    binding = remote.bind(engine)
    run(engine, remote)
    row = local_events(engine, binding)[made]
    assert (row["start"], row["end"], row["all_day"]) == ("2026-12-03T15:00:00Z", "2026-12-03T16:00:00Z", False)
    assert row["location"] == "Room 2" and "Bring sketches" in (row["description"] or "")
    remote.change(made, at=datetime(2026, 12, 4, 10, tzinfo=UTC), location="Room 3")
    assert one(run(engine, remote)).updated == 1
    row = local_events(engine, binding)[made]
    assert (row["start"], row["location"]) == ("2026-12-04T10:00:00Z", "Room 3")


def test_local_and_remote_edit_make_a_conflict(engine: Engine, remote: Remote) -> None:
    made = remote.insert("Budget review")
    binding = remote.bind(engine)
    run(engine, remote)
    event_id = local_events(engine, binding)[made]["id"]
    local_edit(engine, event_id, title="Budget review (local)")
    remote.change(made, title="Budget review (remote)")

    result = one(run(engine, remote))
    assert result.conflicts == 1 and result.updated == 0
    with engine.begin() as conn:
        (conflict,) = conn.execute(select(conflicts)).mappings().all()
    assert conflict["kind"] == "edit-edit" and conflict["status"] == "open"
    assert conflict["local"]["title"] == "Budget review (local)"
    assert conflict["remote"]["title"] == "Budget review (remote)"
    assert conflict["base"]["title"] == "Budget review"
    assert event_data(engine, event_id).title == "Budget review (local)", "the local edit is kept"
    remote.change(made, title="Budget review (remote 2)")  # refreshes the same conflict, no second one
    run(engine, remote)
    with engine.begin() as conn:
        rows = conn.execute(select(conflicts)).mappings().all()
    assert len(rows) == 1 and rows[0]["remote"]["title"] == "Budget review (remote 2)"


def test_same_edit_on_both_sides_fast_forwards(engine: Engine, remote: Remote) -> None:
    made = remote.insert("Lunch")
    binding = remote.bind(engine)
    run(engine, remote)
    row = local_events(engine, binding)[made]
    local_edit(engine, row["id"], title="Lunch at noon")
    remote.change(made, title="Lunch at noon")
    assert one(run(engine, remote)).conflicts == 0
    assert local_events(engine, binding)[made]["links"][0]["base_version"] == row["version"] + 1


def test_remote_delete_of_locally_edited_event_is_a_conflict(engine: Engine, remote: Remote) -> None:
    made = remote.insert("Offsite")
    binding = remote.bind(engine)
    run(engine, remote)
    event_id = local_events(engine, binding)[made]["id"]
    local_edit(engine, event_id, title="Offsite (agenda added)")
    remote.delete(made)
    result = one(run(engine, remote))
    assert result.conflicts == 1 and result.deleted == 0
    with engine.begin() as conn:
        assert conn.execute(select(conflicts.c.kind)).scalar_one() == "remote-delete"
        assert conn.execute(select(events.c.deleted).where(events.c.id == event_id)).scalar_one() is False


@pytest.mark.parametrize("policy,expected", [("remote-wins", "Plan (remote)"), ("local-wins", "Plan (local)")])
def test_conflict_policies(engine: Engine, remote: Remote, policy: str, expected: str) -> None:
    made = remote.insert("Plan")
    binding = remote.bind(engine, policy=policy)
    run(engine, remote)
    event_id = local_events(engine, binding)[made]["id"]
    local_edit(engine, event_id, title="Plan (local)")
    remote.change(made, title="Plan (remote)")
    assert one(run(engine, remote)).conflicts == 0
    assert event_data(engine, event_id).title == expected


def test_pull_only_and_push_only_bindings(engine: Engine, remote: Remote) -> None:
    push_calendar = remote.new_calendar("Outbound only")
    remote.insert("pulled")
    remote.insert("never pulled", calendar=push_calendar)
    b_pull = remote.bind(engine, direction="pull")
    b_push = remote.bind(engine, push_calendar, direction="push")
    by_binding = {r.binding_id: r for r in run(engine, remote)}
    assert by_binding[b_pull].created == 1
    assert by_binding[b_push].status == "skipped" and by_binding[b_push].requests == 0
    assert local_events(engine, b_push) == {}
