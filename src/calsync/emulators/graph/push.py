"""Change-notification delivery for the Microsoft Graph emulator: validation handshake and webhooks.

Graph's webhooks (``../shared/reference/provider-semantics.md`` 2.4) differ from Google's push:
the receiver must first echo a ``validationToken`` (200, text/plain, the decoded token, within 10 s) before a
subscription exists; then every change is POSTed as JSON ``{"value": [...]}``, and one POST may
batch notifications of several subscriptions that share a URL. A receiver must answer 2xx within
3 s; anything else is retried for hours. Lifecycle notifications (``reauthorizationRequired``,
``subscriptionRemoved``, ``missed``) travel the same way to ``lifecycleNotificationUrl``.

Delivery runs in one background thread with its own httpx client, so an API write never waits
for a receiver. The queue is a heap of (due time, sequence); retries back off exponentially and
are bounded in count, and the queue itself is bounded, so a dead receiver cannot make the
emulator work forever. Drop / duplicate / delay / reorder faults are the shared
``push_faults.PushFaults``.

This module imports only the standard library, starlette, httpx and sibling emulator modules.
"""
from __future__ import annotations

import heapq
import itertools
import json
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.emulators.common import is_loopback, rfc3339_ms
from calsync.emulators.faults import admin_error, admin_json
from calsync.emulators.push_faults import COUNTERS, OUTCOME_COUNTER, PushFaults

__all__ = [
    "DELIVERY_TIMEOUT_S",
    "VALIDATION_TIMEOUT_S",
    "GraphPushHub",
    "Note",
    "ValidationResult",
    "push_admin_routes",
    "url_allowed",
]

log = logging.getLogger(__name__)

VALIDATION_TIMEOUT_S = 10.0  # documented: the endpoint must answer the handshake within 10 seconds
DELIVERY_TIMEOUT_S = 3.0  # documented: a 2xx within 3 seconds, or Graph retries
MAX_QUEUE = 10_000
MAX_LOG = 10_000
MAX_BATCH = 100  # notifications per POST; Graph batches but publishes no number (guess)
FLUSH_TIMEOUT_MAX_S = 120.0
USER_AGENT = "Microsoft-Graph-Change-Notifications/1.0 (calsync emulator)"


def url_allowed(url: str, allow_http: bool) -> bool:
    """HTTPS anywhere, or plain HTTP to a loopback host when the switch allows it (tests)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        return False
    if not host:
        return False
    scheme = parts.scheme.lower()
    return scheme == "https" or (scheme == "http" and allow_http and is_loopback(host))


def _with_query(url: str, **params: str) -> str:
    """The URL with extra query parameters appended (its own query string is kept, as Graph does)."""
    sep = "&" if urlsplit(url).query else "?"
    return url + sep + urlencode(params)


# ---------------------------------------------------------------------------------------------
# Validation handshake


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of one handshake: ok, or the reason Graph would report."""

    ok: bool
    timed_out: bool = False
    detail: str = ""


def _validation_token() -> str:
    """Shaped like Graph's: words, a colon and a request id, so it must be URL-decoded to echo."""
    return f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"


# ---------------------------------------------------------------------------------------------
# Notes (one notification on its way)


@dataclass(eq=False)
class Note:
    """One notification item; ``kind`` is "change" or "lifecycle". Batched per URL at delivery."""

    url: str
    item: dict[str, Any]
    kind: str
    subscription_id: str
    generation: int = 0
    due: float = 0.0
    attempt: int = 1
    number: int = 0


@dataclass
class _Counters:
    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))


# ---------------------------------------------------------------------------------------------
# The hub


class GraphPushHub:
    """Queue, worker and delivery log for Graph notifications; one condition lock guards it.

    ``settings`` returns the emulator's switch dict, read at use: push_retry_base_ms,
    push_max_attempts, push_deliver_remote, delivery_timeout_s and validation_timeout_s.
    ``is_live(subscription_id)`` says whether a change notification may still be delivered.
    """

    def __init__(self, settings: Callable[[], Mapping[str, Any]], is_live: Callable[[str], bool],
                 seed: int = 0, transport: httpx.BaseTransport | None = None,
                 async_transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._settings = settings
        self._is_live = is_live
        self._seed = seed
        self._transport = transport
        self._async_transport = async_transport
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._numbers = itertools.count(1)
        self._generation = 0
        self._in_flight = 0
        self._closed = False
        self._worker: threading.Thread | None = None
        self._clear()

    def _clear(self) -> None:
        self._generation += 1
        self._heap: list[tuple[float, int, Note]] = []
        self._faults = PushFaults()
        self._rng = random.Random(self._seed)
        self._log: deque[dict[str, Any]] = deque(maxlen=MAX_LOG)
        self._counts = _Counters()

    def reset(self) -> None:
        """Forget queued notes, faults and the log; in-flight results of the old generation are ignored."""
        with self._cond:
            self._clear()
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(DELIVERY_TIMEOUT_S + 2)

    def _setting(self, name: str, default: Any) -> Any:
        value = self._settings().get(name, default)
        return default if value is None else value

    def _remote_allowed(self, url: str) -> bool:
        """Loopback receivers always; others only when switched on, so tests never reach out."""
        return bool(self._setting("push_deliver_remote", False)) or is_loopback(urlsplit(url).hostname or "")

    # -- validation -----------------------------------------------------------------------------

    async def validate(self, url: str) -> ValidationResult:
        """POST ``url?validationToken=...`` and check the echo: 200, text/plain, the decoded token."""
        token = _validation_token()
        target = _with_query(url, validationToken=token)
        if not self._remote_allowed(url):
            result = ValidationResult(False, detail="not a loopback address (switch push_deliver_remote is off)")
            self._record_validation(url, None, result)
            return result
        timeout = float(self._setting("validation_timeout_s", VALIDATION_TIMEOUT_S))
        try:
            async with httpx.AsyncClient(timeout=timeout, trust_env=False, follow_redirects=False,
                                         transport=self._async_transport) as client:
                response = await client.post(target, content=b"", headers={
                    "Content-Type": "text/plain; charset=utf-8", "User-Agent": USER_AGENT})
        except httpx.TimeoutException:
            result = ValidationResult(False, timed_out=True, detail="timed out")
            self._record_validation(url, None, result)
            return result
        except Exception as exc:  # noqa: BLE001 - transport errors, bad URLs: the handshake failed
            result = ValidationResult(False, detail=f"{type(exc).__name__}: {exc}")
            self._record_validation(url, None, result)
            return result
        result = self._judge_echo(response, token)
        self._record_validation(url, response.status_code, result)
        return result

    @staticmethod
    def _judge_echo(response: httpx.Response, token: str) -> ValidationResult:
        if response.status_code != 200:
            return ValidationResult(False, detail=f"status {response.status_code}, expected 200")
        content_type = response.headers.get("content-type", "")
        if not content_type.lower().startswith("text/plain"):
            return ValidationResult(False, detail=f"content type {content_type!r}, expected text/plain")
        if response.text != token:
            return ValidationResult(False, detail="body is not the decoded validation token")
        return ValidationResult(True)

    def _record_validation(self, url: str, status: int | None, result: ValidationResult) -> None:
        with self._cond:
            now = time.time()
            self._log.append({"kind": "validation", "url": url, "subscriptionIds": [], "count": 0,
                              "attempt": 1, "outcome": "validated" if result.ok else "failed",
                              "status": status, "error": None if result.ok else result.detail,
                              "time": rfc3339_ms(now), "epoch": now})

    # -- enqueueing -----------------------------------------------------------------------------

    def enqueue(self, notes: list[Note]) -> int:
        """Queue notifications (faults applied per note); returns how many copies were queued."""
        queued = 0
        with self._cond:
            for note in notes:
                queued += self._enqueue_one(note)
            if queued:
                self._cond.notify_all()
                self._ensure_worker()
        return queued

    def _enqueue_one(self, note: Note) -> int:
        """Under the lock: number the note, roll drop / duplicate / delay / reorder, queue copies."""
        note.number = next(self._numbers)
        note.generation = self._generation
        faults = self._faults
        if faults.should_drop(self._rng):
            self._record([note], 0, "dropped", error="dropped by push fault")
            return 0
        base_due = time.monotonic() + faults.delay_ms / 1000.0
        copies = faults.copies(self._rng)
        for i in range(copies):
            if self._pending() >= MAX_QUEUE:
                self._record([note], 0, "queue_full", error="delivery queue is full")
                return i
            copy = note if i == 0 else Note(note.url, note.item, note.kind, note.subscription_id,
                                            note.generation, number=note.number)
            jitter = self._rng.uniform(0, faults.reorder_window_ms / 1000.0) if faults.reorder else 0.0
            copy.due = base_due + jitter
            heapq.heappush(self._heap, (copy.due, next(self._seq), copy))
        return copies

    def _pending(self) -> int:
        return len(self._heap) + self._in_flight

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name="graph-push-delivery", daemon=True)
            self._worker.start()

    # -- the worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        """Deliver due batches one POST at a time until closed; a crash in one never kills it."""
        with httpx.Client(trust_env=False, follow_redirects=False, transport=self._transport) as client:
            while True:
                with self._cond:
                    batch = self._take_batch()
                    if batch is None:
                        return
                    timeout = float(self._setting("delivery_timeout_s", DELIVERY_TIMEOUT_S))
                status, error = self._post(client, batch, timeout)
                with self._cond:
                    self._in_flight -= len(batch)
                    self._settle(batch, status, error)
                    self._cond.notify_all()

    def _take_batch(self) -> list[Note] | None:
        """Under the lock: wait for a due note, then gather every due note for the same URL and kind."""
        while not self._closed:
            now = time.monotonic()
            if self._heap and self._heap[0][0] <= now:
                first = heapq.heappop(self._heap)[2]
                if not self._deliverable(first):
                    self._cond.notify_all()
                    continue
                batch = [first, *self._gather(first, now)]
                self._in_flight += len(batch)
                return batch
            wait = max(self._heap[0][0] - now, 0.001) if self._heap else None
            self._cond.wait(wait)
        return None

    def _gather(self, first: Note, now: float) -> list[Note]:
        """Under the lock: other due notes with the same URL and kind (batched like Graph does)."""
        taken: list[Note] = []
        keep: list[tuple[float, int, Note]] = []
        for entry in self._heap:
            note = entry[2]
            if (len(taken) < MAX_BATCH - 1 and entry[0] <= now and note.url == first.url
                    and note.kind == first.kind and self._deliverable(note)):
                taken.append(note)
            else:
                keep.append(entry)
        if taken:
            heapq.heapify(keep)
            self._heap = keep
        return taken

    def _deliverable(self, note: Note) -> bool:
        """Under the lock: skip notes of an earlier reset, dead subscriptions, and remote URLs when off."""
        if note.generation != self._generation:
            return False
        reason = None
        if note.kind == "change" and not self._is_live(note.subscription_id) and not self._faults.deliver_after_stop:
            reason = "subscription deleted or expired"
        elif not self._remote_allowed(note.url):
            reason = "not a loopback address (switch push_deliver_remote is off)"
        if reason is None:
            return True
        self._record([note], note.attempt, "skipped", error=reason)
        return False

    @staticmethod
    def _post(client: httpx.Client, batch: list[Note], timeout: float) -> tuple[int | None, str | None]:
        """One attempt, outside the lock: (status, None) or (None, transport error or timeout)."""
        body = json.dumps({"value": [n.item for n in batch]}, separators=(",", ":")).encode()
        try:
            response = client.post(batch[0].url, content=body, timeout=timeout, headers={
                "Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT})
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bad URL or a library bug must not kill the worker
            log.exception("graph push: delivery to %s failed", batch[0].url)
            return None, f"{type(exc).__name__}: {exc}"
        else:
            return response.status_code, None

    def _settle(self, batch: list[Note], status: int | None, error: str | None) -> None:
        """Under the lock: 2xx delivers; anything else (non-2xx, timeout) is retried with backoff, bounded."""
        batch = [n for n in batch if n.generation == self._generation]
        if not batch:
            return
        attempt = batch[0].attempt
        if status is not None and 200 <= status < 300:
            self._record(batch, attempt, "delivered", status)
            return
        if attempt < int(self._setting("push_max_attempts", 5)):
            self._record(batch, attempt, "retry", status, error)
            base = float(self._setting("push_retry_base_ms", 200)) / 1000.0
            due = time.monotonic() + base * 2 ** (attempt - 1)
            for note in batch:
                note.attempt += 1
                note.due = due
                heapq.heappush(self._heap, (due, next(self._seq), note))
            return
        self._record(batch, attempt, "gave_up", status, error)

    def _record(self, batch: list[Note], attempt: int, outcome: str, status: int | None = None,
                error: str | None = None) -> None:
        """Under the lock: one delivery-log entry for a POST (or a dropped note) and its counter."""
        self._counts.values[OUTCOME_COUNTER[outcome]] += 1
        now = time.time()
        self._log.append({"kind": batch[0].kind, "url": batch[0].url,
                          "subscriptionIds": sorted({n.subscription_id for n in batch}),
                          "numbers": [n.number for n in batch], "count": len(batch),
                          "items": [n.item for n in batch], "attempt": attempt, "outcome": outcome,
                          "status": status, "error": error, "time": rfc3339_ms(now), "epoch": now})

    # -- test support ---------------------------------------------------------------------------

    def flush(self, timeout: float) -> dict[str, Any]:
        """Block until nothing is queued or in flight (or the timeout passes); returns counts."""
        deadline = time.monotonic() + max(0.0, min(timeout, FLUSH_TIMEOUT_MAX_S))
        started = time.monotonic()
        with self._cond:
            while True:
                remaining = deadline - time.monotonic()
                if self._pending() == 0 or remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.05))
            return {"idle": self._pending() == 0, "pending": self._pending(),
                    "waitedMs": int((time.monotonic() - started) * 1000), **self._counts.values}

    def deliveries(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._log)

    def clear_deliveries(self) -> None:
        with self._cond:
            self._log.clear()

    def set_faults(self, spec: Any) -> dict[str, Any]:
        """Replace the push faults (same keys as Google's); the dice are re-seeded so runs repeat."""
        faults = PushFaults.parse(spec)
        with self._cond:
            self._faults = faults
            self._rng = random.Random(self._seed if faults.seed is None else faults.seed)
            self._cond.notify_all()
            return faults.as_dict()

    def clear_faults(self) -> None:
        self.set_faults({})

    def faults(self) -> dict[str, Any]:
        with self._cond:
            return self._faults.as_dict()


# ---------------------------------------------------------------------------------------------
# Admin surface


def push_admin_routes(hub: GraphPushHub) -> list[Route]:
    """/emulator endpoints for the delivery log, push faults and waiting for an empty queue."""

    async def deliveries(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"deliveries": hub.deliveries()})
        hub.clear_deliveries()
        return Response(status_code=204)

    async def push_faults(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(hub.faults())
        if request.method == "DELETE":
            hub.clear_faults()
            return Response(status_code=204)
        try:
            return JSONResponse(hub.set_faults(await admin_json(request)))
        except ValueError as exc:
            return admin_error(400, str(exc))

    async def flush(request: Request) -> Response:
        try:
            body = await admin_json(request)
            timeout = body.get("timeout", 10) if isinstance(body, dict) else None
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or \
                    not 0 <= timeout <= FLUSH_TIMEOUT_MAX_S:
                raise ValueError(f"timeout must be a number of seconds in [0, {FLUSH_TIMEOUT_MAX_S:g}]")
        except ValueError as exc:
            return admin_error(400, str(exc))
        return JSONResponse(await run_in_threadpool(hub.flush, float(timeout)))

    return [
        Route("/emulator/deliveries", deliveries, methods=["GET", "DELETE"]),
        Route("/emulator/push-faults", push_faults, methods=["GET", "POST", "DELETE"]),
        Route("/emulator/push/flush", flush, methods=["POST"]),
    ]
