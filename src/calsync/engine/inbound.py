"""Pull remote changes into the store, one binding at a time.

Incremental with the binding's own token; full (with reconciliation of remote deletions) when
there is none or the provider rejects it. Each page is applied in one transaction; the new token is
written only in the transaction of the last page, so a crash anywhere re-applies pages harmlessly.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from calsync.engine.prefetch import prefetched
from calsync.engine.series import include_restored
from calsync.engine.threeway import Decision, Sides, conflict_kind, decide
from calsync.model import (
    ChangePage,
    EventData,
    RemoteChange,
    RemoteDeletion,
    RemoteEvent,
    utcnow,
)
from calsync.providers.base import AuthError, Provider, ProviderError, SyncTokenInvalid
from calsync.series_exdates import as_occurrence, completed_outside_window, excluded_starts, without_starts
from calsync.statuses import ConflictPolicy, SyncFailure, SyncStatus
from calsync.store import accounts as account_store
from calsync.store import conferences as conference_store
from calsync.store import conflicts as conflict_store
from calsync.store import events as event_store
from calsync.store import links as link_store
from calsync.store import outbox as outbox_store
from calsync.store.common import new_id
from calsync.store.conferences import ChangedEvent
from calsync.store.rows import BindingRow


@dataclass
class MassDeleteGuard:
    """A full listing that would delete more than `ratio` of the linked events (and at least
    `minimum` of them) is taken for an empty or truncated answer, not for the truth."""

    ratio: float = 0.5
    minimum: int = 10

    def blocks(self, doomed: int, live: int) -> bool:
        return doomed >= self.minimum and doomed > live * self.ratio


class MassDeleteBlocked(Exception):
    def __init__(self, doomed: int, live: int) -> None:
        super().__init__(
            f"full sync would delete {doomed} of {live} events; refusing (run `calsync sync --full --force` "
            "if the calendar really was emptied)"
        )
        self.doomed = doomed
        self.live = live


@dataclass
class SyncResult:
    binding_id: str
    full: bool = False
    pages: int = 0
    requests: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    conflicts: int = 0
    unknown_deletions: int = 0  # deletions of ids the binding never had (Graph: a deleted occurrence)
    token_reset: bool = False  # the provider rejected our token and a full sync followed
    status: SyncStatus = "ok"
    message: str | None = None
    retry_after: float | None = None  # what the provider asked us to wait, after a rate limit or outage

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PageHook = Callable[[int, SyncResult], None]


@dataclass
class _Binding:
    id: str
    calendar_id: str
    remote_calendar_id: str
    policy: ConflictPolicy
    source: str
    sync_token: str | None


def sync_binding(
    engine: Engine, provider: Provider, binding_id: str, *, full: bool = False, force: bool = False,
    guard: MassDeleteGuard | None = None, after_page: PageHook | None = None,
) -> SyncResult:
    """One inbound pass for one binding. Provider errors are recorded on the binding and in the result."""
    with engine.begin() as conn:
        row = account_store.get_binding(conn, binding_id)
        account = account_store.get_account(conn, row["account_id"])
    result = SyncResult(binding_id=binding_id)
    if row["direction"] == "push":
        result.status = "skipped"
        result.message = "push-only binding"
        return result
    binding = _binding(row, account.provider)
    if full:
        binding.sync_token = None
    start_requests = provider.request_count
    try:
        try:
            _walk(engine, provider, binding, result, force, guard or MassDeleteGuard(), after_page)
        except SyncTokenInvalid:
            with engine.begin() as conn:
                account_store.forget_sync_token(conn, binding_id)
            result.token_reset = True
            binding.sync_token = None
            _walk(engine, provider, binding, result, force, guard or MassDeleteGuard(), after_page)
        if result.unknown_deletions and not result.full and provider.capabilities.names_occurrences_only:
            _recheck_series(engine, provider, binding, result)
    except MassDeleteBlocked as exc:
        result.status, result.message = "blocked", str(exc)
        _record_failure(engine, binding_id, "blocked", str(exc))
    except AuthError as exc:
        result.status, result.message = "auth-failed", str(exc)
        _record_failure(engine, binding_id, "auth-failed", str(exc))
        with engine.begin() as conn:
            account_store.set_account_state(conn, account.id, "auth-failed", str(exc))
    except ProviderError as exc:
        result.status, result.message = "error", f"{type(exc).__name__}: {exc}"
        result.retry_after = getattr(exc, "retry_after", None)
        _record_failure(engine, binding_id, "error", result.message)
    finally:
        result.requests = provider.request_count - start_requests
    return result


def _binding(row: BindingRow, provider_name: str) -> _Binding:
    return _Binding(
        id=row["id"], calendar_id=row["calendar_id"], remote_calendar_id=row["remote_calendar_id"],
        policy=row["conflict_policy"], source=f"{provider_name}:{row['id']}", sync_token=row["sync_token"],
    )


def apply_remote_changes(
    engine: Engine, binding_id: str, changes: list[RemoteChange], *, conference_work: bool = True
) -> SyncResult:
    """Apply changes learnt outside a listing (the answer to our own write) by the same rules, in one
    transaction. `conference_work=False` when the change is the conference engine's own write-back."""
    result = SyncResult(binding_id=binding_id)
    with engine.begin() as conn:
        row = account_store.get_binding(conn, binding_id)
        binding = _binding(row, account_store.get_account(conn, row["account_id"]).provider)
        page = ChangePage(items=changes, full=False, last=False)
        _apply_page(conn, binding, page, None, result, conference_work=conference_work)
    return result


def _record_failure(engine: Engine, binding_id: str, status: SyncFailure, message: str) -> None:
    with engine.begin() as conn:
        account_store.record_sync_failure(conn, binding_id, status, message)


def _walk(
    engine: Engine, provider: Provider, binding: _Binding, result: SyncResult, force: bool,
    guard: MassDeleteGuard, after_page: PageHook | None,
) -> None:
    generation: int | None = None
    if binding.sync_token is None:
        result.full = True
        with engine.begin() as conn:
            generation = account_store.start_full_sync(conn, binding.id)
    whole_series = provider.capabilities.lists_whole_series
    # a listing limited to a time window (Graph's calendarView) does not show what lies outside it:
    # what it reports removed, or does not list, is deleted only once a read by id says so
    windowed = provider.listing_window() is not None
    listing = provider.list_changes(binding.remote_calendar_id, binding.sync_token)
    with prefetched(listing, name=f"listing-{binding.id[:8]}") as pages:  # the next page comes while this one is stored
        for listed in pages:
            page = listed
            if generation is not None:  # a full listing: what is gone is found by the (guarded) sweep
                page = replace(page, items=[c for c in page.items if not isinstance(c, RemoteDeletion)])
            elif windowed:
                page = _confirm_removals(engine, provider, binding, page)
            confirmed: set[str] | None = None
            if page.last and generation is not None and windowed:
                with engine.begin() as conn:  # the page first; the token only once the unlisted are read
                    _apply_page(conn, binding, page, generation, result, whole_series=whole_series)
                confirmed = _confirm_unlisted(engine, provider, binding, generation, result)
                page = replace(page, items=[])
            with engine.begin() as conn:
                _apply_page(conn, binding, page, generation, result, whole_series=whole_series)
                if page.last:
                    if generation is not None:
                        _reconcile(conn, binding, generation, result, force, guard, confirmed)
                    assert page.sync_token is not None
                    stats = {k: v for k, v in result.as_dict().items()
                             if isinstance(v, int) and not isinstance(v, bool)}
                    account_store.save_sync_token(conn, binding.id, page.sync_token, full=page.full, stats=stats)
            result.pages += 1
            if after_page:
                after_page(result.pages, result)


def _confirm_removals(engine: Engine, provider: Provider, binding: _Binding, page: ChangePage) -> ChangePage:
    """A windowed listing's removals of events the binding holds, read again by id (batched): a
    404/410 is the deletion's proof; an event still there only left the window, or changed outside
    it (Graph reports both as removals), and goes through the three-way rule as a change."""
    removed = [item.remote_id for item in page.items if isinstance(item, RemoteDeletion)]
    if not removed:
        return page
    with engine.connect() as conn:
        links = link_store.links_by_remote_id(conn, binding.id, removed)
    held = [rid for rid, link in links.items() if not link.remote_deleted]
    if not held:
        return page
    found = provider.fetch_events(binding.remote_calendar_id, held)
    items: list[RemoteChange] = []
    for item in page.items:
        if isinstance(item, RemoteDeletion) and item.remote_id in found:
            fresh = found[item.remote_id]
            items.append(fresh if fresh is not None else RemoteDeletion(
                item.remote_id, proof=f"the change listing reported {item.remote_id} removed and a read by id "
                                      "found it gone (404/410) or cancelled"))
        else:
            items.append(item)
    return replace(page, items=items)


def _confirm_unlisted(
    engine: Engine, provider: Provider, binding: _Binding, generation: int, result: SyncResult,
) -> set[str]:
    """A windowed full listing's unlisted links, read by id in batches: those still there are applied
    (and so seen: changes made outside the window arrive here); the ids that answered 404/410 are
    returned, the only ones the sweep may delete. Memory: one batch plus the confirmed ids."""
    confirmed: set[str] = set()
    after = 0
    while True:
        with engine.connect() as conn:
            batch = link_store.unseen_remote_ids(conn, binding.id, generation, after, CONFIRM_BATCH)
        if not batch:
            return confirmed
        after = batch[-1][0]
        found = provider.fetch_events(binding.remote_calendar_id, [rid for _, rid in batch])
        present: list[RemoteChange] = [event for event in found.values() if event is not None]
        confirmed.update(rid for rid, event in found.items() if event is None)
        if present:
            with engine.begin() as conn:
                _apply_page(conn, binding, ChangePage(items=present, full=True, last=False), generation, result)


CONFIRM_BATCH = 200  # unlisted links read per round (Graph: 10 $batch requests of 20)


def _recheck_series(engine: Engine, provider: Provider, binding: _Binding, result: SyncResult) -> None:
    """Re-read the binding's series masters after deletions of ids it never had.

    A provider that lists a series as its occurrences (Graph's calendarView delta) reports a deleted
    occurrence by that occurrence's own id, which calsync never stores (the master's rule implies
    it): the deletion is only visible as a change of its master (one more EXDATE). Re-reading the
    masters, only when such deletions came, keeps the series right without waiting for a full sync."""
    with engine.begin() as conn:
        remote_ids = link_store.live_series_remote_ids(conn, binding.id)
    changes: list[RemoteChange] = []
    for at in range(0, len(remote_ids), CONFIRM_BATCH):
        found = provider.fetch_events(binding.remote_calendar_id, remote_ids[at:at + CONFIRM_BATCH])
        changes.extend(event if event is not None else RemoteDeletion(
            rid, proof=f"series master {rid} re-read by id: gone (404/410) or cancelled")
            for rid, event in found.items())
    if changes:
        with engine.begin() as conn:
            _apply_page(conn, binding, ChangePage(items=changes, full=False, last=False), None, result)


def _reconcile(
    conn: Connection, binding: _Binding, generation: int, result: SyncResult, force: bool, guard: MassDeleteGuard,
    confirmed: set[str] | None = None,
) -> None:
    """What the binding links to but the full listing no longer had was deleted remotely. For a
    windowed listing (`confirmed` given), only the unlisted ids a read by id proved gone."""
    doomed = link_store.count_unseen_links(conn, binding.id, generation) if confirmed is None else len(confirmed)
    if not doomed:
        return
    live = link_store.count_live_links(conn, binding.id)
    if not force and guard.blocks(doomed, live):
        raise MassDeleteBlocked(doomed, live)
    if confirmed is not None:
        ids = sorted(confirmed)
        for at in range(0, len(ids), 1000):
            items: list[RemoteChange] = [RemoteDeletion(rid, proof=(
                f"full listing #{generation} did not list {rid} and a read by id found it gone (404/410) or cancelled"))
                for rid in ids[at:at + 1000]]
            _apply_page(conn, binding, ChangePage(items=items, full=True, last=False), None, result)
        return
    after = 0
    while batch := link_store.unseen_remote_ids(conn, binding.id, generation, after, 1000):
        after = batch[-1][0]
        items = [RemoteDeletion(rid, proof=f"full listing #{generation} of the whole calendar no longer held {rid}")
                 for _, rid in batch]
        _apply_page(conn, binding, ChangePage(items=items, full=True, last=False), None, result)


@dataclass
class _PageWrites:
    new_events: list[dict[str, Any]] = field(default_factory=list)
    new_links: list[dict[str, Any]] = field(default_factory=list)
    event_updates: list[dict[str, Any]] = field(default_factory=list)
    link_updates: list[dict[str, Any]] = field(default_factory=list)
    tombstones: dict[str, str] = field(default_factory=dict)  # event id -> what proved its deletion
    doomed_copies: list[tuple[str, int]] = field(default_factory=list)  # tombstones adopted: (id, version)
    # new exceptions born deleted over an occurrence deleted elsewhere: the conflict each opens here
    conflicts: list[dict[str, Any]] = field(default_factory=list)


def _apply_page(
    conn: Connection, binding: _Binding, page: ChangePage, generation: int | None, result: SyncResult,
    *, conference_work: bool = True, whole_series: bool = False,
) -> None:
    """Apply one page with a handful of batched statements, whatever its size.

    `whole_series`: the provider lists a series with all its exceptions whenever any part of it
    changed (CalDAV's resources), so an exception of a listed series that the page does not hold
    was removed. A full listing finds such removals by its sweep instead."""
    items = {item.remote_id: item for item in page.items}  # a repeated id within a page: the last one wins
    if whole_series and generation is None:
        listed = {i.series_remote_id or i.remote_id for i in items.values() if isinstance(i, RemoteEvent)}
        for remote_id in link_store.live_series_members(conn, binding.id, listed) - items.keys():
            items[remote_id] = RemoteDeletion(remote_id, proof=(
                f"its series was listed again without exception {remote_id} (a series is listed whole)"))
    series_ids = {i.series_remote_id for i in items.values() if isinstance(i, RemoteEvent) and i.series_remote_id}
    series = link_store.event_ids_for_remote_ids(conn, binding.id, series_ids) if series_ids else {}
    dead: dict[str, tuple[str, str]] = {}  # series deleted here: id -> (who deleted it, the proof)
    if series:  # a cancelled instance of a series we already deleted is just another deletion
        dead = event_store.deletions_of(conn, series.values())
        for rid, item in items.items():
            if (isinstance(item, RemoteEvent) and item.data.status == "cancelled"
                    and series.get(item.series_remote_id or "") in dead):
                items[rid] = RemoteDeletion(rid, proof=f"listed cancelled, and its series {item.series_remote_id} "
                                                       "is deleted")
    links = link_store.links_by_remote_id(conn, binding.id, list(items))
    open_conflicts = conflict_store.open_conflicts_of(conn, binding.id, [link.event_id for link in links.values()])
    # an unknown remote event may be our own create whose answer was lost: it carries our local id
    claims = {rid: item.client_id or rid for rid, item in items.items()
              if rid not in links and isinstance(item, RemoteEvent)}
    adoptable = link_store.unlinked_events_with_ids(
        conn, binding.calendar_id, binding.id, list(claims.values())) if claims else set()
    # an unknown deletion of an id that is a local event's own: the copy our create made there (its
    # answer lost, so no link says so) was deleted there by someone; it is that event's deletion, and
    # the create is not made again
    unknown_gone = [rid for rid, item in items.items() if rid not in links and isinstance(item, RemoteDeletion)]
    lost_creates = link_store.unlinked_events_with_ids(
        conn, binding.calendar_id, binding.id, unknown_gone) if unknown_gone else set()
    # an unknown exception of a series we hold may be our own instance, written over the series'
    # occurrence (Google, Graph: the provider names it): the local exception at that start is it
    at_start = {(series[item.series_remote_id], item.data.original_start): rid for rid, item in items.items()
                if rid in claims and claims[rid] not in adoptable and isinstance(item, RemoteEvent)
                and item.series_remote_id in series and item.data.original_start}
    for key, event_id in (
        link_store.unlinked_exceptions_at(conn, binding.id, list(at_start)) if at_start else {}
    ).items():
        claims[at_start[key]] = event_id
        adoptable.add(event_id)
    # a claimed event whose copy here is gone (its link says so) takes this copy in that link's place,
    # and the three-way rule decides on it against what the two last agreed on
    copies: dict[str, tuple[str, str | None]] = {}
    for rid, claim in claims.items():
        if claim in adoptable and isinstance(claimed := items[rid], RemoteEvent):
            copies[claim] = (rid, claimed.series_remote_id)
    relinked = link_store.relink_gone_copies(conn, binding.id, copies) if copies else []
    if relinked:
        links.update(link_store.links_by_remote_id(conn, binding.id, relinked))
        open_conflicts.update(
            conflict_store.open_conflicts_of(conn, binding.id, [links[rid].event_id for rid in relinked]))
        for rid in relinked:
            del claims[rid]
    now = utcnow()
    writes = _PageWrites()
    for rid, claim in claims.items():  # ids for new events first, so exceptions can find a series made on this page
        if claim not in adoptable:
            series[rid] = new_id()
    deleted_here = _occurrences_deleted_here(conn, items, links, claims, adoptable, series, dead)
    # exceptions of linked series after every other item: a series whose deletion here paused it
    # (a conflict, maybe opened on this very page) keeps its exceptions until the person decides
    held_exceptions = {rid for rid, link in links.items() if link.recurring_event_id is not None}
    stand_ins = link_store.stand_in_starts(conn, binding.id, [
        link.event_id for rid, link in links.items() if link.data.recurrence and not link.data.original_start
        and isinstance(items[rid], RemoteEvent)])
    paused: set[str] | None = None
    for rid, item in [*((r, i) for r, i in items.items() if r not in held_exceptions),
                      *((r, i) for r, i in items.items() if r in held_exceptions)]:
        link = links.get(rid)
        if isinstance(item, RemoteEvent) and link is None:
            if claims[rid] in adoptable:
                _adopt(conn, binding, item, claims[rid], now, writes, result)
            else:
                _create(binding, item, series, now, writes, result, dead, deleted_here.get(rid))
        elif rid in lost_creates:
            writes.tombstones[rid] = (f"{_proof(binding, item)}: the copy calsync's create made there (whose answer "
                                      "was lost) was deleted there")
            result.deleted += 1
        elif link is None:
            result.unchanged += 1  # deletion of something we never had
            result.unknown_deletions += 1
        else:
            if link.recurring_event_id is not None and _gone(item):
                if paused is None:
                    paused = conflict_store.series_paused_by_remote_delete(
                        conn, binding.id, {links[r].recurring_event_id for r in held_exceptions})
                if link.recurring_event_id in paused:  # its copy went with the series; the event waits
                    writes.link_updates.append(_link_keep(link, now, remote_deleted=True))
                    result.unchanged += 1
                    continue
            _three_way(conn, binding, item, link, series, now, writes, result, open_conflicts.get(link.event_id),
                       stand_ins.get(link.event_id), dead)
    if generation is not None:  # a full listing: what it names is seen (new links are born seen)
        for row in writes.new_links:
            row["seen_generation"] = generation
        link_store.mark_seen(conn, binding.id, [rid for rid in items if rid in links], generation)
    # series before their exceptions: a page may list an exception ahead of its master
    event_store.insert_events(conn, sorted(writes.new_events, key=lambda row: row["recurring_event_id"] is not None))
    link_store.insert_links(conn, writes.new_links)
    for conflict in writes.conflicts:
        conflict_store.record_conflict(conn, **conflict)
    if writes.doomed_copies:  # copies of events deleted here: the push deletes them on this side
        outbox_store.enqueue(conn, binding.calendar_id, writes.doomed_copies, bindings_to=[binding.id])
    if writes.new_links:  # exceptions that came before their series (on an earlier page or sync) join it now
        link_store.attach_orphan_exceptions(conn, binding.id, {
            row["remote_id"]: row["event_id"] for row in writes.new_links if row["series_remote_id"] is None})
    event_store.update_events(conn, writes.event_updates)
    link_store.update_links(conn, writes.link_updates)
    _include_restored_occurrences(conn, binding, writes)
    for exception_id, proof in _excluded_exceptions(conn, binding, writes.event_updates).items():
        if exception_id not in writes.tombstones:
            writes.tombstones[exception_id] = proof
            result.deleted += 1
    doomed: list[str] = []
    if writes.tombstones:
        proofs = dict(writes.tombstones)
        for exception_id, series_id in event_store.live_exceptions_of(conn, list(writes.tombstones)).items():
            proofs.setdefault(exception_id, f"its series {series_id} was deleted: {writes.tombstones[series_id]}")
        doomed = list(proofs)
        event_store.tombstone_events(conn, proofs, binding.source)
        link_store.agree_links_with_versions(conn, doomed, binding.id)
    if conference_work:
        conference_store.enqueue_for_changed_events(conn, [
            ChangedEvent(row.get("id") or row["event_id"], row["conference"], row["recurring_event_id"])
            for row in [*writes.new_events, *writes.event_updates]], doomed)
    _mirror(conn, binding, writes, doomed)


def _include_restored_occurrences(conn: Connection, binding: _Binding, writes: _PageWrites) -> None:
    """Occurrences live again on this side (a cancelled instance confirmed again, in Google) whose
    series still excludes them here: engine.series.include_restored. Series taken from this side on
    this page are left as they came (an EXDATE there over a live exception is _excluded_exceptions')."""
    taken = {row["event_id"] for row in writes.event_updates}
    include_restored(conn, binding.calendar_id, [
        (row["recurring_event_id"], row["original_start"]) for row in [*writes.new_events, *writes.event_updates]
        if row["original_start"] and row["recurring_event_id"] and not row["deleted"]
        and row["status"] != "cancelled" and row["recurring_event_id"] not in taken], binding.source)


def _excluded_exceptions(conn: Connection, binding: _Binding, updates: list[dict[str, Any]]) -> dict[str, str]:
    """Live exceptions whose occurrence a series taken from this side now excludes (an EXDATE at their
    original start, where the side dropped the exception with its occurrence): id -> proof. Cancelled
    ones are how Google keeps a deleted occurrence already, and stay as they are."""
    excluded = {row["event_id"]: excluded_starts(row["recurrence"], row["time_zone"]) for row in updates
                if row["recurrence"] and not row["original_start"]}
    excluded = {series_id: starts for series_id, starts in excluded.items() if starts}
    if not excluded:
        return {}
    return {
        exception_id: f"its series {series_id}, as {binding.source} holds it now, excludes {original} (an EXDATE)"
        for exception_id, series_id, original in event_store.live_confirmed_exceptions_of(conn, list(excluded))
        if original in excluded[series_id]
    }


def _mirror(conn: Connection, binding: _Binding, writes: _PageWrites, doomed: list[str]) -> None:
    """Changes that came from this binding go out to the calendar's other push-enabled bindings
    (never back to this one: that is how the hub mirrors without echoing)."""
    if not (writes.new_events or writes.event_updates or doomed):
        return
    others = [b for b in outbox_store.push_bindings(conn, binding.calendar_id) if b != binding.id]
    if others:
        # series before their exceptions (a listing may name an exception first): each exception is
        # written over its series' occurrence there, so the series must be there before it
        rows = [*((r["id"], r) for r in writes.new_events), *((r["event_id"], r) for r in writes.event_updates)]
        rows.sort(key=lambda pair: pair[1]["recurring_event_id"] is not None)
        changed = [(event_id, row["version"]) for event_id, row in rows]
        changed += [(e, 0) for e in doomed]
        outbox_store.enqueue(conn, binding.calendar_id, changed, bindings_to=others)


def _event_row(
    data: EventData, *, version: int, source: str, now: datetime, series_id: str | None, content_hash: str
) -> dict[str, Any]:
    return {
        **event_store.event_columns(data, content_hash), "version": version, "updated_at_source": source,
        "updated_at": now,
        "deleted": False, "deleted_at": None, "deleted_by": None, "deletion_proof": None,
        "recurring_event_id": series_id,
    }


def _link_row(item: RemoteEvent, version: int, now: datetime, *, event_takes_it: bool = False) -> dict[str, Any]:
    """The link agrees with `item` at `version`. `event_takes_it`: the event is written with item's
    content in the same page, so the base is the event's own content (base_snapshot NULL, written
    down by event_store.write_down_bases when the event changes), not a second copy of it in every link."""
    return {
        "etag": item.etag, "base_version": version, "base_hash": item.content_hash,
        "base_snapshot": None if event_takes_it else item.data.snapshot(), "remote_updated": item.updated,
        "remote_deleted": False, "series_remote_id": item.series_remote_id, "updated_at": now,
    }


def _occurrences_deleted_here(
    conn: Connection, items: dict[str, RemoteChange], links: dict[str, link_store.LinkedEvent],
    claims: dict[str, str], adoptable: set[str], series: dict[str, str], dead: dict[str, tuple[str, str]],
) -> dict[str, tuple[str, str]]:
    """New live exceptions (remote id -> (who deleted, proof)) whose occurrence the local series
    excludes: the occurrence was deleted on another side (or here) while this side moved or edited
    it. Not when this side restored the occurrence: it had agreed on the exclusion (its link's base)
    and this page brings its series without it."""
    new: dict[str, tuple[str, str, str]] = {}  # remote id -> (series id, original start, series' remote id)
    for rid, item in items.items():
        if (rid in claims and claims[rid] not in adoptable and isinstance(item, RemoteEvent)
                and item.data.original_start and item.data.status != "cancelled" and item.series_remote_id):
            series_id = series.get(item.series_remote_id)
            if series_id and series_id not in dead:
                new[rid] = (series_id, item.data.original_start, item.series_remote_id)
    if not new:
        return {}
    rows = {row["id"]: row for row in event_store.get_events(conn, list({s for s, _, _ in new.values()}))}
    found: dict[str, tuple[str, str]] = {}
    for rid, (series_id, start, series_remote_id) in new.items():
        row = rows.get(series_id)
        if row is None or row["deleted"] or start not in excluded_starts(row["recurrence"], row["time_zone"]):
            continue
        listed, agreed = items.get(series_remote_id), links.get(series_remote_id)
        if isinstance(listed, RemoteEvent) and agreed is not None \
                and start not in excluded_starts(listed.data.recurrence, listed.data.time_zone) \
                and start in excluded_starts(*_base_rule(agreed)):
            continue
        found[rid] = (str(row["updated_at_source"] or "local"), (
            f"its series {series_id} excludes {start} here (an occurrence deleted there, last written by "
            f"{row['updated_at_source']}), before this exception of it arrived"))
    return found


def _base_rule(link: link_store.LinkedEvent) -> tuple[list[str] | None, str | None]:
    """The series' rules and zone as this side last agreed on them (a NULL base: the event's own)."""
    base = link.base_snapshot
    if base is None:
        return link.data.recurrence, link.data.time_zone
    return base.get("recurrence"), base.get("time_zone")


def _create(
    binding: _Binding, item: RemoteEvent, series: dict[str, str], now: datetime, writes: _PageWrites,
    result: SyncResult, dead: dict[str, tuple[str, str]], deleted_here: tuple[str, str] | None = None,
) -> None:
    """A new event. An exception of a series deleted here is born deleted with it (the same who and
    proof), linked: it is not written anywhere, and comes back if the series' deletion is undone by
    keeping the remote side of its conflict. An exception over an occurrence deleted here
    (`deleted_here`: _occurrences_deleted_here) is born deleted too, with a conflict on this binding:
    one side deleted the occurrence while this one moved or edited it, and a person decides (keep
    remote: it comes back everywhere; keep local: it is deleted here too)."""
    event_id = series[item.remote_id]
    series_id = series.get(item.series_remote_id) if item.series_remote_id else None
    row = {
        "id": event_id, "calendar_id": binding.calendar_id, "source": binding.source, "created_at": now,
        **_event_row(item.data, version=1, source=binding.source, now=now, series_id=series_id,
                     content_hash=item.content_hash),
    }
    if series_id in dead:
        deleted_by, proof = dead[series_id]
        row.update(deleted=True, deleted_at=now, deleted_by=deleted_by,
                   deletion_proof=f"its series {series_id} was deleted: {proof}")
    elif deleted_here is not None:
        row.update(deleted=True, deleted_at=now, deleted_by=deleted_here[0], deletion_proof=deleted_here[1])
        writes.conflicts.append({
            "event_id": event_id, "binding_id": binding.id, "kind": "local-delete", "local": None,
            "remote": item.data.to_json(), "base": None, "remote_etag": item.etag})
        result.conflicts += 1
    writes.new_events.append(row)
    writes.new_links.append({
        "event_id": event_id, "binding_id": binding.id, "remote_id": item.remote_id, "created_at": now,
        # a copy born in conflict agrees with nothing yet: keeping local then deletes it there
        "seen_generation": 0, **_link_row(item, 0 if deleted_here and series_id not in dead else 1, now,
                                          event_takes_it=deleted_here is None or series_id in dead),
    })
    result.created += 1


def _adopt(
    conn: Connection, binding: _Binding, item: RemoteEvent, event_id: str, now: datetime, writes: _PageWrites,
    result: SyncResult,
) -> None:
    """The remote copy of a local event that our outbox created: link it, don't import it twice.
    A copy of an event deleted here since (the create's checkpoint was lost, then the event deleted)
    is linked as not agreed and queued, so the push deletes it there too."""
    local_version, local_hash, deleted = event_store.event_version_and_hash(conn, event_id)
    version = local_version if local_hash == item.content_hash and not deleted else 0
    if deleted:
        writes.doomed_copies.append((event_id, local_version))
    writes.new_links.append({
        "event_id": event_id, "binding_id": binding.id, "remote_id": item.remote_id, "created_at": now,
        "seen_generation": 0, **_link_row(item, version, now),
    })
    result.unchanged += 1


def _three_way(
    conn: Connection, binding: _Binding, item: RemoteEvent | RemoteDeletion, link: link_store.LinkedEvent,
    series: dict[str, str], now: datetime, writes: _PageWrites, result: SyncResult,
    open_conflict: str | None = None, stood_in: set[str] | None = None,
    dead: dict[str, tuple[str, str]] | None = None,
) -> None:
    """The three-way rule for one linked event. `stood_in`: for a series, the original starts of its
    live occurrences this side holds as stand-in single events (link_store.stand_in_starts). `dead`:
    series deleted here (id -> who, proof), whose exceptions stay deleted whatever this side does."""
    if isinstance(item, RemoteEvent) and item.exdates_known is not None:  # a series seen through a window
        item = completed_outside_window(item, link.base_snapshot)
    if isinstance(item, RemoteEvent) and link.data.original_start and not item.data.original_start \
            and not item.series_remote_id:  # a single event standing in for the occurrence (Outlook)
        item = as_occurrence(item, link.data)
    if isinstance(item, RemoteEvent) and stood_in and item.data.recurrence and not item.data.original_start:
        # the side holds these occurrences as stand-ins, and its series excludes them: not a deletion
        item = replace(item, data=replace(item.data, recurrence=without_starts(
            item.data.recurrence, item.data.time_zone, stood_in)))
    remote = item if isinstance(item, RemoteEvent) else None
    sides = Sides(
        link_etag=link.etag, remote_etag=remote.etag if remote else None, base_version=link.base_version,
        local_version=link.version, local_hash=link.content_hash,
        remote_hash=remote.content_hash if remote else None, local_deleted=link.deleted,
        remote_deleted=remote is None, link_remote_deleted=link.remote_deleted,
        local_updated=link.updated_at, remote_updated=_parse_updated(remote.updated if remote else None),
        base_hash=link.base_hash,
    )
    decision = decide(sides, binding.policy)
    if open_conflict is not None and decision is not Decision.NOTHING and decision is not Decision.CONFLICT:
        # the event is paused, and the remote moved on to something that settles it (both deleted, the
        # same content on both sides, the remote back at the base): the conflict closes by itself and
        # the decision applies as it would have without it
        conflict_store.close_conflict(conn, open_conflict, f"auto:{decision.value}")
        outbox_store.release(conn, binding.id, link.event_id, drop=decision is Decision.TAKE_REMOTE or (
            decision is Decision.FAST_FORWARD and remote is None))
    if decision is Decision.NOTHING:
        result.unchanged += 1
    elif decision is Decision.TAKE_REMOTE:
        _take_remote(binding, item, link, series, now, writes, result, dead or {})
    elif decision is Decision.FAST_FORWARD:
        if remote:
            writes.link_updates.append({"link_id": link.link_id, **_link_row(remote, link.version, now)})
        else:
            writes.link_updates.append(_link_keep(link, now, base_version=link.version, remote_deleted=True))
        result.unchanged += 1
    elif decision is Decision.LOCAL_WINS:
        if remote:  # adopt the remote ETag so the queued local write applies over it
            writes.link_updates.append(_link_keep(link, now, etag=remote.etag))
        else:  # gone remotely: the push will have to create it again
            writes.link_updates.append(_link_keep(link, now, remote_deleted=True))
        result.unchanged += 1
    else:  # a new conflict, or a later remote change to an open one: its remote side is the newest
        conflict_store.record_conflict(
            conn, event_id=link.event_id, binding_id=binding.id, kind=conflict_kind(sides),
            local=None if link.deleted else link.data.to_json(), remote=remote.data.to_json() if remote else None,
            base=link.base_snapshot, remote_etag=remote.etag if remote else None,
            remote_deletion_proof=None if remote else _proof(binding, item),
        )
        outbox_store.hold(conn, binding.id, link.event_id)  # the event waits; everything else syncs on
        if open_conflict is None:
            result.conflicts += 1


def _gone(item: RemoteEvent | RemoteDeletion) -> bool:
    """A deletion, or an instance listed cancelled (how Google keeps a deleted occurrence)."""
    return isinstance(item, RemoteDeletion) or item.data.status == "cancelled"


def _proof(binding: _Binding, item: RemoteEvent | RemoteDeletion) -> str:
    """What proved a remote deletion: the provider's or the engine's own words, or the listing that said so."""
    if isinstance(item, RemoteDeletion) and item.proof:
        return item.proof
    return f"the change listing of {binding.source} reported {item.remote_id} deleted"


def _take_remote(
    binding: _Binding, item: RemoteEvent | RemoteDeletion, link: link_store.LinkedEvent, series: dict[str, str],
    now: datetime, writes: _PageWrites, result: SyncResult, dead: dict[str, tuple[str, str]],
) -> None:
    """The remote side's change becomes the event's. An exception deleted here with its series takes
    the content but stays deleted while the series is (its series' conflict may still bring both
    back: then with this newest content)."""
    if not isinstance(item, RemoteEvent):
        if not link.deleted:
            writes.tombstones[link.event_id] = _proof(binding, item)
            result.deleted += 1
        else:
            writes.link_updates.append(_link_keep(link, now, remote_deleted=True))
        return
    remote = item
    version = link.version + 1
    series_id = series.get(remote.series_remote_id) if remote.series_remote_id else link.recurring_event_id
    # `extra` holds each provider's unmodelled fields under its own key: a mirrored event keeps the others'
    data = replace(remote.data, extra={**(link.data.extra or {}), **(remote.data.extra or {})})
    row = {"event_id": link.event_id, **_event_row(data, version=version, source=binding.source, now=now,
                                                   series_id=series_id, content_hash=remote.content_hash)}
    if link.deleted and series_id in dead:
        deleted_by, proof = dead[series_id]
        row.update(deleted=True, deleted_at=now, deleted_by=deleted_by,
                   deletion_proof=f"its series {series_id} was deleted: {proof}")
    writes.event_updates.append(row)
    writes.link_updates.append({"link_id": link.link_id, **_link_row(remote, version, now, event_takes_it=True)})
    result.updated += 1


def _link_keep(link: link_store.LinkedEvent, now: datetime, **changes: Any) -> dict[str, Any]:
    """A link update that keeps everything but `changes`."""
    row = {
        "link_id": link.link_id, "etag": link.etag, "base_version": link.base_version, "base_hash": link.base_hash,
        "base_snapshot": link.base_snapshot, "remote_updated": link.remote_updated,
        "remote_deleted": link.remote_deleted, "series_remote_id": link.series_remote_id, "updated_at": now,
    }
    row.update(changes)
    return row


def _parse_updated(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)  # (Python 3.11 reads a trailing Z)
    except ValueError:
        return None

