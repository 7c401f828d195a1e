"""The conflict policy `merge` over every provider (Google and Graph emulators, Radicale, Xandikos):
edits of different fields on the two sides both end up on both sides; the same field edited
differently on both is still a conflict. The merge rule itself: tests/test_field_merge.py."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from calsync.engine import local
from calsync.engine.outbound import queue_calendar
from calsync.service.api import clashing_fields
from calsync.store import conflicts as conflict_store
from tests.helpers import event_data, local_events
from tests.remotes import DAY, Remote
from tests.test_twoway import backlog, calendar_of, link, new_event, remote_id, sync, version_of


def test_a_title_edited_here_and_a_time_moved_there_both_reach_both_sides(engine: Engine, remote: Remote) -> None:
    binding = remote.bind(engine, policy="merge")
    event = new_event(engine, calendar_of(engine, binding), "Planning", 9)
    sync(engine, remote)
    rid = remote_id(engine, binding, event)
    local.update_event(engine, event, {"title": "Planning (local)"}, if_version=1)
    remote.change(rid, at=DAY + timedelta(hours=2))
    sync(engine, remote)
    sync(engine, remote)
    with engine.begin() as conn:
        assert conflict_store.list_conflicts(conn) == []
    data = event_data(engine, event)
    assert (data.title, data.start, data.end) == ("Planning (local)", "2026-12-01T11:00:00Z", "2026-12-01T12:00:00Z")
    assert remote.occurrences(DAY - timedelta(days=1), DAY + timedelta(days=1)) == [
        (DAY + timedelta(hours=2), "Planning (local)")
    ]
    assert backlog(engine) == 0
    # the binding agrees with the merged version itself: a later remote edit is a one-sided change
    assert link(engine, binding, event)["base_version"] == version_of(engine, event) == 3
    remote.change(rid, location="Room 7")
    sync(engine, remote)
    assert event_data(engine, event).location == "Room 7" and version_of(engine, event) == 4


def test_the_same_field_edited_differently_on_both_sides_is_still_a_conflict(engine: Engine, remote: Remote) -> None:
    binding = remote.bind(engine, policy="merge")
    event = new_event(engine, calendar_of(engine, binding), "Planning", 9)
    sync(engine, remote)
    rid = remote_id(engine, binding, event)
    local.update_event(engine, event, {"title": "Planning (local)"}, if_version=1)
    remote.change(rid, title="Planning (remote)")
    sync(engine, remote)
    with engine.begin() as conn:
        (conflict,) = conflict_store.list_conflicts(conn)
    assert conflict["event_id"] == event and conflict["kind"] == "edit-edit"
    assert clashing_fields(conflict["base"], conflict["local"], conflict["remote"]) == ["title"]
    assert remote.titles()[rid] == "Planning (remote)" and event_data(engine, event).title == "Planning (local)"


def test_a_merge_reaches_every_side_of_a_mirror_and_then_rests(engine: Engine, remote: Remote) -> None:
    """A calendar mirrored through the hub: the title edited in B, the time moved in A at the same time;
    the merge made on A's side reaches B too (and A), and nothing echoes afterwards."""
    b_id = remote.new_calendar("Mirror")
    # born in A, as in test_twoway's mirror test: a local event pushed to two calendars of one Graph
    # mailbox ends with B linked to A's copy (seen with policy ask too; not this test's subject)
    in_a = remote.insert("Planning")
    binding_a = remote.bind(engine, policy="merge")
    sync(engine, remote)
    event = str(local_events(engine, binding_a)[in_a]["id"])
    binding_b = remote.bind(engine, b_id, policy="merge", local_calendar=calendar_of(engine, binding_a))
    queue_calendar(engine, binding_b)
    sync(engine, remote)
    in_b = remote_id(engine, binding_b, event)
    remote.change(in_b, b_id, title="Planning (B)")
    remote.change(in_a, at=DAY + timedelta(hours=2))
    for _ in range(3):
        sync(engine, remote)
    with engine.begin() as conn:
        assert conflict_store.list_conflicts(conn) == []
    window = (DAY - timedelta(days=1), DAY + timedelta(days=1))
    expected = [(DAY + timedelta(hours=2), "Planning (B)")]
    assert remote.occurrences(*window) == expected and remote.occurrences(*window, calendar=b_id) == expected
    assert backlog(engine) == 0
    remote.clear_requests()
    for _ in range(2):
        sync(engine, remote)
    assert remote.writes() == [], "quiet: nothing echoes back and forth"


def test_an_attendee_invited_here_and_another_there_are_both_invited_everywhere(
    engine: Engine, remote: Remote
) -> None:
    binding = remote.bind(engine, policy="merge")
    event = new_event(engine, calendar_of(engine, binding), "Planning", 9)
    sync(engine, remote)
    rid = remote_id(engine, binding, event)
    local.update_event(engine, event, {"attendees": [{"email": "bob@example.com"}]}, if_version=1)
    remote.change(rid, attendees=["cy@example.com"])
    sync(engine, remote)
    sync(engine, remote)
    with engine.begin() as conn:
        assert conflict_store.list_conflicts(conn) == []
    assert {a.email for a in event_data(engine, event).attendees} == {"bob@example.com", "cy@example.com"}
    assert "bob@example.com" in remote.text_of(rid) and "cy@example.com" in remote.text_of(rid)
    assert backlog(engine) == 0


def test_a_remote_copy_that_holds_the_local_edit_too_is_taken_without_a_write_back(
    engine: Engine, remote: Remote
) -> None:
    """The merge equals the remote side (it made our edit as well, and one more): taken as it is; the
    local edit's queued push writes nothing there."""
    binding = remote.bind(engine, policy="merge")
    event = new_event(engine, calendar_of(engine, binding), "Planning", 9)
    sync(engine, remote)
    rid = remote_id(engine, binding, event)
    local.update_event(engine, event, {"title": "Planning (both)"}, if_version=1)
    remote.change(rid, title="Planning (both)", location="Room 7")
    remote.clear_requests()
    sync(engine, remote)
    sync(engine, remote)
    with engine.begin() as conn:
        assert conflict_store.list_conflicts(conn) == []
    data = event_data(engine, event)
    assert (data.title, data.location) == ("Planning (both)", "Room 7") and backlog(engine) == 0
    assert remote.writes() == []
    assert link(engine, binding, event)["base_version"] == version_of(engine, event)
