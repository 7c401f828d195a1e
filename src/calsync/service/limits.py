"""Request limits, applied before a route runs: a cap on body size (413) and a per-caller rate limit (429).

Both are plain ASGI middleware around the whole app, so a refused request never reaches a route, a
dependency or the database: nothing is read whole, nothing is written. The settings (CALSYNC_MAX_BODY_BYTES,
CALSYNC_RATE_LIMIT, CALSYNC_RATE_BURST) are read once, when `calsync serve` builds the app.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # 1 MiB: a full event with 1000 attendees is well under 300 KiB
DEFAULT_RATE = 50.0  # requests per second per caller, refilled continuously
DEFAULT_BURST = 200  # requests a caller may make at once after being idle
LIMITED_PREFIXES = ("/api/",)  # webhooks are the providers' (they have their own retries), the page's files are static
_MAX_BUCKETS = 10_000  # callers remembered at once; full buckets are forgotten first (they carry no state)


def caller_key(connection: HTTPConnection) -> str:
    """Who a request counts against: its bearer key's SHA-256 (the hash issue 19 stores API keys as, so a
    key's row and its bucket can share a name; the key itself is not kept), any other
    Authorization value hashed, else the client address. Until keys are checked, a caller sending a new
    made-up key each time gets a new bucket each time: once they are, unknown keys should count as their
    address (pass such a function as Limits.caller)."""
    authorization = connection.headers.get("authorization", "").strip()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "key:" + hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).hexdigest()
    if authorization:
        return "auth:" + hashlib.sha256(authorization.encode("utf-8", "surrogateescape")).hexdigest()
    client = connection.client
    return f"addr:{client.host if client else 'unknown'}"


def address_key(connection: HTTPConnection) -> str:
    """The client address alone: for routes anyone may call without a key (the login form)."""
    client = connection.client
    return f"addr:{client.host if client else 'unknown'}"


LOGIN_PREFIXES = ("/login",)  # password guesses: a few a second per address, whatever the user name
LOGIN_RATE, LOGIN_BURST = 1.0, 10


class LimitSettingError(ValueError):
    """A CALSYNC_* limit setting that is not a number in range (the message names it)."""


@dataclass(frozen=True)
class Limits:
    """What the service refuses: bodies over `max_body_bytes`, and more than `rate` requests a second
    (after a burst of `burst`) from one caller, as `caller` names it (default caller_key). `rate` 0
    turns the rate limit off."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    caller: Callable[[HTTPConnection], str] = field(default=caller_key, compare=False)

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> Limits:
        """CALSYNC_MAX_BODY_BYTES, CALSYNC_RATE_LIMIT (per second, 0 = off) and CALSYNC_RATE_BURST."""

        def number(name: str, default: float, minimum: float) -> float:
            raw = settings.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise LimitSettingError(f"{name}={raw!r} is not a number") from None
            if not math.isfinite(value) or value < minimum:
                raise LimitSettingError(f"{name}={raw!r} must be a number of at least {minimum:g}")
            return value

        return cls(
            max_body_bytes=int(number("CALSYNC_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1)),
            rate=number("CALSYNC_RATE_LIMIT", DEFAULT_RATE, 0),
            burst=int(number("CALSYNC_RATE_BURST", DEFAULT_BURST, 1)),
        )


async def _refuse(send: Send, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
    """A JSON error in the API's shape ({"detail": "..."}), sent by the middleware itself."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if status == 413:  # the rest of the body is never read: the connection cannot carry another request
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 for a body over the cap, decided before the app sees any of it: at once from Content-Length,
    else while a chunked body streams in (at most cap + one chunk is held). A body under the cap is
    handed to the app as it would have read it anyway (FastAPI reads JSON bodies whole)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = f"request body over the limit of {self.max_body_bytes} bytes (CALSYNC_MAX_BODY_BYTES)"
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(send, 413, refusal)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _refuse(send, 413, refusal)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: only http.disconnect comes
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server (h11, httptools) refuses such a request before it gets here
    return None


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """One token bucket per caller: `burst` tokens at most, `rate` new ones a second, one per request."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """0 when the request may go ahead (a token taken), else the seconds until one is there."""
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= _MAX_BUCKETS:
                self._forget_full(now)
            bucket = self.buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Buckets that have refilled are the same as no bucket; if none has, the stalest go."""
        full = [k for k, b in self.buckets.items() if b.tokens + (now - b.stamp) * self.rate >= self.burst]
        for key in full or sorted(self.buckets, key=lambda k: self.buckets[k].stamp)[: _MAX_BUCKETS // 10]:
            del self.buckets[key]


class RateLimit:
    """429 with Retry-After once a caller has used its burst and goes faster than the rate. `key` names
    the caller from the request (default `caller_key`; an authenticated key's id once there is one)."""

    def __init__(
        self,
        app: ASGIApp,
        rate: float,
        burst: int,
        key: Callable[[HTTPConnection], str] = caller_key,
        prefixes: tuple[str, ...] = LIMITED_PREFIXES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate, burst, clock)
        self.key = key
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(self.prefixes):
            wait = self.buckets.take(self.key(HTTPConnection(scope)))
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                detail = f"rate limit: over {self.buckets.rate:g} requests a second; retry after {seconds} s"
                await _refuse(send, 429, detail, {"Retry-After": str(seconds)})
                return
        await self.app(scope, receive, send)
