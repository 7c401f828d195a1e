"""Conference lifecycle: the meetings we made follow their calendar events.

Every event change that could matter (inbound or local) queues one piece of conference work for
the event, in the same transaction as the change. The worker then reconciles the event's *current*
state with the meeting: deleted or cancelled -> delete it; conference removed by the user -> delete
it; the fields a meeting depends on changed -> update exactly those; nothing relevant changed ->
no call at all. Ownership is decided by data, never by display name: a conference is ours when we
have a record of it or it carries the add-on parameter we stamp on our own conferences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from calsync.backoff import jittered_delay
from calsync.conferencing.base import (
    Conference,
    ConferenceAdapter,
    ConferenceError,
    MeetingSpec,
)
from calsync.engine import inbound
from calsync.engine.pool import ProviderPool
from calsync.model import RemoteEvent, utcnow
from calsync.providers.base import PreconditionFailed, Provider, ProviderError
from calsync.store import accounts as account_store
from calsync.store import conferences as store
from calsync.store import events as event_store
from calsync.store import outbox as outbox_store
from calsync.store.common import NotFound
from calsync.store.rows import BindingRow, ConferenceRow, ConferenceWorkRow, EventRow, EventWithLinks, LinkSummary

WRITE_BACK_ATTEMPTS = 4


class ConferenceWorkError(Exception):
    """A conference request the user made cannot be carried out (the message says why)."""


# --- the meeting a calendar event asks for -------------------------------------------------


def meeting_spec(event: EventRow) -> MeetingSpec:
    """The meeting fields of an event. The description is compared without surrounding whitespace:
    providers trim or add line breaks when they store a body (Graph around the conference block we
    append), and that must not cost a conference update."""
    return MeetingSpec(
        title=event["title"],
        start=event["start"],
        end=event["end"],
        time_zone=event["time_zone"],
        description=(event["description"] or "").strip() or None,
        attendees=tuple(sorted(a["email"] for a in event["attendees"] or [] if a.get("email"))),
    )


def conference_summary(adapter: ConferenceAdapter, conference: Conference) -> dict[str, Any]:
    """How the event carries the conference (providers turn this into their own format)."""
    return {
        "type": "addOn",
        "name": adapter.solution_name,
        "conference_id": conference.conference_id,
        "join_url": conference.join_url,
        "provider": adapter.name,
    }


@dataclass
class ConferenceRun:
    """What one pass over the conference outbox did."""

    processed: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ConferenceEngine:
    """Creates conferences on request and keeps them in step with their events."""

    def __init__(
        self,
        engine: Engine,
        adapters: dict[str, ConferenceAdapter],
        providers: ProviderPool,
        *,
        base_delay: float = 5.0,
        max_delay: float = 3600.0,
    ) -> None:
        self.engine = engine
        self.adapters = adapters
        self.providers = providers
        self.base_delay = base_delay
        self.max_delay = max_delay

    # --- creating ---------------------------------------------------------------------

    def create(self, event_id: str, provider: str) -> ConferenceRow:
        """Make a meeting for the event, put it on the calendar event, and start watching the calendar."""
        adapter = self._adapter(provider)
        with self.engine.begin() as conn:
            event = _event(conn, event_id)
            if event["deleted"] or event["status"] == "cancelled":
                raise ConferenceWorkError(f"event {event_id} is deleted or cancelled")
            if event["recurring_event_id"]:
                raise ConferenceWorkError("add the conference to the recurring series, not to one occurrence")
            if store.active_conference(conn, event_id):
                raise ConferenceWorkError(f"event {event_id} already has a conference")
            calendar_bindings = [
                b for b in account_store.list_bindings(conn) if b["calendar_id"] == event["calendar_id"]
            ]
        self._start_watching(calendar_bindings)
        record = self._make_meeting(adapter, event)
        self._write_back(event_id, _summary_of(adapter, record))
        with self.engine.begin() as conn:
            return store.active_conference(conn, event_id) or record

    def _make_meeting(self, adapter: ConferenceAdapter, event: EventRow) -> ConferenceRow:
        """Record the intent, create the meeting, then record the meeting; returns its row.

        The intent row carries the idempotency key: if we crash after the conference system made
        the meeting but before we recorded it, the retry finds the intent, reuses its key and tells
        the adapter to look for the meeting first, so no second meeting is made.
        """
        with self.engine.begin() as conn:
            intent = store.creating_conference(conn, event["id"])
            if intent is None:
                key = f"{event['id']}:{store.count_conferences(conn, event['id'])}"
                row_id = store.insert_conference(
                    conn,
                    event_id=event["id"],
                    provider=adapter.name,
                    conference_id="",
                    state="creating",
                    idempotency_key=key,
                )
            else:
                row_id, key = intent["id"], intent["idempotency_key"]
        spec = meeting_spec(event)
        made = adapter.create(spec, idempotency_key=key, maybe_exists=intent is not None)
        with self.engine.begin() as conn:
            store.update_conference(
                conn,
                row_id,
                event_id=event["id"],
                provider=adapter.name,
                conference_id=made.conference_id,
                join_url=made.join_url,
                details=made.details,
                state="active",
                spec_hash=spec.fingerprint(),
                spec=_spec_json(spec),
                idempotency_key=key,
                last_synced_at=utcnow(),
            )
            return store.get_conference(conn, row_id)

    def _start_watching(self, calendar_bindings: list[BindingRow]) -> None:
        """The first conference on a calendar: a notification channel (only if none exists, and only
        for a pulled binding whose provider can push: CalDAV has no channels, its poll timer covers
        it) and a token."""
        for binding in calendar_bindings:
            if binding["direction"] == "push":
                continue  # nothing is pulled from it: no channel, no token
            provider = self.providers.get(binding["account_id"])
            if provider.capabilities.push:
                with self.engine.begin() as conn:
                    store.ensure_channel_intent(conn, binding["id"])
            if not binding["sync_token"]:
                inbound.sync_binding(self.engine, provider, binding["id"])

    # --- keeping in step ---------------------------------------------------------------

    def run(self, now: datetime | None = None, limit: int = 500) -> ConferenceRun:
        """Work everything due in the conference outbox, `limit` rows at a time (keyset on the row id,
        so work retried later in this pass is not picked up again)."""
        result = ConferenceRun()
        after = 0
        while True:
            with self.engine.begin() as conn:
                work = store.due_work(conn, now or utcnow(), after, limit)
            if not work:
                return result
            after = work[-1]["id"]
            self.work(work, result)

    def work(self, work: list[ConferenceWorkRow], result: ConferenceRun) -> None:
        """Reconcile each claimed outbox row; done, retried later, or failed."""
        for item in work:
            result.processed += 1
            try:
                outcome = self._reconcile(item["event_id"])
            except ConferenceError as exc:
                self._retry_or_fail(item, exc, exc.retryable, exc.retry_after, result)
                continue
            except ProviderError as exc:
                self._retry_or_fail(item, exc, True, None, result)
                continue
            except ConferenceWorkError as exc:
                self._retry_or_fail(item, exc, False, None, result)
                continue
            setattr(result, outcome, getattr(result, outcome) + 1)
            with self.engine.begin() as conn:
                store.finish_work(conn, item["id"])

    def _retry_or_fail(
        self, item: ConferenceWorkRow, exc: Exception, retryable: bool, retry_after: float | None, result: ConferenceRun
    ) -> None:
        message = f"{type(exc).__name__}: {exc}"
        result.errors.append(message)
        with self.engine.begin() as conn:
            if retryable:
                delay = jittered_delay(item["attempts"], self.base_delay, self.max_delay, retry_after=retry_after)
                store.retry_work_later(conn, item["id"], utcnow() + timedelta(seconds=delay), message)
                result.retried += 1
            else:
                store.finish_work(conn, item["id"], "failed", message)
                result.failed += 1

    def _reconcile(self, event_id: str) -> str:
        """Bring the meeting in line with the event as it is now; returns what was done."""
        with self.engine.begin() as conn:
            event = _event(conn, event_id)
            record = store.active_conference(conn, event_id)
            latest = record or store.latest_conference(conn, event_id)
        summary = event["conference"] or {}
        gone = event["deleted"] or event["status"] == "cancelled"
        if event["recurring_event_id"]:
            return "unchanged"  # occurrences share their series' meeting
        if record is None:
            if gone or not summary.get("provider"):
                return "unchanged"  # not one of ours (or nothing left to do)
            if summary["provider"] not in self.adapters:
                raise ConferenceError(f"conference provider {summary['provider']!r} is not configured here")
            if latest and latest["conference_id"] == summary.get("conference_id"):
                # restored after its meeting was deleted: it gets a new meeting
                record = self._make_meeting(self.adapters[summary["provider"]], event)
                self._write_back(event_id, _summary_of(self.adapters[record["provider"]], record))
                return "created"
            record = self._adopt(event, summary)
        if record["provider"] not in self.adapters:
            raise ConferenceError(f"conference provider {record['provider']!r} is not configured here")
        adapter = self.adapters[record["provider"]]
        if gone or summary.get("conference_id") != record["conference_id"]:
            adapter.delete(record["conference_id"])  # deleted, cancelled, or conference removed by the user
            with self.engine.begin() as conn:
                store.update_conference(conn, record["id"], state="deleted", last_synced_at=utcnow(), last_error=None)
            return "deleted"
        spec = meeting_spec(event)
        if spec.fingerprint() == record["spec_hash"]:
            return "unchanged"
        previous = (
            MeetingSpec(**{**record["spec"], "attendees": tuple(record["spec"]["attendees"])})
            if record["spec"]
            else None
        )
        updated = adapter.update(record["conference_id"], spec, spec.changed_fields(previous))
        changes: store.ConferenceChanges = {
            "spec_hash": spec.fingerprint(),
            "spec": _spec_json(spec),
            "last_synced_at": utcnow(),
            "last_error": None,
        }
        if updated:
            changes.update({"join_url": updated.join_url, "details": updated.details})
        with self.engine.begin() as conn:
            store.update_conference(conn, record["id"], **changes)
        if updated and updated.join_url != summary.get("join_url"):  # new join details go onto the event
            self._write_back(event_id, conference_summary(adapter, updated))
        return "updated"

    def _adopt(self, event: EventRow, summary: dict[str, Any]) -> ConferenceRow:
        """Our stamp without our record (e.g. a restored database): record it so it is kept in step."""
        with self.engine.begin() as conn:
            row_id = store.insert_conference(
                conn,
                event_id=event["id"],
                provider=summary["provider"],
                conference_id=summary["conference_id"],
                join_url=summary.get("join_url"),
                details={},
                state="active",
                spec_hash=None,
                spec=None,
                idempotency_key=f"{event['id']}:adopted",
            )
            return store.get_conference(conn, row_id)

    # --- writing the conference onto the calendar event ---------------------------------

    def _write_back(self, event_id: str, summary: dict[str, Any]) -> None:
        """Put the conference on every writable remote copy with If-Match; a 412 means re-read and retry,
        so a concurrent edit by the user is kept, never overwritten."""
        with self.engine.begin() as conn:
            event = _event(conn, event_id)
            links = [
                (link, account_store.get_binding(conn, link["binding_id"]))
                for link in event["links"]
                if not link["remote_deleted"]
            ]
        written = False
        for link, binding in links:
            if binding["direction"] == "pull":
                continue
            provider = self.providers.get(binding["account_id"])
            remote = self._put_conference(provider, binding["remote_calendar_id"], link, event_id, summary)
            if remote is not None:
                inbound.apply_remote_changes(self.engine, binding["id"], [remote], conference_work=False)
                written = True
        if not written:  # no remote copy yet: a local change, queued like any other
            with self.engine.begin() as conn:
                event_store.set_local_conference(conn, event_id, summary)
                (row,) = event_store.get_events(conn, [event_id])
                outbox_store.enqueue(conn, row["calendar_id"], [(event_id, row["version"])])

    def _put_conference(
        self, provider: Provider, calendar_id: str, link: LinkSummary, event_id: str, summary: dict[str, Any]
    ) -> RemoteEvent | None:
        with self.engine.begin() as conn:
            data = event_store.event_data(conn, event_id)
        etag = link["etag"]
        for _ in range(WRITE_BACK_ATTEMPTS):
            data.conference = summary
            try:
                return provider.update_event(calendar_id, link["remote_id"], data, if_match=etag)
            except PreconditionFailed:
                fresh = provider.get_event(calendar_id, link["remote_id"])
                if fresh is None:
                    return None  # deleted meanwhile: the inbound sync will delete the meeting
                data, etag = fresh.data, fresh.etag
        raise ConferenceError("the event kept changing while the conference was written to it", retryable=True)

    def _adapter(self, name: str) -> ConferenceAdapter:
        if name not in self.adapters:
            configured = ", ".join(self.adapters) or "none"
            raise ConferenceWorkError(f"conference provider {name!r} is not configured (configured: {configured})")
        return self.adapters[name]


def _spec_json(spec: MeetingSpec) -> dict[str, Any]:
    return {**spec.__dict__, "attendees": list(spec.attendees)}


def _summary_of(adapter: ConferenceAdapter, record: ConferenceRow) -> dict[str, Any]:
    return conference_summary(adapter, Conference(adapter.name, record["conference_id"], record["join_url"] or ""))


def _event(conn: Connection, event_id: str) -> EventWithLinks:
    rows = event_store.get_events(conn, [event_id])
    if not rows:
        raise NotFound(f"no event with id {event_id!r}")
    return rows[0]
