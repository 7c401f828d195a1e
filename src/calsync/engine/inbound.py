"""Pull remote changes into the store, one binding at a time.

Incremental with the binding's own token; full (with reconciliation of remote deletions) when
there is none or the provider rejects it. Each page is applied in one transaction; the new token is
written only in the transaction of the last page, so a crash anywhere re-applies pages harmlessly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine

from calsync.engine.collector import fewer_collections
from calsync.engine.page_plan import BindingRef, plan_page
from calsync.engine.page_store import load_page_state, write_page
from calsync.engine.prefetch import prefetched
from calsync.model import (
    ChangePage,
    RemoteChange,
    RemoteDeletion,
    utcnow,
)
from calsync.providers.base import AuthError, Provider, ProviderError, SyncTokenInvalid
from calsync.statuses import ConflictPolicy, SyncFailure, SyncStatus
from calsync.store import accounts as account_store
from calsync.store import links as link_store
from calsync.store.common import new_id
from calsync.store.rows import BindingRow
from calsync.store.statistics import GrowthWatch


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
FinishHook = Callable[[Connection, SyncResult], None]
# a quiet poll's listing (one page, empty, incremental): (its new token, the stats to save, the result)
QuietHook = Callable[[str, dict[str, int], SyncResult], None]


@dataclass
class _Binding:
    id: str
    calendar_id: str
    remote_calendar_id: str
    policy: ConflictPolicy
    source: str
    sync_token: str | None


def sync_binding(
    engine: Engine,
    provider: Provider,
    binding_id: str,
    *,
    full: bool = False,
    force: bool = False,
    guard: MassDeleteGuard | None = None,
    after_page: PageHook | None = None,
    claimed: tuple[BindingRow, str] | None = None,
    finish: FinishHook | None = None,
    quiet: QuietHook | None = None,
) -> SyncResult:
    """One inbound pass for one binding. Provider errors are recorded on the binding and in the result.

    `claimed`: the binding's row and its account's provider kind as the claim that leased it read
    them (scheduling.Claimed), so the sync need not read them again; None: read here. `finish`: called
    in the last page's transaction, after the token, when nothing is left for the sync to do after
    it (a worker gives the binding back there: one transaction fewer); not called otherwise.
    `quiet`: given with `finish`, a listing of one empty incremental page writes nothing: the hook
    gets its token and stats, to save them with the binding's release (a worker batches those of many
    quiet polls in one statement: scheduler.QuietReleases); `finish` is not called then."""
    if claimed is None:
        with engine.begin() as conn:
            claimed = account_store.binding_and_provider(conn, binding_id)
    row, provider_kind = claimed
    result = SyncResult(binding_id=binding_id)
    if row["direction"] == "push":
        result.status = "skipped"
        result.message = "push-only binding"
        return result
    binding = _binding(row, provider_kind)
    if full:
        binding.sync_token = None
    start_requests = provider.request_count
    saved: dict[str, int] = {}  # the stats the last page's transaction saved with the token
    deletions = guard or MassDeleteGuard()

    def walk() -> dict[str, int]:
        return _walk(engine, provider, binding, result, force, deletions, after_page, start_requests, finish, quiet)

    try:
        with fewer_collections():  # the collector walks what the sync makes, not the whole heap (engine/collector.py)
            try:
                saved = walk()
            except SyncTokenInvalid:
                with engine.begin() as conn:
                    account_store.forget_sync_token(conn, binding_id)
                result.token_reset = True
                binding.sync_token = None
                saved = walk()
            if result.unknown_deletions and not result.full and provider.capabilities.names_occurrences_only:
                _recheck_series(engine, provider, binding, result)
    except MassDeleteBlocked as exc:
        result.status, result.message = "blocked", str(exc)
        _record_failure(engine, binding_id, "blocked", str(exc))
    except AuthError as exc:
        result.status, result.message = "auth-failed", str(exc)
        _record_failure(engine, binding_id, "auth-failed", str(exc))
        with engine.begin() as conn:
            account_store.set_account_state(conn, row["account_id"], exc.account_state, str(exc))
    except ProviderError as exc:
        result.status, result.message = "error", f"{type(exc).__name__}: {exc}"
        result.retry_after = getattr(exc, "retry_after", None)
        _record_failure(engine, binding_id, "error", result.message)
    finally:
        result.requests = provider.request_count - start_requests
    if result.status == "ok" and result.pages and sync_stats(result) != saved:
        # the stats the last page's transaction saved are the sync's own unless more came after it
        # (a re-read of series): then the sync's numbers replace them, so `status` shows what the sync
        # reported. A quiet poll's one page saved them already (one transaction fewer).
        with engine.begin() as conn:
            account_store.save_sync_stats(conn, binding_id, sync_stats(result))
    return result


def sync_stats(result: SyncResult) -> dict[str, int]:
    """What a binding keeps of its last listing (bindings.last_sync_stats): the result's counts."""
    return {k: v for k, v in result.as_dict().items() if isinstance(v, int) and not isinstance(v, bool)}


def _binding(row: BindingRow, provider_name: str) -> _Binding:
    return _Binding(
        id=row["id"],
        calendar_id=row["calendar_id"],
        remote_calendar_id=row["remote_calendar_id"],
        policy=row["conflict_policy"],
        source=f"{provider_name}:{row['id']}",
        sync_token=row["sync_token"],
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
    engine: Engine,
    provider: Provider,
    binding: _Binding,
    result: SyncResult,
    force: bool,
    guard: MassDeleteGuard,
    after_page: PageHook | None,
    requests_from: int,
    finish: FinishHook | None = None,
    quiet: QuietHook | None = None,
) -> dict[str, int]:
    """Walk the listing page by page; the stats saved with the token (in the last page's transaction)."""
    generation: int | None = None
    saved: dict[str, int] = {}
    if binding.sync_token is None:
        result.full = True
        with engine.begin() as conn:
            generation = account_store.start_full_sync(conn, binding.id)
    whole_series = provider.capabilities.lists_whole_series
    # a listing limited to a time window (Graph's calendarView) does not show what lies outside it:
    # what it reports removed, or does not list, is deleted only once a read by id says so
    windowed = provider.listing_window() is not None
    listing = provider.list_changes(binding.remote_calendar_id, binding.sync_token)
    growth = GrowthWatch(engine)  # a big listing keeps PostgreSQL's plans of its tables right
    # the next page comes while this one is stored (a last first page, a quiet poll's, starts no helper)
    with prefetched(listing, name=f"listing-{binding.id[:8]}", more=lambda page: not page.last) as pages:
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
            if quiet is not None and finish is not None and _is_quiet(page, generation, result):
                result.requests = provider.request_count - requests_from
                saved = sync_stats(result) | {"pages": 1}
                quiet(str(page.sync_token), saved, replace(result, pages=1))  # nothing to store: the worker saves it
                result.pages = 1
                if after_page:
                    after_page(result.pages, result)
                continue  # (the last page: the listing ends)
            with engine.begin() as conn:
                _apply_page(conn, binding, page, generation, result, whole_series=whole_series)
                if page.last:
                    if generation is not None:
                        _reconcile(conn, binding, generation, result, force, guard, confirmed)
                    assert page.sync_token is not None
                    # this page included, and every request so far (the listing has ended)
                    result.requests = provider.request_count - requests_from
                    saved = sync_stats(result) | {"pages": result.pages + 1}
                    account_store.save_sync_token(conn, binding.id, page.sync_token, full=page.full, stats=saved)
                    rereads = (
                        result.unknown_deletions and not result.full and provider.capabilities.names_occurrences_only
                    )
                    if finish is not None and not rereads:  # nothing follows (sync_binding's _recheck_series)
                        finish(conn, replace(result, pages=result.pages + 1))
            growth.wrote(len(listed.items))
            result.pages += 1
            if after_page:
                after_page(result.pages, result)
    return saved


def _is_quiet(page: ChangePage, generation: int | None, result: SyncResult) -> bool:
    """The listing's one page, incremental, with nothing in it: a quiet poll."""
    return page.last and not page.items and generation is None and result.pages == 0 and page.sync_token is not None


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
            items.append(
                fresh
                if fresh is not None
                else RemoteDeletion(
                    item.remote_id,
                    proof=f"the change listing reported {item.remote_id} removed and a read by id "
                    "found it gone (404/410) or cancelled",
                )
            )
        else:
            items.append(item)
    return replace(page, items=items)


def _confirm_unlisted(
    engine: Engine,
    provider: Provider,
    binding: _Binding,
    generation: int,
    result: SyncResult,
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
        found = provider.fetch_events(binding.remote_calendar_id, remote_ids[at : at + CONFIRM_BATCH])
        changes.extend(
            event
            if event is not None
            else RemoteDeletion(rid, proof=f"series master {rid} re-read by id: gone (404/410) or cancelled")
            for rid, event in found.items()
        )
    if changes:
        with engine.begin() as conn:
            _apply_page(conn, binding, ChangePage(items=changes, full=False, last=False), None, result)


def _reconcile(
    conn: Connection,
    binding: _Binding,
    generation: int,
    result: SyncResult,
    force: bool,
    guard: MassDeleteGuard,
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
            items: list[RemoteChange] = [
                RemoteDeletion(
                    rid,
                    proof=(
                        f"full listing #{generation} did not list {rid} and a read by id found it gone "
                        "(404/410) or cancelled"
                    ),
                )
                for rid in ids[at : at + 1000]
            ]
            _apply_page(conn, binding, ChangePage(items=items, full=True, last=False), None, result)
        return
    after = 0
    while batch := link_store.unseen_remote_ids(conn, binding.id, generation, after, 1000):
        after = batch[-1][0]
        items = [
            RemoteDeletion(rid, proof=f"full listing #{generation} of the whole calendar no longer held {rid}")
            for _, rid in batch
        ]
        _apply_page(conn, binding, ChangePage(items=items, full=True, last=False), None, result)


def _apply_page(
    conn: Connection,
    binding: _Binding,
    page: ChangePage,
    generation: int | None,
    result: SyncResult,
    *,
    conference_work: bool = True,
    whole_series: bool = False,
) -> None:
    """Apply one page in its transaction: read what the rules need (page_store.load_page_state),
    decide (page_plan.plan_page, pure), carry it out (page_store.write_page).

    `whole_series`: the provider lists a series with all its exceptions whenever any part of it
    changed (CalDAV's resources), so an exception of a listed series that the page does not hold
    was removed. A full listing finds such removals by its sweep instead."""
    ref = BindingRef(binding.id, binding.calendar_id, binding.policy, binding.source)
    state = load_page_state(conn, ref, page.items, whole_series=whole_series and generation is None)
    plan = plan_page(ref, state, utcnow(), new_id)
    added = write_page(conn, ref, plan, generation, conference_work=conference_work)
    counts = plan.counts
    result.created += counts.created
    result.updated += counts.updated
    result.deleted += counts.deleted + added
    result.unchanged += counts.unchanged
    result.conflicts += counts.conflicts
    result.unknown_deletions += counts.unknown_deletions
