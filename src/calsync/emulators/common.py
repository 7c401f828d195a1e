"""Helpers the emulators share: sealed tokens, JSON bodies, bearer tokens, push receiver URLs, the app,
switches and seeding.

Each emulator answers errors in its own provider's shape, so a helper that can refuse input
takes a factory for that provider's error rather than raising one of its own. This module
imports only the standard library and starlette (nothing of calsync), so that every emulator
built on it can still be lifted out and run alone.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import ipaddress
import json
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = [
    "GC_FREEZE_THRESHOLD",
    "SEED_KINDS",
    "SEED_LENGTHS",
    "SEED_PEOPLE",
    "SEED_PLACES",
    "SEED_START",
    "SEED_TOPICS",
    "SeedPick",
    "Signer",
    "api_app",
    "b64url_decode",
    "bearer_token",
    "gc_paused",
    "is_int",
    "is_loopback",
    "is_num",
    "json_bytes",
    "json_text",
    "object_body",
    "read_json_body",
    "receiver_allowed",
    "receiver_host",
    "rfc3339_ms",
    "seed_options",
    "seed_pick",
    "validate_switches",
]

# ---------------------------------------------------------------------------------------------
# Encodings


def rfc3339_ms(ts: float) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``: Google's created/updated and the emulators' logs."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def b64url_decode(text: str) -> bytes | None:
    """URL-safe base64 with or without padding; None when it does not decode."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None


def json_text(obj: Any) -> str:
    """Compact JSON, non-ASCII kept: the spelling the providers answer with."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def json_bytes(obj: Any) -> bytes:
    """:func:`json_text` as a response body."""
    return json_text(obj).encode()


class Signer:
    """HMAC-sealed opaque strings (sync, page, skip and delta tokens): clients can neither read
    nor forge them, and a token from before a reset (new secret) is simply unknown."""

    _SIG_LEN = 12

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[: self._SIG_LEN]

    def seal(self, payload: Any) -> str:
        """The JSON payload and its MAC, URL-safe base64 without padding."""
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw + self._mac(raw)).decode("ascii").rstrip("=")

    def open(self, token: Any) -> Any | None:
        """The payload, or None when the string was not sealed by this signer."""
        if not isinstance(token, str) or not token or len(token) > 4096:
            return None
        blob = b64url_decode(token)
        if blob is None or len(blob) <= self._SIG_LEN:
            return None
        raw, sig = blob[: -self._SIG_LEN], blob[-self._SIG_LEN :]
        if not hmac.compare_digest(sig, self._mac(raw)):
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def sign_text(self, text: str) -> str:
        """A full-length signature of ``text`` (Google's conference data signatures)."""
        return base64.urlsafe_b64encode(hmac.new(self._secret, text.encode(), hashlib.sha256).digest()).decode()


# ---------------------------------------------------------------------------------------------
# Requests


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when absent or another scheme."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


async def read_json_body(request: Request, bad: Callable[[], Exception]) -> Any:
    """The request's JSON body (None when empty); ``bad()`` is raised when it is not JSON."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:  # UnicodeDecodeError included
        raise bad() from None


def object_body(body: Any, bad: Callable[[], Exception]) -> dict[str, Any]:
    """A JSON body that must be an object ({} when there was none); ``bad()`` otherwise."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise bad()
    return body


def is_loopback(host: str) -> bool:
    """Whether a URL host is this machine (plain http is allowed there, and only there, for tests)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def receiver_host(url: str) -> str | None:
    """The host of a push receiver's URL; None when it has none or its port does not parse."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        return None
    return host or None


def receiver_allowed(url: str, allow_http: bool) -> bool:
    """Whether push may go to ``url``: HTTPS anywhere, plain HTTP to a loopback host when the switch allows it."""
    host = receiver_host(url)
    if not host:
        return False
    scheme = urlsplit(url).scheme.lower()
    return scheme == "https" or (scheme == "http" and allow_http and is_loopback(host))


def api_app(
    emulator: Any,
    admin: list[Route],
    api_prefix: str,
    api: Callable[[Request], Awaitable[Response]],
    not_found: Callable[[Request], Awaitable[Response]],
) -> Starlette:
    """An emulator's app: its admin routes, its API under ``api_prefix``, its own answer for any other path."""
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    app = Starlette(
        routes=[
            *admin,
            Route(api_prefix + "/{rest:path}", api, methods=methods),
            Route("/{rest:path}", not_found, methods=methods),
        ]
    )
    app.state.emulator = emulator
    return app


# ---------------------------------------------------------------------------------------------
# Switches (documented-variant behaviours flipped through POST /emulator/switches)


def is_int(v: Any, low: int, high: int) -> bool:
    """A JSON integer (not a boolean) in [low, high]."""
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def is_num(v: Any, low: float, high: float) -> bool:
    """A JSON number (not a boolean) in [low, high]."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high


def validate_switches(values: Any, checks: Mapping[str, Callable[[Any], bool]]) -> dict[str, Any]:
    """The switch values to apply; ValueError (an admin 400) for unknown names or bad values."""
    if not isinstance(values, dict):
        raise ValueError("switches must be a JSON object")  # noqa: TRY004 - admin routes answer ValueError as 400
    for name, value in values.items():
        check = checks.get(name)
        if check is None:
            raise ValueError(f"unknown switch {name!r}; known: {sorted(checks)}")
        if not check(value):
            raise ValueError(f"bad value for switch {name!r}: {value!r}")
    return values


# ---------------------------------------------------------------------------------------------
# Seeding (benchmarks build 100,000 realistic events in seconds)

GC_FREEZE_THRESHOLD = 20_000  # seeds at least this big are moved out of the GC's sight
SEED_TOPICS = (
    "Budget",
    "Design",
    "Roadmap",
    "Hiring",
    "Customer",
    "Incident",
    "Quarterly",
    "Security",
    "Onboarding",
    "Pricing",
    "Release",
    "Support",
    "Marketing",
    "Data",
    "Platform",
    "Mobile",
)
SEED_KINDS = (
    "review",
    "sync",
    "planning",
    "retro",
    "interview",
    "workshop",
    "demo",
    "1:1",
    "standup",
    "kickoff",
    "deep dive",
    "office hours",
)
SEED_LENGTHS = (30, 45, 60, 60, 90, 120)
SEED_PLACES = ("Room 101", "Room 204", "Blue room", "Cafeteria", "Main hall", "Online")
SEED_START = "2026-11-01T00:00:00Z"  # when a seed spec names no start
SEED_PEOPLE = (
    "ana",
    "ben",
    "chen",
    "dara",
    "eli",
    "fatima",
    "goran",
    "hana",
    "ivan",
    "jules",
    "kofi",
    "lena",
    "mateo",
    "noor",
    "omar",
    "priya",
    "quinn",
    "rosa",
    "sven",
    "tariq",
)


@contextmanager
def gc_paused(count: int) -> Iterator[None]:
    """Build ``count`` seeded objects with the cyclic GC paused.

    Every seeded object would otherwise be rescanned by each gen-2 collection (about 1 s
    lost per 100,000 events); big seeds are then frozen (gc.freeze) so later collections
    skip them and a page of 2500 is not stalled by a 300 ms GC pause. Seeded objects hold
    no reference cycles, so reset still frees them by reference counting.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if count >= GC_FREEZE_THRESHOLD:
            gc.freeze()
        if was_enabled:
            gc.enable()


def seed_options(spec: Any, every: tuple[str, ...]) -> dict[str, Any]:
    """A seed spec's integer options: count, days, seed and the emulator's own ``every`` keys (0 = never).

    "start" is allowed but left to the caller, whose time parser it needs; ValueError (an admin 400)
    on anything odd.
    """
    if not isinstance(spec, dict):
        raise ValueError("seed spec must be a JSON object")  # noqa: TRY004 - the admin API answers ValueError as 400
    allowed = {"count", "start", "days", "seed", *every}
    if set(spec) - allowed:
        raise ValueError(f"unknown seed keys: {sorted(set(spec) - allowed)}")
    defaults = {"count": 100, "days": 60, "seed": 1}
    limits = {"count": (0, 1_000_000), "days": (1, 3650), "seed": (-(2**63), 2**63), **dict.fromkeys(every, (0, 10**9))}
    out: dict[str, Any] = {key: spec.get(key, defaults.get(key, 0)) for key in limits}
    for key, (low, high) in limits.items():
        if not is_int(out[key], low, high):
            raise ValueError(f"{key} must be an integer in [{low}, {high}]")
    return out


@dataclass(slots=True)  # not frozen: a frozen __init__ costs 0.2 s per 100,000 events
class SeedPick:
    """The choices both emulators make for one seeded event; ``bits`` is what is left for their own."""

    day: int  # days after the seed's start
    hour: int  # hours after 09:00
    quarter: int  # quarter hours after that
    minutes: int
    title: str
    place: str
    who: int  # index into SEED_PEOPLE
    bits: int

    def description(self, i: int) -> str:
        return f"{self.title} #{i}: agenda, notes and follow-ups."


def seed_pick(rng: random.Random, days: int) -> SeedPick:
    """One event's choices from a single 64-bit draw (random.choice is too slow for 100,000 events)."""
    bits = rng.getrandbits(64)
    bits, day = divmod(bits, days)
    bits, hour = divmod(bits, 8)
    bits, quarter = divmod(bits, 4)
    bits, length = divmod(bits, len(SEED_LENGTHS))
    bits, topic = divmod(bits, len(SEED_TOPICS))
    bits, kind = divmod(bits, len(SEED_KINDS))
    bits, place = divmod(bits, len(SEED_PLACES))
    bits, who = divmod(bits, len(SEED_PEOPLE))
    return SeedPick(
        day,
        hour,
        quarter,
        SEED_LENGTHS[length],
        f"{SEED_TOPICS[topic]} {SEED_KINDS[kind]}",
        SEED_PLACES[place],
        who,
        bits,
    )
