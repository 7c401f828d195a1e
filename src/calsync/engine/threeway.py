"""The three-way decision for one remote change against the link's base (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from calsync.statuses import ConflictKind, ConflictPolicy


class Decision(Enum):
    # Remote unchanged since we last agreed: our own writes echo back this way, and a local change
    # (if any) is left to the outbox.
    NOTHING = "nothing"
    TAKE_REMOTE = "take-remote"  # only the remote changed, or policy says the remote wins
    FAST_FORWARD = "fast-forward"  # both changed to the same content: agree without writing anything
    LOCAL_WINS = "local-wins"  # both changed, policy keeps local: adopt the remote ETag so the push applies
    CONFLICT = "conflict"  # both changed differently: pause the event for this binding and ask
    # both edited (neither deleted), policy "merge": engine/page_plan merges field by field (engine/field_merge)
    MERGE = "merge"


@dataclass(frozen=True)
class Sides:
    """What the decision needs to know about one event on one binding."""

    link_etag: str | None
    remote_etag: str | None  # None for a remote deletion
    base_version: int
    local_version: int
    local_hash: str
    remote_hash: str | None  # None for a remote deletion
    local_deleted: bool
    remote_deleted: bool
    link_remote_deleted: bool = False
    local_updated: datetime | None = None
    remote_updated: datetime | None = None
    base_hash: str | None = None  # content of the last agreed version


def decide(sides: Sides, policy: ConflictPolicy) -> Decision:
    """Compare local and remote against the base; `policy` settles edits on both sides."""
    if sides.remote_deleted:
        if sides.link_remote_deleted:
            return Decision.NOTHING
    elif sides.remote_etag is not None and sides.remote_etag == sides.link_etag and not sides.link_remote_deleted:
        return Decision.NOTHING
    local_changed = sides.local_version != sides.base_version
    if not local_changed:
        return Decision.TAKE_REMOTE
    if not sides.remote_deleted and sides.base_hash is not None and sides.remote_hash == sides.base_hash:
        # the remote copy changed only in what calsync does not model (an alarm, an X- property):
        # only the local side really changed, so the push goes ahead over the new ETag
        return Decision.LOCAL_WINS
    same_content = (sides.local_deleted and sides.remote_deleted) or (
        not sides.local_deleted and not sides.remote_deleted and sides.local_hash == sides.remote_hash
    )
    if same_content:
        return Decision.FAST_FORWARD
    if policy == "remote-wins":
        return Decision.TAKE_REMOTE
    if policy == "local-wins":
        return Decision.LOCAL_WINS
    if policy == "merge" and not sides.local_deleted and not sides.remote_deleted:
        return Decision.MERGE
    if policy == "latest-wins" and sides.local_updated and sides.remote_updated:
        return Decision.TAKE_REMOTE if sides.remote_updated > sides.local_updated else Decision.LOCAL_WINS
    return Decision.CONFLICT


def conflict_kind(sides: Sides) -> ConflictKind:
    if sides.remote_deleted:
        return "remote-delete"
    if sides.local_deleted:
        return "local-delete"
    return "edit-edit"
