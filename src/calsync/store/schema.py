"""SQLAlchemy 2 tables. SQLite by default, PostgreSQL at scale; the schema itself is made by Alembic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the backend stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# none_as_null: a Python None is SQL NULL (not the JSON text "null"), so IS NULL filters work.
JsonType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

# The people and apps calsync serves: every account and local calendar belongs to one user; events,
# conflicts and conferences belong to their calendar's user (through calendar_id, not a column).
users = Table(
    "users",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("password_hash", Text),  # Argon2id (store/sessions.py); None: no password, no login by password
)

# Web login (store/sessions.py): only SHA-256 digests of session ids and login tokens are kept.
sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index(None, "user_id"),
)

login_tokens = Table(
    "login_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime),
)

# API keys (`cs_<id>_<secret>`): only the secret's SHA-256 is kept (store/users.py says why that is enough).
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("scope", String(16), nullable=False),  # read | write | admin (statuses.KeyScope)
    Column("prefix", String(24), nullable=False),  # the key's first characters, to recognise it in a list
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    Index(None, "user_id"),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id"), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("base_url", Text),
    # The credentials as JSON, sealed (store/sealing.py: "v1:<key id>:<Fernet token>"); never plain.
    # The server default only lets migration 0009 add the column to existing rows; the store always writes it.
    Column("credentials_sealed", Text, nullable=False, server_default=""),
    Column("state", String(32), nullable=False, default="ok"),
    Column("last_error", Text),
    # Per-account backoff after rate limits / server errors: no work for the account before this.
    Column("backoff_until", UTCDateTime),
    Column("backoff_attempts", Integer, nullable=False, default=0, server_default="0"),
    # One token refresh at a time per account (store/token_leases.py): who holds it, and until when.
    Column("token_lease_owner", String(32)),
    Column("token_lease_until", UTCDateTime),
    # The account's request budget, a token bucket kept as one number (GCRA, calsync/budgets.py): the
    # epoch second by which every request taken so far is paid for; a request may go while this is no
    # later than now + (burst - 1) / rate. Shared by every worker process through guarded UPDATEs.
    Column("budget_spent_until", Float, nullable=False, default=0.0, server_default="0"),
    # When a binding of the account was last claimed: the claim serves the least recently served first.
    Column("served_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "user_id"),
)

calendars = Table(
    "calendars",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id"), nullable=False),
    Column("name", String(300), nullable=False),
    Column("color", String(16)),
    Column("time_zone", String(64)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "user_id"),
)

bindings = Table(
    "bindings",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("calendar_id", String(32), ForeignKey("calendars.id", ondelete="CASCADE"), nullable=False),
    Column("account_id", String(32), ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("remote_calendar_id", Text, nullable=False),
    Column("direction", String(16), nullable=False),
    Column("conflict_policy", String(16), nullable=False, default="ask"),
    # The provider's sync token for this binding alone, and when it was obtained / last confirmed.
    Column("sync_token", Text),
    Column("sync_token_obtained_at", UTCDateTime),
    Column("sync_token_updated_at", UTCDateTime),
    # Full syncs are numbered; links seen by the current one carry its number (mark and sweep).
    Column("full_sync_generation", Integer, nullable=False, default=0),
    Column("last_sync_at", UTCDateTime),
    Column("last_full_sync_at", UTCDateTime),
    Column("last_sync_status", String(32)),
    Column("last_sync_stats", JsonType),
    Column("last_error", Text),
    # Scheduling: dirty since a notification (null = clean), next poll (a new binding: its creation,
    # so due at once; never NULL since 0015), and the lease of the worker syncing it (a crashed
    # worker's lease simply runs out).
    Column("dirty_at", UTCDateTime),
    Column("next_poll_at", UTCDateTime),
    Column("lease_owner", String(64)),
    Column("lease_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("account_id", "remote_calendar_id"),
    Index(None, "lease_until"),
    # the poll timer in order (store/scheduling.claim_binding); never NULL since migration 0015
    Index(None, "next_poll_at"),
    # the notified bindings, claimed before the poll backlog (store/scheduling.claim_bindings)
    Index(
        "ix_bindings_dirty_at",
        "dirty_at",
        postgresql_where=text("dirty_at IS NOT NULL"),
        sqlite_where=text("dirty_at IS NOT NULL"),
    ),
)

events = Table(
    "events",
    metadata,
    Column("id", String(32), primary_key=True),  # stable id, never reused
    Column("calendar_id", String(32), ForeignKey("calendars.id", ondelete="CASCADE"), nullable=False),
    Column("title", Text, nullable=False, default=""),
    Column("description", Text),
    Column("location", Text),
    Column("start", String(32), nullable=False),
    Column("end", String(32), nullable=False),
    Column("range_start", String(32), nullable=False),
    Column("range_end", String(32), nullable=False),
    Column("all_day", Boolean, nullable=False, default=False),
    Column("time_zone", String(64)),
    Column("status", String(16), nullable=False, default="confirmed"),
    Column("recurrence", JsonType),
    Column("recurring_event_id", String(32), ForeignKey("events.id", ondelete="SET NULL")),
    Column("original_start", String(32)),
    Column("attendees", JsonType, nullable=False),
    Column("conference", JsonType),
    Column("ical_uid", Text),
    Column("sequence", Integer, nullable=False, default=0),
    Column("extra", JsonType, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("source", String(64), nullable=False),
    Column("updated_at_source", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("deleted_at", UTCDateTime),
    # provenance of a tombstone: the side that deleted it ("local", "<provider>:<binding id>") and
    # what proved the deletion (the request and its answer); see docs/ARCHITECTURE.md, "Deletions"
    Column("deleted_by", String(64)),
    Column("deletion_proof", Text),
    Index(None, "calendar_id", "range_start"),
    Index(None, "recurring_event_id"),
)

event_links = Table(
    "event_links",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(32), ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("binding_id", String(32), ForeignKey("bindings.id", ondelete="CASCADE"), nullable=False),
    Column("remote_id", Text, nullable=False),
    Column("etag", Text),
    # The local version last agreed with this binding, and that version's content (the three-way base).
    # base_snapshot NULL: the base is the event's own content, until the event changes (event_store.write_down_bases).
    Column("base_version", Integer, nullable=False),
    Column("base_hash", String(64), nullable=False),
    Column("base_snapshot", JsonType),
    Column("series_remote_id", Text),
    Column("remote_updated", String(40)),
    Column("remote_deleted", Boolean, nullable=False, default=False),
    Column("seen_generation", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("binding_id", "remote_id"),
    UniqueConstraint("event_id", "binding_id"),
    # a binding's exception links, for attaching orphans to their series (without it, every sync that
    # wrote something read every link row of the binding, base snapshots and all)
    Index(None, "binding_id", "series_remote_id", "event_id"),
)

conflicts = Table(
    "conflicts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("event_id", String(32), ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("binding_id", String(32), ForeignKey("bindings.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False, default="open"),
    Column("kind", String(32), nullable=False),  # edit-edit, remote-delete, local-delete
    Column("local", JsonType),
    Column("remote", JsonType),
    Column("base", JsonType),
    Column("remote_etag", Text),
    Column("remote_deletion_proof", Text),  # when the remote side is a deletion: what proved it
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime),
    Column("resolution", String(32)),
    Index(None, "binding_id", "status"),
    Index(None, "event_id", "status"),
)

# The change journal: one row per committed change of an event (a new version, a conflict opened or
# resolved), written in the same transaction as the change (store/journal.py). It is both the change
# feed (rows get a `position` once committed, in commit order, from journal.sequence) and the event's
# history (`diff` holds the old and new values of the fields that changed; a version is rebuilt by
# undoing later diffs from the event's current row).
JournalId = BigInteger().with_variant(Integer, "sqlite")
event_changes = Table(
    "event_changes",
    metadata,
    Column("id", JournalId, primary_key=True, autoincrement=True),
    Column("position", BigInteger, unique=True),  # NULL until sequenced (after its commit)
    Column("user_id", String(32), nullable=False),  # the calendar's owner when the change was made
    Column("calendar_id", String(32), nullable=False),
    Column("event_id", String(32), ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),  # the event's version after the change
    Column("kind", String(24), nullable=False),  # statuses.ChangeKind
    Column("side", String(32), nullable=False),  # "local" or the binding id that brought the change
    Column("author", Text, nullable=False),  # who: "api key <name>", "cli", "google binding <id>", ...
    Column("remote_etag", Text),  # the provider's ETag of the version a binding brought
    Column("fields", JsonType),  # names of the fields that changed
    Column("diff", JsonType),  # {field: [old, new]} for updates; NULL for creations, deletions, conflicts
    Column("conflict_id", String(32)),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "user_id", "position"),
    Index(None, "event_id", "version"),
    Index(
        "ix_event_changes_unsequenced",
        "id",
        postgresql_where=text("position IS NULL"),
        sqlite_where=text("position IS NULL"),
    ),
)

# One row (id 1): the newest feed position given (the sequencer's lock: journal.sequence updates this
# row first), and the newest one retention has pruned (a cursor before it gets 410).
journal_state = Table(
    "journal_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sequenced_through", BigInteger, nullable=False, default=0),
    Column("pruned_through", BigInteger, nullable=False, default=0),
)

# Conferences we manage: one row per meeting made for an event (a restored event gets a new row).
conferences = Table(
    "conferences",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("event_id", String(32), ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("provider", String(32), nullable=False),  # the adapter's name: zoom, webhook, jitsi
    Column("conference_id", Text, nullable=False),
    Column("join_url", Text),
    Column("details", JsonType),
    Column("state", String(16), nullable=False),  # creating | active | deleted (statuses.ConferenceState)
    # Fingerprint of the event fields the meeting was last made from (MeetingSpec): same -> no call.
    Column("spec_hash", String(64)),
    Column("spec", JsonType),
    Column("idempotency_key", Text, nullable=False),
    Column("last_synced_at", UTCDateTime),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "event_id", "state"),
)

# Conference work, written in the same transaction as the event change that calls for it.
# At most one pending row per event: the worker reconciles the event's current state, so
# repeated changes (or duplicate deliveries of one change) collapse into one piece of work.
conference_outbox = Table(
    "conference_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(32), ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),  # pending | done | failed
    Column("reason", String(32), nullable=False),  # inbound | local | create (only inbound is written so far)
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
    Column("lease_owner", String(64)),
    Column("lease_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "status", "next_attempt_at"),
    Index(None, "event_id", "status"),
)

# Change-notification channels per binding. `intent` rows are created with the first conference
# on a calendar; the notifications work turns them into live provider channels.
# Google service-account keys, one row per key however many users its accounts act for (domain-wide
# delegation): an account's credentials name the key (`key_ref`), store/service_keys.py puts it back.
service_account_keys = Table(
    "service_account_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("client_email", Text, nullable=False),
    Column("private_key_id", Text, nullable=False),
    Column("key_sealed", Text, nullable=False),  # the key file's JSON, sealed (store/sealing.py)
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("client_email", "private_key_id", name="uq_service_account_keys_key"),
)

channels = Table(
    "channels",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("binding_id", String(32), ForeignKey("bindings.id", ondelete="CASCADE"), nullable=False),
    Column("state", String(16), nullable=False),  # intent | pending | active | stopped | failed | gone
    Column("channel_id", Text),
    Column("resource_id", Text),
    Column("token", Text),  # sealed like credentials (store/keys.py): the secret notifications carry
    Column("address", Text),
    Column("expiration", UTCDateTime),
    Column("confirmed_at", UTCDateTime),  # the provider's `sync` message arrived
    Column("last_message_at", UTCDateTime),
    Column("messages", Integer, nullable=False, default=0, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "binding_id", "state"),
    Index(None, "channel_id"),
)

# The transactional outbox of local changes: one row per push-enabled binding, written in the
# same transaction as the event change. Drained per binding in order; a row is marked done in the
# same transaction as the link it updates (the checkpoint).
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("binding_id", String(32), ForeignKey("bindings.id", ondelete="CASCADE"), nullable=False),
    Column("event_id", String(32), ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),  # the event version this row asks to push
    Column("status", String(16), nullable=False),  # pending | held (conflict) | done | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
    # a create was sent for this row (recorded before the request): if its answer was lost and the
    # event is deleted before the retry, the copy it may have made there is withdrawn
    Column("create_sent", Boolean, nullable=False, default=False, server_default=false()),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "binding_id", "status", "id"),
    Index(None, "event_id", "binding_id", "status"),
    # the bindings with changes due to push (store/scheduling.claim_binding): an index-only range
    Index(None, "status", "next_attempt_at", "binding_id"),
)


# Outbound webhooks (store/hooks.py, calsync/hooks/): a user's subscriptions, each a URL, the change kinds
# it wants (statuses.ChangeKind), an optional calendar, its signing secret sealed like credentials
# (store/keys.py; shown once, at creation) and its cursor into the change journal (`last_position`: the
# newest feed position fanned out into its deliveries).
webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("url", Text, nullable=False),
    Column("events", JsonType, nullable=False),  # the change kinds wanted
    Column("calendar_id", String(32)),  # only this calendar's changes (NULL: all of the user's)
    Column("secret_sealed", Text, nullable=False),  # "whsec_<base64>", sealed (store/sealing.py)
    Column("state", String(16), nullable=False),  # active | disabled (statuses.WebhookState)
    Column("disabled_reason", Text),
    Column("last_position", BigInteger, nullable=False),
    # the receiver failed: none of its deliveries is tried before this time, so a failing receiver
    # costs one attempt per backoff step, not one per delivery waiting for it (store/hooks.pause)
    Column("paused_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "user_id"),
)

# One message to one subscription: the change's JSON body (signed and sent as it is kept), its
# Standard Webhooks id (`msg_...`, the same on every attempt), and the retry state. Workers lease rows
# (FOR UPDATE SKIP LOCKED on PostgreSQL); a row waits while an older row of the same subscription and
# event is pending (in order per event).
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", JournalId, primary_key=True, autoincrement=True),
    Column(
        "subscription_id",
        String(32),
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("message_id", String(40), nullable=False, unique=True),
    Column("event_id", String(32), nullable=False),
    Column("position", BigInteger, nullable=False),  # the journal row's feed position
    Column("kind", String(24), nullable=False),  # statuses.ChangeKind
    Column("payload", JsonType, nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed (statuses.DeliveryStatus)
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("first_attempt_at", UTCDateTime),  # the retry bound counts from here
    Column("last_attempt_at", UTCDateTime),
    Column("last_status", Integer),  # the receiver's HTTP status (NULL: no answer)
    Column("last_error", Text),
    Column("lease_owner", String(64)),
    Column("lease_until", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    Index(None, "status", "next_attempt_at"),
    Index(None, "subscription_id", "event_id", "status"),
)
