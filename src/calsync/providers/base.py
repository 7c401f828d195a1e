"""The contract every calendar provider implements, and the errors the engine understands."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from calsync.model import ChangePage, EventData, RemoteCalendar, RemoteEvent
from calsync.statuses import AccountState


class ProviderError(Exception):
    """A provider answered with an error the engine cannot retry its way out of."""

    def __init__(
        self, message: str, *, status: int | None = None, reason: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class AuthError(ProviderError):
    """Credentials rejected (401), or calsync's own OAuth client refused: the account stops
    (`account_state`) until someone acts."""

    account_state: AccountState = "auth-failed"


class ReauthRequired(AuthError):
    """The user's grant is gone (revoked, expired, consent withdrawn): the user must connect the
    account again; its sync tokens are kept, so sync resumes where it stopped."""

    account_state: AccountState = "reauth-required"


class NotFoundError(ProviderError):
    """The remote calendar or event does not exist (any more)."""


class SyncTokenInvalid(ProviderError):
    """The stored sync token is no longer accepted: a full sync is required."""


class PreconditionFailed(ProviderError):
    """If-Match did not match: someone else changed the remote object."""


class AlreadyExists(ProviderError):
    """A create with a client-chosen id met an existing object (a retried create)."""


class Unreachable(ProviderError):
    """The service could not be reached, or its answer not read (connection refused or reset, a
    timeout, a broken response), after the client's retries: the work is retried later. The HTTP
    layer raises it for every transport error, so no engine module handles httpx's own."""


class RateLimited(ProviderError):
    """Retries for 429 / rate-limit / 5xx were exhausted."""


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do and how it lists, declared once per provider class: the engine reads
    these, never the provider's kind."""

    #: watch channels (push notifications); without them the scheduler only polls
    push: bool = True
    #: a series and its exceptions are one object, listed whole whenever any part changes (CalDAV's
    #: resources): an exception missing from a re-listed series is gone
    lists_whole_series: bool = False
    #: a deleted occurrence is reported by the occurrence's own id, never as a change of its master
    #: (Graph's calendarView delta): the engine re-reads masters when deletions of unknown ids arrive
    names_occurrences_only: bool = False
    #: changing a series' pattern or times drops its exceptions (Outlook): the engine writes them again
    series_change_drops_exceptions: bool = False
    #: the service chooses event ids (Graph); a create carries calsync's idempotency key beside it
    #: (transactionId), read back as RemoteEvent.client_id: the local id, or `<local id>.<suffix>` for a
    #: copy made again after the first was deleted there (a key of its own, still naming the event)
    server_assigns_ids: bool = False


@dataclass
class Channel:
    """A push-notification channel as the provider confirmed it."""

    channel_id: str
    resource_id: str
    expiration: datetime | None
    token: str | None = None


class Provider(Protocol):
    """One account's view of one calendar service."""

    capabilities: Capabilities

    @property
    def request_count(self) -> int:
        """HTTP requests made so far (what each sync reports)."""
        ...

    def list_calendars(self) -> list[RemoteCalendar]: ...

    def list_changes(self, calendar_id: str, sync_token: str | None) -> Iterator[ChangePage]:
        """Pages of changes since `sync_token`, or a full listing when it is None.

        Raises SyncTokenInvalid when the token is no longer accepted.
        """
        ...

    def get_event(self, calendar_id: str, remote_id: str) -> RemoteEvent | None: ...

    def listing_window(self) -> tuple[datetime, datetime] | None:
        """What a listing covers: None for the whole calendar, or the time window it is limited to
        (Graph's calendarView). For a windowed listing, an event missing from it or reported removed
        may only have left the window: the engine confirms each such deletion by id (fetch_events)."""
        ...

    def fetch_events(self, calendar_id: str, remote_ids: Sequence[str]) -> dict[str, RemoteEvent | None]:
        """Read events by id, each as get_event would (a series master with its EXDATEs): every id
        asked for is a key, with None only where the provider answered that it is gone (404/410).
        Any other failure raises, so a None is always a proof of deletion. Batched where the
        provider allows it (Graph's JSON $batch, 20 requests per batch)."""
        ...

    def insert_event(
        self, calendar_id: str, data: EventData, *, remote_id: str | None = None, series_remote_id: str | None = None
    ) -> RemoteEvent:
        """Create the event. An instance of a series (`data.original_start` set) whose series the
        binding holds comes with the series' id here, so the provider writes it as that series'
        exception rather than as an event of its own."""
        ...

    def update_event(
        self,
        calendar_id: str,
        remote_id: str,
        data: EventData,
        *,
        if_match: str | None,
    ) -> RemoteEvent: ...

    def delete_event(self, calendar_id: str, remote_id: str, *, if_match: str | None) -> None: ...

    def withdraw_create(self, calendar_id: str, data: EventData, *, remote_id: str) -> None:
        """Undo a create sent with `remote_id` whose answer was lost, for an event deleted here
        before the retry: the copy it made (if it made one) is deleted; none there is no error.
        Where calsync chooses the id (Google, CalDAV) that is a DELETE of that id; where the service
        does (Graph), the create is replayed with the same idempotency key to learn the copy's id."""
        ...

    def cancel_occurrence(
        self,
        calendar_id: str,
        series_remote_id: str,
        original_start: str,
        *,
        remote_id: str | None = None,
        if_match: str | None = None,
    ) -> RemoteEvent | None:
        """Delete one occurrence of a series (the one first due at `original_start`, a canonical
        boundary), the way the service itself keeps a deleted occurrence: Google an instance with
        status cancelled, Graph no occurrence at all, CalDAV an EXDATE on the series' resource (its
        override, if the instance had one, removed). `remote_id` / `if_match`: the occurrence's own id
        and ETag where calsync holds a link to it (an exception it wrote or read), so a copy someone
        changed meanwhile raises PreconditionFailed instead of being deleted blind. Idempotent: an
        occurrence already gone (or cancelled) is left as it is, with no write. Returns the cancelled
        instance where the service keeps one (Google), None where nothing is left of it."""
        ...

    def watch(
        self,
        calendar_id: str,
        channel_id: str,
        address: str,
        token: str,
        ttl_seconds: int | None = None,
    ) -> Channel:
        """Ask the provider to POST change notifications for the calendar to `address`."""
        ...

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        """Stop a channel; one that is already gone counts as stopped."""
        ...

    def close(self) -> None: ...


def fetch_each(
    get_event: Callable[[str, str], RemoteEvent | None], calendar_id: str, remote_ids: Sequence[str]
) -> dict[str, RemoteEvent | None]:
    """fetch_events for a provider without a batch read: get_event per id, NotFoundError as None
    (a proof of deletion); any other failure raises."""
    found: dict[str, RemoteEvent | None] = {}
    for remote_id in dict.fromkeys(remote_ids):
        try:
            found[remote_id] = get_event(calendar_id, remote_id)
        except NotFoundError:
            found[remote_id] = None
    return found
