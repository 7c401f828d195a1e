"""Queries for scheduling: dirty bindings, leases, account backoff, channels.

Claims are one guarded UPDATE after a `SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL; on SQLite
the FOR UPDATE is dropped and the single writer plus the guard make the claim atomic), so any
number of workers share the work and a crashed worker's lease simply runs out.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NotRequired, TypedDict, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Float,
    Integer,
    and_,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    text,
    true,
    update,
)

from calsync.budgets import DEFAULT_BUDGETS, RequestBudget
from calsync.model import utcnow
from calsync.statuses import OPEN_CHANNEL_STATES, ChannelState
from calsync.store.keys import open_sealed, seal
from calsync.store.rows import BindingClaim, BindingRow, ChannelRow, ConferenceWorkRow
from calsync.store.schema import accounts, bindings, channels, conference_outbox, outbox

log = logging.getLogger(__name__)

# --- the poll timer ------------------------------------------------------------------------------
#
# Every binding has its own slot in the poll interval: the times `phase` seconds past a multiple of
# the interval (counted from the epoch), its phase a hash of its id, so the slots of many bindings are
# spread evenly over the interval. A sync sets the next poll an interval on, moved toward the
# binding's slot by at most a tenth of the interval (so polls come every 0.9 to 1.1 intervals, as the
# random jitter this replaces gave): bindings synced in one burst (bound together, or the backlog of a
# restart) drift apart to their own slots within five polls and stay there, instead of polling again
# in the same burst every interval. spread_overdue_polls moves a restart's backlog to the slots at once.

POLL_STEP = 0.1  # the most a poll moves toward its slot, as a share of the interval


def poll_phase(binding_id: str, interval: float) -> float:
    """Seconds into the interval at which this binding's polls fall (deterministic, uniform)."""
    digest = hashlib.sha256(binding_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * interval


def first_slot_after(binding_id: str, after: datetime, interval: float) -> datetime:
    """The binding's first slot at or after `after`."""
    if interval <= 0:
        return after
    phase = poll_phase(binding_id, interval)
    slot = phase + math.ceil((after.timestamp() - phase) / interval) * interval
    return datetime.fromtimestamp(slot, UTC)


def next_poll_slot(binding_id: str, after: datetime, interval: float) -> datetime:
    """The next poll of a binding synced at `after`: an interval on, moved toward the binding's nearest
    slot by at most POLL_STEP of the interval (exactly an interval on once it is on its slot)."""
    if interval <= 0:
        return after
    target = after.timestamp() + interval
    phase = poll_phase(binding_id, interval)
    nearest = phase + round((target - phase) / interval) * interval
    step = max(-POLL_STEP * interval, min(POLL_STEP * interval, nearest - target))
    return datetime.fromtimestamp(target + step, UTC)


def spread_overdue_polls(conn: Connection, now: datetime, interval: float, grace: float | None = None) -> int:
    """After a restart every binding's poll is overdue at once: those late by more than `grace`
    (default a tenth of the interval) move to their next slot, spread over the coming interval,
    instead of arriving at the provider in one herd. Never a binding that is dirty (a notification
    waits for it), leased, or never synced (its first sync is not delayed). Returns how many moved."""
    if interval <= 0:
        return 0
    cutoff = now - timedelta(seconds=interval / 10 if grace is None else grace)
    late = and_(
        bindings.c.next_poll_at < cutoff,
        bindings.c.dirty_at.is_(None),
        bindings.c.sync_token.is_not(None),
        bindings.c.direction != "push",
        _free(bindings, now),
    )
    ids = list(conn.execute(select(bindings.c.id).where(late)).scalars())
    if not ids:
        return 0
    conn.execute(
        update(bindings).where(bindings.c.id == bindparam("b_id"), late).values(next_poll_at=bindparam("b_next")),
        [{"b_id": i, "b_next": first_slot_after(i, now, interval)} for i in ids],
    )
    return len(ids)


def mark_dirty(conn: Connection, binding_id: str, now: datetime | None = None, debounce: float = 0.2) -> None:
    """A notification: the binding becomes due `debounce` seconds from now (unless it is due sooner),
    so the notifications of one burst are settled by one sync."""
    now = now or utcnow()
    soon = now + timedelta(seconds=debounce)
    conn.execute(
        update(bindings)
        .where(bindings.c.id == binding_id)
        .values(
            dirty_at=now,
            next_poll_at=case(
                (or_(bindings.c.next_poll_at.is_(None), bindings.c.next_poll_at > soon), soon),
                else_=bindings.c.next_poll_at,
            ),
        )
    )
    if conn.dialect.name == "postgresql":  # idle workers of every process learn of it at commit
        conn.execute(_ANNOUNCE)


DIRTY_CHANNEL = "calsync_dirty"
_ANNOUNCE = text(f"SELECT pg_notify('{DIRTY_CHANNEL}', '')")  # one per transaction: PostgreSQL folds repeats


def next_dirty_due(conn: Connection, now: datetime) -> float | None:
    """Seconds until the earliest notified binding nobody holds is due (0 if one is due now; None:
    none waits), so an idle worker sleeps until then rather than a whole idle period (a partial index)."""
    due = conn.execute(
        select(func.min(bindings.c.next_poll_at)).where(bindings.c.dirty_at.is_not(None), _free(bindings, now))
    ).scalar()
    if due is None:
        return None
    if due.tzinfo is None:  # SQLite keeps naive UTC
        due = due.replace(tzinfo=UTC)
    return max(0.0, float((due - now).total_seconds()))


def listen_for_dirty(engine: Engine, wake: threading.Event, stop: threading.Event, retry: float = 2.0) -> None:
    """PostgreSQL: set `wake` whenever a transaction that marked a binding dirty commits, in any
    process (mark_dirty's NOTIFY), until `stop` is set. Runs on a thread of its own with a connection
    of its own; a lost connection is made again after `retry` seconds (meanwhile the idle timer polls)."""
    while not stop.is_set():
        try:
            pooled = engine.raw_connection()
            raw: Any = pooled.driver_connection
            pooled.detach()  # LISTEN for the thread's life: never handed back to the pool
            try:
                raw.autocommit = True
                raw.execute(f"LISTEN {DIRTY_CHANNEL}")
                wake.set()  # anything marked before the LISTEN took hold is looked for once
                while not stop.is_set():
                    for _note in raw.notifies(timeout=1.0):
                        wake.set()
            finally:
                pooled.close()
        except Exception as exc:  # noqa: BLE001 - a listener that fails must not end the worker
            log.warning("dirty-binding listener: %s: %s; retrying in %.0f s", type(exc).__name__, exc, retry)
            stop.wait(retry)


def sync_pending(conn: Connection, binding_id: str, now: datetime) -> bool:
    """Dirty and not yet claimed: the sync that will run covers any change notified now, so a
    notification needs no write at all (which keeps a burst of them cheap)."""
    row = conn.execute(select(bindings.c.dirty_at, bindings.c.lease_until).where(bindings.c.id == binding_id)).first()
    return row is not None and row.dirty_at is not None and (row.lease_until is None or row.lease_until < now)


def _free(table: Any, now: Any) -> Any:
    return or_(table.c.lease_until.is_(None), table.c.lease_until < now)


def _affordable(budgets: Mapping[str, RequestBudget], epoch: Any) -> ColumnElement[bool]:
    """The account may make one more request now (budgets.py: its bucket holds a token)."""
    limited = {kind: budget for kind, budget in budgets.items() if budget.limited}
    if not limited:
        return true()
    slack = case(
        {kind: literal(budget.slack(1)) for kind, budget in limited.items()},
        value=accounts.c.provider,
        else_=literal(None),
    )
    return or_(slack.is_(None), accounts.c.budget_spent_until <= epoch + slack)


def _claimable(now: Any, budgets: Mapping[str, RequestBudget], epoch: Any) -> ColumnElement[bool]:
    return and_(
        _free(bindings, now),
        accounts.c.state == "ok",
        or_(accounts.c.backoff_until.is_(None), accounts.c.backoff_until <= now),
        _affordable(budgets, epoch),
    )


BudgetsKey = tuple[tuple[str, RequestBudget], ...]


@functools.lru_cache(maxsize=16)
def _claim_queries(budgets: BudgetsKey) -> tuple[Any, Any, Any, Any]:
    """claim_bindings' statements, built once per set of budgets with the time, the epoch second and
    the window as parameters: a claim runs them every few milliseconds, and building and keying them
    anew cost more CPU than running them (SQLAlchemy's compiled cache still needs a fresh statement's
    cache key, worked out from its whole tree)."""
    now = bindparam("c_now", type_=bindings.c.next_poll_at.type)
    epoch = bindparam("c_epoch", type_=Float())
    columns = (
        bindings.c.id,
        bindings.c.dirty_at,
        bindings.c.account_id,
        bindings.c.next_poll_at,
        accounts.c.provider,
        accounts.c.budget_spent_until,
        accounts.c.served_at,
        accounts.c.backoff_attempts,
    )
    claimable = _claimable(now, dict(budgets), epoch)
    window = bindparam("c_window", type_=Integer())

    def candidates(query: Any) -> Any:
        return query.where(claimable).limit(window).with_for_update(of=bindings, skip_locked=True)

    timer_due = and_(bindings.c.direction != "push", bindings.c.next_poll_at <= now)
    notified = candidates(
        select(*columns)
        .join(accounts, accounts.c.id == bindings.c.account_id)
        .where(bindings.c.dirty_at.is_not(None), timer_due)
        .order_by(bindings.c.dirty_at)
    )
    polled = candidates(
        select(*columns)
        .join(accounts, accounts.c.id == bindings.c.account_id)
        .where(timer_due)
        .order_by(bindings.c.next_poll_at)
    )
    queued = candidates(  # the oldest due changes to push, their bindings by primary key
        select(*columns)
        .select_from(outbox)
        .join(bindings, bindings.c.id == outbox.c.binding_id)
        .join(accounts, accounts.c.id == bindings.c.account_id)
        .where(outbox.c.status == "pending", outbox.c.next_attempt_at <= now)
        .order_by(outbox.c.next_attempt_at)
    )
    lease = (
        update(bindings)
        .where(bindings.c.id.in_(bindparam("l_ids", expanding=True)), _free(bindings, now))
        .values(lease_owner=bindparam("l_owner"), lease_until=bindparam("l_until", type_=bindings.c.lease_until.type))
        .returning(*bindings.c)
    )
    return notified, polled, queued, lease


def claim_bindings(
    conn: Connection,
    owner: str,
    now: datetime,
    lease_seconds: float,
    limit: int = 1,
    *,
    budgets: Mapping[str, RequestBudget] | None = None,
    per_account: int = 4,
    details_out: dict[str, Claimed] | None = None,
) -> list[BindingClaim]:
    """Up to `limit` due bindings, leased to `owner`, in this order: notified (or with local changes
    queued) before those only due by the poll timer; then round the accounts, the least recently
    served first (`accounts.served_at`), at most `per_account` bindings of one account per claim; then
    the earliest due. A binding is due when its time has come: the poll timer, or shortly after a
    notification (mark_dirty brings the time forward), or local changes whose time to push has come.

    The candidates come from three index ranges, never a read of every binding
    (tests/test_scheduler_postgres.py checks the plans at 100,000 bindings): the notified bindings
    (`ix_bindings_dirty_at`, partial), the poll timer in order (`ix_bindings_next_poll_at`), and the
    due rows of the outbox (`ix_outbox_status_next_attempt_at_binding_id`), each a window of
    limit x per_account rows taken FOR UPDATE SKIP LOCKED, so workers claiming at once take
    different ones. The order above is applied to the window.

    Each claimed binding spends one request of its account's budget (its first request, the poll),
    taken with a guarded UPDATE of the accounts (one for all of them, spend_many): an account whose
    bucket is empty is left out until it refills, in every process. So one account with a thousand
    calendars or a long initial sync takes its turn with the others and never more than its budget,
    and a notification of anyone else is claimed before the poll backlog. `details_out` gets, for
    each claimed binding, what its sync needs to start without reading it again (Claimed: with
    whether local changes wait in its outbox; a worker need not read the outbox of the others: a
    change queued meanwhile makes its binding due again once it is given back)."""
    budgets = DEFAULT_BUDGETS if budgets is None else budgets
    epoch = now.timestamp()
    window = max(1, limit) * max(1, per_account)
    notified_q, polled_q, queued_q, lease_q = _claim_queries(tuple(sorted(budgets.items())))
    params = {"c_now": now, "c_epoch": epoch, "c_window": window}

    def candidates(query: Any) -> list[dict[str, Any]]:
        return [dict(row) for row in conn.execute(query, params).mappings()]

    notified = candidates(notified_q)
    polled = candidates(polled_q)
    queued = candidates(queued_q)
    with_changes = {row["id"] for row in queued}
    rows: dict[str, dict[str, Any]] = {}
    for row in (*notified, *queued, *polled):
        rows.setdefault(row["id"], row)
    far = datetime.max.replace(tzinfo=UTC)

    def order(row: dict[str, Any]) -> tuple[bool, bool, datetime, datetime]:
        urgent = row["dirty_at"] is not None or row["id"] in with_changes
        served = row["served_at"]
        return (not urgent, served is not None, served or far, row["next_poll_at"] or far)

    picked: dict[str, list[dict[str, Any]]] = {}
    chosen = 0
    for row in sorted(rows.values(), key=order):
        if chosen >= limit:
            break
        mine = picked.setdefault(row["account_id"], [])
        budget = budgets.get(row["provider"])
        cap = per_account if budget is None else min(per_account, budget.affordable(row["budget_spent_until"], epoch))
        if len(mine) < cap:
            mine.append(row)
            chosen += 1
    wanted = {account_id: (len(mine), budgets.get(mine[0]["provider"])) for account_id, mine in picked.items() if mine}
    taken = spend_many(conn, wanted, epoch, served_at=now)
    claims: list[BindingClaim] = []
    for account_id, mine in picked.items():
        claims.extend(
            cast("BindingClaim", {k: r[k] for k in ("id", "dirty_at", "account_id")})
            for r in mine[: taken.get(account_id, 0)]
        )
    if not claims:
        return []
    leased = {
        row["id"]: cast("BindingRow", dict(row))
        for row in conn.execute(
            lease_q,
            {
                "c_now": now,
                "l_ids": [c["id"] for c in claims],
                "l_owner": owner,
                "l_until": now + timedelta(seconds=lease_seconds),
            },
        ).mappings()
    }
    if details_out is not None:
        for binding_id, binding in leased.items():
            seen = rows[binding_id]
            details_out[binding_id] = Claimed(
                binding, seen["provider"], int(seen["backoff_attempts"]), binding_id in with_changes
            )
    return [c for c in claims if c["id"] in leased]


@dataclass(frozen=True)
class Claimed:
    """What claim_bindings saw of a binding it leased: its row as leased (the lease columns the new
    ones), its account's provider kind and backoff count then, and whether local changes wait in its
    outbox. Under the lease no other worker syncs the binding, so its sync may start from this row."""

    binding: BindingRow
    provider: str
    backoff_attempts: int
    queued: bool


def claim_binding(conn: Connection, owner: str, now: datetime, lease_seconds: float) -> BindingClaim | None:
    """The most urgent due binding, leased to `owner` (claim_bindings with a limit of one)."""
    claims = claim_bindings(conn, owner, now, lease_seconds, 1)
    return claims[0] if claims else None


def _spend(
    conn: Connection,
    account_id: str,
    n: int,
    epoch: float,
    budget: RequestBudget | None,
    *,
    served_at: datetime | None = None,
) -> int:
    """Take up to n requests of the account's budget now (a guarded UPDATE: another process may have
    spent it meanwhile); how many were taken."""
    values: dict[str, Any] = {} if served_at is None else {"served_at": served_at}
    if budget is None or not budget.limited:
        if values:
            conn.execute(update(accounts).where(accounts.c.id == account_id).values(**values))
        return n
    while n > 0:
        spent = case(
            (accounts.c.budget_spent_until < epoch, literal(epoch)), else_=accounts.c.budget_spent_until
        ) + literal(n * budget.interval)
        done = conn.execute(
            update(accounts)
            .where(accounts.c.id == account_id, accounts.c.budget_spent_until <= epoch + budget.slack(n))
            .values(budget_spent_until=spent, **values)
        ).rowcount
        if done == 1:
            return n
        current = conn.execute(select(accounts.c.budget_spent_until).where(accounts.c.id == account_id)).scalar()
        if current is None:
            return 0
        n = min(n - 1, budget.affordable(float(current), epoch))
    return 0


_UNLIMITED_SLACK = 1e300  # an account without a budget: any spent_until passes the guard


@functools.lru_cache(maxsize=64)
def _spend_many_statement(n: int) -> Any:
    """The guarded UPDATE of n accounts at once (spend_many), one text per n (so compiled once)."""
    rows = " UNION ALL ".join(f"SELECT :a{i} AS id, :c{i} AS cost, :s{i} AS slack" for i in range(n))
    # only numbered placeholders are formatted in; every value is bound
    return text(
        "UPDATE accounts SET budget_spent_until = CASE WHEN wanted.cost = 0 THEN accounts.budget_spent_until "  # noqa: S608
        "WHEN accounts.budget_spent_until < :epoch THEN :epoch + wanted.cost "
        "ELSE accounts.budget_spent_until + wanted.cost END, served_at = :served_at "
        f"FROM ({rows}) AS wanted WHERE accounts.id = wanted.id "
        "AND accounts.budget_spent_until <= :epoch + wanted.slack RETURNING accounts.id"
    ).bindparams(
        bindparam("epoch", type_=Float()),
        bindparam("served_at", type_=accounts.c.served_at.type),
        *(bindparam(f"c{i}", type_=Float()) for i in range(n)),
        *(bindparam(f"s{i}", type_=Float()) for i in range(n)),
    )


def spend_many(
    conn: Connection,
    wanted: Mapping[str, tuple[int, RequestBudget | None]],
    epoch: float,
    *,
    served_at: datetime,
) -> dict[str, int]:
    """_spend for several accounts (account id -> (requests, its budget)): one guarded UPDATE for all
    of them (a claim serves a dozen accounts at a time); an account whose guard failed (another
    process spent its bucket meanwhile) is tried again alone, as _spend does. How many each got."""
    if not wanted:
        return {}
    items = sorted(wanted.items())  # the same order in every process: their row locks are taken alike
    params: dict[str, Any] = {"epoch": epoch, "served_at": served_at}
    for i, (account_id, (n, budget)) in enumerate(items):
        limited = budget is not None and budget.limited
        params[f"a{i}"] = account_id
        params[f"c{i}"] = n * budget.interval if limited and budget is not None else 0.0
        params[f"s{i}"] = budget.slack(n) if limited and budget is not None else _UNLIMITED_SLACK
    done = set(conn.execute(_spend_many_statement(len(items)), params).scalars())
    taken: dict[str, int] = {}
    for account_id, (n, budget) in items:
        taken[account_id] = n if account_id in done else _spend(conn, account_id, n, epoch, budget, served_at=served_at)
    return taken


def take_budget(conn: Connection, account_id: str, budget: RequestBudget, now: float, n: int = 1) -> float:
    """Spend n requests of the account's budget at epoch second `now`: 0.0 when taken, else how many
    seconds to wait before they may be (nothing is taken then)."""
    if _spend(conn, account_id, n, now, budget) == n:
        return 0.0
    current = conn.execute(select(accounts.c.budget_spent_until).where(accounts.c.id == account_id)).scalar()
    return max(budget.wait(float(current or 0.0), now, n), 0.001)


def drain_budget(conn: Connection, account_id: str, budget: RequestBudget, now: float) -> None:
    """The provider said the account is over its rate (429): empty its bucket, so every process holds
    off the account's requests until it refills (other accounts are untouched)."""
    if budget.limited:
        full = now + budget.burst * budget.interval
        conn.execute(
            update(accounts)
            .where(accounts.c.id == account_id, accounts.c.budget_spent_until < full)
            .values(budget_spent_until=full)
        )


def claim_named_binding(
    conn: Connection, binding_id: str, owner: str, now: datetime, lease_seconds: float
) -> BindingClaim | None:
    """Lease this binding, due or not (a sync someone asked for), unless another owner holds it."""
    row = (
        conn.execute(
            select(bindings.c.id, bindings.c.dirty_at, bindings.c.account_id).where(bindings.c.id == binding_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    claimed = conn.execute(
        update(bindings)
        .where(bindings.c.id == binding_id, _free(bindings, now))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
    ).rowcount
    return cast("BindingClaim", dict(row)) if claimed == 1 else None


def extend_binding_lease(conn: Connection, binding_id: str, owner: str, until: datetime) -> bool:
    """A long sync keeps its lease alive page by page; False if the lease was lost meanwhile."""
    return (
        conn.execute(
            update(bindings)
            .where(bindings.c.id == binding_id, bindings.c.lease_owner == owner)
            .values(lease_until=until)
        ).rowcount
        == 1
    )


def release_binding(
    conn: Connection,
    binding_id: str,
    owner: str,
    now: datetime,
    poll_interval: float,
    seen_dirty_at: datetime | None,
    debounce: float = 0.2,
) -> bool:
    """Give the binding back. Notifications it has seen are settled; one that arrived during the sync
    keeps it dirty and due again shortly (one more sync), so a burst costs one or two syncs. The next
    poll is `poll_interval` on, moved toward the binding's own slot (next_poll_slot). True when it was
    left dirty (due again in `debounce` seconds)."""
    settled: ColumnElement[bool] = bindings.c.dirty_at.is_(None)
    if seen_dirty_at is not None:
        settled = or_(settled, bindings.c.dirty_at <= seen_dirty_at)
    left = conn.execute(
        update(bindings)
        .where(bindings.c.id == binding_id, bindings.c.lease_owner == owner)
        .values(
            lease_owner=None,
            lease_until=None,
            dirty_at=case((settled, None), else_=bindings.c.dirty_at),
            next_poll_at=case(
                (settled, next_poll_slot(binding_id, now, poll_interval)), else_=now + timedelta(seconds=debounce)
            ),
        )
        .returning(bindings.c.dirty_at)
    ).first()
    return left is not None and left.dirty_at is not None


@dataclass(frozen=True)
class QuietRelease:
    """A quiet poll's outcome (one empty incremental page), to be saved with its binding's release:
    its new token and stats, when the listing ended, and the binding's dirty_at as its claim saw it."""

    binding_id: str
    token: str
    stats: dict[str, int]
    finished: datetime
    seen_dirty_at: datetime | None


@functools.lru_cache(maxsize=1)
def _release_quiet_statement() -> Any:
    """release_quiet's UPDATE, built once (a worker runs it for every batch of quiet polls)."""
    at = bindparam("q_at", type_=bindings.c.last_sync_at.type)
    token = bindparam("q_token", type_=bindings.c.sync_token.type)
    settled = or_(
        bindings.c.dirty_at.is_(None), bindings.c.dirty_at <= bindparam("q_seen", type_=bindings.c.dirty_at.type)
    )
    return (
        update(bindings)
        .where(bindings.c.id == bindparam("q_id"), bindings.c.lease_owner == bindparam("q_owner"))
        .values(
            sync_token=token,
            sync_token_updated_at=at,
            sync_token_obtained_at=case(
                (bindings.c.sync_token.is_distinct_from(token), at), else_=bindings.c.sync_token_obtained_at
            ),
            last_sync_at=at,
            last_sync_status="ok",
            last_sync_stats=bindparam("q_stats", type_=bindings.c.last_sync_stats.type),
            last_error=None,
            updated_at=at,
            lease_owner=None,
            lease_until=None,
            dirty_at=case((settled, None), else_=bindings.c.dirty_at),
            next_poll_at=case(
                (settled, bindparam("q_next", type_=bindings.c.next_poll_at.type)),
                else_=bindparam("q_soon", type_=bindings.c.next_poll_at.type),
            ),
        )
    )


def release_quiet(
    conn: Connection, owner: str, polls: list[QuietRelease], poll_interval: float, debounce: float = 0.2
) -> list[str]:
    """Save the token and stats of each quiet poll and give its binding back, as save_sync_token and
    release_binding would in one transaction each, but for many bindings in one statement (executed
    for many parameter sets: one round trip on PostgreSQL). Only bindings this owner still holds are
    written: one whose lease ran out meanwhile belongs to whoever claimed it next, and it keeps its
    old token (still valid: the poll stored nothing). The ids of those left dirty (notified since
    their claims saw them), due again in `debounce` seconds."""
    if not polls:
        return []
    conn.execute(
        _release_quiet_statement(),
        [
            {
                "q_id": poll.binding_id,
                "q_owner": owner,
                "q_token": poll.token,
                "q_at": poll.finished,
                "q_stats": poll.stats,
                "q_seen": poll.seen_dirty_at,
                "q_next": next_poll_slot(poll.binding_id, poll.finished, poll_interval),
                "q_soon": poll.finished + timedelta(seconds=debounce),
            }
            for poll in polls
        ],
    )
    ids = [poll.binding_id for poll in polls]
    return list(
        conn.execute(
            select(bindings.c.id).where(
                bindings.c.id.in_(ids), bindings.c.dirty_at.is_not(None), bindings.c.lease_owner.is_(None)
            )
        ).scalars()
    )


def set_account_backoff(conn: Connection, account_id: str, until: datetime | None) -> int:
    """Back an account off until `until` (None clears it); returns the consecutive backoff count."""
    if until is None:
        conn.execute(update(accounts).where(accounts.c.id == account_id).values(backoff_until=None, backoff_attempts=0))
        return 0
    conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(backoff_until=until, backoff_attempts=accounts.c.backoff_attempts + 1)
    )
    return int(conn.execute(select(accounts.c.backoff_attempts).where(accounts.c.id == account_id)).scalar_one())


def backoff_attempts(conn: Connection, account_id: str) -> int:
    return int(conn.execute(select(accounts.c.backoff_attempts).where(accounts.c.id == account_id)).scalar_one())


def claim_conference_work(
    conn: Connection, owner: str, now: datetime, lease_seconds: float, limit: int = 50
) -> list[ConferenceWorkRow]:
    """Due conference outbox rows, leased to `owner` (the rows as read before the claim: their lease
    columns are the old ones)."""
    rows = (
        conn.execute(
            select(conference_outbox)
            .where(
                conference_outbox.c.status == "pending",
                conference_outbox.c.next_attempt_at <= now,
                _free(conference_outbox, now),
            )
            .order_by(conference_outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        .mappings()
        .all()
    )
    claimed: list[ConferenceWorkRow] = []
    for row in rows:
        if (
            conn.execute(
                update(conference_outbox)
                .where(conference_outbox.c.id == row["id"], _free(conference_outbox, now))
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
            ).rowcount
            == 1
        ):
            claimed.append(cast("ConferenceWorkRow", dict(row)))
    return claimed


# --- channels ----------------------------------------------------------------------------


def _with_token_opened(conn: Connection, row: Any) -> ChannelRow | None:
    """A channel row whose token is plain again: sealed at rest, every ChannelRow the store returns
    carries it open (the receivers compare it; nothing shows it)."""
    if row is None:
        return None
    channel = cast("ChannelRow", dict(row))
    if channel["token"]:
        channel["token"] = open_sealed(conn, channel["token"], f"the token of push channel {channel['id']}")
    return channel


def channel_by_channel_id(conn: Connection, channel_id: str) -> ChannelRow | None:
    """The channel with its token opened, for a receiver to compare."""
    row = conn.execute(select(channels).where(channels.c.channel_id == channel_id)).mappings().first()
    return _with_token_opened(conn, row)


def channel_by_resource_id(conn: Connection, resource_id: str) -> ChannelRow | None:
    """The active channel the provider knows as `resource_id` (a Graph subscription id). A fallback
    for deliveries that lost our channel id from their URL; the channel id lookup is the indexed one."""
    row = (
        conn.execute(select(channels).where(channels.c.resource_id == resource_id, channels.c.state == "active"))
        .mappings()
        .first()
    )
    return _with_token_opened(conn, row)


def record_channel_message(conn: Connection, row_id: str, now: datetime, *, confirmation: bool) -> None:
    values: dict[str, Any] = {"last_message_at": now, "messages": channels.c.messages + 1}
    if confirmation:
        values["confirmed_at"] = now
    conn.execute(update(channels).where(channels.c.id == row_id).values(**values))


def channel_health(conn: Connection) -> dict[str, ChannelRow]:
    """binding id -> its live channel (for status pages)."""
    rows = conn.execute(select(channels).where(channels.c.state == "active")).mappings()
    return {r["binding_id"]: cast("ChannelRow", _with_token_opened(conn, r)) for r in rows}


def dirty_count(conn: Connection) -> int:
    return int(
        conn.execute(select(func.count()).select_from(bindings).where(bindings.c.dirty_at.is_not(None))).scalar_one()
    )


def open_channels(conn: Connection, binding_id: str) -> list[ChannelRow]:
    """The binding's channels that are live or only intended (oldest first)."""
    rows = conn.execute(
        select(channels)
        .where(channels.c.binding_id == binding_id, channels.c.state.in_(OPEN_CHANNEL_STATES))
        .order_by(channels.c.created_at)
    ).mappings()
    return cast("list[ChannelRow]", [_with_token_opened(conn, r) for r in rows])


class NewChannel(TypedDict):
    """A `channels` row as add_channel writes it (the ids and times are its own)."""

    state: ChannelState
    channel_id: NotRequired[str]
    resource_id: NotRequired[str]
    token: NotRequired[str]
    address: NotRequired[str]
    expiration: NotRequired[datetime]


def add_channel(conn: Connection, row_id: str, binding_id: str, values: NewChannel) -> None:
    """The row with its token sealed."""
    now = utcnow()
    row: dict[str, Any] = dict(values)
    if row.get("token"):
        row["token"] = seal(conn, row["token"])
    conn.execute(channels.insert().values(id=row_id, binding_id=binding_id, created_at=now, updated_at=now, **row))


def activate_channel(conn: Connection, row_id: str, resource_id: str, expiration: datetime | None) -> None:
    conn.execute(
        update(channels)
        .where(channels.c.id == row_id)
        .values(state="active", resource_id=resource_id, expiration=expiration, updated_at=utcnow())
    )


def set_channel_state(conn: Connection, row_id: str, state: ChannelState) -> None:
    conn.execute(update(channels).where(channels.c.id == row_id).values(state=state, updated_at=utcnow()))


def renew_channel(conn: Connection, row_id: str, expiration: datetime | None) -> None:
    """The provider extended the channel in place (Graph's PATCH): same ids, a later expiry."""
    conn.execute(
        update(channels)
        .where(channels.c.id == row_id, channels.c.state == "active")
        .values(expiration=expiration, updated_at=utcnow())
    )


def channel_due_for_renewal(conn: Connection, row_id: str, now: datetime) -> None:
    """The provider asked for a renewal (Graph's reauthorizationRequired): make the channel look
    expired, so the worker that next holds its binding's lease renews it. The receiver never calls
    the provider itself."""
    conn.execute(
        update(channels)
        .where(channels.c.id == row_id, channels.c.state == "active")
        .values(expiration=now, updated_at=utcnow())
    )


def channel_gone(conn: Connection, row_id: str) -> None:
    """The provider removed the channel (Graph's subscriptionRemoved): it leaves the open channels,
    so the next worker on its binding makes a new one; nothing is left to stop."""
    conn.execute(
        update(channels)
        .where(channels.c.id == row_id, channels.c.state.in_(("pending", "active")))
        .values(state="gone", updated_at=utcnow())
    )
