"""Fault rules, a request log and the admin surface shared by the emulators (Google, Graph, Zoom-like).

A sync engine is only as good as its behaviour when the provider misbehaves, so every
emulator can be told to fail (status, Retry-After), to slow down, or both, for a number
of requests or a fraction of them. Each emulator supplies a callback that renders the
error in its own provider's format; this module stays provider-neutral.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.emulators.common import rfc3339_ms

#: Renders an injected error: (status, reason or None, the rule as a dict) -> response.
ErrorRenderer = Callable[[int, "str | None", dict[str, Any]], Response]

_SPEC_KEYS = {"status", "rate", "count", "retry_after", "latency_ms", "methods", "path_prefix", "reason"}


class FaultSpecError(ValueError):
    """A fault rule that cannot be applied; the admin endpoint turns it into a 400."""


@dataclass
class FaultRule:
    """One fault rule; ``remaining`` counts down when ``count`` was given (None = unlimited)."""

    id: int
    status: int | None = None
    rate: float = 1.0
    remaining: int | None = None
    count: int | None = None
    retry_after: int | None = None
    latency_ms: int = 0
    methods: frozenset[str] | None = None
    path_prefix: str = "/"
    reason: str | None = None
    fired: int = 0

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request, ignoring rate and count."""
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return path.startswith(self.path_prefix)

    def as_dict(self) -> dict[str, Any]:
        """The rule as the admin API reports it."""
        out: dict[str, Any] = {
            "id": self.id,
            "rate": self.rate,
            "latency_ms": self.latency_ms,
            "path_prefix": self.path_prefix,
            "fired": self.fired,
        }
        if self.status is not None:
            out["status"] = self.status
        if self.count is not None:
            out["count"] = self.count
            out["remaining"] = self.remaining
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        if self.methods is not None:
            out["methods"] = sorted(self.methods)
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def _int_field(spec: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FaultSpecError(f"{key} must be an integer in [{low}, {high}]")
    return value


def _rate_field(spec: dict[str, Any]) -> float:
    value = spec.get("rate", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise FaultSpecError("rate must be a number in [0, 1]")
    return float(value)


def _methods_field(spec: dict[str, Any]) -> frozenset[str] | None:
    value = spec.get("methods")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
        raise FaultSpecError("methods must be a list of HTTP method names")
    return frozenset(m.upper() for m in value)


def _str_field(spec: dict[str, Any], key: str) -> str | None:
    value = spec.get(key)
    if value is not None and not isinstance(value, str):
        raise FaultSpecError(f"{key} must be a string")
    return value


def parse_rule(spec: Any, rule_id: int, default_prefix: str) -> FaultRule:
    """Validate a fault spec dict and build a rule; raises FaultSpecError on bad input."""
    if not isinstance(spec, dict):
        raise FaultSpecError("a fault spec must be a JSON object")
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise FaultSpecError(f"unknown fault spec keys: {sorted(unknown)}")
    status = _int_field(spec, "status", 100, 599)
    latency = _int_field(spec, "latency_ms", 0, 600_000) or 0
    if status is None and latency == 0:
        raise FaultSpecError("a fault rule needs a status, a latency_ms, or both")
    count = _int_field(spec, "count", 0, 10**9)
    prefix = _str_field(spec, "path_prefix")
    return FaultRule(
        id=rule_id,
        status=status,
        rate=_rate_field(spec),
        remaining=count,
        count=count,
        retry_after=_int_field(spec, "retry_after", 0, 86_400),
        latency_ms=latency,
        methods=_methods_field(spec),
        path_prefix=prefix if prefix is not None else default_prefix,
        reason=_str_field(spec, "reason"),
    )


class FaultInjector:
    """Ordered fault rules applied to incoming requests, repeatable through a seeded RNG."""

    def __init__(self, error_renderer: ErrorRenderer, default_prefix: str = "/", seed: int = 0) -> None:
        self._render = error_renderer
        self._default_prefix = default_prefix
        self._seed = seed
        self._rng = random.Random(seed)
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Add a rule from a spec dict (see module doc); returns the rule as stored."""
        with self._lock:
            rule = parse_rule(spec, next(self._ids), self._default_prefix)
            self._rules.append(rule)
            return rule.as_dict()

    def clear(self) -> None:
        """Drop every rule and re-seed the RNG, so a reset run repeats the same dice rolls."""
        with self._lock:
            self._rules.clear()
            self._rng = random.Random(self._seed)

    def rules(self) -> list[dict[str, Any]]:
        """The current rules, as dicts."""
        with self._lock:
            return [r.as_dict() for r in self._rules]

    def _fire(self, method: str, path: str) -> tuple[int, FaultRule | None]:
        """Roll every matching rule once: total latency, and the first error rule that fired."""
        latency = 0
        error: FaultRule | None = None
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path) or rule.remaining == 0:
                    continue
                if rule.status is not None and error is not None:
                    continue  # an earlier error rule already answers this request
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                rule.fired += 1
                latency += rule.latency_ms
                if rule.status is not None:
                    error = rule
        return latency, error

    async def maybe_fail(self, method: str, path: str) -> Response | None:
        """Apply any latency, then return the injected error response if a rule fired (else None)."""
        latency, rule = self._fire(method, path)
        if latency:
            await asyncio.sleep(latency / 1000.0)
        if rule is None or rule.status is None:
            return None
        response = self._render(rule.status, rule.reason, rule.as_dict())
        if rule.retry_after is not None:
            response.headers["Retry-After"] = str(rule.retry_after)
        return response


@dataclass
class RequestLog:
    """Bounded log of API requests with their final status, for tests and benchmarks to inspect."""

    maxlen: int = 20_000
    _entries: deque[dict[str, Any]] = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._entries = deque(maxlen=self.maxlen)

    def add(self, method: str, path: str, query: str, status: int, user: str | None) -> None:
        """Record one request."""
        now = time.time()
        entry = {
            "method": method,
            "path": path,
            "query": query,
            "status": status,
            "time": rfc3339_ms(now),
            "epoch": now,
            "user": user,
        }
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        """A copy of the log, oldest first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def add_fault(before: FaultInjector, after: FaultInjector, spec: Any) -> dict[str, Any]:
    """Add a rule to the right injector: ``after_commit`` rules answer after the work is done."""
    if isinstance(spec, dict) and "after_commit" in spec:
        spec = dict(spec)
        flag = spec.pop("after_commit")
        if not isinstance(flag, bool):
            raise FaultSpecError("after_commit must be true or false")
        if flag:
            return {**after.add(spec), "after_commit": True}
    return before.add(spec)


async def with_faults(
    before: FaultInjector, after: FaultInjector, request: Request, handle: Callable[[], Awaitable[Response]]
) -> Response:
    """Serve a request under injected faults: a ``before`` fault answers instead of the work, an
    ``after`` (after_commit) one replaces the answer of work that was done."""
    injected = await before.maybe_fail(request.method, request.url.path)
    if injected is not None:
        return injected
    response = await handle()
    return await after.maybe_fail(request.method, request.url.path) or response


def list_faults(before: FaultInjector, after: FaultInjector) -> list[dict[str, Any]]:
    return before.rules() + [{**r, "after_commit": True} for r in after.rules()]


def admin_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def admin_json(request: Request) -> Any:
    """The admin request's JSON body ({} when empty); ValueError when it is not JSON."""
    raw = await request.body()
    return json.loads(raw) if raw.strip() else {}


def common_admin_routes(
    reset: Callable[[], Any], faults: FaultInjector, commit_faults: FaultInjector, log: RequestLog
) -> list[Route]:
    """The admin surface every emulator shares: reset, fault rules (before or after the work is
    done), and the request log. Admin requests are never logged or faulted."""

    async def reset_(request: Request) -> Response:
        reset()
        return JSONResponse({"reset": True})

    async def add_rule(request: Request) -> Response:
        try:
            rule = add_fault(faults, commit_faults, await admin_json(request))
        except (FaultSpecError, ValueError) as exc:
            return admin_error(400, str(exc))
        return JSONResponse(rule, status_code=201)

    async def rules(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"faults": list_faults(faults, commit_faults)})
        faults.clear()
        commit_faults.clear()
        return Response(status_code=204)

    return [
        Route("/emulator/reset", reset_, methods=["POST"]),
        Route("/emulator/faults", add_rule, methods=["POST"]),
        Route("/emulator/faults", rules, methods=["GET", "DELETE"]),
        log_route("/emulator/requests", "requests", log.entries, log.clear),
    ]


def log_route(path: str, key: str, entries: Callable[[], list[dict[str, Any]]], clear: Callable[[], None]) -> Route:
    """``GET`` a log as ``{key: [...]}``, ``DELETE`` empties it: the request log and the push delivery log."""

    async def log_(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({key: entries()})
        clear()
        return Response(status_code=204)

    return Route(path, log_, methods=["GET", "DELETE"])


def switches_route(current: Callable[[], dict[str, Any]], update: Callable[[Any], dict[str, Any]]) -> Route:
    """``GET|POST /emulator/switches``: read, or flip, an emulator's documented-variant behaviours."""

    async def switches(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(current())
        try:
            return JSONResponse(update(await admin_json(request)))
        except ValueError as exc:
            return admin_error(400, str(exc))

    return Route("/emulator/switches", switches, methods=["GET", "POST"])


def seed_route(seed: Callable[[str, Any], Any], missing: type[Exception], missing_message: str) -> Route:
    """``POST /emulator/calendars/{cal}/seed``: ``seed(cal, spec)`` in a worker thread (100,000 events take
    seconds); ``missing`` (the calendar is unknown) answers 404, ValueError (a bad spec) 400."""

    async def seed_(request: Request) -> Response:
        try:
            spec = await admin_json(request)
            out = await run_in_threadpool(seed, request.path_params["cal"], spec)
        except missing:
            return admin_error(404, missing_message)
        except ValueError as exc:
            return admin_error(400, str(exc))
        return JSONResponse(out)

    return Route("/emulator/calendars/{cal}/seed", seed_, methods=["POST"])
