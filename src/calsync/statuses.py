"""The closed sets of words calsync stores and reports: statuses, states, kinds and policies.

`Literal` aliases rather than Enums: the strings are what the database holds, what the REST API and
`calsync ... --json` print and what library users pass, so a value here is the stored value itself and
nothing is converted at any boundary. mypy checks every comparison and assignment against the set.
Imports nothing of calsync.
"""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

# --- bindings ------------------------------------------------------------------------------------

Direction = Literal["two-way", "pull", "push"]
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)
PUSHING: tuple[Direction, ...] = ("two-way", "push")  # the directions that push local changes

# how the three-way rule settles a change made on both sides (engine/threeway.decide); "merge": field by
# field (engine/field_merge), asking only about the fields changed differently on both sides
ConflictPolicy = Literal["ask", "local-wins", "remote-wins", "latest-wins", "merge"]
CONFLICT_POLICIES: tuple[ConflictPolicy, ...] = get_args(ConflictPolicy)

# --- accounts ------------------------------------------------------------------------------------

# "auth-failed": the provider rejected the credentials, or the token endpoint refuses calsync's own client;
# "reauth-required": the user's grant is gone (revoked, expired, consent withdrawn): `calsync account
# connect` again (same account) sets it back to "ok", and sync resumes from the stored sync tokens
AccountState = Literal["ok", "auth-failed", "reauth-required"]
ACCOUNT_STOPPED: tuple[AccountState, ...] = ("auth-failed", "reauth-required")  # no provider calls

# --- sync results ----------------------------------------------------------------------------------

# the status of an inbound sync (engine/inbound.py, SyncResult)
SyncStatus = Literal["ok", "skipped", "blocked", "auth-failed", "error"]
# a failed inbound sync, as bindings.last_sync_status records it (store/accounts.record_sync_failure)
SyncFailure = Literal["blocked", "auth-failed", "error"]
# bindings.last_sync_status: "ok" (save_sync_token) or the failure; NULL before the first sync
LastSyncStatus = Literal["ok", "blocked", "auth-failed", "error"]
# the status of a push (engine/outbound.py, PushResult); "waiting": a retry is scheduled
PushStatus = Literal["ok", "skipped", "waiting", "auth-failed"]

# --- the outbox of local changes -----------------------------------------------------------------------

# "held": waiting for a conflict's decision
OutboxStatus = Literal["pending", "held", "done", "failed"]
# per binding, what the API shows of an event (store/outbox.sync_states)
SyncState = Literal["synced", "pending", "conflict", "error", "local-only"]

# --- conflicts -------------------------------------------------------------------------------------

ConflictStatus = Literal["open", "resolved"]
ConflictKind = Literal["edit-edit", "remote-delete", "local-delete"]

# --- the change journal (feed and history) ------------------------------------------------------------

# what a journal row records: a new version of the event (created, updated, deleted, undeleted; an
# update that changed only the conference is "conference-changed"), or a conflict opened or resolved
ChangeKind = Literal[
    "created", "updated", "deleted", "undeleted", "conference-changed", "conflict-opened", "conflict-resolved"
]
CHANGE_KINDS: tuple[ChangeKind, ...] = get_args(ChangeKind)

# --- outbound webhooks -----------------------------------------------------------------------------------

# a subscription is delivered to while active; "disabled": a delivery failed for the whole retry bound (the
# reason is kept), or the owner turned it off; POST .../enable makes it active again
WebhookState = Literal["active", "disabled"]
DeliveryStatus = Literal["pending", "delivered", "failed"]

# --- conferences, their outbox, notification channels ----------------------------------------------------

# "creating": the intent recorded before the conference system is asked (its idempotency key)
ConferenceState = Literal["creating", "active", "deleted"]
ConferenceWorkStatus = Literal["pending", "done", "failed"]
# the schema's documented set; every row written so far says "inbound" (store/conferences.enqueue_for_changed_events
# is the only writer, for local changes too), and nothing reads the column
ConferenceWorkReason = Literal["inbound", "local", "create"]
# intent (wanted, not made) -> pending (asked for, answer not yet) -> active -> stopped; "failed": the
# provider refused it; "gone": the provider removed it (Graph's subscriptionRemoved)
ChannelState = Literal["intent", "pending", "active", "stopped", "failed", "gone"]
OPEN_CHANNEL_STATES: tuple[ChannelState, ...] = ("intent", "pending", "active")

# what an API key may do: read (GET), write (every method), admin (write, and act for any user; /metrics)
KeyScope = Literal["read", "write", "admin"]
KEY_SCOPES: tuple[KeyScope, ...] = get_args(KeyScope)


def is_key_scope(value: str) -> TypeGuard[KeyScope]:
    return value in KEY_SCOPES


def is_direction(value: str) -> TypeGuard[Direction]:
    return value in DIRECTIONS


def is_conflict_policy(value: str) -> TypeGuard[ConflictPolicy]:
    return value in CONFLICT_POLICIES
