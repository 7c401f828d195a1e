"""An httpx client that retries what is worth retrying: 429, rate-limit 403s, 5xx and broken connections."""

from __future__ import annotations

import itertools
import random
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from calsync.backoff import RetryPolicy as RetryPolicy  # re-exported: the providers and tests take it from here
from calsync.backoff import jittered_delay
from calsync.backoff import retry_after_seconds as parse_retry_after
from calsync.providers.base import (
    AuthError,
    NotFoundError,
    PreconditionFailed,
    ProviderError,
    RateLimited,
    Unreachable,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


def retry_after_seconds(response: httpx.Response, now: Callable[[], float] = time.time) -> float | None:
    """The response's Retry-After as seconds (backoff.retry_after_seconds). A longer one than the
    policy's max_retry_after is not slept through inside one request: the error goes up, and the
    scheduler backs the whole account off for that long instead of holding a worker."""
    return parse_retry_after(response.headers.get("retry-after"), now)


def error_reason(response: httpx.Response) -> str | None:
    """The `reason` of a Google-style error body, if there is one."""
    try:
        body = response.json()
        errors = body.get("error", {}).get("errors") or []
        return errors[0].get("reason") if errors else None
    except (ValueError, AttributeError):
        return None


def is_retryable(response: httpx.Response) -> bool:
    if response.status_code in RETRY_STATUSES:
        return True
    return response.status_code == 403 and error_reason(response) in RATE_LIMIT_REASONS


def is_rate_limited(response: httpx.Response) -> bool:
    """The provider says this client is over its rate (not an outage): 429, or Google's rate-limit 403."""
    if response.status_code == 429:
        return True
    return response.status_code == 403 and error_reason(response) in RATE_LIMIT_REASONS


ResponseObserver = Callable[[str, int], None]
_observers: list[weakref.WeakMethod[ResponseObserver]] = []


def observe_responses(observer: ResponseObserver) -> None:
    """Call the bound method `observer(provider, status)` for every provider response (status 0: no
    response), for metrics. Held weakly: a metrics object that goes away stops observing."""
    _observers.append(weakref.WeakMethod(observer))


SHARDS = 8  # connection pools per process and trust setting; each thread sends through one of them


class _Shared(httpx.BaseTransport):
    """A transport many clients use: closing one of them leaves it open for the others.

    Its connections are kept in SHARDS pools, each thread sending through one of them (handed out in
    turn on its first request): httpcore's pool looks over all of its connections, twice for every
    request (for expired ones, and for the idle one to reuse), so one pool of the 32 connections a
    busy worker keeps cost 32 sync threads more CPU in that bookkeeping than in building requests."""

    def __init__(self, make: Callable[[], httpx.HTTPTransport], shards: int = SHARDS) -> None:
        self._make = make
        self._pools: list[httpx.HTTPTransport | None] = [None] * max(1, shards)
        self._turn = itertools.count()
        self._mine = threading.local()
        self._lock = threading.Lock()

    def _pool(self) -> httpx.HTTPTransport:
        shard: int | None = getattr(self._mine, "shard", None)
        if shard is None:
            shard = self._mine.shard = next(self._turn) % len(self._pools)
        pool = self._pools[shard]
        if pool is None:
            with self._lock:
                pool = self._pools[shard]
                if pool is None:
                    pool = self._pools[shard] = self._make()
        return pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._pool().handle_request(request)

    def close(self) -> None:
        pass  # lives as long as the process


_transports: dict[bool, _Shared] = {}
_transports_lock = threading.Lock()


def shared_transport(verify: bool) -> httpx.BaseTransport:
    """One set of connection pools per process for the system's trust store (or for plain http): a
    worker makes a client per sync of each account, and thousands of accounts would otherwise each
    load the CA bundle and open their own connections. Connections carry no credentials (every
    request has its own Authorization header), so accounts may share them; the pools share one TLS
    context (the CA bundle loaded once)."""
    with _transports_lock:
        transport = _transports.get(verify)
        if transport is None:
            limits = httpx.Limits(
                max_connections=None, max_keepalive_connections=max(8, 200 // SHARDS), keepalive_expiry=30
            )
            trust: ssl.SSLContext | bool = httpx.create_ssl_context() if verify else False
            transport = _transports[verify] = _Shared(lambda: httpx.HTTPTransport(verify=trust, limits=limits))
        return transport


class RetryingClient:
    """Wraps httpx.Client; counts requests so sync summaries can report them. `ca_file`: the CA to
    trust instead of the system's (an emulator's own); certificate checks are never turned off."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        *,
        policy: RetryPolicy | None = None,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        provider: str = "http",
        auth: httpx.Auth | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.provider = provider
        # plain http (a CalDAV server on the LAN, an emulator) never uses TLS: skip loading the CA bundle,
        # a tenth of a second of every short-lived `calsync sync`
        plain = base_url.startswith("http://")
        if ca_file:
            context = ssl.create_default_context(cafile=ca_file)
            self._client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, verify=context, auth=auth)
        else:  # the process's shared connection pool: a client is cheap to make, and its TLS context made once
            self._client = httpx.Client(
                base_url=base_url, headers=headers, timeout=timeout, auth=auth, transport=shared_transport(not plain)
            )
        self.policy = policy or RetryPolicy()
        self.request_count = 0
        self.retries = 0
        self._sleep = sleep
        self._random = random.Random()
        # set by the scheduler for one sync at a time: called before every attempt (the account's
        # request budget, which may wait), and when the provider answers that the rate is exceeded
        self.before_send: Callable[[], None] | None = None
        self.on_throttled: Callable[[], None] | None = None

    def request(self, method: str, url: str, *, idempotent: bool = True, **kwargs: Any) -> httpx.Response:
        """Send, retrying with exponential backoff and full jitter; Retry-After wins when given."""
        attempt = 0
        while True:
            attempt += 1
            if self.before_send is not None:
                self.before_send()
            try:
                self.request_count += 1
                response = self._client.request(method, url, **kwargs)
                _unbind_stream(response)
            except httpx.RequestError as exc:  # transport, decoding, redirects: no usable answer
                self._notify(0)
                if not idempotent or attempt >= self.policy.attempts or not isinstance(exc, httpx.TransportError):
                    raise Unreachable(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
                self._pause(attempt, None, exc)
                continue
            self._notify(response.status_code)
            if self.on_throttled is not None and is_rate_limited(response):
                self.on_throttled()
            if not is_retryable(response) or attempt >= self.policy.attempts:
                return response
            wait = retry_after_seconds(response)
            if wait is not None and wait > self.policy.max_retry_after:
                return response
            self._pause(attempt, wait, None)

    def _pause(self, attempt: int, retry_after: float | None, _exc: Exception | None) -> None:
        self.retries += 1
        delay = (
            retry_after
            if retry_after is not None
            else jittered_delay(attempt - 1, self.policy.base_delay, self.policy.max_delay, rng=self._random)
        )
        self._sleep(delay)

    def _notify(self, status: int) -> None:
        for ref in list(_observers):
            observer = ref()
            if observer is None:
                _observers.remove(ref)
            else:
                observer(self.provider, status)

    def close(self) -> None:
        self._client.close()


def provider_error(response: httpx.Response, text: str, reason: str | None = None) -> ProviderError:
    """The engine's exception for an unsuccessful answer: one mapping for every provider."""
    status = response.status_code
    if status == 401:
        return AuthError(text, status=status, reason=reason)
    if status in (404, 410):
        return NotFoundError(text, status=status, reason=reason)
    if status == 412:
        return PreconditionFailed(text, status=status, reason=reason)
    if is_retryable(response):
        return RateLimited(text, status=status, reason=reason, retry_after=retry_after_seconds(response))
    return ProviderError(text, status=status, reason=reason)


def checked_json(
    response: httpx.Response, label: str, reason_of: Callable[[httpx.Response], str | None]
) -> dict[str, Any]:
    """The JSON body of a success, or the ProviderError its status means, with the message of the
    provider's ``{"error": {"message"}}`` body (Google and Graph share that shape) and the reason
    `reason_of` reads from it. The reason is read from a failure's body only: a success's body is
    decoded once (a listing page's was decoded twice, the second time by the standard library)."""
    if response.status_code < 300:
        return json_body(response) if response.content else {}
    reason = reason_of(response)
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    raise provider_error(response, f"{label} {response.status_code} {reason or ''}: {message}".strip(), reason)


def json_body(response: httpx.Response) -> Any:
    """The response's JSON, read by orjson (a page of 2,500 Google events: a third of the standard
    library's time). What orjson refuses and the standard library reads (an escaped lone surrogate, a
    body in UTF-16) is read by the standard library, whose error a body that is no JSON at all raises,
    as before. So is a body that may hold an integer of 20 digits or more: orjson reads an integer
    beyond 64 bits as a float, silently."""
    body = response.content
    if _long_integer(body) is None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return response.json()


def _long_integer(body: bytes) -> int | None:
    """Where a JSON number of 20 digits or more may start in `body`, or None. A number starts the
    body or follows what may stand before one (a colon, a bracket, a comma, white space, a minus), so
    digits become "0", those bytes "!", every other byte a space, and bytes.find looks for "!" and
    twenty zeros: a 2 MB page in about 1 ms (the regular expression [0-9]{20} took 23 ms), and the
    digit runs inside text (Google's 16-digit ETags, the zeros of Outlook's iCalUIds, which sent
    every Graph page to the standard library) do not count. Text whose run follows such a byte (a
    space: "call 0123...") is read by the standard library: slower, as right."""
    marked = body.translate(_NUMBER_MARKS)
    if marked.startswith(_TWENTY_ZEROS):
        return 0
    found = marked.find(_AFTER_A_MARK)
    return None if found < 0 else found + 1


_NUMBER_MARKS = bytes(
    ord("0") if chr(n) in "0123456789" else ord("!") if chr(n) in ":[,-\x20\t\n\r" else ord(" ") for n in range(256)
)
_TWENTY_ZEROS = b"0" * 20
_AFTER_A_MARK = b"!" + _TWENTY_ZEROS


def _unbind_stream(response: httpx.Response) -> None:
    """Break the reference cycle httpx makes between a response and its stream (the client binds the
    stream to the response to time it). The body is read by then (no request here streams), so the
    stream is spent: an equivalent stream of the read body takes its place. Why: in a cycle, a
    response and its body (2 MB for a page of 2,500 Google events) outlive their use until the cyclic
    collector's next full pass; without one, reference counting frees them when the page is parsed,
    and an initial sync's memory stays one page deep even when the collector runs rarely."""
    response.stream = httpx.ByteStream(response.content)
