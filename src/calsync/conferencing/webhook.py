"""Conferences kept in an in-house system through a signed JSON webhook (calsync's own protocol).

Every operation is one ``POST`` of a JSON object to the configured URL::

    {"action": "create" | "get" | "update" | "delete",
     "request_id": "<random hex, new for every attempt>",
     "idempotency_key": "...",        # create only
     "conference_id": "...",          # get, update, delete
     "fields": ["title", "start", ...],  # update only: the meeting fields that changed
     "meeting": {"title", "start", "end", "time_zone", "description", "attendees": [...]}}

``start`` / ``end`` are UTC RFC 3339 (``2026-12-01T09:00:00Z``) or dates (``2026-12-24``) for
all-day events, the end being exclusive; ``time_zone`` and ``description`` may be null;
``attendees`` is a sorted list of e-mail addresses. Receivers must ignore keys they do not know.

Headers: ``X-Calsync-Timestamp: <unix seconds>`` and
``X-Calsync-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{raw body}")>``. A receiver
must answer 401 to a missing or wrong signature, to a timestamp more than 300 s away from its
clock, and to a (timestamp, signature) pair it has already accepted within that window
(``verify`` and ``ReplayGuard`` below do all of it). ``request_id`` makes every attempt unique, so
a legitimate retry is never mistaken for a replay.

Answers:

* create / get / update: 200 ``{"conference_id": str, "join_url": str, "details": {...}}``
  (``details`` optional: passcode, host URL, dial-in...). A create carrying an
  ``idempotency_key`` the receiver has seen answers the meeting it made then (unless that
  meeting was deleted since), so a retried create never makes a second meeting.
* get / update of an unknown or deleted id: 404.
* delete: 200 (deleted) or 404 (already gone); both mean success.
* 429 / 5xx (with optional ``Retry-After``) are retried with backoff; other 4xx are permanent.
  Error bodies should be ``{"error": "message"}``.

This module also holds the small HTTP retry loop every remote conference adapter shares.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

from calsync.backoff import RetryPolicy, jittered_delay
from calsync.backoff import retry_after_seconds as parse_retry_after
from calsync.conferencing.base import Conference, ConferenceError, MeetingSpec

__all__ = [
    "DEFAULT_WINDOW",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "HttpSession",
    "ReplayGuard",
    "RetryPolicy",
    "TransientFailure",
    "WebhookAdapter",
    "from_settings",
    "sign",
    "signature_problem",
    "verify",
]

TIMESTAMP_HEADER = "X-Calsync-Timestamp"
SIGNATURE_HEADER = "X-Calsync-Signature"
DEFAULT_WINDOW = 300
ACTIONS = ("create", "get", "update", "delete")
MEETING_FIELDS = ("title", "start", "end", "time_zone", "description", "attendees")

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Signing, for both ends of the webhook


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """The ``X-Calsync-Signature`` header value: ``v1=`` + hex HMAC-SHA256 of ``"{timestamp}.{body}"``."""
    raw = body.encode() if isinstance(body, str) else body
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def signature_problem(
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes | str,
    *,
    now: float | None = None,
    window: int = DEFAULT_WINDOW,
) -> str | None:
    """Why a request fails verification, or None when it passes (replays are ReplayGuard's job).

    The signature header may list several comma-separated ``v1=`` values (secret rotation).
    """
    if not timestamp_header or not signature_header:
        return f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header"
    if not (timestamp_header.isascii() and timestamp_header.isdigit()):
        return f"{TIMESTAMP_HEADER} must be unix seconds"
    current = time.time() if now is None else now
    if abs(current - int(timestamp_header)) > window:
        return "timestamp outside the replay window"
    expected = sign(secret, timestamp_header, body)
    if not any(hmac.compare_digest(expected, given.strip()) for given in signature_header.split(",")):
        return "signature does not match"
    return None


def verify(
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes | str,
    *,
    now: float | None = None,
    window: int = DEFAULT_WINDOW,
) -> bool:
    """True when the signature matches and the timestamp is within ``window`` seconds of ``now``."""
    return signature_problem(secret, timestamp_header, signature_header, body, now=now, window=window) is None


class ReplayGuard:
    """Remembers accepted (timestamp, signature) pairs for the replay window; thread-safe."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self.window = window
        self._seen: set[tuple[str, str]] = set()
        self._expiry: list[tuple[int, str, str]] = []
        self._lock = threading.Lock()

    def first_time(self, timestamp: str, signature: str, *, now: float | None = None) -> bool:
        """Record the pair; False when it was already seen (a replay). Call only after ``verify``."""
        current = time.time() if now is None else now
        with self._lock:
            while self._expiry and self._expiry[0][0] < current - self.window:
                _, ts, sig = heapq.heappop(self._expiry)
                self._seen.discard((ts, sig))
            if (timestamp, signature) in self._seen:
                return False
            self._seen.add((timestamp, signature))
            heapq.heappush(self._expiry, (int(timestamp), timestamp, signature))
            return True

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()
            self._expiry.clear()


# ---------------------------------------------------------------------------------------------
# The retry loop shared by the HTTP adapters (Zoom, webhook)


#: How hard an adapter tries before handing the work back to the conference outbox. Kept short (at
#: most ~2 s of sleeping without Retry-After): the outbox retries later anyway, and a worker stuck in
#: one adapter call holds up every other event's conference work. A longer Retry-After than a minute
#: is left to the outbox.
ADAPTER_RETRY = RetryPolicy(attempts=4, base_delay=0.25, max_delay=8.0, max_retry_after=60.0)


class TransientFailure(Exception):
    """One attempt failed in a way a later one may not: 429, 5xx or a broken connection.

    ``outcome_unknown`` says the server may have carried the request out (5xx, or the
    connection failed after the request was sent); a 429 or a refused connection did nothing.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown


# Raised before any byte of the request reached the server: the request certainly did nothing.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The response's Retry-After as seconds (backoff.retry_after_seconds)."""
    return parse_retry_after(response.headers.get("retry-after"))


class HttpSession:
    """An httpx client that counts requests and retries transient failures with backoff + jitter."""

    def __init__(
        self, *, timeout: float = 30.0, policy: RetryPolicy | None = None, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._client = httpx.Client(timeout=timeout)
        self.policy = policy or ADAPTER_RETRY
        self._sleep = sleep
        self._random = random.Random()
        self._count_lock = threading.Lock()
        self.request_count = 0

    def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request; raises TransientFailure for what may succeed later, returns anything else."""
        with self._count_lock:
            self.request_count += 1
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise TransientFailure(
                f"{method} {url}: {type(exc).__name__}: {exc}", outcome_unknown=not isinstance(exc, _NOT_SENT)
            ) from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise TransientFailure(
                f"{method} {url} answered {status}",
                status=status,
                retry_after=retry_after_seconds(response),
                outcome_unknown=status >= 500,
            )
        return response

    def run(self, attempt: Callable[[], T], what: str) -> T:
        """Call ``attempt`` until it returns; after the last try raise a retryable ConferenceError."""
        number = 0
        while True:
            number += 1
            try:
                return attempt()
            except TransientFailure as failure:
                delay = self._delay(number, failure.retry_after)
                if number >= self.policy.attempts or delay is None:
                    raise ConferenceError(
                        f"{what} failed after {number} attempt(s): {failure}",
                        status=failure.status,
                        retryable=True,
                        retry_after=failure.retry_after,
                    ) from failure
            self._sleep(delay)

    def _delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Retry-After when the server gave one (None: too long to wait here), else jittered backoff."""
        if retry_after is not None:
            return retry_after if retry_after <= self.policy.max_retry_after else None
        return jittered_delay(attempt - 1, self.policy.base_delay, self.policy.max_delay, rng=self._random)

    def close(self) -> None:
        self._client.close()


def error_message(response: httpx.Response) -> str:
    """A short human text from an error body (``error`` / ``message`` / ``reason``) or the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        for key in ("error", "message", "reason"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return response.text[:200]


# ---------------------------------------------------------------------------------------------
# The adapter


def meeting_payload(spec: MeetingSpec) -> dict[str, Any]:
    """The ``meeting`` object of the protocol."""
    return {
        "title": spec.title,
        "start": spec.start,
        "end": spec.end,
        "time_zone": spec.time_zone,
        "description": spec.description,
        "attendees": list(spec.attendees),
    }


class WebhookAdapter:
    """Conferences in an in-house system that speaks the signed webhook protocol above."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        solution_name: str = "Conference",
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not url or not secret:
            raise ValueError("a webhook adapter needs a URL and a secret")
        self.url = url
        self._secret = secret
        self.solution_name = solution_name
        self._http = HttpSession(timeout=timeout, policy=policy, sleep=sleep)
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> WebhookAdapter | None:
        """From CALSYNC_CONFHOOK_URL / _SECRET (/_SOLUTION_NAME); None unless URL and secret are set."""
        url = (settings.get("CALSYNC_CONFHOOK_URL") or "").strip()
        secret = settings.get("CALSYNC_CONFHOOK_SECRET") or ""
        if not url or not secret:
            return None
        name = (settings.get("CALSYNC_CONFHOOK_SOLUTION_NAME") or "").strip() or "Conference"
        return cls(url, secret, solution_name=name)

    @property
    def request_count(self) -> int:
        """Every HTTP request made, retries included (settable, e.g. to 0 between bench rounds)."""
        return self._http.request_count

    @request_count.setter
    def request_count(self, value: int) -> None:
        self._http.request_count = value

    def _post(self, payload: dict[str, Any]) -> httpx.Response:
        """POST the payload, signed afresh (new timestamp and request_id) on every attempt."""

        def attempt() -> httpx.Response:
            body = json.dumps({**payload, "request_id": uuid.uuid4().hex}, separators=(",", ":")).encode()
            timestamp = str(int(self._clock()))
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            }
            return self._http.send("POST", self.url, content=body, headers=headers)

        return self._http.run(attempt, f"conference webhook {payload['action']}")

    def _conference(self, response: httpx.Response, action: str) -> Conference:
        if not 200 <= response.status_code < 300:
            raise self._failure(response, action)
        try:
            body = response.json()
        except ValueError:
            body = None
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("conference_id"), str)
            or not isinstance(body.get("join_url"), str)
        ):
            raise ConferenceError(
                f"conference webhook {action}: answer lacks conference_id/join_url",
                status=response.status_code,
                retryable=True,
            )
        details = body.get("details")
        return Conference(
            self.name, body["conference_id"], body["join_url"], dict(details) if isinstance(details, dict) else {}
        )

    @staticmethod
    def _failure(response: httpx.Response, action: str) -> ConferenceError:
        return ConferenceError(
            f"conference webhook {action} answered {response.status_code}: {error_message(response)}",
            status=response.status_code,
            retryable=False,
        )

    def create(self, spec: MeetingSpec, *, idempotency_key: str, maybe_exists: bool = True) -> Conference:
        payload = {"action": "create", "idempotency_key": idempotency_key, "meeting": meeting_payload(spec)}
        return self._conference(self._post(payload), "create")

    def get(self, conference_id: str) -> Conference | None:
        response = self._post({"action": "get", "conference_id": conference_id})
        if response.status_code == 404:
            return None
        return self._conference(response, "get")

    def update(self, conference_id: str, spec: MeetingSpec, fields: list[str]) -> Conference | None:
        """404 (gone) raises a non-retryable ConferenceError with status 404."""
        payload = {
            "action": "update",
            "conference_id": conference_id,
            "fields": list(fields),
            "meeting": meeting_payload(spec),
        }
        return self._conference(self._post(payload), "update")

    def delete(self, conference_id: str) -> None:
        response = self._post({"action": "delete", "conference_id": conference_id})
        if not (200 <= response.status_code < 300 or response.status_code == 404):
            raise self._failure(response, "delete")

    def close(self) -> None:
        self._http.close()


def from_settings(settings: Mapping[str, str]) -> WebhookAdapter | None:
    """Module-level alias of ``WebhookAdapter.from_settings``."""
    return WebhookAdapter.from_settings(settings)
