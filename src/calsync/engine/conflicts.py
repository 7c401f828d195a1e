"""Conflicts: events changed on both sides since they last agreed, waiting for a person's decision.

The decision itself (engine/threeway.py) records them; this module settles them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine

from calsync.engine import local
from calsync.engine.series import include_restored
from calsync.model import EventData
from calsync.store import accounts as account_store
from calsync.store import conflicts as conflict_store
from calsync.store import events as event_store
from calsync.store import links as link_store
from calsync.store import outbox as outbox_store
from calsync.store.conferences import ChangedEvent, enqueue_for_changed_events
from calsync.store.journal import LIBRARY, Author
from calsync.store.rows import BindingRow, ConflictRow, EventRow


class ConflictResolved(Exception):
    """The conflict was already decided."""


class ConflictChanged(Exception):
    """The remote side changed after the caller looked at the conflict: nothing was applied, and the
    conflict, still open, offers the newest remote side (`conflict`)."""

    def __init__(self, conflict: ConflictRow) -> None:
        super().__init__(
            f"conflict {conflict['id']}: the remote side changed since you looked (its ETag is now "
            f"{conflict['remote_etag']!r}); nothing was applied: decide again on the newest remote side"
        )
        self.conflict = conflict


def resolve_conflict(
    engine: Engine,
    conflict_id: str,
    keep: str | None = None,
    merged: dict[str, Any] | None = None,
    *,
    remote_etag: str | None = None,
    author: Author = LIBRARY,
) -> ConflictRow:
    """Settle a conflict by keeping the local side, the remote side, or a merged event.

    The remote side is the newest calsync has seen (each later sync refreshes it). `remote_etag`, the
    remote side's ETag as the caller saw it, guards against deciding on an older one: when it differs,
    ConflictChanged and nothing applied. Keeping local (or a merge) adopts the remote ETag so the
    queued push applies over it with If-Match: a remote change not yet seen makes that push meet 412,
    and the conflict is offered again. Keeping remote takes the remote content (or deletion) and
    drops the held push. Either way the held outbox rows are released and the calendar's other
    bindings get the outcome."""
    if (keep is None) == (merged is None) or keep not in (None, "local", "remote"):
        raise local.InvalidEvent("keep", "give exactly one of keep=local, keep=remote, or a merged event")
    with engine.begin() as conn:
        conflict = conflict_store.get_conflict(conn, conflict_id)
        if conflict["status"] != "open":
            raise ConflictResolved(f"conflict {conflict_id} is already resolved ({conflict['resolution']})")
        if remote_etag is not None and remote_etag != (conflict["remote_etag"] or ""):
            raise ConflictChanged(conflict)
        # closing first, guarded on 'open', is what makes two concurrent resolutions settle it once
        if not conflict_store.close_conflict(conn, conflict_id, keep or "merged", author=author):
            raise ConflictResolved(f"conflict {conflict_id} is already resolved")
        binding = account_store.get_binding(conn, conflict["binding_id"])
        (event,) = event_store.get_events(conn, [conflict["event_id"]])
        if keep == "remote":
            _keep_remote(conn, conflict, binding, event)
        else:
            data = (
                local.validated(event_store.row_to_data(event), merged, creating=False) if merged is not None else None
            )
            _keep_local(conn, conflict, binding, event, data, author)
        return conflict_store.get_conflict(conn, conflict_id)


def _keep_remote(conn: Connection, conflict: ConflictRow, binding: BindingRow, event: EventRow) -> None:
    source = f"{account_store.get_account(conn, binding['account_id']).provider}:{binding['id']}"
    if conflict["remote"] is None:  # deleted remotely
        proof = (
            f"conflict {conflict['id']} resolved keeping the remote deletion, proved by: "
            f"{conflict['remote_deletion_proof'] or 'the remote side being a deletion'}"
        )
        proofs = {event["id"]: proof}
        for exception_id in event_store.live_exception_ids(conn, [event["id"]]):
            proofs[exception_id] = f"its series {event['id']} was deleted: {proof}"
        doomed = list(proofs)
        event_store.tombstone_events(conn, proofs, source)  # (an event deleted here meanwhile keeps its version)
        link_store.agree_links_with_versions(conn, doomed, binding["id"])
        version = event["version"] + (0 if event["deleted"] else 1)
        # its exceptions follow the series out (a side may hold one as an event of its own: a stand-in)
        revived: list[tuple[str, int]] = [(e, 0) for e in doomed[1:]]
    else:
        data = EventData.from_json(conflict["remote"])
        # `extra` holds each provider's unmodelled fields under its own key (a CalDAV copy's UID and
        # resource): the remote side brings its own, the others' stay, as when a remote change is taken
        data.extra = {**(event["extra"] or {}), **(data.extra or {})}
        version = event["version"] + 1
        event_store.save_event_from(conn, event["id"], data, version, source, undelete=True)
        link = link_store.link_of(conn, event["id"], binding["id"])
        assert link is not None  # a conflict is about a linked copy
        link_store.agree_link(
            conn, event["id"], binding["id"], link["remote_id"], conflict["remote_etag"], version, data, create=False
        )
        revived = _revive_exceptions(conn, event, binding["id"], source)
        if event["deleted"] and data.original_start and event["recurring_event_id"] and data.status != "cancelled":
            include_restored(conn, event["calendar_id"], [(event["recurring_event_id"], data.original_start)], source)
    outbox_store.release(conn, binding["id"], event["id"], drop=True)
    # the series first, then its exceptions: each is written over the series' occurrence there (or,
    # deleted with it, goes with it there)
    outbox_store.enqueue(conn, event["calendar_id"], [(event["id"], version)], skip_binding=binding["id"])
    outbox_store.enqueue(conn, event["calendar_id"], revived, skip_binding=binding["id"])
    enqueue_for_changed_events(conn, [ChangedEvent(event["id"], None)], [event["id"]])


def _revive_exceptions(conn: Connection, series: EventRow, binding_id: str, source: str) -> list[tuple[str, int]]:
    """A series kept as the remote has it: the exceptions that were deleted with the series (their
    proof says so), and that the remote side still holds, come back with it, also when another
    side's resolution brought the series back first (its version may have lacked them). An exception
    deleted on its own stays deleted. Returns (event id, version)."""
    revived: list[tuple[str, int]] = []
    with_series = f"its series {series['id']} was "
    for row in link_store.deleted_exceptions_linked(conn, series["id"], binding_id):
        if not (row["deletion_proof"] or "").startswith(with_series):
            continue
        version = row["version"] + 1
        event_store.save_event_from(conn, row["id"], event_store.row_to_data(row), version, source, undelete=True)
        link_store.set_link_base_version(conn, row["id"], binding_id, version)
        revived.append((row["id"], version))
    return revived


def _keep_local(
    conn: Connection,
    conflict: ConflictRow,
    binding: BindingRow,
    event: EventRow,
    merged: EventData | None,
    author: Author,
) -> None:
    version = event["version"]
    if merged is not None:
        version += 1
        if not event_store.save_local_event(conn, event["id"], merged, version, author=author):
            raise local.StaleVersion(event["version"])
    link_store.adopt_remote_etag(
        conn, event["id"], binding["id"], conflict["remote_etag"], remote_deleted=conflict["remote"] is None
    )
    outbox_store.release(conn, binding["id"], event["id"], drop=False)
    others = None if merged is not None else [binding["id"]]
    outbox_store.enqueue(conn, event["calendar_id"], [(event["id"], version)], bindings_to=others)
    enqueue_for_changed_events(conn, [ChangedEvent(event["id"], None)], [event["id"]])
