"""Push-notification channels: one live channel per pulled binding, renewed before it expires,
stopped when the binding goes away.

Renewal is provider-neutral: a provider that can extend a channel in place (an optional
`renew_channel` method, as Graph's PATCH of a subscription) is asked to; otherwise, or when the
channel turns out to be gone, a new channel is made first and the old one stopped after, so there is
never a gap. Notifications are delivered to `/webhooks/{account kind}` under the public URL."""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Engine

from calsync.engine.pool import ProviderPool
from calsync.model import utcnow
from calsync.providers.base import Channel, NotFoundError, ProviderError
from calsync.store import accounts as account_store
from calsync.store import scheduling
from calsync.store.rows import ChannelRow

WEBHOOK_PREFIX = "/webhooks/"


def webhook_address(public_url: str, kind: str) -> str:
    """Where a provider of this kind delivers notifications (its receiver in service/webhooks.py)."""
    return public_url.rstrip("/") + WEBHOOK_PREFIX + kind


@dataclass
class ChannelRun:
    created: int = 0
    renewed: int = 0
    stopped: int = 0
    failed: int = 0


def ensure_channel(
    engine: Engine,
    pool: ProviderPool,
    binding_id: str,
    public_url: str,
    *,
    now: datetime | None = None,
    renew_before: timedelta = timedelta(hours=6),
    ttl_seconds: int | None = None,
    run: ChannelRun | None = None,
) -> ChannelRun:
    """Give a pulled binding a live channel that does not expire within `renew_before`.

    Called by the worker that holds the binding's lease, so two workers never race to make two
    channels for one binding. Renewal extends the channel in place when the provider can; otherwise
    it makes the new channel first and stops the old one after, so there is no gap in which changes
    go unnoticed. A channel marked for renewal by the receiver (expiry set to now) is renewed here."""
    now = now or utcnow()
    run = run or ChannelRun()
    with engine.begin() as conn:
        binding = account_store.get_binding(conn, binding_id)
        kind = account_store.get_account(conn, binding["account_id"]).provider
        previous = scheduling.open_channels(conn, binding_id)
    if binding["direction"] == "push":
        return run
    fresh_until = now + renew_before
    if any(c["state"] == "active" and c["expiration"] and c["expiration"] > fresh_until for c in previous):
        return run
    renew = getattr(pool.get(binding["account_id"]), "renew_channel", None)
    current = next((c for c in reversed(previous) if c["state"] == "active" and c["resource_id"]), None)
    if renew is not None and current is not None:
        outcome = _renew_in_place(engine, renew, current, ttl_seconds)
        if outcome == "failed":
            run.failed += 1  # still live until it expires; the next claim of the binding tries again
            return run
        if outcome == "renewed":
            run.renewed += 1
            for other in previous:
                if other["id"] != current["id"]:
                    run.stopped += _stop(engine, pool, binding["account_id"], other)
            return run
        previous = [c for c in previous if c["id"] != current["id"]]  # gone: a new channel replaces it
    row_id = uuid.uuid4().hex
    token = secrets.token_urlsafe(32)
    address = webhook_address(public_url, kind)
    with engine.begin() as conn:  # recorded first: the provider's `sync` message may beat its answer
        scheduling.add_channel(
            conn, row_id, binding_id, {"state": "pending", "channel_id": row_id, "token": token, "address": address}
        )
    try:
        channel = pool.get(binding["account_id"]).watch(
            binding["remote_calendar_id"], row_id, address, token, ttl_seconds
        )
    except ProviderError:
        with engine.begin() as conn:
            scheduling.set_channel_state(conn, row_id, "failed")
        run.failed += 1
        return run
    with engine.begin() as conn:
        scheduling.activate_channel(conn, row_id, channel.resource_id, channel.expiration)
    if any(c["state"] == "active" for c in previous):
        run.renewed += 1
    else:
        run.created += 1
    for old in previous:
        run.stopped += _stop(engine, pool, binding["account_id"], old)
    return run


def _renew_in_place(
    engine: Engine,
    renew: Callable[[str, str, int | None], Channel],
    channel: ChannelRow,
    ttl_seconds: int | None,
) -> Literal["renewed", "gone", "failed"]:
    """Extend a live channel at the provider: "renewed", "gone" (the provider no longer has it, so it
    is marked gone and replaced) or "failed" (try again on the next claim)."""
    # an active channel has both ids: the channel id from its creation, the resource id from the provider's answer
    assert channel["channel_id"] is not None and channel["resource_id"] is not None
    try:
        renewed = renew(channel["channel_id"], channel["resource_id"], ttl_seconds)
    except NotFoundError:
        with engine.begin() as conn:
            scheduling.channel_gone(conn, channel["id"])
        return "gone"
    except ProviderError:
        return "failed"
    with engine.begin() as conn:
        scheduling.renew_channel(conn, channel["id"], renewed.expiration)
    return "renewed"


def _stop(engine: Engine, pool: ProviderPool, account_id: str, channel: ChannelRow) -> int:
    """Stop one channel at the provider (an intent has nothing to stop) and mark it stopped."""
    if channel["state"] == "active" and channel["channel_id"] and channel["resource_id"]:
        # one that fails expires on its own; stray messages from it are rejected by the receiver
        with contextlib.suppress(ProviderError):
            pool.get(account_id).stop_channel(channel["channel_id"], channel["resource_id"])
    with engine.begin() as conn:
        scheduling.set_channel_state(conn, channel["id"], "stopped")
    return 1 if channel["state"] == "active" else 0


def unbind(engine: Engine, pool: ProviderPool, binding_id: str) -> int:
    """Remove a binding: stop its channels first, then delete it (links and conflicts go with it)."""
    with engine.begin() as conn:
        binding = account_store.get_binding(conn, binding_id)
        live = scheduling.open_channels(conn, binding_id)
    stopped = sum(_stop(engine, pool, binding["account_id"], c) for c in live)
    with engine.begin() as conn:
        account_store.delete_binding(conn, binding_id)
    return stopped


# --- what a notification records (the service's webhook receiver calls these) -------------------


def note_message(
    engine: Engine, channel_row_id: str, binding_id: str, now: datetime, *, confirmation: bool, debounce: float
) -> None:
    """A channel's message arrived: the channel is heard from, and (unless it only confirms the
    channel) its binding is due for a sync after `debounce` seconds. One transaction."""
    with engine.begin() as conn:
        scheduling.record_channel_message(conn, channel_row_id, now, confirmation=confirmation)
        if not confirmation:
            scheduling.mark_dirty(conn, binding_id, now, debounce)


def note_batch(
    engine: Engine,
    heard: list[str],
    dirty: set[str],
    renew: set[str],
    gone: set[str],
    now: datetime,
    debounce: float,
) -> None:
    """One batch of notifications (Graph posts several at once), in one transaction: channels heard
    from, bindings due for a sync, channels the provider asks to renew, channels it says are gone."""
    with engine.begin() as conn:
        for row_id in heard:
            scheduling.record_channel_message(conn, row_id, now, confirmation=False)
        for row_id in sorted(renew):
            scheduling.channel_due_for_renewal(conn, row_id, now)
        for row_id in sorted(gone):
            scheduling.channel_gone(conn, row_id)
        for binding_id in sorted(dirty):
            scheduling.mark_dirty(conn, binding_id, now, debounce)


def note_validation(engine: Engine, channel_row_id: str, now: datetime) -> None:
    """The provider reached our address while making the channel (Graph's validation): it works."""
    with engine.begin() as conn:
        scheduling.record_channel_message(conn, channel_row_id, now, confirmation=True)
