"""The rows the store's query functions return, as TypedDicts: one per shape actually returned.

A row is the plain dict the store always returned (SQLAlchemy's mapping copied with `dict`), so
nothing changes at run time; the types let mypy check every key a caller reads. A TypedDict here
names exactly its table's columns (tests/test_rows.py compares them with schema.py, and the rows
the query functions return with these keys), or the columns its query selects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from calsync.statuses import (
    AccountState,
    ChannelState,
    ConferenceState,
    ConferenceWorkReason,
    ConferenceWorkStatus,
    ConflictKind,
    ConflictPolicy,
    ConflictStatus,
    DeliveryStatus,
    Direction,
    KeyScope,
    LastSyncStatus,
    OutboxStatus,
    SyncState,
    WebhookState,
)


class AccountRow(TypedDict):
    """An `accounts` row without its credentials (accounts.list_accounts; get_account gives a model.Account)."""

    id: str
    user_id: str
    provider: str
    name: str
    base_url: str | None
    state: AccountState
    last_error: str | None
    backoff_until: datetime | None
    backoff_attempts: int
    token_lease_owner: str | None
    token_lease_until: datetime | None
    budget_spent_until: float  # the request budget (budgets.py): epoch second its requests are paid to
    served_at: datetime | None  # a binding of it last claimed (the claim goes round the accounts)
    created_at: datetime
    updated_at: datetime


class CalendarRow(TypedDict):
    id: str
    user_id: str
    name: str
    color: str | None
    time_zone: str | None
    created_at: datetime
    updated_at: datetime


class UserRow(TypedDict):
    id: str
    name: str
    is_admin: bool
    created_at: datetime


class ApiKeyRow(TypedDict):
    """An `api_keys` row without the secret's hash (store/users.list_api_keys)."""

    id: str
    user_id: str
    name: str
    scope: KeyScope
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class BindingRow(TypedDict):
    id: str
    calendar_id: str
    account_id: str
    remote_calendar_id: str
    direction: Direction
    conflict_policy: ConflictPolicy
    sync_token: str | None
    sync_token_obtained_at: datetime | None
    sync_token_updated_at: datetime | None
    full_sync_generation: int
    last_sync_at: datetime | None
    last_full_sync_at: datetime | None
    last_sync_status: LastSyncStatus | None
    last_sync_stats: dict[str, Any] | None
    last_error: str | None
    dirty_at: datetime | None
    next_poll_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    created_at: datetime
    updated_at: datetime


class BindingClaim(TypedDict):
    """A binding just leased to a worker (scheduling.claim_binding, claim_named_binding)."""

    id: str
    dirty_at: datetime | None  # the notification the sync covers (release_binding settles up to it)
    account_id: str


class EventRow(TypedDict):
    """An `events` row; a tombstone is one with `deleted` true."""

    id: str
    calendar_id: str
    title: str
    description: str | None
    location: str | None
    start: str
    end: str
    range_start: str
    range_end: str
    all_day: bool
    time_zone: str | None
    status: str  # content, as providers give it (model.EVENT_STATUSES): not a set calsync closes
    recurrence: list[str] | None
    recurring_event_id: str | None
    original_start: str | None
    attendees: list[dict[str, Any]]
    conference: dict[str, Any] | None
    ical_uid: str | None
    sequence: int
    extra: dict[str, Any]
    content_hash: str
    version: int
    source: str
    updated_at_source: str
    created_at: datetime
    updated_at: datetime
    deleted: bool
    deleted_at: datetime | None
    deleted_by: str | None
    deletion_proof: str | None


class LinkSummary(TypedDict):
    """What events.list_events / get_events attach to each event about its links."""

    event_id: str
    binding_id: str
    remote_id: str
    etag: str | None
    base_version: int
    remote_deleted: bool


class EventWithLinks(EventRow):
    links: list[LinkSummary]


class EventLinkRow(TypedDict):
    """An `event_links` row (links.link_of)."""

    id: int
    event_id: str
    binding_id: str
    remote_id: str
    etag: str | None
    base_version: int
    base_hash: str
    base_snapshot: dict[str, Any] | None  # None: the event's own content is the base
    series_remote_id: str | None
    remote_updated: str | None
    remote_deleted: bool
    seen_generation: int
    created_at: datetime
    updated_at: datetime


class OutboxRow(TypedDict):
    id: int
    binding_id: str
    event_id: str
    version: int
    status: OutboxStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    create_sent: bool
    created_at: datetime
    updated_at: datetime


class EventSyncState(TypedDict):
    """One binding's state of one event (outbox.sync_states)."""

    binding_id: str
    state: SyncState


class ConflictRow(TypedDict):
    id: str
    event_id: str
    binding_id: str
    status: ConflictStatus
    kind: ConflictKind
    local: dict[str, Any] | None  # None: deleted here
    remote: dict[str, Any] | None  # None: deleted there
    base: dict[str, Any] | None
    remote_etag: str | None
    remote_deletion_proof: str | None
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    # "local", "remote", "merged", or "auto:..." when the conflict settled itself
    resolution: str | None


class ConferenceRow(TypedDict):
    id: str
    event_id: str
    provider: str
    conference_id: str
    join_url: str | None
    details: dict[str, Any] | None
    state: ConferenceState
    spec_hash: str | None
    spec: dict[str, Any] | None
    idempotency_key: str
    last_synced_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class ConferenceWorkRow(TypedDict):
    """A `conference_outbox` row."""

    id: int
    event_id: str
    status: ConferenceWorkStatus
    reason: ConferenceWorkReason
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    lease_owner: str | None
    lease_until: datetime | None
    created_at: datetime
    updated_at: datetime


class ChannelRow(TypedDict):
    id: str
    binding_id: str
    state: ChannelState
    channel_id: str | None
    resource_id: str | None
    token: str | None
    address: str | None
    expiration: datetime | None
    confirmed_at: datetime | None
    last_message_at: datetime | None
    messages: int
    created_at: datetime
    updated_at: datetime


class WebhookRow(TypedDict):
    """A `webhook_subscriptions` row as the store returns it: the secret stays sealed in the table
    (store/hooks.signing_secret opens it for the one who signs)."""

    id: str
    user_id: str
    url: str
    events: list[str]
    calendar_id: str | None
    state: WebhookState
    disabled_reason: str | None
    last_position: int
    paused_until: datetime | None
    created_at: datetime
    updated_at: datetime


class DeliveryRow(TypedDict):
    """A `webhook_deliveries` row."""

    id: int
    subscription_id: str
    message_id: str
    event_id: str
    position: int
    kind: str
    payload: dict[str, Any]
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    first_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    lease_owner: str | None
    lease_until: datetime | None
    created_at: datetime
    delivered_at: datetime | None
