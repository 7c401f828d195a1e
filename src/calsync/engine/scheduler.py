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
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

from calsync.backoff import jittered_delay
from calsync.conferencing.base import ConferenceAdapter
from calsync.engine.channels import ChannelRun, ensure_channel
from calsync.engine.conferences import ConferenceEngine, ConferenceRun
from calsync.engine.inbound import SyncResult, sync_binding
from calsync.engine.outbound import Pusher
from calsync.engine.pool import ProviderPool
from calsync.model import Account, utcnow
from calsync.providers.base import Provider
from calsync.store import scheduling

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


@dataclass
class WorkerStats:
    syncs: int = 0
    sync_errors: int = 0
    conferences: ConferenceRun = field(default_factory=ConferenceRun)
    channels: ChannelRun = field(default_factory=ChannelRun)


SyncObserver = Callable[[SyncResult, datetime | None, datetime], None]


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
        lease = self.settings.lease_seconds
        with self.engine.begin() as conn:
            claim = scheduling.claim_binding(conn, self.owner, now, lease)
        if claim is None:
            return False

        held_until = [now + timedelta(seconds=lease)]

        def keep_lease(_page: int, _result: SyncResult) -> None:
            # extended once a third of it is used up, not after every page (a quiet poll's one page
            # never needs it; a big sync writes it every lease/3 seconds, not every 0.1 s)
            current = utcnow()
            if held_until[0] - current > timedelta(seconds=lease * 2 / 3):
                return
            held_until[0] = current + timedelta(seconds=lease)
            with self.engine.begin() as conn:
                scheduling.extend_binding_lease(conn, claim["id"], self.owner, held_until[0])

        result = sync_binding(self.engine, self.pool.get(claim["account_id"]), claim["id"], after_page=keep_lease)
        if result.status in ("ok", "skipped"):  # still ours: the lease covers the binding's outbox too
            Pusher(self.engine, self.pool.get(claim["account_id"]), claim["id"]).run()
        push_capable = self.pool.get(claim["account_id"]).capabilities.push
        if self.settings.public_url and result.status == "ok" and push_capable:  # ... and its channel
            ensure_channel(
                self.engine,
                self.pool,
                claim["id"],
                self.settings.public_url,
                renew_before=timedelta(seconds=self.settings.channel_renew_before),
                ttl_seconds=self.settings.channel_ttl,
                run=self.stats.channels,
            )
        finished = utcnow()
        with self.engine.begin() as conn:
            self._account_backoff(conn, claim["account_id"], result, finished)
            scheduling.release_binding(
                conn,
                claim["id"],
                self.owner,
                finished,
                self.settings.poll_interval,  # the binding's next slot: spread by its id (scheduling.next_poll_slot)
                claim["dirty_at"],
                self.settings.debounce,
            )
        self.stats.syncs += 1
        self.stats.sync_errors += result.status not in ("ok", "skipped")
        if self.on_sync:
            self.on_sync(result, claim["dirty_at"], finished)
        return True

    def _account_backoff(self, conn: Connection, account_id: str, result: SyncResult, now: datetime) -> None:
        """Rate limits and outages back the whole account off (with jitter, honouring Retry-After);
        a success clears it. Rejected credentials are marked on the account by the sync itself."""
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
