"""The inbound planner (engine/page_plan.py) on hand-built states: no database, no HTTP.

Each test states what the store held for a page (a PageState) and what the page brought, and looks
at the actions the planner decided. The store side (page_store) and the whole path are covered by
tests/test_inbound.py, test_mirroring.py and the state machine; these pin the rules themselves."""
from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from calsync.engine.page_plan import (
    Adopt,
    BindingRef,
    CloseConflict,
    Create,
    Delete,
    Merge,
    OpenConflict,
    PagePlan,
    PageState,
    Relink,
    SeriesRule,
    TakeRemote,
    UpdateLink,
    plan_page,
)
from calsync.model import EventData, RemoteChange, RemoteDeletion, RemoteEvent
from calsync.store.links import LinkedEvent

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
BINDING = BindingRef(id="b1", calendar_id="cal", policy="ask", source="google:b1")
PLANNING = EventData(title="Planning", start="2026-12-01T09:00:00Z", end="2026-12-01T10:00:00Z")
WEEKLY = EventData(title="Standup", start="2026-12-01T09:00:00Z", end="2026-12-01T09:30:00Z",
                   recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"])
THIRD = "2026-12-15T09:00:00Z"


def remote(rid: str, data: EventData = PLANNING, etag: str = "e2", **kwargs: Any) -> RemoteEvent:
    return RemoteEvent(remote_id=rid, etag=etag, data=data, **kwargs)


def linked(event_id: str, rid: str, data: EventData = PLANNING, *, base: EventData | None = None, version: int = 1,
           base_version: int = 1, deleted: bool = False, series_id: str | None = None, link_id: int = 1,
           remote_deleted: bool = False) -> LinkedEvent:
    """A link agreed on `base` (default: the event's own content) at `base_version`."""
    base = base or data
    return LinkedEvent(
        link_id=link_id, event_id=event_id, remote_id=rid, etag="e1", base_version=base_version,
        base_hash=base.content_hash(), base_snapshot=base.snapshot(), remote_deleted=remote_deleted,
        remote_updated=None, series_remote_id=None, version=version, deleted=deleted,
        content_hash=data.content_hash(), updated_at=NOW, recurring_event_id=series_id, data=data)


def state(items: list[RemoteChange], **kwargs: Any) -> PageState:
    fields: dict[str, Any] = {
        "items": {item.remote_id: item for item in items}, "links": {}, "series": {}, "dead": {},
        "open_conflicts": {}, "claims": {}, "adoptable": frozenset(), "gone_links": {}, "adopted": {},
        "lost_creates": frozenset(), "stand_ins": {}, "paused_series": frozenset(), "series_rules": {},
    }
    fields.update(kwargs)
    return PageState(**fields)


def plan(page: PageState, binding: BindingRef = BINDING) -> PagePlan:
    ids = (f"new{n}" for n in itertools.count(1))
    return plan_page(binding, page, NOW, lambda: next(ids))


def kinds(result: PagePlan) -> list[str]:
    return [type(action).__name__ for action in result.actions]


def test_an_unknown_remote_event_is_created_with_its_link() -> None:
    result = plan(state([remote("r1")], claims={"r1": "r1"}))
    (create,) = result.of(Create)
    assert create.event["id"] == "new1" and create.event["title"] == "Planning" and not create.event["deleted"]
    assert create.link["remote_id"] == "r1" and create.link["base_version"] == 1
    assert create.conflict is None and result.counts.created == 1


def test_our_own_copy_whose_answer_was_lost_is_adopted_not_imported() -> None:
    copy = remote("ours")
    same = plan(state([copy], claims={"ours": "ours"}, adoptable=frozenset({"ours"}),
                      adopted={"ours": (3, PLANNING.content_hash(), False)}))
    (adopt,) = same.of(Adopt)
    assert adopt.link["event_id"] == "ours" and adopt.link["base_version"] == 3 and adopt.doomed is None
    deleted_since = plan(state([copy], claims={"ours": "ours"}, adoptable=frozenset({"ours"}),
                               adopted={"ours": (4, PLANNING.content_hash(), True)}))
    (adopt,) = deleted_since.of(Adopt)
    assert adopt.link["base_version"] == 0 and adopt.doomed == ("ours", 4), "queued so the push deletes that copy"
    assert not deleted_since.of(Create)


def test_a_claimed_event_whose_copy_was_gone_takes_the_new_copy_in_its_link() -> None:
    gone = linked("ev", "old", remote_deleted=True)
    result = plan(state([remote("fresh", client_id="ev")], claims={"fresh": "ev"}, adoptable=frozenset({"ev"}),
                        gone_links={"ev": gone}, adopted={"ev": (1, PLANNING.content_hash(), False)}))
    assert result.of(Relink) == [Relink("ev", "fresh", None)]
    assert not result.of(Create) and not result.of(Adopt)
    assert result.seen == ["fresh"]


def test_a_remote_edit_of_an_agreed_event_is_taken() -> None:
    edited = replace(PLANNING, title="Planning (moved)")
    result = plan(state([remote("r1", edited)], links={"r1": linked("ev", "r1")}))
    (take,) = result.of(TakeRemote)
    assert take.event["event_id"] == "ev" and take.event["version"] == 2 and take.event["title"] == "Planning (moved)"
    assert take.link["base_version"] == 2 and take.link["base_snapshot"] is None, "the event's own content is the base"
    assert result.counts.updated == 1


def test_edits_on_both_sides_open_a_conflict_and_a_later_change_refreshes_it() -> None:
    ours = replace(PLANNING, title="Planning (local)")
    theirs = replace(PLANNING, title="Planning (remote)")
    link = linked("ev", "r1", ours, base=PLANNING, version=2, base_version=1)
    first = plan(state([remote("r1", theirs)], links={"r1": link}))
    (opened,) = first.of(OpenConflict)
    assert opened.new and opened.fields["kind"] == "edit-edit"
    assert opened.fields["remote"]["title"] == "Planning (remote)"
    assert first.counts.conflicts == 1 and not first.of(TakeRemote)
    later = plan(state([remote("r1", replace(theirs, title="Planning (remote, again)"), etag="e3")], links={"r1": link},
                       open_conflicts={"ev": "c1"}))
    (refreshed,) = later.of(OpenConflict)
    assert not refreshed.new and refreshed.fields["remote_etag"] == "e3" and later.counts.conflicts == 0


def test_an_open_conflict_closes_by_itself_when_the_remote_deletes_what_was_deleted_here() -> None:
    link = linked("ev", "r1", deleted=True, version=2, base_version=1)
    result = plan(state([RemoteDeletion("r1", proof="404")], links={"r1": link}, open_conflicts={"ev": "c1"}))
    assert result.of(CloseConflict) == [CloseConflict("c1", "ev", "auto:fast-forward", drop=True)]
    (update,) = result.of(UpdateLink)
    assert update.link["remote_deleted"] and update.link["base_version"] == 2


def test_a_remote_deletion_deletes_with_its_proof_and_an_unknown_one_is_counted() -> None:
    result = plan(state([RemoteDeletion("r1", proof="GET answered 404"), RemoteDeletion("stranger")],
                        links={"r1": linked("ev", "r1")}))
    assert result.of(Delete) == [Delete("ev", "GET answered 404")]
    assert result.counts.deleted == 1 and result.counts.unknown_deletions == 1


def test_the_deleted_copy_of_a_lost_create_is_the_events_deletion() -> None:
    result = plan(state([RemoteDeletion("ev")], lost_creates=frozenset({"ev"})))
    (delete,) = result.of(Delete)
    assert delete.event_id == "ev" and "whose answer was lost" in delete.proof


def test_an_exception_of_a_series_deleted_here_is_born_deleted_without_a_conflict() -> None:
    moved = remote("s1_3", replace(PLANNING, original_start=THIRD), series_remote_id="s1")
    result = plan(state([moved], claims={"s1_3": "s1_3"}, series={"s1": "series"},
                        dead={"series": ("local", "deleted through the API")}))
    (create,) = result.of(Create)
    assert create.event["deleted"] and create.event["deletion_proof"].startswith("its series series was deleted")
    assert create.conflict is None and create.link["base_version"] == 1


def test_an_exception_over_an_occurrence_deleted_elsewhere_is_born_deleted_in_a_conflict() -> None:
    """One side moved an occurrence another side had deleted (the local series excludes its start)."""
    excluded = SeriesRule([*(WEEKLY.recurrence or []), "EXDATE:20261215T090000Z"], None, False, "graph:b2")
    moved = remote("s1_3", replace(PLANNING, title="Standup (moved)", original_start=THIRD), series_remote_id="s1")
    result = plan(state([moved], claims={"s1_3": "s1_3"}, series={"s1": "series"}, series_rules={"series": excluded}))
    (create,) = result.of(Create)
    assert create.event["deleted"] and create.event["deleted_by"] == "graph:b2"
    assert create.conflict is not None and create.conflict["kind"] == "local-delete"
    assert create.conflict["remote"]["title"] == "Standup (moved)"
    assert create.link["base_version"] == 0, "agrees with nothing: keeping local deletes it there"
    assert result.counts.conflicts == 1
    live = plan(state([moved], claims={"s1_3": "s1_3"}, series={"s1": "series"},
                      series_rules={"series": SeriesRule(WEEKLY.recurrence, None, False, "local")}))
    assert not live.of(Create)[0].event["deleted"], "an occurrence the series still has is an ordinary exception"


def test_an_exception_gone_with_a_series_whose_deletion_this_page_pauses_waits() -> None:
    """The series deleted there, changed here: a conflict; its exception's deletion waits for it."""
    series = linked("series", "s1", replace(WEEKLY, description="agenda"), base=WEEKLY, version=2, link_id=1)
    exception = linked("exc", "s1_3", replace(PLANNING, original_start=THIRD), series_id="series", link_id=2)
    result = plan(state([RemoteDeletion("s1_3"), RemoteDeletion("s1")], links={"s1": series, "s1_3": exception}))
    assert kinds(result) == ["OpenConflict", "UpdateLink"], "the series first, then its exception"
    (update,) = result.of(UpdateLink)
    assert update.link["link_id"] == 2 and update.link["remote_deleted"]
    assert not result.of(Delete), "the exception is not deleted before the person decides"


def test_a_cancelled_instance_of_a_series_deleted_here_is_just_a_deletion() -> None:
    cancelled = remote("s1_3", replace(PLANNING, original_start=THIRD, status="cancelled"), series_remote_id="s1")
    exception = linked("exc", "s1_3", replace(PLANNING, original_start=THIRD), series_id="series", deleted=True)
    result = plan(state([cancelled], links={"s1_3": exception}, series={"s1": "series"},
                        dead={"series": ("local", "deleted")}))
    assert not result.of(TakeRemote) and not result.of(OpenConflict)
    (update,) = result.of(UpdateLink)
    assert update.link["remote_deleted"], "the copy is gone there too; the event stays deleted"


def test_an_exception_deleted_with_its_series_and_changed_there_opens_no_conflict_of_its_own() -> None:
    """Reviving it alone would leave an occurrence of no series (chaos c3-295). Held inside the series
    there, it takes the change and stays deleted; a single event of its own there (a stand-in) goes."""
    exception_data = replace(PLANNING, original_start=THIRD)
    changed = remote("s1_3", replace(exception_data, title="Planning (edited there)"), etag="e9")
    tombstone = linked("exc", "s1_3", exception_data, deleted=True, version=2, base_version=1, series_id="series")
    dead = {"series": ("local", "deleted through the API")}
    inside = replace(tombstone, series_remote_id="s1")
    held = plan(state([replace(changed, series_remote_id="s1")], links={"s1_3": inside}, series={"s1": "series"},
                      dead=dead))
    (take,) = held.of(TakeRemote)
    assert take.event["deleted"] and take.event["title"] == "Planning (edited there)"
    assert not held.of(OpenConflict)
    stand_in = plan(state([changed], links={"s1_3": tombstone}, dead=dead))
    assert not stand_in.of(OpenConflict) and not stand_in.of(TakeRemote)
    (update,) = stand_in.of(UpdateLink)
    assert update.link["etag"] == "e9" and update.link["base_version"] == 1, "the queued deletion goes out over it"


MERGING = replace(BINDING, policy="merge")


def test_policy_merge_takes_the_title_from_here_and_the_time_from_there_as_a_new_version() -> None:
    ours = replace(PLANNING, title="Planning (local)")
    theirs = replace(PLANNING, start="2026-12-01T11:00:00Z", end="2026-12-01T12:00:00Z")
    link = linked("ev", "r1", ours, base=PLANNING, version=2, base_version=1)
    result = plan(state([remote("r1", theirs)], links={"r1": link}), MERGING)
    (merged,) = result.of(Merge)
    assert not result.of(OpenConflict) and not result.of(TakeRemote)
    assert merged.event["title"] == "Planning (local)" and merged.event["start"] == "2026-12-01T11:00:00Z"
    assert merged.event["version"] == 3 and merged.from_local == ("title",) and merged.from_remote == ("time",)
    # the link adopts the remote ETag (the push goes over it) and keeps the base it agreed on
    assert merged.link["etag"] == "e2" and merged.link["base_version"] == 1
    assert merged.link["base_hash"] == PLANNING.content_hash() and result.counts.updated == 1


def test_policy_merge_opens_a_conflict_when_a_field_changed_differently_on_both_sides() -> None:
    ours = replace(PLANNING, title="Planning (local)", location="Room 1")
    theirs = replace(PLANNING, title="Planning (remote)")
    link = linked("ev", "r1", ours, base=PLANNING, version=2, base_version=1)
    result = plan(state([remote("r1", theirs)], links={"r1": link}), MERGING)
    (opened,) = result.of(OpenConflict)
    assert opened.new and opened.fields["kind"] == "edit-edit" and not result.of(Merge)


def test_policy_merge_when_one_side_holds_everything_writes_no_new_version() -> None:
    ours = replace(PLANNING, title="Planning (local)")
    both = replace(ours, location="Room 1")  # the remote has our title too, and a location
    link = linked("ev", "r1", ours, base=PLANNING, version=2, base_version=1)
    result = plan(state([remote("r1", both)], links={"r1": link}), MERGING)
    assert kinds(result) == ["TakeRemote"]
    result = plan(state([remote("r1", PLANNING, etag="e2")], links={"r1": replace(link, etag="e0")}), MERGING)
    assert kinds(result) == ["UpdateLink"]  # remote unchanged in content: local wins over the new ETag
