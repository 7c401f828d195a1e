"""A conflict pauses one event on one binding; the remote side does not stop moving meanwhile. Every
later remote change reaches the open conflict (its remote side is always the newest), a change that
settles it closes it by itself, and a resolution made on an older remote side is refused, not applied.
Every provider: Google and Graph emulators, real Radicale and Xandikos."""
from __future__ import annotations

import pytest
from sqlalchemy import Engine

from calsync.engine import local
from calsync.engine.conflicts import ConflictChanged, ConflictResolved, resolve_conflict
from calsync.store import conflicts as conflict_store
from calsync.store import events as event_store
from calsync.store import outbox as queue
from tests.remotes import Remote
from tests.test_twoway import calendar_of, new_event, remote_id, sync


def open_conflicts(engine: Engine) -> list[dict]:
    with engine.begin() as conn:
        return conflict_store.list_conflicts(conn)


def event_row(engine: Engine, event_id: str) -> dict:
    with engine.begin() as conn:
        (row,) = event_store.get_events(conn, [event_id])
    return row


def local_delete_against_remote_edit(engine: Engine, remote: Remote) -> tuple[str, str, str, dict]:
    """(binding, event id, remote id, the open local-delete conflict)."""
    binding = remote.bind(engine)
    event_id = new_event(engine, calendar_of(engine, binding))
    sync(engine, remote)
    rid = remote_id(engine, binding, event_id)
    local.delete_event(engine, event_id, if_version=1)
    remote.change(rid, title="Still needed")
    assert sync(engine, remote).inbound[0].conflicts == 1
    (conflict,) = open_conflicts(engine)
    assert conflict["kind"] == "local-delete"
    return binding, event_id, rid, conflict


def test_a_remote_delete_during_a_local_delete_conflict_settles_it(engine: Engine, remote: Remote) -> None:
    """The reproduction: local delete, remote edit -> conflict; remote delete -> both sides agree."""
    _binding, event_id, rid, conflict = local_delete_against_remote_edit(engine, remote)
    remote.delete(rid)
    sync(engine, remote)
    assert open_conflicts(engine) == [], "both sides deleted it: nothing left to ask"
    with pytest.raises(ConflictResolved):
        resolve_conflict(engine, conflict["id"], keep="remote")  # the page showed it; it is settled now
    for _ in range(2):
        sync(engine, remote)
    row = event_row(engine, event_id)
    assert row["deleted"] is True and row["deleted_by"] == "local"
    assert remote.titles() == {}, "gone on both sides, for good"
    with engine.begin() as conn:
        (closed,) = conflict_store.list_conflicts(conn, status="resolved")
    assert closed["resolution"] == "auto:fast-forward"


def test_later_remote_edits_reach_the_open_conflict(engine: Engine, remote: Remote) -> None:
    _binding, event_id, rid, conflict = local_delete_against_remote_edit(engine, remote)
    remote.change(rid, title="Still needed, at noon")
    sync(engine, remote)
    (fresh,) = open_conflicts(engine)
    assert fresh["id"] == conflict["id"], "one conflict, refreshed"
    assert fresh["remote"]["title"] == "Still needed, at noon", "the newest remote side is offered"
    assert fresh["remote_etag"] != conflict["remote_etag"]
    with pytest.raises(ConflictChanged):  # decided on what the page showed before: refused, nothing applied
        resolve_conflict(engine, conflict["id"], keep="remote", remote_etag=conflict["remote_etag"])
    assert open_conflicts(engine)[0]["status"] == "open"
    resolve_conflict(engine, fresh["id"], keep="remote", remote_etag=fresh["remote_etag"])
    sync(engine, remote)
    assert event_row(engine, event_id)["title"] == "Still needed, at noon"
    assert event_row(engine, event_id)["deleted"] is False
    assert list(remote.titles().values()) == ["Still needed, at noon"]


def test_keep_remote_racing_a_remote_delete_converges_on_the_delete(engine: Engine, remote: Remote) -> None:
    """Resolved before calsync saw the remote delete: the resolution takes the edit, the next sync
    the delete (the local side did not change since), with the proof; nothing comes back."""
    binding, event_id, rid, conflict = local_delete_against_remote_edit(engine, remote)
    remote.delete(rid)
    resolve_conflict(engine, conflict["id"], keep="remote")
    for _ in range(2):
        sync(engine, remote)
    row = event_row(engine, event_id)
    assert row["deleted"] is True and row["deleted_by"].endswith(binding)
    assert row["deletion_proof"]
    assert remote.titles() == {}


def test_keep_local_racing_a_remote_edit_is_offered_again(engine: Engine, remote: Remote) -> None:
    """Keep local pushes with If-Match on the remote side it was decided on: a remote edit made after
    meets 412, and the conflict comes back with the newest remote side instead of being overwritten."""
    binding = remote.bind(engine)
    event_id = new_event(engine, calendar_of(engine, binding))
    sync(engine, remote)
    rid = remote_id(engine, binding, event_id)
    local.update_event(engine, event_id, {"title": "Local"}, if_version=1)
    remote.change(rid, title="Remote 1")
    sync(engine, remote)
    (conflict,) = open_conflicts(engine)
    remote.change(rid, title="Remote 2")  # not yet seen by calsync
    resolve_conflict(engine, conflict["id"], keep="local")
    sync(engine, remote)
    assert list(remote.titles().values()) == ["Remote 2"], "the unseen remote edit is not overwritten"
    (again,) = open_conflicts(engine)
    assert again["remote"]["title"] == "Remote 2" and again["local"]["title"] == "Local"
    resolve_conflict(engine, again["id"], keep="local", remote_etag=again["remote_etag"])
    sync(engine, remote)
    assert list(remote.titles().values()) == ["Local"]


def test_a_remote_edit_that_matches_the_local_one_closes_the_conflict(engine: Engine, remote: Remote) -> None:
    binding = remote.bind(engine)
    event_id = new_event(engine, calendar_of(engine, binding))
    sync(engine, remote)
    rid = remote_id(engine, binding, event_id)
    local.update_event(engine, event_id, {"title": "Agreed"}, if_version=1)
    remote.change(rid, title="Not yet")
    sync(engine, remote)
    assert len(open_conflicts(engine)) == 1
    remote.change(rid, title="Agreed")
    sync(engine, remote)
    assert open_conflicts(engine) == []
    remote.clear_requests()
    sync(engine, remote)
    assert remote.writes() == [], "nothing left to push"
    assert list(remote.titles().values()) == ["Agreed"]


def test_a_local_change_that_agrees_with_the_remote_side_closes_the_conflict(engine: Engine, remote: Remote) -> None:
    """Deleting here what the remote deleted (or writing here what the remote wrote) while the
    conflict is open leaves nothing to ask: it closes, and nothing waits in the outbox."""
    binding = remote.bind(engine)
    calendar = calendar_of(engine, binding)
    gone, edited = new_event(engine, calendar, "Gone", 9), new_event(engine, calendar, "Edited", 11)
    sync(engine, remote)
    rid = {e: remote_id(engine, binding, e) for e in (gone, edited)}
    local.update_event(engine, gone, {"title": "Gone (local)"}, if_version=1)
    remote.delete(rid[gone])
    local.update_event(engine, edited, {"title": "Edited (local)"}, if_version=1)
    remote.change(rid[edited], title="Edited (remote)")
    sync(engine, remote)
    assert {c["kind"] for c in open_conflicts(engine)} == {"remote-delete", "edit-edit"}
    local.delete_event(engine, gone, if_version=2)
    local.update_event(engine, edited, {"title": "Edited (remote)"}, if_version=2)
    assert open_conflicts(engine) == []
    remote.clear_requests()
    for _ in range(2):
        sync(engine, remote)
    assert remote.writes() == [], "both sides already agree"
    with engine.begin() as conn:
        assert queue.backlog(conn) == 0, "nothing left waiting"
    assert list(remote.titles().values()) == ["Edited (remote)"]


def test_a_local_change_during_an_open_conflict_is_the_local_side_it_offers(engine: Engine, remote: Remote) -> None:
    """Deleted here while an edit-edit conflict waits: the conflict now offers the deletion (a
    local-delete conflict), so keeping the remote side knowingly brings the event back."""
    binding = remote.bind(engine)
    event_id = new_event(engine, calendar_of(engine, binding))
    sync(engine, remote)
    rid = remote_id(engine, binding, event_id)
    local.update_event(engine, event_id, {"title": "Local"}, if_version=1)
    remote.change(rid, title="Remote")
    sync(engine, remote)
    (conflict,) = open_conflicts(engine)
    assert conflict["kind"] == "edit-edit"
    local.update_event(engine, event_id, {"title": "Local, again"}, if_version=2)
    assert open_conflicts(engine)[0]["local"]["title"] == "Local, again"
    local.delete_event(engine, event_id, if_version=3)
    (now,) = open_conflicts(engine)
    assert (now["id"], now["kind"], now["local"]) == (conflict["id"], "local-delete", None)
    resolve_conflict(engine, now["id"], keep="remote")
    sync(engine, remote)
    assert event_row(engine, event_id)["deleted"] is False and event_row(engine, event_id)["title"] == "Remote"
    assert list(remote.titles().values()) == ["Remote"]
