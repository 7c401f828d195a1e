"""What one page of remote changes does to the store, decided without the store: a pure planner.

Why: the rules of inbound sync (adoption, the three-way rule, series and their exceptions, conflicts)
are the heart of calsync and the place its worst bugs lived. Here they are a function of a frozen
value: the page, the binding, and what the store held for it (`PageState`, read by
engine/page_store.load_page_state). The answer is a `PagePlan`: small action objects that
engine/page_store.write_page carries out in one transaction. Tests build a PageState by hand and
look at the plan, with no database and no HTTP (tests/test_page_plan.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from calsync.engine.field_merge import merge
from calsync.engine.threeway import Decision, Sides, conflict_kind, decide
from calsync.model import EventData, RemoteChange, RemoteDeletion, RemoteEvent
from calsync.series_exdates import as_occurrence, completed_outside_window, excluded_starts, without_starts
from calsync.statuses import ConflictPolicy
from calsync.store.events import event_columns
from calsync.store.links import LinkedEvent


@dataclass(frozen=True)
class BindingRef:
    """The binding a page comes from, as the rules need it."""

    id: str
    calendar_id: str
    policy: ConflictPolicy  # the binding's conflict policy (threeway.decide)
    source: str  # "<provider>:<binding id>": who a change or a deletion came from


@dataclass(frozen=True)
class SeriesRule:
    """A local series as the deleted-occurrence rule needs it."""

    recurrence: list[str] | None
    time_zone: str | None
    deleted: bool
    updated_at_source: str | None


@dataclass(frozen=True)
class PageState:
    """What the store holds for one page (engine/page_store.load_page_state reads it)."""

    items: Mapping[str, RemoteChange]  # remote id -> change (a repeated id: the last), unlisted members added
    links: Mapping[str, LinkedEvent]  # remote id -> the binding's link for it, with its event
    series: Mapping[str, str]  # remote id of a series named by the page's exceptions -> local series id
    dead: Mapping[str, tuple[str, str]]  # of those series, the ones deleted here -> (who, proof)
    open_conflicts: Mapping[str, str]  # event id -> its open conflict on this binding
    claims: Mapping[str, str]  # unknown remote event id -> the local id it may be (ours, or at its start)
    adoptable: frozenset[str]  # claimed local ids with no live copy here: the copy met is theirs
    gone_links: Mapping[str, LinkedEvent]  # adoptable event id -> its link that says its copy here is gone
    adopted: Mapping[str, tuple[int, str, bool]]  # adoptable event id -> (version, content hash, deleted)
    lost_creates: frozenset[str]  # unknown deleted ids that are local events' own (a lost create's copy)
    stand_ins: Mapping[str, set[str]]  # series id -> starts this side holds as stand-in single events
    paused_series: frozenset[str]  # series whose deletion on this binding waits in a conflict
    series_rules: Mapping[str, SeriesRule]  # local series of the page's new exceptions


# --- actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Create:
    """A new local event and its link (born deleted: an exception of a series deleted here, or over an
    occurrence deleted here, which then also opens a conflict: `conflict`)."""

    event: dict[str, Any]
    link: dict[str, Any]
    conflict: dict[str, Any] | None = None


@dataclass(frozen=True)
class Adopt:
    """The remote copy of a local event our outbox made (its answer lost): linked, not imported.
    `doomed`: the event was deleted here since, so the push deletes that copy (event id, version)."""

    link: dict[str, Any]
    doomed: tuple[str, int] | None = None


@dataclass(frozen=True)
class Relink:
    """An event whose copy here was gone takes the copy met now, in its old link's place."""

    event_id: str
    remote_id: str
    series_remote_id: str | None


@dataclass(frozen=True)
class TakeRemote:
    """The remote change becomes the event's (its next version) and the link agrees with it."""

    event: dict[str, Any]
    link: dict[str, Any]


@dataclass(frozen=True)
class Merge:
    """Both sides edited, merged field by field without a clash (policy "merge"): the merged content is
    the event's next version, pushed to every pushing binding, this one too (its link adopts the
    remote ETag, as local-wins does, so the write applies over the copy just read)."""

    event: dict[str, Any]
    link: dict[str, Any]
    from_local: tuple[str, ...]
    from_remote: tuple[str, ...]


@dataclass(frozen=True)
class UpdateLink:
    """The link alone changes: fast-forward, local wins (adopt the ETag), copy gone, paused."""

    link: dict[str, Any]


@dataclass(frozen=True)
class Delete:
    """The event is deleted here (a tombstone), with what proved it."""

    event_id: str
    proof: str


@dataclass(frozen=True)
class OpenConflict:
    """A conflict opened, or an open one refreshed with the newest remote side; the event's pushes to
    this binding are held."""

    fields: dict[str, Any]  # conflict_store.record_conflict's keyword arguments
    new: bool


@dataclass(frozen=True)
class CloseConflict:
    """An open conflict the remote settled by itself (both deleted, the same content, back at the
    base): closed, and the held pushes released (`drop`: the remote side was taken)."""

    conflict_id: str
    event_id: str
    resolution: str
    drop: bool


Action = Create | Adopt | Relink | TakeRemote | Merge | UpdateLink | Delete | OpenConflict | CloseConflict


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    conflicts: int = 0
    unknown_deletions: int = 0


@dataclass
class PagePlan:
    actions: list[Action] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)  # remote ids the binding links (a full listing: seen)
    counts: Counts = field(default_factory=Counts)

    def of(self, kind: type[Any]) -> list[Any]:
        return [action for action in self.actions if isinstance(action, kind)]

    def grouped(self) -> dict[type[Action], list[Any]]:
        """Every action by its kind, in plan order, in one pass (write_page asks for nine kinds of a
        page of thousands; the action classes have no subclasses, so a kind is a type)."""
        groups: dict[type[Action], list[Any]] = {}
        for action in self.actions:
            groups.setdefault(type(action), []).append(action)
        return groups


# --- the planner ----------------------------------------------------------------------------


def unknown_claims(items: Mapping[str, RemoteChange], links: Mapping[str, LinkedEvent]) -> dict[str, str]:
    """Unknown remote events -> the local id each may be: the id our create chose (Google, CalDAV) or
    the one it carries (Graph's transactionId, RemoteEvent.client_id). A create whose answer was lost
    comes back this way."""
    return {
        rid: item.client_id or rid for rid, item in items.items() if rid not in links and isinstance(item, RemoteEvent)
    }


def starts_to_claim(
    items: Mapping[str, RemoteChange],
    claims: Mapping[str, str],
    adoptable: frozenset[str] | set[str],
    series: Mapping[str, str],
) -> dict[tuple[str, str], str]:
    """(local series id, original start) -> remote id, for unknown exceptions of series the binding
    holds that no id claims: our own instance written over the series' occurrence (Google and Graph
    name it themselves) is the local exception at that start."""
    found: dict[tuple[str, str], str] = {}
    for rid, item in items.items():
        if (
            rid in claims
            and claims[rid] not in adoptable
            and isinstance(item, RemoteEvent)
            and item.series_remote_id in series
            and item.data.original_start
        ):
            found[(series[str(item.series_remote_id)], item.data.original_start)] = rid
    return found


def cancelled_of_dead_series(
    items: Mapping[str, RemoteChange], series: Mapping[str, str], dead: Mapping[str, tuple[str, str]]
) -> dict[str, RemoteChange]:
    """The page with each cancelled instance of a series deleted here read as a plain deletion."""
    out = dict(items)
    for rid, item in items.items():
        if (
            isinstance(item, RemoteEvent)
            and item.data.status == "cancelled"
            and series.get(item.series_remote_id or "") in dead
        ):
            out[rid] = RemoteDeletion(rid, proof=f"listed cancelled, and its series {item.series_remote_id} is deleted")
    return out


def plan_page(binding: BindingRef, state: PageState, now: datetime, new_id: Callable[[], str]) -> PagePlan:
    """Decide what the page does. `new_id` names new local events (ids are the only thing drawn)."""
    plan = PagePlan()
    series = dict(state.series)
    items = cancelled_of_dead_series(state.items, series, state.dead)
    links = dict(state.links)
    claims = {rid: claim for rid, claim in state.claims.items() if isinstance(items[rid], RemoteEvent)}
    relinked: set[str] = set()
    for rid, claim in list(claims.items()):  # a claimed event whose copy here is gone: this copy, in its place
        gone = state.gone_links.get(claim)
        if (
            claim in state.adoptable
            and gone is not None
            and claim not in relinked
            and isinstance(claimed := items[rid], RemoteEvent)
        ):
            plan.actions.append(Relink(claim, rid, claimed.series_remote_id))
            links[rid] = replace(gone, remote_id=rid, series_remote_id=claimed.series_remote_id)
            relinked.add(claim)
            del claims[rid]
    for rid, claim in claims.items():  # ids for new events first, so exceptions can find a series made on this page
        if claim not in state.adoptable:
            series[rid] = new_id()
    deleted_here = _occurrences_deleted_here(state, items, links, claims, series)
    # exceptions of linked series after every other item: a series whose deletion here paused it
    # (a conflict, maybe opened on this very page) keeps its exceptions until the person decides
    held_exceptions = {rid for rid, link in links.items() if link.recurring_event_id is not None}
    ordered = [
        *((r, i) for r, i in items.items() if r not in held_exceptions),
        *((r, i) for r, i in items.items() if r in held_exceptions),
    ]
    paused: set[str] | None = None  # read once, when the first exception is met: after every series
    for rid, item in ordered:
        link = links.get(rid)
        if isinstance(item, RemoteEvent) and link is None:
            if claims[rid] in state.adoptable:
                _adopt(binding, item, claims[rid], state.adopted[claims[rid]], now, plan)
            else:
                _create(binding, item, series, now, plan, state.dead, deleted_here.get(rid))
        elif rid in state.lost_creates:
            plan.actions.append(
                Delete(
                    rid,
                    f"{_proof(binding, item)}: the copy calsync's create made there (whose "
                    "answer was lost) was deleted there",
                )
            )
            plan.counts.deleted += 1
        elif link is None:
            plan.counts.unchanged += 1  # deletion of something we never had
            plan.counts.unknown_deletions += 1
        elif (
            link.recurring_event_id is not None
            and _gone(item)
            and link.recurring_event_id in (paused := paused if paused is not None else _paused(state, plan))
        ):
            plan.actions.append(UpdateLink(_link_keep(link, now, remote_deleted=True)))  # went with its series
            plan.counts.unchanged += 1  # there; the event waits for the series' decision
        else:
            _three_way(
                binding,
                item,
                link,
                series,
                now,
                plan,
                state.open_conflicts.get(link.event_id),
                state.stand_ins.get(link.event_id),
                state.dead,
            )
    plan.seen = [rid for rid in items if rid in links]
    return plan


def _paused(state: PageState, plan: PagePlan) -> set[str]:
    """Series whose deletion on this binding waits in a conflict: as the store held them, with the
    conflicts this page opened (a deletion) or closed (exceptions are planned after every series)."""
    paused = set(state.paused_series)
    for action in plan.actions:
        if isinstance(action, OpenConflict) and action.fields["remote"] is None:
            paused.add(action.fields["event_id"])
        elif isinstance(action, CloseConflict):
            paused.discard(action.event_id)
    return paused


def _occurrences_deleted_here(
    state: PageState,
    items: Mapping[str, RemoteChange],
    links: Mapping[str, LinkedEvent],
    claims: Mapping[str, str],
    series: Mapping[str, str],
) -> dict[str, tuple[str, str]]:
    """New live exceptions (remote id -> (who deleted, proof)) whose occurrence the local series
    excludes: the occurrence was deleted on another side (or here) while this side moved or edited
    it. Not when this side restored the occurrence: it had agreed on the exclusion (its link's base)
    and this page brings its series without it."""
    found: dict[str, tuple[str, str]] = {}
    for rid, item in items.items():
        if not (
            rid in claims
            and claims[rid] not in state.adoptable
            and isinstance(item, RemoteEvent)
            and item.data.original_start
            and item.data.status != "cancelled"
            and item.series_remote_id
        ):
            continue
        series_id = series.get(item.series_remote_id)
        rule = state.series_rules.get(series_id or "")
        start = item.data.original_start
        if (
            series_id is None
            or series_id in state.dead
            or rule is None
            or rule.deleted
            or start not in excluded_starts(rule.recurrence, rule.time_zone)
        ):
            continue
        listed, agreed = items.get(item.series_remote_id), links.get(item.series_remote_id)
        if (
            isinstance(listed, RemoteEvent)
            and agreed is not None
            and start not in excluded_starts(listed.data.recurrence, listed.data.time_zone)
            and start in excluded_starts(*_base_rule(agreed))
        ):
            continue
        found[rid] = (
            rule.updated_at_source or "local",
            (
                f"its series {series_id} excludes {start} here (an occurrence deleted there, last written by "
                f"{rule.updated_at_source}), before this exception of it arrived"
            ),
        )
    return found


def _base_rule(link: LinkedEvent) -> tuple[list[str] | None, str | None]:
    """The series' rules and zone as this side last agreed on them."""
    base = link.base_snapshot
    return base.get("recurrence"), base.get("time_zone")


def _create(
    binding: BindingRef,
    item: RemoteEvent,
    series: Mapping[str, str],
    now: datetime,
    plan: PagePlan,
    dead: Mapping[str, tuple[str, str]],
    deleted_here: tuple[str, str] | None = None,
) -> None:
    """A new event. An exception of a series deleted here is born deleted with it (the same who and
    proof), linked: it is not written anywhere, and comes back if the series' deletion is undone by
    keeping the remote side of its conflict. An exception over an occurrence deleted here
    (`deleted_here`) is born deleted too, with a conflict on this binding: one side deleted the
    occurrence while this one moved or edited it, and a person decides (keep remote: it comes back
    everywhere; keep local: it is deleted here too)."""
    event_id = series[item.remote_id]
    series_id = series.get(item.series_remote_id) if item.series_remote_id else None
    row = event_row(
        item.data, version=1, source=binding.source, now=now, series_id=series_id, content_hash=item.content_hash
    )
    row["id"] = event_id  # (keys set one by one: a page builds thousands of these rows)
    row["calendar_id"] = binding.calendar_id
    row["source"] = binding.source
    row["created_at"] = now
    conflict: dict[str, Any] | None = None
    dead_series = dead.get(series_id) if series_id else None
    in_conflict = deleted_here is not None and dead_series is None
    if series_id and dead_series:
        deleted_by, proof = dead_series
        row.update(
            deleted=True,
            deleted_at=now,
            deleted_by=deleted_by,
            deletion_proof=f"its series {series_id} was deleted: {proof}",
        )
    elif deleted_here is not None:
        row.update(deleted=True, deleted_at=now, deleted_by=deleted_here[0], deletion_proof=deleted_here[1])
        conflict = {
            "event_id": event_id,
            "binding_id": binding.id,
            "kind": "local-delete",
            "local": None,
            "remote": item.data.to_json(),
            "base": None,
            "remote_etag": item.etag,
        }
        plan.counts.conflicts += 1
    # a copy born in conflict agrees with nothing yet: keeping local then deletes it there
    link = link_row(item, 0 if in_conflict else 1, now, event_takes_it=not in_conflict)
    link["event_id"] = event_id
    link["binding_id"] = binding.id
    link["remote_id"] = item.remote_id
    link["created_at"] = now
    link["seen_generation"] = 0
    plan.actions.append(Create(row, link, conflict))
    plan.counts.created += 1


def _adopt(
    binding: BindingRef, item: RemoteEvent, event_id: str, local: tuple[int, str, bool], now: datetime, plan: PagePlan
) -> None:
    """The remote copy of a local event that our outbox created: link it, don't import it twice.
    A copy of an event deleted here since (the create's checkpoint was lost, then the event deleted)
    is linked as not agreed and queued, so the push deletes it there too."""
    local_version, local_hash, deleted = local
    version = local_version if local_hash == item.content_hash and not deleted else 0
    link = {
        "event_id": event_id,
        "binding_id": binding.id,
        "remote_id": item.remote_id,
        "created_at": now,
        "seen_generation": 0,
        **link_row(item, version, now),
    }
    plan.actions.append(Adopt(link, (event_id, local_version) if deleted else None))
    plan.counts.unchanged += 1


def _three_way(
    binding: BindingRef,
    item: RemoteEvent | RemoteDeletion,
    link: LinkedEvent,
    series: Mapping[str, str],
    now: datetime,
    plan: PagePlan,
    open_conflict: str | None,
    stood_in: set[str] | None,
    dead: Mapping[str, tuple[str, str]],
) -> None:
    """The three-way rule for one linked event. `stood_in`: for a series, the original starts of its
    live occurrences this side holds as stand-in single events. `dead`: series deleted here, whose
    exceptions stay deleted whatever this side does."""
    if isinstance(item, RemoteEvent) and item.exdates_known is not None:  # a series seen through a window
        item = completed_outside_window(item, link.base_snapshot)
    if (
        isinstance(item, RemoteEvent)
        and link.data.original_start
        and not item.data.original_start
        and not item.series_remote_id
    ):  # a single event standing in for the occurrence (Outlook)
        item = as_occurrence(item, link.data)
    if isinstance(item, RemoteEvent) and stood_in and item.data.recurrence and not item.data.original_start:
        # the side holds these occurrences as stand-ins, and its series excludes them: not a deletion
        item = replace(
            item,
            data=replace(item.data, recurrence=without_starts(item.data.recurrence, item.data.time_zone, stood_in)),
        )
    remote = item if isinstance(item, RemoteEvent) else None
    sides = Sides(
        link_etag=link.etag,
        remote_etag=remote.etag if remote else None,
        base_version=link.base_version,
        local_version=link.version,
        local_hash=link.content_hash,
        remote_hash=remote.content_hash if remote else None,
        local_deleted=link.deleted,
        remote_deleted=remote is None,
        link_remote_deleted=link.remote_deleted,
        local_updated=link.updated_at,
        remote_updated=_parse_updated(remote.updated if remote else None),
        base_hash=link.base_hash,
    )
    decision = decide(sides, binding.policy)
    if decision is Decision.CONFLICT and link.deleted and remote and link.recurring_event_id in dead:
        # an exception deleted with its series, changed there: no conflict of its own (reviving it alone
        # would leave an occurrence of no series); held inside the series there it takes the change and
        # stays deleted, as the series decides; a single event of its own there (a stand-in) goes
        decision = Decision.TAKE_REMOTE if link.series_remote_id else Decision.LOCAL_WINS
    merged = None
    if decision is Decision.MERGE and remote is not None:
        merged = merge(EventData.from_json(link.base_snapshot), link.data, remote.data)
        merged_hash = merged.data.content_hash()
        if merged.clashes:
            decision = Decision.CONFLICT
        elif merged_hash == remote.content_hash:
            decision = Decision.TAKE_REMOTE  # local's changes are all there already
        elif merged_hash == link.content_hash:
            decision = Decision.LOCAL_WINS  # remote's changes are all here already: the queued push goes
    if open_conflict is not None and decision is not Decision.NOTHING and decision is not Decision.CONFLICT:
        # the event is paused, and the remote moved on to something that settles it (both deleted, the
        # same content on both sides, the remote back at the base): the conflict closes by itself and
        # the decision applies as it would have without it
        plan.actions.append(
            CloseConflict(
                open_conflict,
                link.event_id,
                f"auto:{decision.value}",
                drop=(decision is Decision.TAKE_REMOTE or (decision is Decision.FAST_FORWARD and remote is None)),
            )
        )
    if decision is Decision.NOTHING:
        plan.counts.unchanged += 1
    elif decision is Decision.TAKE_REMOTE:
        _take_remote(binding, item, link, series, now, plan, dead)
    elif decision is Decision.FAST_FORWARD:
        if remote:
            plan.actions.append(UpdateLink({"link_id": link.link_id, **link_row(remote, link.version, now)}))
        else:
            plan.actions.append(UpdateLink(_link_keep(link, now, base_version=link.version, remote_deleted=True)))
        plan.counts.unchanged += 1
    elif decision is Decision.LOCAL_WINS:
        if remote:  # adopt the remote ETag so the queued local write applies over it
            plan.actions.append(UpdateLink(_link_keep(link, now, etag=remote.etag)))
        else:  # gone remotely: the push will have to create it again
            plan.actions.append(UpdateLink(_link_keep(link, now, remote_deleted=True)))
        plan.counts.unchanged += 1
    elif decision is Decision.MERGE and merged is not None and remote is not None:
        data = replace(merged.data, extra={**(link.data.extra or {}), **(remote.data.extra or {})})
        row = {
            "event_id": link.event_id,
            **event_row(
                data,
                version=link.version + 1,
                source=f"merge:{binding.source}",
                now=now,
                series_id=link.recurring_event_id,
                content_hash=data.content_hash(),
            ),
        }
        link_update = _link_keep(link, now, etag=remote.etag)
        plan.actions.append(Merge(row, link_update, merged.from_local, merged.from_remote))
        plan.counts.updated += 1
    else:  # a new conflict, or a later remote change to an open one: its remote side is the newest
        plan.actions.append(
            OpenConflict(
                {
                    "event_id": link.event_id,
                    "binding_id": binding.id,
                    "kind": conflict_kind(sides),
                    "local": None if link.deleted else link.data.to_json(),
                    "remote": remote.data.to_json() if remote else None,
                    "base": link.base_snapshot,
                    "remote_etag": remote.etag if remote else None,
                    "remote_deletion_proof": None if remote else _proof(binding, item),
                },
                new=open_conflict is None,
            )
        )
        if open_conflict is None:
            plan.counts.conflicts += 1


def _take_remote(
    binding: BindingRef,
    item: RemoteEvent | RemoteDeletion,
    link: LinkedEvent,
    series: Mapping[str, str],
    now: datetime,
    plan: PagePlan,
    dead: Mapping[str, tuple[str, str]],
) -> None:
    """The remote side's change becomes the event's. An exception deleted here with its series takes
    the content but stays deleted while the series is (its series' conflict may still bring both
    back: then with this newest content)."""
    if not isinstance(item, RemoteEvent):
        if not link.deleted:
            plan.actions.append(Delete(link.event_id, _proof(binding, item)))
            plan.counts.deleted += 1
        else:
            plan.actions.append(UpdateLink(_link_keep(link, now, remote_deleted=True)))
        return
    remote = item
    version = link.version + 1
    series_id = series.get(remote.series_remote_id) if remote.series_remote_id else link.recurring_event_id
    # `extra` holds each provider's unmodelled fields under its own key: a mirrored event keeps the others'
    data = replace(remote.data, extra={**(link.data.extra or {}), **(remote.data.extra or {})})
    row = {
        "event_id": link.event_id,
        **event_row(
            data, version=version, source=binding.source, now=now, series_id=series_id, content_hash=remote.content_hash
        ),
    }
    if link.deleted and series_id and (dead_series := dead.get(series_id)):
        deleted_by, proof = dead_series
        row.update(
            deleted=True,
            deleted_at=now,
            deleted_by=deleted_by,
            deletion_proof=f"its series {series_id} was deleted: {proof}",
        )
    agreed = {"link_id": link.link_id, **link_row(remote, version, now, event_takes_it=True)}
    plan.actions.append(TakeRemote(row, agreed))
    plan.counts.updated += 1


# --- rows -------------------------------------------------------------------------------------


def event_row(
    data: EventData, *, version: int, source: str, now: datetime, series_id: str | None, content_hash: str
) -> dict[str, Any]:
    row = event_columns(data, content_hash)
    row["version"] = version
    row["updated_at_source"] = source
    row["updated_at"] = now
    row["deleted"] = False
    row["deleted_at"] = None
    row["deleted_by"] = None
    row["deletion_proof"] = None
    row["recurring_event_id"] = series_id
    return row


def link_row(item: RemoteEvent, version: int, now: datetime, *, event_takes_it: bool = False) -> dict[str, Any]:
    """The link agrees with `item` at `version`. `event_takes_it`: the event is written with item's
    content in the same page, so the base is the event's own content (base_snapshot NULL, written
    down by event_store.write_down_bases when the event changes), not a second copy of it in every link."""
    return {
        "etag": item.etag,
        "base_version": version,
        "base_hash": item.content_hash,
        "base_snapshot": None if event_takes_it else item.data.snapshot(),
        "remote_updated": item.updated,
        "remote_deleted": False,
        "series_remote_id": item.series_remote_id,
        "updated_at": now,
    }


def _link_keep(link: LinkedEvent, now: datetime, **changes: Any) -> dict[str, Any]:
    """A link update that keeps everything but `changes`."""
    row = {
        "link_id": link.link_id,
        "etag": link.etag,
        "base_version": link.base_version,
        "base_hash": link.base_hash,
        "base_snapshot": link.base_snapshot,
        "remote_updated": link.remote_updated,
        "remote_deleted": link.remote_deleted,
        "series_remote_id": link.series_remote_id,
        "updated_at": now,
    }
    row.update(changes)
    return row


def _gone(item: RemoteEvent | RemoteDeletion) -> bool:
    """A deletion, or an instance listed cancelled (how Google keeps a deleted occurrence)."""
    return isinstance(item, RemoteDeletion) or item.data.status == "cancelled"


def _proof(binding: BindingRef, item: RemoteEvent | RemoteDeletion) -> str:
    """What proved a remote deletion: the provider's or the engine's own words, or the listing that said so."""
    if isinstance(item, RemoteDeletion) and item.proof:
        return item.proof
    return f"the change listing of {binding.source} reported {item.remote_id} deleted"


def _parse_updated(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)  # (Python 3.11 reads a trailing Z)
    except ValueError:
        return None
