"""One page of remote changes against the store: read what the planner needs, carry out its plan.

Why apart from engine/page_plan.py: the planner is pure (a page and a frozen PageState in, actions
out); everything that touches the database is here, with a handful of batched statements per page
whatever its size. write_page also runs the consequences the store itself knows (an EXDATE's
exceptions, a restored occurrence's EXDATE, a deleted series' exceptions), queues conference work,
and mirrors the page's changes to the calendar's other bindings, all in the page's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

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
    cancelled_of_dead_series,
    starts_to_claim,
    unknown_claims,
)
from calsync.engine.series import include_restored
from calsync.model import RemoteChange, RemoteDeletion, RemoteEvent
from calsync.series_exdates import excluded_starts
from calsync.store import conferences as conference_store
from calsync.store import conflicts as conflict_store
from calsync.store import events as event_store
from calsync.store import links as link_store
from calsync.store import outbox as outbox_store
from calsync.store.conferences import ChangedEvent


def load_page_state(
    conn: Connection,
    binding: BindingRef,
    changes: list[RemoteChange],
    *,
    whole_series: bool = False,
) -> PageState:
    """Everything plan_page needs about the page's ids, in a few batched reads.

    `whole_series`: the provider lists a series with all its exceptions whenever any part of it
    changed (CalDAV's resources), so an exception of a listed series that the page does not hold was
    removed (a full listing finds such removals by its sweep instead: pass False)."""
    items: dict[str, RemoteChange] = {item.remote_id: item for item in changes}  # a repeated id: the last wins
    if whole_series:
        listed = {i.series_remote_id or i.remote_id for i in items.values() if isinstance(i, RemoteEvent)}
        for remote_id in link_store.live_series_members(conn, binding.id, listed) - items.keys():
            items[remote_id] = RemoteDeletion(
                remote_id,
                proof=(f"its series was listed again without exception {remote_id} (a series is listed whole)"),
            )
    series_ids = {i.series_remote_id for i in items.values() if isinstance(i, RemoteEvent) and i.series_remote_id}
    series = link_store.event_ids_for_remote_ids(conn, binding.id, series_ids) if series_ids else {}
    dead = event_store.deletions_of(conn, series.values()) if series else {}
    items = cancelled_of_dead_series(items, series, dead)
    links = link_store.links_by_remote_id(conn, binding.id, list(items))
    # deleted exceptions the side holds as events of their own (stand-ins) name no series there: their
    # series' deletion here is looked up by the link
    orphaned = {link.recurring_event_id for link in links.values() if link.deleted and link.recurring_event_id}
    if orphaned - dead.keys():
        dead = {**dead, **event_store.deletions_of(conn, orphaned - dead.keys())}
    claims = unknown_claims(items, links)
    adoptable = (
        link_store.unlinked_events_with_ids(conn, binding.calendar_id, binding.id, list(claims.values()))
        if claims
        else set()
    )
    at_start = starts_to_claim(items, claims, adoptable, series)
    ours_at = link_store.unlinked_exceptions_at(conn, binding.id, list(at_start)) if at_start else {}
    for key, event_id in ours_at.items():
        claims[at_start[key]] = event_id
        adoptable.add(event_id)
    claimed = [claims[rid] for rid in claims if claims[rid] in adoptable]
    gone_links = link_store.gone_links_of(conn, binding.id, claimed) if claimed else {}
    # an unknown deletion of an id that is a local event's own: the copy our create made there (its
    # answer lost, so no link says so) was deleted there by someone; it is that event's deletion
    unknown_gone = [rid for rid, item in items.items() if rid not in links and isinstance(item, RemoteDeletion)]
    lost_creates = (
        link_store.unlinked_events_with_ids(conn, binding.calendar_id, binding.id, unknown_gone)
        if unknown_gone
        else set()
    )
    every_link = [*links.values(), *gone_links.values()]
    held_series = {link.recurring_event_id for link in every_link if link.recurring_event_id}
    exceptions_gone = any(  # an exception of a series the binding holds, deleted or cancelled there
        (link := links.get(rid) or gone_links.get(claims.get(rid, ""))) is not None
        and link.recurring_event_id
        and (isinstance(item, RemoteDeletion) or item.data.status == "cancelled")
        for rid, item in items.items()
    )
    new_exception_series = {
        series[i.series_remote_id]
        for rid, i in items.items()
        if rid in claims
        and claims[rid] not in adoptable
        and isinstance(i, RemoteEvent)
        and i.data.original_start
        and i.series_remote_id in series
    }
    return PageState(
        items=items,
        links=links,
        series=series,
        dead=dead,
        open_conflicts=conflict_store.open_conflicts_of(conn, binding.id, [link.event_id for link in every_link]),
        claims=claims,
        adoptable=frozenset(adoptable),
        gone_links=gone_links,
        adopted={event_id: event_store.event_version_and_hash(conn, event_id) for event_id in claimed},
        lost_creates=frozenset(lost_creates),
        stand_ins=link_store.stand_in_starts(
            conn,
            binding.id,
            [
                link.event_id
                for rid, link in links.items()
                if link.data.recurrence and not link.data.original_start and isinstance(items[rid], RemoteEvent)
            ],
        ),
        paused_series=frozenset(
            conflict_store.series_paused_by_remote_delete(conn, binding.id, held_series) if exceptions_gone else ()
        ),
        series_rules=_series_rules(conn, new_exception_series),
    )


def _series_rules(conn: Connection, series_ids: set[str]) -> dict[str, SeriesRule]:
    if not series_ids:
        return {}
    return {
        row["id"]: SeriesRule(row["recurrence"], row["time_zone"], row["deleted"], row["updated_at_source"])
        for row in event_store.get_events(conn, list(series_ids))
    }


def write_page(
    conn: Connection,
    binding: BindingRef,
    plan: PagePlan,
    generation: int | None,
    *,
    conference_work: bool = True,
) -> int:
    """Carry out the plan, batched by kind, and its consequences. `generation`: a full listing's, which
    marks what the page names as seen. Returns the tombstones the consequences added (counted as
    deletions on top of the plan's)."""
    kinds = plan.grouped()
    for relink in kinds.get(Relink, []):  # the copies met take their gone links' places first
        link_store.relink_gone_copies(conn, binding.id, {relink.event_id: (relink.remote_id, relink.series_remote_id)})
    for close in kinds.get(CloseConflict, []):
        conflict_store.close_conflict(conn, close.conflict_id, close.resolution)
        outbox_store.release(conn, binding.id, close.event_id, drop=close.drop)
    for opened in kinds.get(OpenConflict, []):
        conflict_store.record_conflict(conn, **opened.fields)
        outbox_store.hold(conn, binding.id, opened.fields["event_id"])  # the event waits; everything else syncs on
    creates: list[Create] = kinds.get(Create, [])
    adopts: list[Adopt] = kinds.get(Adopt, [])
    taken: list[TakeRemote] = kinds.get(TakeRemote, [])
    merges: list[Merge] = kinds.get(Merge, [])
    new_events = [c.event for c in creates]
    new_links = [*(c.link for c in creates), *(a.link for a in adopts)]
    event_updates = [*(t.event for t in taken), *(m.event for m in merges)]
    tombstones = {d.event_id: d.proof for d in kinds.get(Delete, [])}
    if generation is not None:  # a full listing: what it names is seen (new links are born seen)
        for row in new_links:
            row["seen_generation"] = generation
        link_store.mark_seen(conn, binding.id, plan.seen, generation)
    # series before their exceptions: a page may list an exception ahead of its master
    etags = {row["event_id"]: row.get("etag") for row in new_links}
    event_store.insert_events(
        conn, sorted(new_events, key=lambda row: row["recurring_event_id"] is not None), etags=etags
    )
    link_store.insert_links(conn, new_links)
    for create in creates:
        if create.conflict is not None:
            conflict_store.record_conflict(conn, **create.conflict)
    doomed_copies = [a.doomed for a in adopts if a.doomed is not None]
    if doomed_copies:  # copies of events deleted here: the push deletes them on this side
        outbox_store.enqueue(conn, binding.calendar_id, doomed_copies, bindings_to=[binding.id])
    if new_links:  # exceptions that came before their series (on an earlier page or sync) join it now
        link_store.attach_orphan_exceptions(
            conn,
            binding.id,
            {row["remote_id"]: row["event_id"] for row in new_links if row["series_remote_id"] is None},
        )
    remote_etags = {t.event["event_id"]: t.link.get("etag") for t in taken}
    remote_etags.update((m.event["event_id"], m.link.get("etag")) for m in merges)
    event_store.update_events(conn, event_updates, etags=remote_etags)
    link_store.update_links(
        conn, [*(t.link for t in taken), *(m.link for m in merges), *(u.link for u in kinds.get(UpdateLink, []))]
    )
    _include_restored_occurrences(conn, binding, new_events, event_updates)
    added = 0
    # a series' EXDATEs are this side's only where its recurrence came from this side: all of a taken
    # change, and of a merge only when the merge took the recurrence from here (else they are ours)
    from_here = [*(t.event for t in taken), *(m.event for m in merges if "recurrence" in m.from_remote)]
    for exception_id, proof in _excluded_exceptions(conn, binding, from_here).items():
        if exception_id not in tombstones:
            tombstones[exception_id] = proof
            added += 1
    doomed: list[str] = []
    if tombstones:
        proofs = dict(tombstones)
        for exception_id, series_id in event_store.live_exceptions_of(conn, list(tombstones)).items():
            proofs.setdefault(exception_id, f"its series {series_id} was deleted: {tombstones[series_id]}")
        doomed = list(proofs)
        # exceptions going with their series that this side holds as events of their own (stand-ins,
        # in Outlook): the series' deletion there left them, so the push deletes them there too
        cascaded = [event_id for event_id in doomed if event_id not in tombstones]
        left_here = link_store.stand_ins_of(conn, binding.id, cascaded) if cascaded else set()
        event_store.tombstone_events(conn, proofs, binding.source)
        link_store.agree_links_with_versions(conn, [e for e in doomed if e not in left_here], binding.id)
        if left_here and binding.id in outbox_store.push_bindings(conn, binding.calendar_id):
            outbox_store.enqueue(
                conn, binding.calendar_id, [(e, 0) for e in sorted(left_here)], bindings_to=[binding.id]
            )
    if conference_work:
        # a new event has no conference row yet (its id was drawn on this page): one without a
        # conference has nothing to queue, and is not looked up
        conference_store.enqueue_for_changed_events(
            conn,
            [
                *(
                    ChangedEvent(row["id"], row["conference"], row["recurring_event_id"])
                    for row in new_events
                    if row["conference"]
                ),
                *(ChangedEvent(row["event_id"], row["conference"], row["recurring_event_id"]) for row in event_updates),
            ],
            doomed,
        )
    _mirror(conn, binding, new_events, event_updates, doomed)
    if merges and binding.id in outbox_store.push_bindings(conn, binding.calendar_id):
        # a merge is a local version this side lacks too (its link took the remote ETag): pushed back here
        outbox_store.enqueue(
            conn,
            binding.calendar_id,
            [(m.event["event_id"], m.event["version"]) for m in merges],
            bindings_to=[binding.id],
        )
    return added


def _include_restored_occurrences(
    conn: Connection, binding: BindingRef, new_events: list[dict[str, Any]], event_updates: list[dict[str, Any]]
) -> None:
    """Occurrences live again on this side (a cancelled instance confirmed again, in Google) whose
    series still excludes them here: engine.series.include_restored. Series taken from this side on
    this page are left as they came (an EXDATE there over a live exception is _excluded_exceptions')."""
    taken = {row["event_id"] for row in event_updates}
    include_restored(
        conn,
        binding.calendar_id,
        [
            (row["recurring_event_id"], row["original_start"])
            for row in [*new_events, *event_updates]
            if row["original_start"]
            and row["recurring_event_id"]
            and not row["deleted"]
            and row["status"] != "cancelled"
            and row["recurring_event_id"] not in taken
        ],
        binding.source,
    )


def _excluded_exceptions(conn: Connection, binding: BindingRef, updates: list[dict[str, Any]]) -> dict[str, str]:
    """Live exceptions whose occurrence a series taken from this side now excludes (an EXDATE at their
    original start, where the side dropped the exception with its occurrence): id -> proof. Cancelled
    ones are how Google keeps a deleted occurrence already, and stay as they are."""
    excluded: Mapping[str, set[str]] = {
        row["event_id"]: starts
        for row in updates
        if row["recurrence"]
        and not row["original_start"]
        and (starts := excluded_starts(row["recurrence"], row["time_zone"]))
    }
    if not excluded:
        return {}
    return {
        exception_id: f"its series {series_id}, as {binding.source} holds it now, excludes {original} (an EXDATE)"
        for exception_id, series_id, original in event_store.live_confirmed_exceptions_of(conn, list(excluded))
        if original in excluded[series_id]
    }


def _mirror(
    conn: Connection,
    binding: BindingRef,
    new_events: list[dict[str, Any]],
    event_updates: list[dict[str, Any]],
    doomed: list[str],
) -> None:
    """Changes that came from this binding go out to the calendar's other push-enabled bindings
    (never back to this one: that is how the hub mirrors without echoing)."""
    if not (new_events or event_updates or doomed):
        return
    others = [b for b in outbox_store.push_bindings(conn, binding.calendar_id) if b != binding.id]
    if others:
        # series before their exceptions (a listing may name an exception first): each exception is
        # written over its series' occurrence there, so the series must be there before it
        rows = [*((r["id"], r) for r in new_events), *((r["event_id"], r) for r in event_updates)]
        rows.sort(key=lambda pair: pair[1]["recurring_event_id"] is not None)
        changed = [(event_id, row["version"]) for event_id, row in rows]
        changed += [(e, 0) for e in doomed]
        outbox_store.enqueue(conn, binding.calendar_id, changed, bindings_to=others)
