"""Push local changes from the outbox, one binding at a time, strictly in order.

Each outbox row names an event; the worker pushes the event as it is *now* (so queued edits
collapse into one write), with If-Match on the link's ETag. The row is marked done in the same
transaction as the link update (remote id, ETag, base version): that is the checkpoint. A crash
between the remote write and the checkpoint is harmless: the retried update meets 412 (our own
write changed the ETag), the re-read shows the same content, and the three-way rule fast-forwards;
a retried create meets 409 (the id is the local id) and adopts the remote copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from calsync.backoff import jittered_delay
from calsync.engine import inbound
from calsync.model import EventData, RemoteDeletion, RemoteEvent, utcnow
from calsync.providers.base import (
    AlreadyExists,
    AuthError,
    NotFoundError,
    PreconditionFailed,
    Provider,
    ProviderError,
)
from calsync.series_exdates import without_starts
from calsync.statuses import PushStatus
from calsync.store import accounts as account_store
from calsync.store import conflicts as conflict_store
from calsync.store import events as event_store
from calsync.store import links as link_store
from calsync.store import outbox as queue
from calsync.store.rows import EventLinkRow, EventRow, OutboxRow

REDECIDE_LIMIT = 3


@dataclass
class PushResult:
    binding_id: str
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    held: int = 0
    retried: int = 0
    failed: int = 0
    requests: int = 0
    status: PushStatus = "ok"  # waiting: a retry is scheduled
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class UntracedDeletion(Exception):
    """A tombstone that does not say who deleted the event and what proved it: its deletion is not
    propagated (docs/ARCHITECTURE.md, "Deletions are traced"), and the outbox row fails visibly."""

    def __init__(self, event_id: str) -> None:
        super().__init__(
            f"event {event_id} is deleted without a recorded proof of who deleted it: not deleting it remotely"
        )


class _DeletedThere(Exception):
    """A retried create met its own earlier copy deleted there (by someone else): now a deletion."""


WriteHook = Callable[[str, str], None]  # (event id, what was done) after the remote write, before the checkpoint


class Pusher:
    """Drains one binding's outbox with one provider client."""

    def __init__(
        self,
        engine: Engine,
        provider: Provider,
        binding_id: str,
        *,
        base_delay: float = 5.0,
        max_delay: float = 900.0,
        after_write: WriteHook | None = None,
    ) -> None:
        self.engine = engine
        self.provider = provider
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.after_write = after_write
        with engine.begin() as conn:
            self.binding = account_store.get_binding(conn, binding_id)
        self.result = PushResult(binding_id=binding_id)

    def run(self, now: datetime | None = None) -> PushResult:
        """Push queued rows in order until the queue is empty or a row must wait for a retry."""
        if self.binding["direction"] == "pull":
            self.result.status = "skipped"
            return self.result
        now = now or utcnow()
        start = self.provider.request_count
        seen: set[int] = set()
        try:
            while True:
                with self.engine.begin() as conn:
                    rows = queue.pending_for_binding(conn, self.binding["id"], now, limit=100)
                if not rows or rows[0]["id"] in seen:  # the second guard: never spin on a row that stays
                    break
                seen.update(r["id"] for r in rows)
                if not self._work(rows, now):
                    break
        finally:
            self.result.requests = self.provider.request_count - start
        return self.result

    def _work(self, rows: list[OutboxRow], now: datetime) -> bool:
        """False when the queue must stop here (strict order): a retry is scheduled."""
        for row in rows:
            if row["attempts"] and row["next_attempt_at"] > now:  # a fresh row (queued meanwhile) is due
                self.result.status = "waiting"
                return False
            try:
                outcome = self._push(row)
            except UntracedDeletion as exc:  # a bug upstream, never a reason to delete someone's event
                with self.engine.begin() as conn:
                    queue.fail(conn, row["id"], str(exc))
                self.result.failed += 1
                continue
            except IntegrityError as exc:  # the remote copy is already another event's here: a bug upstream
                with self.engine.begin() as conn:  # that stops this event, not every binding's sync
                    queue.fail(conn, row["id"], f"the copy written is linked to another event already: {exc.orig}")
                self.result.failed += 1
                continue
            except AuthError as exc:
                self.result.status, self.result.message = "auth-failed", str(exc)
                with self.engine.begin() as conn:
                    account_store.set_account_state(conn, self.binding["account_id"], exc.account_state, str(exc))
                return False
            except ProviderError as exc:
                self._retry_later(row, exc)
                return False
            setattr(self.result, outcome, getattr(self.result, outcome) + 1)
        return True

    def _retry_later(self, row: OutboxRow, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        retryable = (
            not isinstance(exc, ProviderError) or exc.status is None or exc.status >= 500 or exc.status in (403, 429)
        )
        with self.engine.begin() as conn:
            if retryable:
                delay = jittered_delay(
                    row["attempts"],
                    self.base_delay,
                    self.max_delay,
                    retry_after=exc.retry_after if isinstance(exc, ProviderError) else None,
                )
                queue.retry_later(conn, row["id"], utcnow() + timedelta(seconds=delay), message)
                self.result.retried += 1
            else:
                queue.fail(conn, row["id"], message)
                self.result.failed += 1
        self.result.status, self.result.message = "waiting", message

    # --- one row -----------------------------------------------------------------------

    def _push(self, row: OutboxRow, attempt: int = 0) -> str:
        """Make the remote match the event as it is now; returns the outcome's counter name."""
        with self.engine.begin() as conn:
            (event,) = event_store.get_events(conn, [row["event_id"]])
            if conflict_store.has_open_conflict(conn, event["id"], self.binding["id"]):
                queue.hold(conn, self.binding["id"], event["id"])
                return "held"
            link = link_store.link_of(conn, event["id"], self.binding["id"])
            series_id = event["recurring_event_id"]
            series = link_store.link_of(conn, series_id, self.binding["id"]) if series_id else None
            series_dead = series_id is not None and bool(event_store.deleted_event_ids(conn, [series_id]))
            # a series whose deletion there waits for a decision is as good as gone there until then
            series_paused = series is not None and bool(
                conflict_store.series_paused_by_remote_delete(conn, self.binding["id"], [series_id])
            )
            data = event_store.row_to_data(event)
            if data.recurrence and not data.original_start:
                paused = conflict_store.paused_occurrence_starts(conn, event["id"], self.binding["id"])
                data = _withhold_paused_exdates(data, paused)
        version = event["version"]
        series_gone_here = series is not None and (bool(series["remote_deleted"]) or series_paused)
        if (
            series_id
            and not event["deleted"]
            and ((series_gone_here and not series_dead) or (series_dead and (link is None or link["remote_deleted"])))
        ):
            # an exception waits for its series: one whose copy here is gone but lives on gets its
            # exceptions queued again when it is made again here (_checkpoint); one deleted here
            # takes its exceptions with it, and they are never written on their own
            return self._settle(event["id"], version, "unchanged")
        if (
            series_id
            and series is None
            and not series_dead
            and not event["deleted"]
            and (link is None or link["remote_deleted"])
        ):
            # its series is not written here yet (a listing named the exception first): it waits, and
            # is queued again when the series is made here (_checkpoint)
            return self._settle(event["id"], version, "unchanged")
        if (
            event["deleted"]
            and series_dead
            and link is not None
            and not link["remote_deleted"]
            and link["series_remote_id"] is not None
        ):
            # an exception of a series deleted here, held there inside that series: it goes with the
            # series' deletion there (writing it first changed the series there under that deletion,
            # which then met 412 and opened a conflict calsync caused itself)
            return self._settle(event["id"], version, "unchanged")
        if series_gone_here or series_dead:
            series = None  # the series is gone (here or locally): its instances go with it
        if event["deleted"] and not (event["deleted_by"] and event["deletion_proof"]):
            raise UntracedDeletion(event["id"])
        if series is not None and data.original_start and (event["deleted"] or event["status"] == "cancelled"):
            return self._drop_occurrence(row, event, data, link, str(series["remote_id"]), attempt)
        if link is None or link["remote_deleted"]:
            if event["deleted"] or event["status"] == "cancelled":
                if row["create_sent"]:  # a create went out for it and its answer was lost
                    return self._withdraw(event["id"], version, data, link)
                return self._settle(event["id"], version, "unchanged")
            with self.engine.begin() as conn:  # before the request: its answer may be lost
                queue.mark_create_sent(conn, row["id"])
            try:
                remote = self._create(event["id"], data, link, series["remote_id"] if series else None)
            except _DeletedThere:
                return self._settle(event["id"], version, "unchanged")
            self._hook(event["id"], "created")
            remade = bool(data.recurrence) and not data.original_start  # its exceptions follow it
            return self._checkpoint(
                event["id"], version, data, remote, "created", new_link=link is None, series_remade=remade
            )
        if link["base_version"] == version:
            return self._settle(event["id"], version, "unchanged")
        try:
            if event["deleted"]:
                self.provider.delete_event(self._calendar, link["remote_id"], if_match=link["etag"])
                self._hook(event["id"], "deleted")
                return self._checkpoint(event["id"], version, data, None, "deleted")
            remote = self.provider.update_event(self._calendar, link["remote_id"], data, if_match=link["etag"])
            self._hook(event["id"], "updated")
            dropped = self.provider.capabilities.series_change_drops_exceptions and _reshaped(link, data)
            return self._checkpoint(event["id"], version, data, remote, "updated", series_remade=dropped)
        except (PreconditionFailed, NotFoundError):
            if attempt >= REDECIDE_LIMIT:
                raise
            self._redecide(link["remote_id"])
            return self._push(row, attempt + 1)

    def _drop_occurrence(
        self,
        row: OutboxRow,
        event: EventRow,
        data: EventData,
        link: EventLinkRow | None,
        series_remote_id: str,
        attempt: int,
    ) -> str:
        """A deleted or cancelled instance of a series this binding holds: its occurrence goes here
        too, the way this provider keeps a deleted occurrence (Provider.cancel_occurrence: Google an
        instance cancelled, Graph the occurrence deleted, CalDAV an EXDATE), whether calsync wrote
        an exception there (linked: If-Match on it) or the occurrence is a plain one of the rule."""
        event_id, version = event["id"], event["version"]
        held = link if link is not None and not link["remote_deleted"] else None  # the copy calsync holds there
        already = link is not None and link["base_version"] == version
        if already or (held and _base_status(held, event) == "cancelled"):
            return self._settle(event_id, version, "unchanged")  # already gone there when we last agreed
        assert data.original_start is not None
        try:
            remote = self.provider.cancel_occurrence(
                self._calendar,
                series_remote_id,
                data.original_start,
                remote_id=held["remote_id"] if held else None,
                if_match=held["etag"] if held else None,
            )
        except (PreconditionFailed, NotFoundError):
            if held is None or attempt >= REDECIDE_LIMIT:
                raise
            self._redecide(held["remote_id"])
            return self._push(row, attempt + 1)
        self._hook(event_id, "deleted")
        if remote is not None and link is None:
            with self.engine.begin() as conn:  # that instance may already stand for another local copy of it
                if link_store.links_by_remote_id(conn, self.binding["id"], [remote.remote_id]):
                    remote = None
        if remote is None and link is None:
            return self._settle(event_id, version, "deleted")
        return self._checkpoint(event_id, version, data, remote, "deleted", new_link=link is None)

    def _withdraw(self, event_id: str, version: int, data: EventData, link: EventLinkRow | None) -> str:
        """An event deleted (or cancelled) here after a create for it went out whose answer was lost:
        the copy that create may have made there goes (traced to this event's deletion here). Without
        this, a copy outside Graph's window would stay in Outlook, never listed, never deleted."""
        self.provider.withdraw_create(self._calendar, data, remote_id=self._create_key(event_id, link))
        self._hook(event_id, "deleted")
        return self._settle(event_id, version, "deleted")

    def _create_key(self, event_id: str, link: EventLinkRow | None) -> str:
        """The id a create asks for (Google, CalDAV: the local id, or the old copy's id to make it again
        under), or where the service picks ids (Graph) the idempotency key it carries: the local id and
        a suffix of its own, so a listing that meets the new copy before the answer does adopts it
        (by the part before the dot) instead of importing it. The suffix names the calendar for a
        first copy (Graph de-duplicates transactionIds across the whole mailbox: the local id alone made
        a second calendar of the mailbox answer with the first one's copy), and the old copy for a copy
        made again (the first key may still name the deleted copy)."""
        if not self.provider.capabilities.server_assigns_ids:
            return event_id if link is None else str(link["remote_id"])
        made_for = self._calendar if link is None else str(link["remote_id"])
        return f"{event_id}.{hashlib.sha256(made_for.encode()).hexdigest()[:12]}"

    @property
    def _calendar(self) -> str:
        return str(self.binding["remote_calendar_id"])

    def _create(
        self, event_id: str, data: EventData, link: EventLinkRow | None, series_remote_id: str | None = None
    ) -> RemoteEvent:
        """Insert with the local id as the remote id, so a retry meets 409 and adopts the first copy.
        An instance of a series this binding holds goes with the series' remote id: the provider
        writes it as that series' exception (inbound adopts it by series and original start)."""
        remote_id = self._create_key(event_id, link)
        try:
            return self.provider.insert_event(
                self._calendar, data, remote_id=remote_id, series_remote_id=series_remote_id
            )
        except AlreadyExists:
            existing = self.provider.get_event(self._calendar, remote_id)
            if existing is not None and existing.content_hash == data.content_hash():
                return existing  # our own earlier insert whose answer was lost
            if link is None and (existing is None or existing.data.status == "cancelled"):
                # our earlier insert landed (its answer was lost) and someone deleted that copy there:
                # that is the event's deletion, not a reason to write it again
                inbound.apply_remote_changes(
                    self.engine,
                    self.binding["id"],
                    [
                        RemoteDeletion(
                            remote_id,
                            proof=(
                                f"a create retried after its answer was lost met {remote_id} already there, deleted"
                            ),
                        )
                    ],
                )
                raise _DeletedThere from None
            # a deleted copy (ids are kept) or a stale one: write ours over it, as a change of that copy
            # (its unmodelled fields kept: a CalDAV resource keeps the UID it was made with, which the
            # event may have changed since, taking another side's edit)
            if existing is not None:
                data = replace(data, extra={**(data.extra or {}), **(existing.data.extra or {})})
            return self.provider.update_event(self._calendar, remote_id, data, if_match=None)

    def _redecide(self, remote_id: str) -> None:
        """Someone else changed the remote copy (412) or deleted it: read it again and let the
        three-way rule decide (conflict, fast-forward, or policy), never overwrite blindly."""
        fresh = self.provider.get_event(self._calendar, remote_id)
        change = fresh if fresh is not None else RemoteDeletion(remote_id)
        inbound.apply_remote_changes(self.engine, self.binding["id"], [change])

    def _hook(self, event_id: str, what: str) -> None:
        if self.after_write:
            self.after_write(event_id, what)

    def _settle(self, event_id: str, version: int, outcome: str) -> str:
        with self.engine.begin() as conn:
            queue.settle(conn, self.binding["id"], event_id, version)
        return outcome

    def _checkpoint(
        self,
        event_id: str,
        version: int,
        data: EventData,
        remote: RemoteEvent | None,
        outcome: str,
        new_link: bool = False,
        series_remade: bool = False,
    ) -> str:
        """The link now agrees with `version`; the rows asking for it are done. One transaction.
        `series_remade`: a series written again here after its copy was deleted, or reshaped where that
        drops its exceptions (Outlook); its exceptions' copies went with the old one, so they are
        queued again, after it."""
        with self.engine.begin() as conn:
            if series_remade:
                again = link_store.forget_exception_copies(conn, event_id, self.binding["id"])
                queue.enqueue(conn, self.binding["calendar_id"], again, bindings_to=[self.binding["id"]])
            if remote is None:
                link_store.mark_link_deleted(conn, event_id, self.binding["id"], version)
                if data.recurrence and not data.original_start:  # a series' exceptions go with it there
                    link_store.forget_exception_copies(conn, event_id, self.binding["id"])
            else:
                link_store.agree_link(
                    conn,
                    event_id,
                    self.binding["id"],
                    remote.remote_id,
                    remote.etag,
                    version,
                    data,
                    create=new_link,
                    series_remote_id=remote.series_remote_id,
                )
                # keep what the provider answered (its unmodelled fields), so the next write patches this copy
                event_store.set_event_extra(conn, event_id, remote.data.extra)
            queue.settle(conn, self.binding["id"], event_id, version)
        return outcome


def _withhold_paused_exdates(data: EventData, paused: set[str]) -> EventData:
    """A series written while some of its exceptions are paused here by a conflict: it does not
    exclude their starts here yet (an EXDATE from another side, or from a deletion made here, would
    delete the occurrence on this side before the person decides; the decision brings it here)."""
    if not paused or not data.recurrence:
        return data
    return replace(data, recurrence=without_starts(data.recurrence, data.time_zone, paused))


def _reshaped(link: EventLinkRow, data: EventData) -> bool:
    """A series write that changes its pattern or its times (what drops a series' exceptions in
    Outlook): the rules (EXDATEs aside) or the first occurrence's start, end or zone differ from what
    the link last agreed on. A NULL base is the event as it is: nothing changed."""
    base = link["base_snapshot"]
    if not base or not data.recurrence or data.original_start:
        return False

    def rules(lines: list[str] | None) -> list[str]:
        return [line for line in lines or [] if not line.upper().startswith("EXDATE")]

    return rules(base.get("recurrence")) != rules(data.recurrence) or any(
        base.get(name) != getattr(data, name) for name in ("start", "end", "all_day", "time_zone")
    )


def _base_status(link: EventLinkRow, event: EventRow) -> str:
    """The status the link last agreed on (a NULL snapshot: the event's content as it is)."""
    base = link["base_snapshot"]
    return str((base or {}).get("status") if base else event["status"])


def queue_calendar(engine: Engine, binding_id: str) -> int:
    """A binding added to a calendar that already has events: queue them all for it (queue_calendar_in,
    in a transaction of its own)."""
    with engine.begin() as conn:
        return queue_calendar_in(conn, binding_id)


def queue_calendar_in(conn: Connection, binding_id: str) -> int:
    """Queue the calendar's live events for a binding added to it, in the caller's transaction (the
    binding's own, so a crash cannot leave it without them). Its first sync adopts the remote copies
    calsync made earlier (same id), so nothing is duplicated. Exceptions are queued after every
    series, so each is written over its series' occurrence there."""
    binding = account_store.get_binding(conn, binding_id)
    if binding["direction"] == "pull":
        return 0
    rows = event_store.list_events(conn, calendar_id=binding["calendar_id"])
    live = [(e["id"], e["version"]) for e in sorted(rows, key=lambda e: e["recurring_event_id"] is not None)]
    return queue.enqueue(conn, binding["calendar_id"], live, bindings_to=[binding_id])
