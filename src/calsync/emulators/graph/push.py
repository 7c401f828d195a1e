"""Change-notification delivery for the Microsoft Graph emulator: validation handshake and webhooks.

Graph's webhooks (``../shared/reference/provider-semantics.md`` 2.4) differ from Google's push:
the receiver must first echo a ``validationToken`` (200, text/plain, the decoded token, within 10 s) before a
subscription exists; then every change is POSTed as JSON ``{"value": [...]}``, and one POST may
batch notifications of several subscriptions that share a URL. A receiver must answer 2xx within
3 s; anything else is retried for hours. Lifecycle notifications (``reauthorizationRequired``,
``subscriptionRemoved``, ``missed``) travel the same way to ``lifecycleNotificationUrl``.

Delivery (queue, worker, retries, the shared ``push_faults.PushFaults``, the log) is the shared
``push_hub.DeliveryHub``; Graph's own parts are here: the validation handshake, numbering, reorder
by jitter, batching per URL and kind, and retrying every failure.

This module imports only the standard library, starlette, httpx and sibling emulator modules.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from calsync.emulators.push_hub import REMOTE_OFF, DeliveryHub

__all__ = [
    "DELIVERY_TIMEOUT_S",
    "VALIDATION_TIMEOUT_S",
    "GraphPushHub",
    "Note",
    "ValidationResult",
]

log = logging.getLogger(__name__)

VALIDATION_TIMEOUT_S = 10.0  # documented: the endpoint must answer the handshake within 10 seconds
DELIVERY_TIMEOUT_S = 3.0  # documented: a 2xx within 3 seconds, or Graph retries
MAX_BATCH = 100  # notifications per POST; Graph batches but publishes no number (guess)
USER_AGENT = "Microsoft-Graph-Change-Notifications/1.0 (calsync emulator)"


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


# ---------------------------------------------------------------------------------------------
# The hub


class GraphPushHub(DeliveryHub[Note, list[Note]]):
    """Validation, queue, worker and delivery log for Graph notifications; one condition lock guards it.

    ``settings`` returns the emulator's switch dict, read at use: push_retry_base_ms,
    push_max_attempts, push_deliver_remote, delivery_timeout_s and validation_timeout_s.
    ``is_live(subscription_id)`` says whether a change notification may still be delivered.
    """

    name = "graph"
    logger = log
    close_wait_s = DELIVERY_TIMEOUT_S + 2
    flush_poll_s = 0.05

    def __init__(
        self,
        settings: Callable[[], Mapping[str, Any]],
        is_live: Callable[[str], bool],
        seed: int = 0,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._is_live = is_live
        self._async_transport = async_transport
        self._numbers = itertools.count(1)
        super().__init__(settings, seed, transport=transport)

    # -- validation -----------------------------------------------------------------------------

    async def validate(self, url: str) -> ValidationResult:
        """POST ``url?validationToken=...`` and check the echo: 200, text/plain, the decoded token."""
        token = _validation_token()
        target = _with_query(url, validationToken=token)
        if not self._remote_allowed(url):
            result = ValidationResult(False, detail=REMOTE_OFF)
            self._record_validation(url, None, result)
            return result
        timeout = float(self._setting("validation_timeout_s", VALIDATION_TIMEOUT_S))
        try:
            async with httpx.AsyncClient(
                timeout=timeout, trust_env=False, follow_redirects=False, transport=self._async_transport
            ) as client:
                response = await client.post(
                    target, content=b"", headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": USER_AGENT}
                )
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
            self._append(
                {
                    "kind": "validation",
                    "url": url,
                    "subscriptionIds": [],
                    "count": 0,
                    "attempt": 1,
                    "outcome": "validated" if result.ok else "failed",
                    "status": status,
                    "error": None if result.ok else result.detail,
                }
            )

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
        if faults.should_drop(self._fault_rng):
            self._record([note], 0, "dropped", error="dropped by push fault")
            return 0
        base_due = time.monotonic() + faults.delay_ms / 1000.0
        copies = faults.copies(self._fault_rng)
        for i in range(copies):
            if self._pending() >= self._max_queue:
                self._record([note], 0, "queue_full", error="delivery queue is full")
                return i
            copy = (
                note
                if i == 0
                else Note(note.url, note.item, note.kind, note.subscription_id, note.generation, number=note.number)
            )
            jitter = self._fault_rng.uniform(0, faults.reorder_window_ms / 1000.0) if faults.reorder else 0.0
            copy.due = base_due + jitter
            self._push(copy)
        return copies

    # -- delivery -------------------------------------------------------------------------------

    def _skip_reason(self, note: Note) -> str | None:
        if note.kind == "change" and not self._is_live(note.subscription_id) and not self._faults.deliver_after_stop:
            return "subscription deleted or expired"
        return None

    def _address(self, note: Note) -> str:
        return note.url

    def _log_skipped(self, note: Note, reason: str) -> None:
        self._record([note], note.attempt, "skipped", error=reason)

    def _claim(self, first: Note, now: float) -> list[Note]:
        """Every other due note for the same URL and kind travels with the first (batched like Graph does)."""
        taken: list[Note] = [first]
        keep: list[tuple[float, int, Note]] = []
        for entry in self._heap:
            note = entry[2]
            if (
                len(taken) < MAX_BATCH
                and entry[0] <= now
                and note.url == first.url
                and note.kind == first.kind
                and self._deliverable(note)
            ):
                taken.append(note)
            else:
                keep.append(entry)
        if len(taken) > 1:
            heapq.heapify(keep)
            self._heap = keep
        return taken

    def _size(self, batch: list[Note]) -> int:
        return len(batch)

    def _post(self, client: httpx.Client, batch: list[Note]) -> tuple[int | None, str | None]:
        timeout = float(self._setting("delivery_timeout_s", DELIVERY_TIMEOUT_S))
        body = json.dumps({"value": [n.item for n in batch]}, separators=(",", ":")).encode()
        return self._send(
            client,
            batch[0].url,
            content=body,
            timeout=timeout,
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT},
        )

    def _settle(self, batch: list[Note], status: int | None, error: str | None) -> None:
        """Under the lock: 2xx delivers; anything else (non-2xx, timeout) is retried with backoff, bounded."""
        batch = [n for n in batch if n.generation == self._generation]
        if not batch:
            return
        attempt = batch[0].attempt
        if status is not None and 200 <= status < 300:
            self._record(batch, attempt, "delivered", status)
            return
        if self._may_retry(attempt):
            self._record(batch, attempt, "retry", status, error)
            due = self._retry_due(attempt)
            for note in batch:
                note.attempt += 1
                note.due = due
                self._push(note)
            return
        self._record(batch, attempt, "gave_up", status, error)

    def _record(
        self, batch: list[Note], attempt: int, outcome: str, status: int | None = None, error: str | None = None
    ) -> None:
        """Under the lock: one delivery-log entry for a POST (or a dropped note) and its counter."""
        self._count(
            outcome,
            {
                "kind": batch[0].kind,
                "url": batch[0].url,
                "subscriptionIds": sorted({n.subscription_id for n in batch}),
                "numbers": [n.number for n in batch],
                "count": len(batch),
                "items": [n.item for n in batch],
                "attempt": attempt,
                "outcome": outcome,
                "status": status,
                "error": error,
            },
        )
