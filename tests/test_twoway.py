"""Two-way sync against the Google emulator over HTTP: the outbox, ETag writes, conflicts, mirroring."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from calsync.engine import local
from calsync.engine.conflicts import resolve_conflict
from calsync.engine.outbound import Pusher, queue_calendar
from calsync.engine.sync import SyncReport, sync_once
from calsync.model import Account
from calsync.providers.google import GoogleProvider
from calsync.providers.http import RetryPolicy
from calsync.store import outbox as queue
from calsync.store import repo
from calsync.store.schema import conflicts
from tests.helpers import GoogleApi, admin, bind, event_data, local_events

LATER = timedelta(days=1)




def sync(engine: Engine, *, later: bool = False, **kwargs: Any) -> SyncReport:
    """One `calsync sync` pass; `later` runs it as if retry timers had all run out."""
    return sync_once(engine, now=datetime.now(UTC) + LATER if later else None, make_provider=fast_retries, **kwargs)


def fast_retries(account: Account) -> GoogleProvider:
    return GoogleProvider.from_account(account, retry=RetryPolicy(attempts=3, base_delay=0.02))


def calendar_of(engine: Engine, binding: str) -> str:
    with engine.begin() as conn:
        return str(repo.get_binding(conn, binding)["calendar_id"])


def new_event(engine: Engine, calendar: str, title: str = "Planning", hour: int = 9) -> str:
    return local.create_event(engine, calendar, {
        "title": title, "start": f"2026-12-01T{hour:02d}:00:00Z", "end": f"2026-12-01T{hour + 1:02d}:00:00Z",
    }).event_id


def writes(google_url: str) -> list[tuple[str, str]]:
    log = admin(google_url, "GET", "/requests").json()["requests"]
    return [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in log if r["method"] in ("POST", "PUT", "PATCH", "DELETE")]


def version_of(engine: Engine, event_id: str) -> int:
    with engine.begin() as conn:
        return int(repo.get_events(conn, [event_id])[0]["version"])


def test_a_local_create_appears_remotely_once_even_when_the_answer_is_lost(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    calendar_id = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar_id)
    sync(engine)
    event_id = new_event(engine, calendar_of(engine, binding))
    admin(google_url, "POST", "/faults", json={"status": 503, "count": 1, "after_commit": True, "methods": ["POST"]})
    report = sync(engine)
    assert report.outbound[0].created == 1
    remote = alice.list_all(calendar_id)
    assert [e["id"] for e in remote] == [event_id], "one copy, under the local id"
    assert [m for m, _ in writes(google_url)] == ["POST", "POST"]  # the retry met 409 and adopted
    link = local_events(engine, binding)[event_id]["links"][0]
    assert link["etag"] == remote[0]["etag"] and link["base_version"] == 1
    assert sync(engine).inbound[0].updated == 0, "our own write echoes back as nothing"


def test_local_edit_and_delete_reach_the_remote_with_if_match(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    calendar_id = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar_id)
    event_id = new_event(engine, calendar_of(engine, binding))
    sync(engine)
    local.update_event(engine, event_id, {"title": "Planning (room 4)", "location": "Room 4"}, if_version=1)
    assert sync(engine).outbound[0].updated == 1
    remote = alice.http.get(f"/calendars/{calendar_id}/events/{event_id}").json()
    assert (remote["summary"], remote["location"]) == ("Planning (room 4)", "Room 4")
    log = admin(google_url, "GET", "/requests").json()["requests"]
    put = [r for r in log if r["method"] == "PUT"][-1]
    assert "sendUpdates=none" in str(put["query"]), "no e-mail storm to attendees"
    local.delete_event(engine, event_id, if_version=2)
    assert sync(engine).outbound[0].deleted == 1
    assert alice.list_all(calendar_id) == []
    with pytest.raises(local.StaleVersion):
        local.update_event(engine, new_event(engine, calendar_of(engine, binding)), {"title": "x"}, if_version=7)


def test_edits_on_both_sides_make_one_conflict_and_resolve_both_ways(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    calendar_id = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar_id)
    calendar = calendar_of(engine, binding)
    first, second, bystander = (new_event(engine, calendar, t, h) for t, h in (("One", 9), ("Two", 11), ("Three", 13)))
    sync(engine)
    for event_id, name in ((first, "One"), (second, "Two")):
        local.update_event(engine, event_id, {"title": f"{name} (local)"}, if_version=1)
        alice.patch(calendar_id, event_id, summary=f"{name} (remote)")
    local.update_event(engine, bystander, {"title": "Three (local)"}, if_version=1)
    report = sync(engine)
    assert report.inbound[0].conflicts == 2 and report.outbound[0].updated == 1, "other events keep syncing"
    assert alice.http.get(f"/calendars/{calendar_id}/events/{bystander}").json()["summary"] == "Three (local)"
    with engine.begin() as conn:
        open_ = {c["event_id"]: c for c in repo.list_conflicts(conn)}
    assert set(open_) == {first, second}
    assert alice.http.get(f"/calendars/{calendar_id}/events/{first}").json()["summary"] == "One (remote)"

    resolve_conflict(engine, open_[first]["id"], keep="local")
    resolve_conflict(engine, open_[second]["id"], keep="remote")
    sync(engine)
    sync(engine)
    assert alice.http.get(f"/calendars/{calendar_id}/events/{first}").json()["summary"] == "One (local)"
    assert alice.http.get(f"/calendars/{calendar_id}/events/{second}").json()["summary"] == "Two (remote)"
    assert event_data(engine, first).title == "One (local)" and event_data(engine, second).title == "Two (remote)"
    with engine.begin() as conn:
        assert repo.list_conflicts(conn) == [] and queue.backlog(conn) == 0


def test_a_412_on_push_is_redecided_and_loses_no_remote_edit(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    calendar_id = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar_id)
    event_id = new_event(engine, calendar_of(engine, binding))
    sync(engine)
    local.update_event(engine, event_id, {"title": "Planning (local)"}, if_version=1)
    alice.patch(calendar_id, event_id, summary="Planning (remote)")  # after our last read
    provider = GoogleProvider("alice", google_url)
    result = Pusher(engine, provider, binding).run()  # pushes straight away: meets 412
    provider.close()
    assert result.held == 1
    assert alice.http.get(f"/calendars/{calendar_id}/events/{event_id}").json()["summary"] == "Planning (remote)"
    with engine.begin() as conn:
        (conflict,) = conn.execute(select(conflicts)).mappings().all()
    assert conflict["local"]["title"] == "Planning (local)" and conflict["remote"]["title"] == "Planning (remote)"


def test_a_crash_between_the_remote_write_and_the_checkpoint_loses_nothing(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    calendar_id = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar_id)
    calendar = calendar_of(engine, binding)

    def crash(_event: str, _what: str) -> None:
        raise RuntimeError("worker killed after the remote write")

    created = new_event(engine, calendar)
    with pytest.raises(RuntimeError):
        sync(engine, after_write=crash)
    sync(engine)
    assert [e["id"] for e in alice.list_all(calendar_id)] == [created], "no duplicate create"
    local.update_event(engine, created, {"title": "Moved"}, if_version=1)
    with pytest.raises(RuntimeError):
        sync(engine, after_write=crash)
    report = sync(engine)
    assert report.inbound[0].conflicts == 0 and report.outbound[0].held == 0
    remote = alice.list_all(calendar_id)
    assert [(e["id"], e["summary"]) for e in remote] == [(created, "Moved")]
    link = local_events(engine, binding)[created]["links"][0]
    assert link["etag"] == remote[0]["etag"] and link["base_version"] == version_of(engine, created)
    with engine.begin() as conn:
        assert queue.backlog(conn) == 0


def test_fifty_queued_edits_become_one_write(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar_id = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar_id)
    event_id = new_event(engine, calendar_of(engine, binding))
    sync(engine)
    admin(google_url, "DELETE", "/requests")
    for n in range(50):
        local.update_event(engine, event_id, {"title": f"Edit {n}"}, if_version=None)
    assert sync(engine).outbound[0].updated == 1
    assert writes(google_url) == [("PUT", event_id)]
    assert alice.http.get(f"/calendars/{calendar_id}/events/{event_id}").json()["summary"] == "Edit 49"


def test_create_update_delete_queued_while_down_leaves_nothing_and_writes_nothing(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    calendar_id = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar_id)
    sync(engine)
    admin(google_url, "POST", "/faults", json={"status": 503})
    event_id = new_event(engine, calendar_of(engine, binding))
    assert sync(engine).outbound[0].status == "waiting"
    local.update_event(engine, event_id, {"title": "Renamed"}, if_version=None)
    local.delete_event(engine, event_id, if_version=None)
    admin(google_url, "DELETE", "/faults")
    admin(google_url, "DELETE", "/requests")
    assert sync(engine, later=True).outbound[0].status == "ok"
    assert alice.list_all(calendar_id) == []
    assert writes(google_url) == [], "a create, update and delete that collapse to nothing write nothing"
    with engine.begin() as conn:
        assert queue.backlog(conn) == 0


def test_ordered_pushes_while_down_arrive_in_order(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar_id = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar_id)
    calendar = calendar_of(engine, binding)
    sync(engine)
    admin(google_url, "POST", "/faults", json={"status": 503})
    first = new_event(engine, calendar, "First", 9)
    second = new_event(engine, calendar, "Second", 11)
    sync(engine)
    local.delete_event(engine, first, if_version=None)
    admin(google_url, "DELETE", "/faults")
    admin(google_url, "DELETE", "/requests")
    sync(engine, later=True)
    assert writes(google_url) == [("POST", "events")], "first is gone before it was ever created"
    assert [e["id"] for e in alice.list_all(calendar_id)] == [second]


def test_mirroring_through_the_hub_does_not_loop(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    a_id = alice.primary_id()
    b_id = alice.create_calendar("Mirror")
    existing = alice.insert(a_id, "Already in A")
    binding_a = bind(engine, google_url, "alice", a_id)
    sync(engine)
    hub = calendar_of(engine, binding_a)
    with engine.begin() as conn:
        account = repo.list_accounts(conn)[0]["id"]
        binding_b = repo.create_binding(conn, hub, account, b_id, "two-way")
    queue_calendar(engine, binding_b)
    sync(engine)
    assert [e["summary"] for e in alice.list_all(b_id)] == ["Already in A"]

    alice.insert(a_id, "Born in A")
    alice.patch(a_id, existing["id"], summary="Edited in A")
    sync(engine)
    b_copy = {e["summary"]: e for e in alice.list_all(b_id)}
    assert set(b_copy) == {"Born in A", "Edited in A"}
    alice.patch(b_id, b_copy["Born in A"]["id"], summary="Edited in B")
    sync(engine)
    assert {e["summary"] for e in alice.list_all(a_id)} == {"Edited in B", "Edited in A"}

    admin(google_url, "DELETE", "/requests")
    for _ in range(3):
        report = sync(engine)
        assert all(r.updated == r.created == r.deleted == 0 for r in report.inbound + report.outbound)
    assert writes(google_url) == [], "quiet: nothing echoes back and forth"
    assert len(alice.list_all(a_id)) == len(alice.list_all(b_id)) == 2


def test_a_local_delete_against_a_remote_edit_is_a_conflict(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    calendar_id = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar_id)
    event_id = new_event(engine, calendar_of(engine, binding))
    sync(engine)
    local.delete_event(engine, event_id, if_version=1)
    alice.patch(calendar_id, event_id, summary="Still needed")
    report = sync(engine)
    assert report.inbound[0].conflicts == 1 and report.outbound[0].deleted == 0
    with engine.begin() as conn:
        (conflict,) = repo.list_conflicts(conn)
    assert conflict["kind"] == "local-delete" and conflict["remote"]["title"] == "Still needed"
    assert [e["summary"] for e in alice.list_all(calendar_id)] == ["Still needed"], "nothing deleted blindly"
    resolve_conflict(engine, conflict["id"], keep="remote")
    sync(engine)
    assert event_data(engine, event_id).title == "Still needed"
    assert local_events(engine, binding)[event_id]["deleted"] is False
