"""Workers: claim due work with leases in the database and do it.

Due work is a dirty binding (a notification said something changed), a binding whose poll timer
ran out (notifications get lost), conference outbox rows whose retry time has come, and channels
near expiry. Claims are leases with an owner and an expiry, so any number of workers (threads in
`calsync serve`, processes from `calsync worker`, on any number of machines sharing PostgreSQL)
share the work, and a crashed worker's work is picked up once its lease runs out.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from calsync.backoff import jittered_delay
from calsync.budgets import DEFAULT_BUDGETS, RequestBudget
from calsync.conferencing.base import ConferenceAdapter
from calsync.credentials import provider_maker
from calsync.engine.channels import ChannelRun, ensure_channel
from calsync.engine.conferences import ConferenceEngine, ConferenceRun
from calsync.engine.inbound import SyncResult, sync_binding
from calsync.engine.outbound import Pusher
from calsync.engine.pool import ProviderPool, WarmProviders
from calsync.model import Account, utcnow
from calsync.providers.base import Provider
from calsync.store import accounts as account_store
from calsync.store import scheduling
from calsync.store.rows import BindingClaim

log = logging.getLogger(__name__)


@dataclass
class WorkerSettings:
    poll_interval: float = 300.0  # seconds between polls of a quiet binding (the safety net)
    lease_seconds: float = 60.0  # a claim's life; extended page by page during a long sync
    idle_sleep: float = 0.5  # how long an idle worker waits before looking again (or until woken)
    debounce: float = 0.2  # a notified binding is synced this long after the first notification
    public_url: str | None = None  # where providers deliver notifications; None: poll only
    channel_renew_before: float = 6 * 3600.0  # renew a channel when it expires sooner than this
    channel_ttl: int | None = None  # ask for this channel lifetime (None: the provider's default)
    backoff_base: float = 5.0
    backoff_max: float = 900.0
    concurrency: int = 1  # bindings in flight at once in one process (Dispatcher: its sync threads)
    per_account: int = 4  # at most this many bindings of one account per claim (Graph: 4 requests at once)
    budgets: dict[str, RequestBudget] = field(default_factory=lambda: dict(DEFAULT_BUDGETS))


@dataclass
class WorkerStats:
    syncs: int = 0
    sync_errors: int = 0
    conferences: ConferenceRun = field(default_factory=ConferenceRun)
    channels: ChannelRun = field(default_factory=ChannelRun)


SyncObserver = Callable[[SyncResult, datetime | None, datetime], None]
QuietSink = Callable[[scheduling.QuietRelease, SyncResult], None]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """One worker: `run_once` does at most one sync and one batch of conference work."""

    def __init__(
        self,
        engine: Engine,
        *,
        settings: WorkerSettings | None = None,
        adapters: dict[str, ConferenceAdapter] | None = None,
        make_provider: Callable[[Account], Provider] | None = None,
        owner: str | None = None,
        on_sync: SyncObserver | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings or WorkerSettings()
        self.owner = owner or worker_id()
        self.pool = ProviderPool(engine, make_provider)
        self.conferences = ConferenceEngine(engine, adapters or {}, self.pool)
        self.stats = WorkerStats()
        self.on_sync = on_sync
        self._random = random.Random()
        self._stats_lock = threading.Lock()

    def run_once(self, now: datetime | None = None) -> bool:
        """Do what is due now; False when there was nothing to do."""
        now = now or utcnow()
        did = self._sync_one(now)
        return self._conference_work(now) or did

    def run_forever(self, stop: threading.Event, wake: threading.Event | None = None) -> None:
        """Loop until `stop` is set; an idle worker sleeps until `wake` is set or idle_sleep passes."""
        self.spread_overdue_polls()
        while not stop.is_set():
            try:
                busy = self.run_once()
            except OperationalError as exc:  # database busy or briefly unreachable: try again soon
                log.warning("worker %s: database error: %s", self.owner, exc)
                busy = False
            except Exception:
                log.exception("worker %s: unexpected error", self.owner)
                busy = False
            if not busy:
                if wake is not None:
                    wake.wait(self.settings.idle_sleep)
                    wake.clear()
                else:
                    stop.wait(self.settings.idle_sleep)
        self.close()

    def spread_overdue_polls(self) -> None:
        """Polls long overdue when the worker starts (the service was down) are spread over the
        coming interval rather than all made at once (scheduling.spread_overdue_polls)."""
        try:
            with self.engine.begin() as conn:
                moved = scheduling.spread_overdue_polls(conn, utcnow(), self.settings.poll_interval)
        except OperationalError as exc:
            log.warning("worker %s: could not spread overdue polls: %s", self.owner, exc)
            return
        if moved:
            log.info(
                "worker %s: %d overdue polls spread over the next %.0f s",
                self.owner,
                moved,
                self.settings.poll_interval,
            )

    def close(self) -> None:
        self.pool.close()

    # --- inbound ---------------------------------------------------------------------------

    def _sync_one(self, now: datetime) -> bool:
        claims, details, known = self.claim(now, 1)
        if not claims:
            return False
        self.pool.prime(known)
        detail = details[claims[0]["id"]]
        self.sync_claimed(claims[0], self.pool, push=detail.queued, claimed=detail)
        return True

    def claim(
        self, now: datetime, limit: int
    ) -> tuple[list[BindingClaim], dict[str, scheduling.Claimed], dict[str, Account]]:
        """Lease up to `limit` due bindings (scheduling.claim_bindings) and read their accounts, in one
        transaction: what their syncs need to start, so a quiet poll reads nothing more before its request."""
        details: dict[str, scheduling.Claimed] = {}
        with self.engine.begin() as conn:
            claims = scheduling.claim_bindings(
                conn,
                self.owner,
                now,
                self.settings.lease_seconds,
                limit,
                budgets=self.settings.budgets,
                per_account=self.settings.per_account,
                details_out=details,
            )
            known = account_store.get_accounts(conn, {c["account_id"] for c in claims})
        return claims, details, known

    def sync_claimed(
        self,
        claim: BindingClaim,
        pool: ProviderPool,
        *,
        push: bool = True,
        claimed: scheduling.Claimed | None = None,
        quiet: QuietSink | None = None,
    ) -> bool:
        """Sync a binding this worker's owner has leased (its first request already paid for by the
        claim), push its outbox (unless `push` is False: the claim saw nothing queued), look after its
        channel, and give it back. `claimed`: what the claim read of it (its row, its account's
        provider and backoff), so the sync starts without reading them again. `quiet`: where a quiet
        poll (one empty incremental page, nothing else to do, no backoff to clear) is handed, to be
        saved and given back with others in one statement (Dispatcher); the binding stays leased
        until then, and on_sync is that writer's to call. Returns whether the binding was left dirty
        (a notification came during the sync: it is due again shortly; False for a handed-over one)."""
        lease = self.settings.lease_seconds
        held_until = [utcnow() + timedelta(seconds=lease)]  # (the claim's own lease ends a little earlier)

        def keep_lease(_page: int, _result: SyncResult) -> None:
            # extended once a third of it is used up, not after every page (a quiet poll's one page
            # never needs it; a big sync writes it every lease/3 seconds, not every 0.1 s)
            current = utcnow()
            if held_until[0] - current > timedelta(seconds=lease * 2 / 3):
                return
            held_until[0] = current + timedelta(seconds=lease)
            with self.engine.begin() as conn:
                scheduling.extend_binding_lease(conn, claim["id"], self.owner, held_until[0])

        provider = pool.get(claim["account_id"])
        seen_attempts = None if claimed is None else claimed.backoff_attempts
        released: list[tuple[datetime, bool]] = []  # (when, left dirty) once given back

        def give_back(conn: Connection, result: SyncResult) -> None:
            finished = utcnow()
            self._account_backoff(conn, claim["account_id"], result, finished, seen_attempts)
            still_dirty = scheduling.release_binding(
                conn,
                claim["id"],
                self.owner,
                finished,
                self.settings.poll_interval,  # the binding's next slot: spread by its id (scheduling.next_poll_slot)
                claim["dirty_at"],
                self.settings.debounce,
            )
            released.append((finished, still_dirty))

        # with nothing to push and no channel to look after, the binding is given back in the
        # transaction of its last page (with the token): a quiet poll's third transaction saved
        channel_work = bool(self.settings.public_url) and provider.capabilities.push
        early = None if push or channel_work else give_back
        handed: list[scheduling.QuietRelease] = []

        def hand_over(token: str, stats: dict[str, int], _result: SyncResult) -> None:
            handed.append(scheduling.QuietRelease(claim["id"], token, stats, utcnow(), claim["dirty_at"]))

        # a success clears nothing when the claim saw no backoff (_account_backoff): then nothing but the
        # token, the stats and the release is left to write
        batched = hand_over if quiet is not None and early is not None and seen_attempts == 0 else None
        spending = AccountRequests.attach(self.engine, provider, claim["account_id"], self.settings.budgets)
        try:
            start = None if claimed is None else (claimed.binding, claimed.provider)
            result = sync_binding(
                self.engine, provider, claim["id"], after_page=keep_lease, claimed=start, finish=early, quiet=batched
            )
            if push and result.status in ("ok", "skipped"):  # still ours: the lease covers its outbox too
                Pusher(self.engine, provider, claim["id"]).run()
            if self.settings.public_url and result.status == "ok" and provider.capabilities.push:  # ... and its channel
                ensure_channel(
                    self.engine,
                    pool,
                    claim["id"],
                    self.settings.public_url,
                    renew_before=timedelta(seconds=self.settings.channel_renew_before),
                    ttl_seconds=self.settings.channel_ttl,
                    run=self.stats.channels,
                )
        finally:
            if spending is not None:
                spending.detach()
        if handed and quiet is not None and result.status == "ok":
            with self._stats_lock:
                self.stats.syncs += 1
            quiet(handed[0], result)
            return False
        if not released:
            with self.engine.begin() as conn:
                give_back(conn, result)
        finished, still_dirty = released[0]
        with self._stats_lock:
            self.stats.syncs += 1
            self.stats.sync_errors += result.status not in ("ok", "skipped")
        if self.on_sync:
            self.on_sync(result, claim["dirty_at"], finished)
        return still_dirty

    def _account_backoff(
        self, conn: Connection, account_id: str, result: SyncResult, now: datetime, seen_attempts: int | None = None
    ) -> None:
        """Rate limits and outages back the whole account off (with jitter, honouring Retry-After);
        a success clears it. Rejected credentials are marked on the account by the sync itself.
        `seen_attempts`: the account's backoff count when the claim read it; a success of a sync
        claimed while the account was not backed off has nothing to clear (a backoff another worker
        set meanwhile came from a later failure, and stays)."""
        if result.status == "ok" and seen_attempts == 0:
            return
        if result.status == "error":
            attempts = scheduling.backoff_attempts(conn, account_id)
            delay = jittered_delay(
                attempts,
                self.settings.backoff_base,
                self.settings.backoff_max,
                retry_after=result.retry_after,
                rng=self._random,
            )
            scheduling.set_account_backoff(conn, account_id, now + timedelta(seconds=delay))
        elif result.status == "ok" and scheduling.backoff_attempts(conn, account_id):
            scheduling.set_account_backoff(conn, account_id, None)

    # --- conferences and channels --------------------------------------------------------------

    def _conference_work(self, now: datetime) -> bool:
        with self.engine.begin() as conn:
            work = scheduling.claim_conference_work(conn, self.owner, now, self.settings.lease_seconds)
        if not work:
            return False
        self.conferences.work(work, self.stats.conferences)
        return True


class AccountRequests:
    """Spends an account's request budget (budgets.py, kept on the account row) before each request
    its client sends during one sync, waiting when the bucket is empty; the claim paid for the first
    one. A rate-limit answer empties the bucket, so every process holds off that account (only)."""

    def __init__(self, engine: Engine, account_id: str, budget: RequestBudget, prepaid: int = 1) -> None:
        self.engine = engine
        self.account_id = account_id
        self.budget = budget
        self.prepaid = prepaid
        self.waited = 0.0
        self._lock = threading.Lock()
        self._http: Any = None

    @classmethod
    def attach(
        cls, engine: Engine, provider: Provider, account_id: str, budgets: dict[str, RequestBudget]
    ) -> AccountRequests | None:
        """Hook the budget of the account's kind into the provider's HTTP client (None: no budget,
        or a client without the hooks, such as the in-memory provider)."""
        http: Any = getattr(provider, "http", None)
        budget = budgets.get(str(getattr(http, "provider", "")))
        if http is None or not hasattr(http, "before_send") or budget is None or not budget.limited:
            return None
        spending = cls(engine, account_id, budget)
        spending._http = http
        http.before_send = spending.before_send
        http.on_throttled = spending.throttled
        return spending

    def detach(self) -> None:
        if self._http is not None:
            self._http.before_send = None
            self._http.on_throttled = None
            self._http = None

    def before_send(self) -> None:
        with self._lock:
            if self.prepaid > 0:
                self.prepaid -= 1
                return
        while True:
            with self.engine.begin() as conn:
                wait = scheduling.take_budget(conn, self.account_id, self.budget, time.time())
            if wait <= 0:
                return
            self.waited += wait
            time.sleep(min(wait, 5.0))

    def throttled(self) -> None:
        with self.engine.begin() as conn:
            scheduling.drain_budget(conn, self.account_id, self.budget, time.time())


class Dispatcher:
    """The workers of one process: one thread claims due bindings in batches (as many as there are
    free slots, settings.concurrency in all) and hands each to a pool of sync threads, so many
    bindings are in flight at once while each binding is still synced by one thread at a time (its
    lease), its pages in order, its outbox pushed in order after it. Conference work runs on the same
    threads, one batch at a time. Provider clients are lent per sync from one WarmProviders."""

    def __init__(
        self,
        engine: Engine,
        *,
        settings: WorkerSettings | None = None,
        adapters: dict[str, ConferenceAdapter] | None = None,
        make_provider: Callable[[Account], Provider] | None = None,
        owner: str | None = None,
        on_sync: SyncObserver | None = None,
        batch: int = 32,
    ) -> None:
        self.engine = engine
        self.settings = settings or WorkerSettings()
        self.concurrency = max(1, self.settings.concurrency)
        self.batch = max(1, batch)
        self.worker = Worker(
            engine, settings=self.settings, adapters=adapters, make_provider=make_provider, owner=owner, on_sync=on_sync
        )
        self.owner = self.worker.owner
        self.stats = self.worker.stats
        # as many idle clients per account as one claim may start syncs of it, so its next bindings reuse them
        self.providers = WarmProviders(
            make_provider or provider_maker(engine), keep=self.settings.per_account, max_idle=4 * self.concurrency
        )
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="calsync-sync")
        self._lock = threading.Lock()
        self._in_flight = 0
        self._conference_busy = False
        self._conference_checked = 0.0
        self._freed = threading.Event()
        self._wake: threading.Event | None = None  # run_forever's: set to look for due work at once
        self._quiet_lock = threading.Lock()
        self._quiet: list[tuple[scheduling.QuietRelease, SyncResult]] = []  # quiet polls not yet given back

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def run_forever(self, stop: threading.Event, wake: threading.Event | None = None) -> None:
        """Claim and dispatch until `stop` is set; then wait for the syncs in flight. Idle, it sleeps
        until `wake` is set, the earliest notified binding is due, or idle_sleep has passed; on
        PostgreSQL a listener sets `wake` when any process marks a binding dirty (mark_dirty's NOTIFY)."""
        wake = wake or threading.Event()
        self._wake = wake
        listening = threading.Event()  # set: the listener stops
        if self.engine.dialect.name == "postgresql":
            threading.Thread(
                target=scheduling.listen_for_dirty,
                args=(self.engine, wake, listening),
                name="calsync-dirty-listener",
                daemon=True,
            ).start()
        self.worker.spread_overdue_polls()
        try:
            while not stop.is_set():
                try:
                    full, claimed = self.dispatch_once()
                except OperationalError as exc:  # database busy or briefly unreachable: try again soon
                    log.warning("worker %s: database error: %s", self.owner, exc)
                    full, claimed = False, 0
                except Exception:
                    log.exception("worker %s: unexpected error", self.owner)
                    full, claimed = False, 0
                if full:  # every slot busy: wait for some to free (a few at once make one claim)
                    self._freed.wait(self.settings.idle_sleep)
                    self._freed.clear()
                    if self.concurrency >= 8:
                        stop.wait(0.02)
                elif claimed == 0:  # nothing due: sleep until woken (a notification), one is due, or idle_sleep
                    wake.wait(self._idle_pause())
                    wake.clear()
        finally:
            listening.set()
            self.close()

    def _idle_pause(self) -> float:
        """How long an idle dispatcher sleeps: until the earliest notified binding is due (its
        debounce), at most idle_sleep; so a notification waits its debounce, not a whole idle period."""
        try:
            with self.engine.begin() as conn:
                due = scheduling.next_dirty_due(conn, utcnow())
        except OperationalError as exc:
            log.warning("worker %s: database error: %s", self.owner, exc)
            return self.settings.idle_sleep
        if not due:  # none waits, or one is due but was not claimed (its account backed off, its budget spent)
            return self.settings.idle_sleep
        return min(self.settings.idle_sleep, due + 0.005)

    def dispatch_once(self, now: datetime | None = None) -> tuple[bool, int]:
        """Claim what fits in the free slots and start it: (all slots busy, bindings claimed)."""
        self.release_quiet()
        now = now or utcnow()
        free = self.concurrency - self.in_flight
        if free <= 0:
            return True, 0
        claims, details, known = self.worker.claim(now, min(free, self.batch))
        for claim in claims:
            account = known.get(claim["account_id"])
            self._start(self._sync, (claim, details[claim["id"]], account))
        started = len(claims)
        # conference work: looked for when fewer were due than there was room for, else every idle_sleep
        checked_long_ago = time.monotonic() - self._conference_checked >= self.settings.idle_sleep
        if (
            self.concurrency - self.in_flight > 0
            and not self._conference_busy
            and (started < min(free, self.batch) or checked_long_ago)
        ):
            self._conference_checked = time.monotonic()
            with self.engine.begin() as conn:
                work = scheduling.claim_conference_work(conn, self.owner, now, self.settings.lease_seconds)
            if work:
                self._conference_busy = True
                self._start(self._conferences, work)
                started += 1
        return self.concurrency - self.in_flight <= 0, started

    def release_quiet(self) -> None:
        """Save and give back the quiet polls finished since the last look, all in one transaction
        (scheduling.release_quiet), before each claim: a quiet poll's own transaction and two
        statements saved. Until then they stay leased (a crash meanwhile loses nothing: their leases
        run out and they are polled again from their old tokens); a notification that came meanwhile
        leaves its binding dirty, as a release at the end of its sync would. On a database error they
        are kept for the next look."""
        with self._quiet_lock:
            polls, self._quiet = self._quiet, []
        if not polls:
            return
        try:
            with self.engine.begin() as conn:
                dirty = scheduling.release_quiet(
                    conn, self.owner, [p for p, _ in polls], self.settings.poll_interval, self.settings.debounce
                )
        except OperationalError:
            with self._quiet_lock:
                self._quiet[:0] = polls
            raise
        if dirty and self._wake is not None:
            self._wake.set()  # notified during their syncs: due again after the debounce, look then
        if self.worker.on_sync is not None:
            for poll, result in polls:
                self.worker.on_sync(result, poll.seen_dirty_at, poll.finished)

    def _quiet_done(self, poll: scheduling.QuietRelease, result: SyncResult) -> None:
        with self._quiet_lock:
            self._quiet.append((poll, result))
        if self._wake is not None:
            self._wake.set()  # an idle dispatcher gives it back at once; a busy one does with its next claim

    def _start(self, job: Callable[[Any], None], arg: Any) -> None:
        with self._lock:
            self._in_flight += 1
        self._executor.submit(self._run, job, arg)

    def _run(self, job: Callable[[Any], None], arg: Any) -> None:
        try:
            job(arg)
        except Exception:
            log.exception("worker %s: unexpected error", self.owner)
        finally:
            with self._lock:
                self._in_flight -= 1
            self._freed.set()

    def _sync(self, job: tuple[BindingClaim, scheduling.Claimed, Account | None]) -> None:
        claim, detail, account = job
        known = {} if account is None else {account.id: account}
        pool = ProviderPool(self.engine, self.providers.borrow, self.providers.give_back, accounts=known)
        try:
            left_dirty = self.worker.sync_claimed(
                claim, pool, push=detail.queued, claimed=detail, quiet=self._quiet_done
            )
            if left_dirty and self._wake is not None:
                self._wake.set()  # notified during its sync: due again after the debounce, look then
        finally:
            pool.close()

    def _conferences(self, work: Any) -> None:
        try:
            self.worker.conferences.work(work, self.stats.conferences)
        finally:
            self._conference_busy = False

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        try:
            self.release_quiet()
        except Exception:  # their leases run out: polled again
            log.exception("worker %s: could not give back the last quiet polls", self.owner)
        self.worker.close()
        self.providers.close()
