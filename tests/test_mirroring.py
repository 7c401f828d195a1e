"""One calendar mirrored between two providers through the hub: Google <-> Outlook (the case most
users have), and CalDAV on one side. Changes flow both ways; both sides editing one event is a
conflict, never a silent overwrite; a quiet pair writes nothing."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from calsync.engine import local
from calsync.engine.conflicts import resolve_conflict
from calsync.engine.local import delete_event
from calsync.engine.outbound import queue_calendar
from calsync.engine.sync import SyncReport, sync_once
from calsync.model import Account
from calsync.providers.base import Provider
from calsync.store import accounts as account_store
from calsync.store import conflicts as conflict_store
from calsync.store import events as event_store
from calsync.store import links as link_store
from tests.remotes import GoogleRemote, Remote, open_remote

PAIRS = [("google", "graph"), ("graph", "radicale"), ("google", "xandikos")]


@pytest.fixture(params=PAIRS, ids=["-".join(p) for p in PAIRS])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Remote, Remote]]:
    first, second = request.param
    yield open_remote(first, request), open_remote(second, request)


class Mirror:
    """One local calendar bound to a calendar on each remote (two, or more)."""

    def __init__(self, engine: Engine, a: Remote, b: Remote, *more: Remote) -> None:
        self.engine, self.a, self.b = engine, a, b
        self.remotes = [a, b, *more]
        self.binding_a = a.bind(engine)
        with engine.begin() as conn:
            hub = account_store.get_binding(conn, self.binding_a)["calendar_id"]
        self.bindings = [self.binding_a, *(r.bind(engine, local_calendar=hub) for r in self.remotes[1:])]
        self.binding_b = self.bindings[1]

    def providers(self) -> Callable[[Account], Provider]:
        by_kind = {r.kind: r.make_provider() for r in self.remotes}
        return lambda account: by_kind[account.provider](account)

    def sync(self) -> SyncReport:
        report = sync_once(self.engine, make_provider=self.providers())
        assert report.ok, [r.message for r in report.inbound + report.outbound if r.message]
        return report

    def settle(self) -> None:
        """Two passes: a change pulled from one side is pushed to the other in the same pass; the
        second pass reads our own writes back and must find nothing to do."""
        self.sync()
        self.sync()


def by_title(remote: Remote) -> dict[str, str]:
    return {title: rid for rid, title in remote.titles().items()}


def test_changes_flow_both_ways_and_a_quiet_pair_writes_nothing(engine: Engine, pair: tuple[Remote, Remote]) -> None:
    a, b = pair
    mirror = Mirror(engine, a, b)
    a.insert("Kick-off", at=datetime(2026, 12, 7, 9, tzinfo=UTC), location="Room 1")
    mirror.settle()
    copy = by_title(b)
    assert set(copy) == {"Kick-off"}, "an event made in the first calendar appears in the second"
    assert "Room 1" in b.text_of(copy["Kick-off"])

    b.change(copy["Kick-off"], title="Kick-off (moved)", at=datetime(2026, 12, 8, 10, tzinfo=UTC))
    b.insert("Born on the other side", at=datetime(2026, 12, 9, 9, tzinfo=UTC))
    mirror.settle()
    assert set(by_title(a)) == {"Kick-off (moved)", "Born on the other side"}, "back-edits flow the other way"

    gone = by_title(a)["Born on the other side"]
    a.delete(gone)
    mirror.settle()
    assert set(by_title(b)) == {"Kick-off (moved)"}, "a deletion travels too"

    a.clear_requests()
    b.clear_requests()
    for _ in range(2):
        report = mirror.sync()
        assert all(r.created == r.updated == r.deleted == 0 for r in report.inbound + report.outbound)
    assert a.writes() == b.writes() == [], "nothing echoes back and forth"


def both_sides_edit(engine: Engine, pair: tuple[Remote, Remote]) -> tuple[Mirror, str, str]:
    """An event made on A and mirrored to B, then edited on both sides: (mirror, A's id, B's id)."""
    a, b = pair
    mirror = Mirror(engine, a, b)
    made = a.insert("Budget", at=datetime(2026, 12, 10, 14, tzinfo=UTC))
    mirror.settle()
    copy = by_title(b)["Budget"]
    a.change(made, title="Budget (from A)")
    b.change(copy, title="Budget (from B)")
    return mirror, made, copy


def test_both_sides_editing_one_event_is_a_conflict_that_resolves(engine: Engine, pair: tuple[Remote, Remote]) -> None:
    a, b = pair
    mirror, made, copy = both_sides_edit(engine, pair)
    mirror.sync()
    with engine.begin() as conn:
        (conflict,) = conflict_store.list_conflicts(conn)
    assert {conflict["local"]["title"], conflict["remote"]["title"]} == {"Budget (from A)", "Budget (from B)"}
    assert a.titles()[made] == "Budget (from A)" and b.titles()[copy] == "Budget (from B)", "nothing overwritten"

    resolve_conflict(engine, conflict["id"], keep="remote")
    mirror.settle()
    winner = conflict["remote"]["title"]
    assert a.titles()[made] == b.titles()[copy] == winner
    with engine.begin() as conn:
        assert conflict_store.list_conflicts(conn) == []


@pytest.mark.parametrize("conflict_on", ["first", "second"])
@pytest.mark.parametrize("born_on", ["first", "second"])
def test_keeping_the_remote_side_keeps_what_the_other_sides_need(
        engine: Engine, pair: tuple[Remote, Remote], conflict_on: str, born_on: str) -> None:
    """Keep-remote takes that side's content and its provider fields; the other side's own fields
    (a CalDAV copy's UID and resource, Graph's ids) stay, so the outcome reaches it as an update."""
    a, b = pair
    if born_on == "first":
        mirror, made, copy = both_sides_edit(engine, pair)
    else:
        mirror, copy, made = both_sides_edit(engine, (b, a))
        mirror.a, mirror.b, mirror.binding_a, mirror.binding_b = a, b, mirror.binding_b, mirror.binding_a
    # the binding synced second sees both sides changed: the conflict is on it
    order = [mirror.binding_b, mirror.binding_a] if conflict_on == "first" else [mirror.binding_a, mirror.binding_b]
    sync_once(engine, binding_ids=order, make_provider=mirror.providers())
    with engine.begin() as conn:
        (conflict,) = conflict_store.list_conflicts(conn)
    assert conflict["binding_id"] == order[1]
    resolve_conflict(engine, conflict["id"], keep="remote")
    mirror.settle()
    winner = conflict["remote"]["title"]
    assert a.titles()[made] == b.titles()[copy] == winner
    report = mirror.sync()
    assert all(r.failed == 0 for r in report.outbound)
    assert len(a.titles()) == len(b.titles()) == 1, "no second copy anywhere"


def test_binding_a_second_side_later_copies_what_the_first_holds(engine: Engine, pair: tuple[Remote, Remote]) -> None:
    a, b = pair
    binding_a = a.bind(engine)
    for n in range(5):
        a.insert(f"Existing {n}", at=datetime(2026, 12, 1 + n, 9, tzinfo=UTC))
    sync_once(engine, make_provider=a.make_provider())
    sync_once(engine, make_provider=bind_later(engine, a, binding_a, b))
    assert sorted(b.titles().values()) == [f"Existing {n}" for n in range(5)]


def bind_later(engine: Engine, first: Remote, first_binding: str, second: Remote) -> Callable[[Account], Provider]:
    """Bind `second` to the calendar `first_binding` fills, queue that calendar for it (as the CLI
    does), and return the providers of both sides."""
    with engine.begin() as conn:
        hub = account_store.get_binding(conn, first_binding)["calendar_id"]
    queue_calendar(engine, second.bind(engine, local_calendar=hub))
    by_kind = {first.kind: first.make_provider(), second.kind: second.make_provider()}
    return lambda account: by_kind[account.provider](account)


def test_a_mirrored_event_keeps_the_fields_only_one_provider_has(engine: Engine, request: pytest.FixtureRequest) -> None:
    """Google's extended properties survive an edit that arrives from Outlook (calsync writes Google
    with a full PUT, so losing them from the store would wipe them remotely)."""
    google, outlook = open_remote("google", request), open_remote("graph", request)
    assert isinstance(google, GoogleRemote)
    mirror = Mirror(engine, google, outlook)
    made = google.insert("Deal review", at=datetime(2026, 12, 11, 9, tzinfo=UTC),
                         extended_properties={"private": {"crm": "42"}})
    mirror.settle()
    outlook.change(by_title(outlook)["Deal review"], title="Deal review (moved)",
                   at=datetime(2026, 12, 11, 11, tzinfo=UTC))
    mirror.settle()
    assert google.titles()[made] == "Deal review (moved)"
    assert google.extended_properties(made) == {"private": {"crm": "42"}}


def test_a_conflict_shows_the_base_the_two_sides_agreed_on_after_the_other_side_changed_it(
    engine: Engine, pair: tuple[Remote, Remote],
) -> None:
    """A link made by an inbound sync keeps its base as 'the event as it is' (not a copy). When the
    other side's change rewrites the event first, that base must be written down, so the conflict
    this side then meets still shows the content both last agreed on."""
    mirror, _, _ = both_sides_edit(engine, pair)
    providers = mirror.providers()
    sync_once(engine, binding_ids=[mirror.binding_b], make_provider=providers)  # B's change reaches the event first
    sync_once(engine, binding_ids=[mirror.binding_a], make_provider=providers)  # then A meets it
    with engine.begin() as conn:
        (conflict,) = conflict_store.list_conflicts(conn)
    assert {conflict["local"]["title"], conflict["remote"]["title"]} == {"Budget (from A)", "Budget (from B)"}
    assert conflict["base"]["title"] == "Budget"


SERIES_START = datetime(2026, 12, 7, 9, tzinfo=UTC)  # a Monday
SECOND, THIRD = SERIES_START + timedelta(weeks=1), SERIES_START + timedelta(weeks=2)
SEEN = (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 15, tzinfo=UTC))
# how each service shows an occurrence as its rule makes it, and one changed from it (Remote.occurrence_kinds)
IN_SERIES = {"google": ("instance", "instance"), "graph": ("occurrence", "exception")}


def _move_an_instance(mirror: Mirror, moved_to: datetime) -> None:
    """A weekly series of four made on the mirror's first side and mirrored; then its second
    occurrence moved and renamed there."""
    series = mirror.a.insert_series("Standup", SERIES_START, 4)
    mirror.settle()
    mirror.a.move_occurrence(series, SECOND, moved_to, "Standup (moved)")


def _assert_one_moved_instance_on_both_sides(google: Remote, graph: Remote, moved_to: datetime) -> None:
    """Each side shows the series' four instances, the second moved (an exception where the service
    says so), and nothing else: no single event beside an unmoved occurrence."""
    for remote in (google, graph):
        plain, moved = IN_SERIES[remote.name]
        assert remote.occurrence_kinds(*SEEN) == [
            (SERIES_START, "Standup", plain), (moved_to, "Standup (moved)", moved), (THIRD, "Standup", plain),
            (SERIES_START + timedelta(weeks=3), "Standup", plain)], remote.name


@pytest.mark.parametrize("made_in", ["google", "graph"])
def test_a_moved_instance_stays_an_instance_of_its_series_on_the_other_side(
    engine: Engine, request: pytest.FixtureRequest, made_in: str,
) -> None:
    """A weekly series mirrored between Google and Outlook; one occurrence moved and renamed on one
    side becomes that occurrence moved on the other, an exception of the mirrored series, not a
    second event beside an unmoved occurrence. A quiet pass then writes nothing."""
    google, graph = open_remote("google", request), open_remote("graph", request)
    mirror = Mirror(engine, google, graph) if made_in == "google" else Mirror(engine, graph, google)
    moved_to = SERIES_START + timedelta(weeks=1, hours=2)
    _move_an_instance(mirror, moved_to)
    mirror.settle()
    _assert_one_moved_instance_on_both_sides(google, graph, moved_to)

    google.clear_requests()
    graph.clear_requests()
    mirror.sync()
    mirror.sync()
    assert google.writes() == graph.writes() == [], "nothing echoes back and forth"


@pytest.mark.parametrize("made_in", ["google", "graph"])
def test_an_instance_write_whose_answer_was_lost_is_adopted_not_imported_again(
    engine: Engine, request: pytest.FixtureRequest, made_in: str,
) -> None:
    """The other side applied our instance write but the answer never came (503 after the work).
    The next pass reads that exception back before the push is retried: it must be taken for our
    own instance (same series, same original start), not imported as a second local exception."""
    google, graph = open_remote("google", request), open_remote("graph", request)
    mirror = Mirror(engine, google, graph) if made_in == "google" else Mirror(engine, graph, google)
    moved_to = SERIES_START + timedelta(weeks=1, hours=2)
    _move_an_instance(mirror, moved_to)
    target = mirror.b
    target.fault(status=503, count=50, after_commit=True, methods=[target.update_method])
    report = sync_once(engine, make_provider=mirror.providers())  # done there each time, every answer lost
    target.clear_faults()
    assert any(r.retried for r in report.outbound)
    again = sync_once(engine, make_provider=mirror.providers())  # reads it back; the retry is not due yet
    assert all(r.status == "ok" for r in again.inbound)
    with engine.begin() as conn:
        exceptions = [e for e in event_store.list_events(conn) if e["original_start"]]
    assert [e["title"] for e in exceptions] == ["Standup (moved)"]
    assert len(exceptions[0]["links"]) == 2, "linked to both sides"
    later = datetime.now(UTC) + timedelta(hours=1)  # the retry, when it is due, finds nothing to write
    assert sync_once(engine, make_provider=mirror.providers(), now=later).ok
    mirror.settle()
    _assert_one_moved_instance_on_both_sides(google, graph, moved_to)


def test_binding_outlook_later_copies_a_series_with_its_moved_instance(
    engine: Engine, request: pytest.FixtureRequest,
) -> None:
    """A Google calendar synced alone first; Outlook bound to it later gets the series and its moved
    occurrence as an exception (queued after the series), not a second event."""
    google, graph = open_remote("google", request), open_remote("graph", request)
    binding_google = google.bind(engine)
    series = google.insert_series("Standup", SERIES_START, 4)
    moved_to = SERIES_START + timedelta(weeks=1, hours=2)
    google.move_occurrence(series, SECOND, moved_to, "Standup (moved)")
    sync_once(engine, make_provider=google.make_provider())
    providers = bind_later(engine, google, binding_google, graph)
    for _ in range(2):
        assert sync_once(engine, make_provider=providers).ok
    _assert_one_moved_instance_on_both_sides(google, graph, moved_to)



# --- a deleted occurrence -------------------------------------------------------------------------

DELETE_PAIRS = [("google", "graph"), ("graph", "google"), ("google", "radicale"), ("radicale", "google"),
                ("graph", "radicale"), ("radicale", "graph")]
# how each service keeps a deleted occurrence (Remote.occurrence_state)
KEPT_AS = {"google": "cancelled", "graph": "gone", "caldav": "excluded"}
LEFT = [(SERIES_START, "Standup"), (SERIES_START + timedelta(weeks=3), "Standup")]


def remote_series(engine: Engine, binding_id: str) -> str:
    """The remote id, on one binding, of the calendar's only series."""
    with engine.begin() as conn:
        (series,) = [e for e in event_store.list_events(conn) if e["recurrence"]]
        link = link_store.link_of(conn, series["id"], binding_id)
    assert link is not None
    return str(link["remote_id"])


def assert_quiet(mirror: Mirror, *remotes: Remote) -> None:
    """Two more passes after convergence: nothing is written anywhere."""
    for remote in remotes:
        remote.clear_requests()
    for _ in range(2):
        mirror.sync()
    assert [r.writes() for r in remotes] == [[] for _ in remotes], "nothing echoes back and forth"


@pytest.mark.parametrize(("deleted_in", "other"), DELETE_PAIRS, ids=[f"{a}-to-{b}" for a, b in DELETE_PAIRS])
def test_an_occurrence_deleted_on_one_side_is_deleted_on_the_other_in_its_own_terms(
    engine: Engine, request: pytest.FixtureRequest, deleted_in: str, other: str,
) -> None:
    """A weekly series of four made on one side and mirrored; on the other side (as its own clients
    would) the second occurrence is deleted, and the third, moved and renamed earlier (an exception on
    both sides by then), too. The first side then holds both deletions the way it keeps a deleted
    occurrence (Google: the instance cancelled; Outlook: the occurrence deleted; CalDAV: an EXDATE,
    no override), both sides show the same two occurrences, and a quiet pass writes nothing."""
    a, b = open_remote(deleted_in, request), open_remote(other, request)
    mirror = Mirror(engine, a, b)
    series_b = b.insert_series("Standup", SERIES_START, 4)
    mirror.settle()
    series_a = remote_series(engine, mirror.binding_a)
    a.move_occurrence(series_a, THIRD, THIRD + timedelta(hours=2), "Standup (moved)")
    mirror.settle()
    assert (THIRD + timedelta(hours=2), "Standup (moved)") in b.occurrences(*SEEN)

    a.delete_occurrence(series_a, SECOND)
    a.delete_occurrence(series_a, THIRD)
    mirror.settle()
    assert a.occurrences(*SEEN) == LEFT
    assert b.occurrences(*SEEN) == LEFT, f"the deletions reach {other}"
    assert [b.occurrence_state(series_b, at) for at in (SECOND, THIRD)] == [KEPT_AS[b.kind]] * 2, \
        f"{other} keeps them as it keeps a deleted occurrence"
    assert_quiet(mirror, a, b)


def test_an_occurrence_deleted_locally_is_deleted_on_every_side_in_its_own_terms(
    engine: Engine, request: pytest.FixtureRequest,
) -> None:
    """One calendar bound to Google, Outlook and CalDAV; a series made in Google with its third
    occurrence moved there (an exception on every side). Deleting that exception through calsync's
    API deletes the occurrence everywhere, each side in its own terms; the local deletion stays one
    (the echoes do not bring it back as a cancelled event), and a quiet pass writes nothing."""
    google, graph, dav = (open_remote(kind, request) for kind in ("google", "graph", "radicale"))
    mirror = Mirror(engine, google, graph, dav)
    google.insert_series("Standup", SERIES_START, 4)
    mirror.settle()
    google.move_occurrence(remote_series(engine, mirror.binding_a), THIRD, THIRD + timedelta(hours=2),
                           "Standup (moved)")
    mirror.settle()
    with engine.begin() as conn:
        (moved,) = [e for e in event_store.list_events(conn) if e["original_start"]]
    assert len(moved["links"]) == 3, "an exception on every side"

    delete_event(engine, moved["id"], None)
    mirror.settle()
    left = [(at, title) for at, title in LEFT] + [(SECOND, "Standup")]
    for remote, binding in zip(mirror.remotes, mirror.bindings, strict=True):
        assert remote.occurrences(*SEEN) == sorted(left), remote.name
        assert remote.occurrence_state(remote_series(engine, binding), THIRD) == KEPT_AS[remote.kind], remote.name
    with engine.begin() as conn:
        (again,) = event_store.get_events(conn, [moved["id"]])
    assert again["deleted"], "the local deletion stays a deletion"
    assert_quiet(mirror, google, graph, dav)


def series_with_moved_occurrence(engine: Engine, pair: tuple[Remote, Remote]) -> tuple[Mirror, str, str]:
    """A weekly series of four made on A, its third occurrence moved there, mirrored to B:
    (mirror, the series' local id, its remote id on B)."""
    a, b = pair
    mirror = Mirror(engine, a, b)
    a.insert_series("Standup", SERIES_START, 4)
    mirror.settle()
    a.move_occurrence(remote_series(engine, mirror.binding_a), THIRD, THIRD + timedelta(hours=2), "Standup (moved)")
    mirror.settle()
    with engine.begin() as conn:
        (series,) = [e for e in event_store.list_events(conn) if e["recurrence"]]
    return mirror, str(series["id"]), remote_series(engine, mirror.binding_b)


MOVED_SERIES = [(SERIES_START, "Standup"), (SECOND, "Standup"), (THIRD + timedelta(hours=2), "Standup (moved)"),
                (SERIES_START + timedelta(weeks=3), "Standup")]


def test_a_series_kept_over_its_remote_deletion_comes_back_with_its_exceptions(
        engine: Engine, pair: tuple[Remote, Remote]) -> None:
    a, b = pair
    mirror, series_id, series_b = series_with_moved_occurrence(engine, pair)
    local.update_event(engine, series_id, {"description": "agenda"}, None)
    b.delete(series_b)
    mirror.sync()
    with engine.begin() as conn:
        (conflict,) = conflict_store.list_conflicts(conn)
    assert conflict["kind"] == "remote-delete" and conflict["binding_id"] == mirror.binding_b
    resolve_conflict(engine, conflict["id"], keep="local")
    mirror.settle()
    assert b.occurrences(*SEEN) == MOVED_SERIES, "made again on B, its moved occurrence with it"
    assert a.occurrences(*SEEN) == MOVED_SERIES
    report = mirror.sync()
    assert all(r.failed == 0 for r in report.outbound)
    assert all(r.created == r.updated == r.deleted == 0 for r in report.inbound + report.outbound), "quiet"


def test_a_series_deleted_here_and_kept_as_the_remote_has_it_comes_back_everywhere(
        engine: Engine, pair: tuple[Remote, Remote]) -> None:
    a, b = pair
    mirror, series_id, _ = series_with_moved_occurrence(engine, pair)
    series_a = remote_series(engine, mirror.binding_a)
    delete_event(engine, series_id, None)
    a.change(series_a, description="still on")
    mirror.sync()
    with engine.begin() as conn:
        (conflict,) = conflict_store.list_conflicts(conn)
    assert conflict["kind"] == "local-delete" and conflict["binding_id"] == mirror.binding_a
    resolve_conflict(engine, conflict["id"], keep="remote")
    mirror.settle()
    assert a.occurrences(*SEEN) == MOVED_SERIES
    assert b.occurrences(*SEEN) == MOVED_SERIES, "B gets the series back with its moved occurrence"
    report = mirror.sync()
    assert all(r.failed == 0 for r in report.outbound)
    assert all(r.created == r.updated == r.deleted == 0 for r in report.inbound + report.outbound), "quiet"


@pytest.mark.parametrize("keep", ["local", "remote"])
def test_an_occurrence_moved_on_a_series_deleted_elsewhere_waits_with_it(
        engine: Engine, pair: tuple[Remote, Remote], keep: str) -> None:
    """A deletes the series while B edits it and moves an occurrence: the deletion is taken here,
    B's edit is a conflict, and B's moved occurrence belongs to a deleted series: it is born deleted
    with it (never written anywhere on its own). Keeping the deletion removes it everywhere; keeping
    B's series brings the series back everywhere, its moved occurrence with it."""
    a, b = pair
    mirror = Mirror(engine, a, b)
    a.insert_series("Standup", SERIES_START, 4)
    mirror.settle()
    series_a, series_b = remote_series(engine, mirror.binding_a), remote_series(engine, mirror.binding_b)
    a.delete(series_a)
    b.change(series_b, description="agenda")
    b.move_occurrence(series_b, THIRD, THIRD + timedelta(hours=2), "Standup (moved)")
    sync_once(engine, binding_ids=[mirror.binding_a, mirror.binding_b], make_provider=mirror.providers())
    with engine.begin() as conn:
        (conflict,) = conflict_store.list_conflicts(conn)
        assert event_store.list_events(conn) == [], "nothing of the deleted series is live here"
    assert conflict["kind"] == "local-delete" and conflict["binding_id"] == mirror.binding_b
    mirror.settle()
    assert a.occurrences(*SEEN) == [], "the moved occurrence is not written on its own"
    resolve_conflict(engine, conflict["id"], keep=keep)
    mirror.settle()
    expected = [] if keep == "local" else MOVED_SERIES
    assert a.occurrences(*SEEN) == expected
    assert b.occurrences(*SEEN) == expected
    report = mirror.sync()
    assert all(r.failed == 0 for r in report.outbound)
    assert all(r.created == r.updated == r.deleted == 0 for r in report.inbound + report.outbound), "quiet"


@pytest.mark.parametrize("series_deleted", ["on-google", "here", "in-outlook"])
def test_an_occurrence_restored_on_google_stands_in_outlook_as_a_single_event_linked_to_it(
    engine: Engine, request: pytest.FixtureRequest, series_deleted: str,
) -> None:
    """Outlook cannot restore a deleted occurrence (Graph has no call for it). An occurrence deleted
    and then restored and moved in Google (its cancelled instance confirmed again) comes back on
    CalDAV as an override, and in Outlook as a single event standing in for it, linked to the
    occurrence: reading it back does not turn the occurrence into a single event anywhere (locally
    it keeps its series and original start), an edit of it in Outlook reaches the occurrence on
    every side, and a quiet pass writes nothing. The series' deletion (in Google, or here through the
    API) takes the single event in Outlook with it (chaos c3-1185: deleted here, it stayed)."""
    google, graph, dav = (open_remote(kind, request) for kind in ("google", "graph", "radicale"))
    assert isinstance(google, GoogleRemote)
    mirror = Mirror(engine, google, graph, dav)
    series = google.insert_series("Standup", SERIES_START, 4)
    mirror.settle()
    instance = google.instance_id(series, SECOND)
    google.cancel(instance)
    mirror.settle()
    assert graph.occurrence_state(remote_series(engine, mirror.bindings[1]), SECOND) == "gone"

    back = SECOND + timedelta(hours=3)
    google.restore(instance)
    google.change(instance, title="Standup (back)", at=back)
    mirror.settle()
    expected = sorted([*LEFT, (THIRD, "Standup"), (back, "Standup (back)")])
    for remote in mirror.remotes:
        assert remote.occurrences(*SEEN) == expected, remote.name
    with engine.begin() as conn:
        (occurrence,) = [e for e in event_store.list_events(conn) if e["original_start"]]
    assert not occurrence["deleted"] and occurrence["recurring_event_id"], "still an occurrence of its series"
    assert len(occurrence["links"]) == 3, "linked on every side (in Outlook: to the single event)"
    assert_quiet(mirror, google, graph, dav)

    stand_in = by_title(graph)["Standup (back)"]
    graph.change(stand_in, title="Standup (renamed in Outlook)")
    mirror.settle()
    renamed = sorted([*LEFT, (THIRD, "Standup"), (back, "Standup (renamed in Outlook)")])
    for remote in mirror.remotes:
        assert remote.occurrences(*SEEN) == renamed, remote.name
    with engine.begin() as conn:
        (again,) = event_store.get_events(conn, [occurrence["id"]])
    assert again["original_start"] == occurrence["original_start"] and again["recurring_event_id"]
    assert_quiet(mirror, google, graph, dav)

    # the series goes, and with it the occurrence Outlook holds as a single event
    if series_deleted == "here":
        local.delete_event(engine, str(occurrence["recurring_event_id"]), None)
    elif series_deleted == "in-outlook":  # the single event standing in there is not part of it there
        graph.delete(remote_series(engine, mirror.bindings[1]))
    else:
        google.delete(series)
    mirror.settle()
    for remote in mirror.remotes:
        assert remote.occurrences(*SEEN) == [], remote.name
    with engine.begin() as conn:
        assert [e["title"] for e in event_store.list_events(conn)] == [], "nothing live here either"
    assert_quiet(mirror, google, graph, dav)


def test_a_rule_change_written_to_outlook_keeps_the_series_exceptions_there(
        engine: Engine, request: pytest.FixtureRequest) -> None:
    """Outlook drops a series' exceptions when its pattern changes. A rule change made in Google (the
    series grows from four to six) is written to Outlook, and its moved occurrence is
    written there again: every side shows it moved, no event is lost or duplicated, and a quiet
    pass writes nothing."""
    google, graph = open_remote("google", request), open_remote("graph", request)
    mirror, _, _ = series_with_moved_occurrence(engine, (google, graph))
    google.set_series_count(remote_series(engine, mirror.binding_a), 6)
    mirror.settle()
    mirror.settle()
    grown = sorted([*MOVED_SERIES, (SERIES_START + timedelta(weeks=4), "Standup"),
                    (SERIES_START + timedelta(weeks=5), "Standup")])
    seen = (SEEN[0], SEEN[1] + timedelta(weeks=4))
    assert google.occurrences(*seen) == grown
    assert graph.occurrences(*seen) == grown, "the moved occurrence is written to Outlook again"
    with engine.begin() as conn:
        live = [e for e in event_store.list_events(conn) if e["original_start"]]
    assert [e["title"] for e in live] == ["Standup (moved)"]
    assert_quiet(mirror, google, graph)


def test_an_exception_whose_copy_there_is_gone_is_adopted_when_that_side_shows_it_again(
        engine: Engine, request: pytest.FixtureRequest) -> None:
    """An exception whose copy on Outlook calsync holds for gone (its link says so, with an id Outlook
    no longer uses: the copy went with a series made again there) meets an exception at its start
    there again (someone edits that occurrence in Outlook): it is adopted into the old link's place,
    not imported as a second exception of the series at the same start (which then clashed with the
    first one's next write there)."""
    from sqlalchemy import update

    from calsync.store.schema import event_links

    google, graph = open_remote("google", request), open_remote("graph", request)
    mirror, _, _ = series_with_moved_occurrence(engine, (google, graph))
    with engine.begin() as conn:
        (moved,) = [e for e in event_store.list_events(conn) if e["original_start"]]
        held = link_store.link_of(conn, moved["id"], mirror.binding_b)
        assert held is not None
        conn.execute(update(event_links).where(event_links.c.id == held["id"])
                     .values(remote_id="gone-with-the-old-series", remote_deleted=True))
    graph.change(str(held["remote_id"]), title="Standup (moved, noted)")
    mirror.settle()
    with engine.begin() as conn:
        exceptions = [e for e in event_store.list_events(conn) if e["original_start"]]
        link = link_store.link_of(conn, moved["id"], mirror.binding_b)
    assert [e["id"] for e in exceptions] == [moved["id"]], "one exception at that start, not two"
    assert link is not None and link["remote_id"] == held["remote_id"] and not link["remote_deleted"]
    assert (THIRD + timedelta(hours=2), "Standup (moved, noted)") in google.occurrences(*SEEN)
    assert_quiet(mirror, google, graph)


def test_an_occurrence_kept_over_its_deletion_here_comes_back_on_the_side_that_excluded_it(
        engine: Engine, request: pytest.FixtureRequest) -> None:
    """An exception deleted here while Google moves it again: CalDAV takes the deletion (an EXDATE, its
    override removed), Google's edit is a conflict. Keeping Google's side brings the occurrence back
    everywhere: the series stops excluding its start (locally and on CalDAV, where the override is
    written again), nothing deletes it a second time, and a quiet pass writes nothing (found by the
    chaos harness: c1-23, where CalDAV's left-over EXDATE deleted the kept occurrence again)."""
    google, dav = open_remote("google", request), open_remote("radicale", request)
    assert isinstance(google, GoogleRemote)
    mirror, series_id, _ = series_with_moved_occurrence(engine, (google, dav))
    with engine.begin() as conn:
        (moved,) = [e for e in event_store.list_events(conn) if e["original_start"]]
    delete_event(engine, moved["id"], None)
    again = THIRD + timedelta(hours=4)
    google.change(google.instance_id(remote_series(engine, mirror.binding_a), THIRD), title="Standup (again)",
                  at=again)
    mirror.settle()
    assert dav.occurrence_state(remote_series(engine, mirror.binding_b), THIRD) == "excluded"
    with engine.begin() as conn:
        (conflict,) = conflict_store.list_conflicts(conn)
    assert conflict["kind"] == "local-delete" and conflict["binding_id"] == mirror.binding_a
    resolve_conflict(engine, conflict["id"], keep="remote")
    mirror.settle()
    kept = sorted([(SERIES_START, "Standup"), (SECOND, "Standup"), (again, "Standup (again)"),
                   (SERIES_START + timedelta(weeks=3), "Standup")])
    assert google.occurrences(*SEEN) == kept
    assert dav.occurrences(*SEEN) == kept, "the override written again, its start no longer excluded"
    with engine.begin() as conn:
        (series,) = event_store.get_events(conn, [series_id])
        (back,) = event_store.get_events(conn, [moved["id"]])
    assert not back["deleted"] and not any(line.startswith("EXDATE") for line in series["recurrence"])
    assert_quiet(mirror, google, dav)


def test_an_occurrence_moved_again_in_outlook_after_its_pattern_changed_there_stays_one_exception(
        engine: Engine, request: pytest.FixtureRequest) -> None:
    """Outlook drops a series' exceptions when someone changes its pattern there; the occurrence moved
    before is a plain one again, under a new id. Moved again in Outlook, it arrives as an exception
    calsync has never seen at a start where the local series already has one (linked to the id
    Outlook dropped): that exception takes the new copy, rather than a second local exception of the
    series at the same start being imported, whose push then clashed with the first one's copies on
    every other side (chaos c2-1061)."""
    google, graph = open_remote("google", request), open_remote("graph", request)
    mirror = Mirror(engine, google, graph)
    google.insert_series("Standup", SERIES_START, 4)
    mirror.settle()
    series_graph = remote_series(engine, mirror.binding_b)
    graph.move_occurrence(series_graph, THIRD, THIRD + timedelta(hours=2), "Standup (moved)")
    mirror.settle()
    graph.set_series_count(series_graph, 5)  # Outlook drops the moved occurrence's exception
    graph.move_occurrence(series_graph, THIRD, THIRD + timedelta(hours=3), "Standup (moved again)")
    mirror.settle()
    with engine.begin() as conn:
        live = [e for e in event_store.list_events(conn) if e["original_start"]]
    assert [e["title"] for e in live] == ["Standup (moved again)"], "one exception at that start"
    expected = sorted([(SERIES_START, "Standup"), (SECOND, "Standup"), (THIRD + timedelta(hours=3),
                       "Standup (moved again)"), (SERIES_START + timedelta(weeks=3), "Standup"),
                       (SERIES_START + timedelta(weeks=4), "Standup")])
    seen = (SEEN[0], SEEN[1] + timedelta(weeks=2))
    assert graph.occurrences(*seen) == expected
    assert google.occurrences(*seen) == expected
    assert_quiet(mirror, google, graph)
