"""Queries for outbound webhooks: subscriptions, the fan-out of journal rows into deliveries, and
the deliveries' claims, outcomes and log.

Fan-out. Each subscription keeps `last_position`, its cursor into the change journal's feed
(store/journal.py). `fan_out` locks the subscription row first (an UPDATE, as journal.sequence
locks its state row), reads the owner's sequenced changes after the cursor, inserts a delivery for
each one the subscription wants and moves the cursor, all in one transaction: a change is fanned
out exactly once, whichever worker gets there first. Run journal.sequence in its own transaction
before, so the newest committed changes have positions.

Claims. A delivery is due when it is pending, its time has come, its lease is free, its subscription
is active, and no older delivery of the same subscription and event is still pending: deliveries of
one event go out one at a time, in order, while different events proceed independently. A claim is a
`SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite has one writer) and a guarded UPDATE of the
lease, as store/scheduling.py claims work; a crashed worker's lease runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, and_, delete, func, or_, select, update

from calsync.model import utcnow
from calsync.store import journal
from calsync.store.common import new_id
from calsync.store.keys import open_sealed, seal
from calsync.store.rows import DeliveryRow, WebhookRow
from calsync.store.schema import webhook_deliveries, webhook_subscriptions

_subs = webhook_subscriptions
_dels = webhook_deliveries
_PUBLIC = [c for c in _subs.c if c.name != "secret_sealed"]
FAN_OUT_BATCH = 500


# --- subscriptions -------------------------------------------------------------------------------


def create_subscription(
    conn: Connection, user_id: str, url: str, events: Sequence[str], calendar_id: str | None, secret: str
) -> WebhookRow:
    """A new active subscription whose deliveries start with the changes sequenced after now. The
    secret is sealed here; the caller shows it once."""
    now = utcnow()
    row_id = new_id()
    conn.execute(
        _subs.insert().values(
            id=row_id,
            user_id=user_id,
            url=url,
            events=list(dict.fromkeys(events)),
            calendar_id=calendar_id,
            secret_sealed=seal(conn, secret),
            state="active",
            disabled_reason=None,
            last_position=journal.head(conn),
            created_at=now,
            updated_at=now,
        )
    )
    found = get_subscription(conn, row_id)
    assert found is not None
    return found


def get_subscription(conn: Connection, subscription_id: str, user_id: str | None = None) -> WebhookRow | None:
    """The subscription (of `user_id`, when given: another user's is None like a missing one)."""
    query = select(*_PUBLIC).where(_subs.c.id == subscription_id)
    if user_id is not None:
        query = query.where(_subs.c.user_id == user_id)
    row = conn.execute(query).mappings().first()
    return cast("WebhookRow", dict(row)) if row else None


def list_subscriptions(conn: Connection, user_id: str | None = None) -> list[WebhookRow]:
    query = select(*_PUBLIC).order_by(_subs.c.created_at, _subs.c.id)
    if user_id is not None:
        query = query.where(_subs.c.user_id == user_id)
    return cast("list[WebhookRow]", [dict(r) for r in conn.execute(query).mappings()])


def delete_subscription(conn: Connection, subscription_id: str) -> bool:
    """The subscription and its delivery log; False when there was none."""
    conn.execute(delete(_dels).where(_dels.c.subscription_id == subscription_id))
    return conn.execute(delete(_subs).where(_subs.c.id == subscription_id)).rowcount == 1


def signing_secret(conn: Connection, subscription_id: str) -> str:
    """The `whsec_...` secret, opened (for signing only; nothing shows it after creation)."""
    sealed = conn.execute(select(_subs.c.secret_sealed).where(_subs.c.id == subscription_id)).scalar_one()
    return open_sealed(conn, sealed, f"the signing secret of webhook {subscription_id}")


def disable(conn: Connection, subscription_id: str, reason: str) -> None:
    conn.execute(
        update(_subs)
        .where(_subs.c.id == subscription_id)
        .values(state="disabled", disabled_reason=reason, updated_at=utcnow())
    )


def enable(conn: Connection, subscription_id: str) -> None:
    """Active again: fan-out goes on from where it stopped (changes made meanwhile are delivered, as far
    as the journal still keeps them), pending deliveries go out; failed ones stay failed (redeliver them)."""
    conn.execute(
        update(_subs)
        .where(_subs.c.id == subscription_id)
        .values(state="active", disabled_reason=None, paused_until=None, updated_at=utcnow())
    )


def pause(conn: Connection, subscription_id: str, until: datetime) -> None:
    """The receiver failed: none of the subscription's deliveries is tried before `until` (a later
    pause wins), so a receiver that is down costs one attempt per backoff step, not one per delivery."""
    conn.execute(
        update(_subs)
        .where(_subs.c.id == subscription_id, or_(_subs.c.paused_until.is_(None), _subs.c.paused_until < until))
        .values(paused_until=until)
    )


def resume(conn: Connection, subscription_id: str) -> None:
    """The receiver answered: its deliveries go out as they are due."""
    conn.execute(
        update(_subs).where(_subs.c.id == subscription_id, _subs.c.paused_until.is_not(None)).values(paused_until=None)
    )


def active_subscription_ids(conn: Connection) -> list[str]:
    return list(conn.execute(select(_subs.c.id).where(_subs.c.state == "active").order_by(_subs.c.id)).scalars())


def lowest_cursor(conn: Connection) -> int | None:
    """The smallest cursor of an active subscription (None: none is active): fan-out has work when
    the journal's head is past it."""
    value = conn.execute(select(func.min(_subs.c.last_position)).where(_subs.c.state == "active")).scalar()
    return None if value is None else int(value)


# --- fan-out -------------------------------------------------------------------------------------


def fan_out(conn: Connection, subscription_id: str, limit: int = FAN_OUT_BATCH) -> tuple[int, bool]:
    """One page of the subscription's new changes into deliveries, with its cursor moved past them, in
    this transaction; (deliveries added, whether more changes may follow at once)."""
    locked = conn.execute(
        update(_subs)
        .where(_subs.c.id == subscription_id, _subs.c.state == "active")
        .values(last_position=_subs.c.last_position)
    ).rowcount
    if locked != 1:
        return 0, False
    sub = conn.execute(
        select(_subs.c.user_id, _subs.c.events, _subs.c.calendar_id, _subs.c.last_position).where(
            _subs.c.id == subscription_id
        )
    ).one()
    cursor = int(sub.last_position)
    try:
        page = journal.read_feed(conn, sub.user_id, cursor, limit)
    except journal.CursorExpired as exc:  # retention pruned what it had not fanned out yet: on from the oldest kept
        page = journal.read_feed(conn, sub.user_id, exc.pruned_through, limit)
    wanted = set(sub.events or ())
    now = utcnow()
    rows = [
        {
            "subscription_id": subscription_id,
            "message_id": f"msg_{new_id()}",
            "event_id": item["event_id"],
            "position": int(item["position"]),
            "kind": item["kind"],
            "payload": payload_of(item),
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for item in page.items
        if item["kind"] in wanted and (sub.calendar_id is None or item["calendar_id"] == sub.calendar_id)
    ]
    if rows:
        conn.execute(_dels.insert(), rows)
    if page.next_position != cursor:
        conn.execute(update(_subs).where(_subs.c.id == subscription_id).values(last_position=page.next_position))
    return len(rows), page.more


def payload_of(item: dict[str, Any]) -> dict[str, Any]:
    """The message body of one journal row (Standard Webhooks' {type, timestamp, data})."""
    created: datetime = item["created_at"]
    return {
        "type": item["kind"],
        "timestamp": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data": {
            "event_id": item["event_id"],
            "version": int(item["version"]),
            "calendar_id": item["calendar_id"],
            "side": item["side"],
            "author": item["author"],
            "fields": item["fields"] or [],
            "conflict_id": item["conflict_id"],
            "position": int(item["position"]),
        },
    }


# --- claims and outcomes -------------------------------------------------------------------------


def _free(now: datetime) -> Any:
    return or_(_dels.c.lease_until.is_(None), _dels.c.lease_until < now)


def claim_due(
    conn: Connection,
    owner: str,
    now: datetime,
    lease_seconds: float,
    limit: int = 50,
    per_subscription: int | None = None,
) -> list[DeliveryRow]:
    """Due deliveries leased to `owner`, oldest first (at most one per subscription and event). With
    `per_subscription`, no subscription gets more than that many leased at once (counting the leases
    other workers hold), so a slow receiver cannot take every request slot."""
    earlier = _dels.alias("earlier")
    waiting = (
        select(earlier.c.id)
        .where(
            earlier.c.subscription_id == _dels.c.subscription_id,
            earlier.c.event_id == _dels.c.event_id,
            earlier.c.status == "pending",
            earlier.c.id < _dels.c.id,
        )
        .exists()
    )
    candidates = conn.execute(
        select(_dels.c.id, _dels.c.subscription_id)
        .join(_subs, _subs.c.id == _dels.c.subscription_id)
        .where(
            _dels.c.status == "pending",
            _dels.c.next_attempt_at <= now,
            _free(now),
            _subs.c.state == "active",
            or_(_subs.c.paused_until.is_(None), _subs.c.paused_until <= now),
            ~waiting,
        )
        .order_by(_dels.c.id)
        .limit(limit if per_subscription is None else limit * 4)
        .with_for_update(of=_dels, skip_locked=True)
    ).all()
    if per_subscription is None:
        ids = [c.id for c in candidates]
    else:
        held: dict[str, int] = {
            str(sub): int(n)
            for sub, n in conn.execute(
                select(_dels.c.subscription_id, func.count())
                .where(_dels.c.status == "pending", _dels.c.lease_until >= now)
                .group_by(_dels.c.subscription_id)
            )
        }
        ids = []
        for c in candidates:
            if len(ids) < limit and held.get(c.subscription_id, 0) < per_subscription:
                ids.append(c.id)
                held[c.subscription_id] = held.get(c.subscription_id, 0) + 1
    if not ids:
        return []
    until = now + timedelta(seconds=lease_seconds)
    conn.execute(
        update(_dels)
        .where(_dels.c.id.in_(ids), _free(now))
        .values(lease_owner=owner, lease_until=until, first_attempt_at=func.coalesce(_dels.c.first_attempt_at, now))
    )
    rows = conn.execute(
        select(_dels)
        .where(_dels.c.id.in_(ids), _dels.c.lease_owner == owner, _dels.c.status == "pending")
        .order_by(_dels.c.id)
    ).mappings()
    return cast("list[DeliveryRow]", [dict(r) for r in rows])


def _mine(delivery_id: int, owner: str) -> Any:
    return and_(_dels.c.id == delivery_id, _dels.c.lease_owner == owner, _dels.c.status == "pending")


def _attempted(
    conn: Connection, delivery_id: int, owner: str, answer: int | None, error: str | None, now: datetime, **values: Any
) -> bool:
    """One attempt of a delivery this owner holds is over: counted, the receiver's answer (HTTP
    status) and error kept, the lease given back, and `values` (its new status, the next attempt)
    written. False when this owner did not hold it."""
    return (
        conn.execute(
            update(_dels)
            .where(_mine(delivery_id, owner))
            .values(
                attempts=_dels.c.attempts + 1,
                last_attempt_at=now,
                last_status=answer,
                last_error=error,
                lease_owner=None,
                lease_until=None,
                **values,
            )
        ).rowcount
        == 1
    )


def record_delivered(conn: Connection, delivery_id: int, owner: str, status: int, now: datetime) -> bool:
    return _attempted(conn, delivery_id, owner, status, None, now, status="delivered", delivered_at=now)


def record_retry(
    conn: Connection, delivery_id: int, owner: str, status: int | None, error: str, now: datetime, when: datetime
) -> bool:
    return _attempted(conn, delivery_id, owner, status, error, now, next_attempt_at=when)


def record_failed(
    conn: Connection, delivery: DeliveryRow, owner: str, status: int | None, error: str, now: datetime, reason: str
) -> bool:
    """The delivery gave up: failed, and its subscription disabled with `reason`, in this transaction."""
    done = _attempted(conn, delivery["id"], owner, status, error, now, status="failed")
    if done:
        disable(conn, delivery["subscription_id"], reason)
    return done


# --- the log -------------------------------------------------------------------------------------


def list_deliveries(
    conn: Connection, subscription_id: str, before: int | None = None, limit: int = 50
) -> list[DeliveryRow]:
    """The subscription's deliveries, newest first (ids below `before`, when given)."""
    query = select(_dels).where(_dels.c.subscription_id == subscription_id)
    if before is not None:
        query = query.where(_dels.c.id < before)
    rows = conn.execute(query.order_by(_dels.c.id.desc()).limit(limit)).mappings()
    return cast("list[DeliveryRow]", [dict(r) for r in rows])


def get_delivery(conn: Connection, subscription_id: str, delivery_id: int) -> DeliveryRow | None:
    row = (
        conn.execute(select(_dels).where(_dels.c.id == delivery_id, _dels.c.subscription_id == subscription_id))
        .mappings()
        .first()
    )
    return cast("DeliveryRow", dict(row)) if row else None


def redeliver(conn: Connection, delivery_id: int) -> None:
    """Send the same message (same `webhook-id`) again, now and with a fresh retry bound. An older
    delivery of the same event still pending goes first, as always."""
    conn.execute(
        update(_dels)
        .where(_dels.c.id == delivery_id)
        .values(
            status="pending",
            attempts=0,
            next_attempt_at=utcnow(),
            first_attempt_at=None,
            delivered_at=None,
            lease_owner=None,
            lease_until=None,
        )
    )


def backlog(conn: Connection) -> int:
    """Deliveries waiting (of active subscriptions or not)."""
    return int(conn.execute(select(func.count()).select_from(_dels).where(_dels.c.status == "pending")).scalar_one())
