"""The webhook delivery worker: journal rows fanned out into deliveries, due deliveries claimed,
signed and POSTed, outcomes recorded.

At least once: a delivery is marked delivered only after its receiver answered 2xx, so a worker that
dies mid-request leaves it leased, and it is sent again (same `webhook-id`: receivers de-duplicate on
it) when the lease runs out. In order per event: store/hooks.claim_due never hands out a delivery while
an older one of the same subscription and event is pending.

Retries: after a failed attempt (no answer, a timeout, any status but 2xx, a redirect, or the URL
refused at delivery time) the next one waits an exponential, jittered delay (backoff.jittered_delay:
`retry_base` doubling up to `retry_ceiling`), for at most `retry_for` seconds after the first attempt;
the last attempt is made at that bound, and when it fails too the delivery is failed and its
subscription disabled, with the reason shown (GET /api/v1/webhooks/{id}). Defaults: 5 s doubling to
1 h, for 24 h (about 40 attempts); CALSYNC_WEBHOOK_RETRY_BASE, _RETRY_CEILING and _RETRY_FOR (seconds)
change them. CALSYNC_WEBHOOK_CA_BUNDLE names CA certificates to trust instead of the system's.

Never in the way of sync: the service runs this worker in threads of its own (`start_in_thread`),
every request has short timeouts (3 s to connect, 10 s per read or write) and reads at most
`MAX_ANSWER` bytes of an answer; `calsync sync` runs it after its sync, for a bounded time
(`deliver_due`). A worker keeps up to `concurrency` (8) requests in flight, at most `per_subscription`
(4) of them to one subscription, so a receiver that hangs holds half the slots at most.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from sqlalchemy import Engine, select

from calsync import __version__
from calsync.backoff import jittered_delay
from calsync.hooks import signing, urls
from calsync.model import utcnow
from calsync.store import hooks as store
from calsync.store import journal
from calsync.store.rows import DeliveryRow
from calsync.store.schema import event_changes, webhook_subscriptions

log = logging.getLogger(__name__)
MAX_ANSWER = 512  # bytes of a receiver's answer kept (in last_error) and read at all


@dataclass(frozen=True)
class DeliverySettings:
    retry_base: float = 5.0  # seconds before the first retry
    retry_ceiling: float = 3600.0  # the longest wait between two attempts
    retry_for: float = 86400.0  # the bound: no attempt later than this after the first
    connect_timeout: float = 3.0
    timeout: float = 10.0  # per read or write of one request
    lease_seconds: float = 60.0
    batch: int = 50
    concurrency: int = 8  # requests in flight per worker
    per_subscription: int = 4  # of them at most this many to one subscription (a slow receiver holds no more)
    idle_poll: float = 0.25  # seconds between looks for work when there is none
    ca_bundle: str | None = None  # CA certificates to trust instead of the system's (development, tests)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DeliverySettings:
        env = os.environ if environ is None else environ

        def seconds(name: str, default: float) -> float:
            text = env.get(name, "").strip()
            if not text:
                return default
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{name} must be a number of seconds, not {text!r}") from None

        base = cls()
        return cls(
            retry_base=seconds("CALSYNC_WEBHOOK_RETRY_BASE", base.retry_base),
            retry_ceiling=seconds("CALSYNC_WEBHOOK_RETRY_CEILING", base.retry_ceiling),
            retry_for=seconds("CALSYNC_WEBHOOK_RETRY_FOR", base.retry_for),
            timeout=seconds("CALSYNC_WEBHOOK_TIMEOUT", base.timeout),
            ca_bundle=env.get("CALSYNC_WEBHOOK_CA_BUNDLE", "").strip() or None,
        )


@dataclass
class DeliveryStats:
    fanned_out: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    claimed: int = 0

    def add(self, other: DeliveryStats) -> None:
        self.fanned_out += other.fanned_out
        self.delivered += other.delivered
        self.retried += other.retried
        self.failed += other.failed
        self.claimed += other.claimed


@dataclass(frozen=True)
class _Outcome:
    status: int | None
    error: str | None  # None: delivered


@dataclass
class Deliverer:
    """One delivery worker; many may share a database (leases keep them off each other's rows)."""

    engine: Engine
    settings: DeliverySettings = field(default_factory=DeliverySettings.from_env)
    owner: str = field(default_factory=lambda: f"hooks-{os.getpid()}-{uuid.uuid4().hex[:8]}")

    def __post_init__(self) -> None:
        s = self.settings
        self._client = httpx.Client(
            timeout=httpx.Timeout(s.timeout, connect=s.connect_timeout),
            verify=ssl.create_default_context(cafile=s.ca_bundle) if s.ca_bundle else True,
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: the connection goes to the address checked
            headers={"user-agent": f"calsync/{__version__}", "content-type": "application/json"},
            limits=httpx.Limits(max_connections=max(2, s.concurrency * 2)),
        )
        self._pool = ThreadPoolExecutor(max(1, s.concurrency), thread_name_prefix="calsync-webhook-send")
        self._secrets: dict[str, str] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    # --- fan-out ---------------------------------------------------------------------------------

    def fan_out(self) -> int:
        """New journal changes into deliveries for every active subscription that wants them."""
        with self.engine.connect() as conn:
            lowest = store.lowest_cursor(conn)
            if lowest is None:
                return 0
            unsequenced = conn.execute(
                select(event_changes.c.id).where(event_changes.c.position.is_(None)).limit(1)
            ).first()
        if unsequenced is not None:
            while True:
                with self.engine.begin() as conn:
                    if journal.sequence(conn) < journal.SEQUENCE_BATCH:
                        break
        with self.engine.connect() as conn:
            head = journal.head(conn)
            behind = list(
                conn.execute(
                    select(webhook_subscriptions.c.id).where(
                        webhook_subscriptions.c.state == "active", webhook_subscriptions.c.last_position < head
                    )
                ).scalars()
            )
        added = 0
        for subscription_id in behind:
            more = True
            while more:
                with self.engine.begin() as conn:
                    count, more = store.fan_out(conn, subscription_id)
                added += count
        return added

    # --- sending ---------------------------------------------------------------------------------

    def _claim(self, limit: int) -> list[tuple[DeliveryRow, str]]:
        """Due deliveries leased to this worker, each with its subscription's URL."""
        with self.engine.begin() as conn:
            claimed = store.claim_due(
                conn, self.owner, utcnow(), self.settings.lease_seconds, limit, self.settings.per_subscription
            )
            if not claimed:
                return []
            query = select(webhook_subscriptions.c.id, webhook_subscriptions.c.url).where(
                webhook_subscriptions.c.id.in_({d["subscription_id"] for d in claimed})
            )
            targets = {str(row.id): str(row.url) for row in conn.execute(query)}
        return [(d, targets[d["subscription_id"]]) for d in claimed]

    def run_once(self) -> DeliveryStats:
        """Fan out, then one batch of due deliveries sent (concurrently), then recorded together."""
        stats = DeliveryStats(fanned_out=self.fan_out())
        claimed = self._claim(self.settings.batch)
        stats.claimed = len(claimed)
        outcomes = list(self._pool.map(lambda pair: self._send_safely(*pair), claimed))
        stats.add(self._record([(d, outcome) for (d, _), outcome in zip(claimed, outcomes, strict=True)]))
        return stats

    def _secret(self, subscription_id: str) -> str:
        secret = self._secrets.get(subscription_id)
        if secret is None:
            with self.engine.connect() as conn:
                secret = store.signing_secret(conn, subscription_id)
            self._secrets[subscription_id] = secret
        return secret

    def _send_safely(self, delivery: DeliveryRow, url: str) -> _Outcome:
        try:
            return self._send(delivery, url)
        except Exception as exc:  # a bug or a secret that cannot be opened: retried like a failed attempt
            log.exception("webhook delivery %s failed before its request", delivery["id"])
            return _Outcome(None, f"{type(exc).__name__}: {exc}"[:MAX_ANSWER])

    def _send(self, delivery: DeliveryRow, url: str) -> _Outcome:
        body = json.dumps(delivery["payload"], separators=(",", ":"), ensure_ascii=False).encode()
        try:
            target = urls.check(url)  # again: the name may resolve elsewhere now
        except urls.RefusedUrl as exc:
            return _Outcome(None, f"refused: {exc}")
        headers = {**signing.headers(self._secret(delivery["subscription_id"]), delivery["message_id"], body)}
        headers["host"] = target.host
        extensions = {"sni_hostname": target.sni} if target.sni else {}
        try:
            with self._client.stream(
                "POST", target.url, content=body, headers=headers, extensions=extensions
            ) as answer:
                status = answer.status_code
                if 200 <= status < 300:
                    return _Outcome(status, None)
                start = b""
                for chunk in answer.iter_raw():
                    start += chunk
                    if len(start) >= MAX_ANSWER:
                        break
        except httpx.HTTPError as exc:
            return _Outcome(None, f"{type(exc).__name__}: {exc or 'no answer'}"[:MAX_ANSWER])
        text = start[:MAX_ANSWER].decode("utf-8", "replace").strip()
        return _Outcome(status, f"HTTP {status}" + (f": {text}" if text else ""))

    def _record(self, done: list[tuple[DeliveryRow, _Outcome]]) -> DeliveryStats:
        """The outcomes of finished attempts, in one transaction (from one thread: on SQLite, writers
        in several threads would queue on the file's lock)."""
        stats = DeliveryStats()
        if not done:
            return stats
        now = utcnow()
        with self.engine.begin() as conn:
            for delivery, outcome in done:
                if outcome.error is None:
                    store.record_delivered(conn, delivery["id"], self.owner, outcome.status or 200, now)
                    store.resume(conn, delivery["subscription_id"])
                    stats.delivered += 1
                    continue
                first = delivery["first_attempt_at"] or now
                waited = (now - first).total_seconds()
                if waited >= self.settings.retry_for:
                    attempts = delivery["attempts"] + 1
                    reason = (
                        f"delivery {delivery['message_id']} failed {attempts} times over {waited:.0f} s "
                        f"(the retry bound is {self.settings.retry_for:.0f} s); last: {outcome.error}"
                    )
                    store.record_failed(conn, delivery, self.owner, outcome.status, outcome.error, now, reason)
                    stats.failed += 1
                    continue
                delay = jittered_delay(delivery["attempts"], self.settings.retry_base, self.settings.retry_ceiling)
                delay = min(delay, self.settings.retry_for - waited)  # the last attempt is made at the bound
                when = now + timedelta(seconds=delay)
                store.record_retry(conn, delivery["id"], self.owner, outcome.status, outcome.error, now, when)
                store.pause(conn, delivery["subscription_id"], when)  # the receiver's other deliveries wait too
                stats.retried += 1
        return stats

    # --- loops -----------------------------------------------------------------------------------

    def drain(self, seconds: float) -> DeliveryStats:
        """Deliver what is due now (not retries scheduled later), for at most about `seconds`
        (plus the requests in flight then)."""
        stats = DeliveryStats()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            step = self.run_once()
            stats.add(step)
            if step.claimed == 0 and step.fanned_out == 0:
                break
        return stats

    def run_forever(self, stop: threading.Event) -> None:
        """Up to `concurrency` requests in flight, refilled whenever half the slots are free, so a slow
        receiver holds its slots, never the others' deliveries. Finished attempts are recorded as they
        finish. A claim that finds less than it asked for means nothing more is due: the next one waits
        `idle_poll` or a finished request, and fan-outs come `idle_poll` apart, so an attempt costs about
        one claim and one recording, whatever the receiver does."""
        in_flight: dict[Future[_Outcome], DeliveryRow] = {}
        next_claim = next_fan_out = 0.0
        poll = self.settings.idle_poll
        while not stop.is_set():
            claimed: list[tuple[DeliveryRow, str]] = []
            try:
                finished = [f for f in in_flight if f.done()]
                self._record([(in_flight.pop(f), f.result()) for f in finished])
                if finished:  # a subscription under its per_subscription cap again may have more due
                    next_claim = 0.0
                now = time.monotonic()
                free = self.settings.concurrency - len(in_flight)
                if (free >= max(1, self.settings.concurrency // 2) or not in_flight) and now >= next_claim:
                    if now >= next_fan_out:
                        self.fan_out()
                        next_fan_out = now + poll
                    wanted = min(free, self.settings.batch)
                    claimed = self._claim(wanted)
                    for delivery, url in claimed:
                        in_flight[self._pool.submit(self._send_safely, delivery, url)] = delivery
                    next_claim = 0.0 if len(claimed) == wanted else now + poll
            except Exception:  # the database away for a moment: try again shortly
                log.exception("webhook delivery pass failed")
                next_claim = time.monotonic() + poll
            if claimed and next_claim == 0.0:
                continue
            if in_flight:
                wait(in_flight, timeout=poll, return_when=FIRST_COMPLETED)
            else:
                stop.wait(poll)
        wait(in_flight, timeout=self.settings.timeout * 2)
        try:
            self._record([(d, f.result()) for f, d in in_flight.items() if f.done()])
        except Exception:
            log.exception("recording the last webhook deliveries failed (their leases run out: sent again)")


def start_in_thread(
    engine: Engine, stop: threading.Event, settings: DeliverySettings | None = None
) -> threading.Thread:
    """A delivery worker on a daemon thread of its own until `stop` is set (the service's)."""
    deliverer = Deliverer(engine, settings or DeliverySettings.from_env())

    def run() -> None:
        try:
            deliverer.run_forever(stop)
        finally:
            deliverer.close()

    thread = threading.Thread(target=run, name="calsync-webhooks", daemon=True)
    thread.start()
    return thread


def deliver_due(engine: Engine, seconds: float = 10.0, settings: DeliverySettings | None = None) -> DeliveryStats:
    """What `calsync sync` does after its sync: the webhooks due now, for at most about `seconds`."""
    deliverer = Deliverer(engine, settings or DeliverySettings.from_env())
    try:
        return deliverer.drain(seconds)
    except Exception:  # the sync is done and reported: a delivery problem waits for the next pass
        log.exception("delivering webhooks after the sync failed")
        return DeliveryStats()
    finally:
        deliverer.close()
