"""Push notifications for the Google Calendar emulator: events.watch, channels.stop, delivery.

Google's push is a *hint* that something changed (``../shared/reference/provider-semantics.md`` 1.8,
https://developers.google.com/calendar/api/guides/push): a ``sync`` message
(number 1) right after a watch, then an empty-bodied ``exists`` POST per change, with the
channel's identity in ``X-Goog-*`` headers. Messages can be late, lost, duplicated, out of
order, or arrive after ``channels.stop``, and a sync engine has to survive all of that, so
every one of those can be switched on here (``PushFaults``) with seeded, repeatable dice.

Delivery (queue, worker, retries, faults, log) is the shared ``push_hub.DeliveryHub``; Google's
own parts are here: channels, message numbers, held reorder batches and which statuses it retries.

This module imports only the standard library, starlette, httpx and the shared emulator modules.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.emulators.common import receiver_allowed, receiver_host, rfc3339_ms
from calsync.emulators.faults import admin_error
from calsync.emulators.push_faults import PushFaults
from calsync.emulators.push_hub import DeliveryHub, delivery_admin_routes

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "Channel",
    "PushError",
    "PushFaults",
    "PushHub",
    "WatchRequest",
    "parse_watch",
    "push_admin_routes",
    "resource_id_for",
]

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 604_800  # params.ttl default documented for the Calendar watch methods
CHANNEL_ID_MAX = 64
TOKEN_MAX = 256
RETRY_STATUSES = frozenset({500, 502, 503, 504})
MAX_CHANNELS = 10_000  # live channels; dead ones are pruned first
DELIVERY_TIMEOUT_S = 5.0
USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"
_CHANNEL_ID_RE = re.compile(r"^[A-Za-z0-9\-_+/=]+$")
_CHANNEL_TYPES = ("web_hook", "webhook")


class PushError(Exception):
    """A watch/stop request Google would refuse; the emulator renders it in Google's error shape."""

    def __init__(
        self, status: int, reason: str, message: str, domain: str = "global", location: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.domain = domain
        self.location = location


def _bad(message: str, location: str | None = None, reason: str = "invalid") -> PushError:
    return PushError(400, reason, message, location=location)


# ---------------------------------------------------------------------------------------------
# Watch requests


@dataclass(frozen=True)
class WatchRequest:
    """A validated watch body: what the channel needs besides the calendar and the user."""

    id: str
    address: str
    token: str | None
    expiration_ms: int


def _channel_id(value: Any) -> str:
    if value is None or value == "":
        raise PushError(400, "required", "Required: channel id.", location="id")
    if not isinstance(value, str) or not _CHANNEL_ID_RE.match(value):
        raise _bad(r"Channel id must match [A-Za-z0-9\-_\+/=]+", "id")
    if len(value) > CHANNEL_ID_MAX:
        raise _bad(f"Channel id must be at most {CHANNEL_ID_MAX} characters.", "id")
    return value


def _channel_type(value: Any) -> None:
    if value is None or value == "":
        raise PushError(400, "required", "Required: channel type.", location="type")
    if not isinstance(value, str) or value.lower() not in _CHANNEL_TYPES:
        raise _bad(f"Channel type not supported: {value}", "type", reason="push.channelTypeNotSupported")


def _address(value: Any, allow_http: bool) -> str:
    """The receiver URL: HTTPS, or plain HTTP to a loopback host when the switch allows it."""
    if value is None or value == "":
        raise PushError(400, "required", "Required: channel address.", location="address")
    if not isinstance(value, str):
        raise _bad("Invalid channel address.", "address")
    if not receiver_host(value):
        raise _bad(
            f"WebHook callback must have a host or address: {value}", "address", reason="push.webhookUrlNoHostOrAddress"
        )
    if receiver_allowed(value, allow_http):
        return value
    raise _bad(f"WebHook callback must be HTTPS: {value}", "address", reason="push.webhookUrlNotHttps")


def _token(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad("Invalid channel token.", "token")
    if len(value) > TOKEN_MAX:
        raise _bad(f"Channel token must be at most {TOKEN_MAX} characters.", "token")
    return value


def _positive_int(value: Any) -> int | None:
    """An int given as a JSON number or a decimal string (Google's int64-as-string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        number = int(value)
        return number if number > 0 else None
    return None


def _ttl_seconds(params: Any) -> int:
    if params is None:
        return DEFAULT_TTL_SECONDS
    if not isinstance(params, dict):
        raise _bad("Invalid channel params.", "params")
    if params.get("ttl") is None:
        return DEFAULT_TTL_SECONDS
    ttl = _positive_int(params["ttl"])
    if ttl is None:
        raise _bad(f"Invalid value for: params.ttl: {params['ttl']!r}", "params.ttl")
    return ttl


def _requested_expiration(value: Any, now_ms: int) -> int | None:
    if value is None:
        return None
    wanted = _positive_int(value)
    if wanted is None:
        raise _bad(f"Invalid value for: expiration: {value!r}", "expiration")
    if wanted <= now_ms:
        raise _bad("Invalid value for: expiration: it must lie in the future.", "expiration")
    return wanted


def parse_watch(body: Mapping[str, Any], now_ms: int, allow_http: bool, max_ttl_seconds: int) -> WatchRequest:
    """Validate a Channel body; the expiry is the earliest of ttl, the cap and the asked expiration."""
    channel_id = _channel_id(body.get("id"))
    _channel_type(body.get("type"))
    address = _address(body.get("address"), allow_http)
    token = _token(body.get("token"))
    expiration = now_ms + min(_ttl_seconds(body.get("params")), max_ttl_seconds) * 1000
    wanted = _requested_expiration(body.get("expiration"), now_ms)
    if wanted is not None:
        expiration = min(expiration, wanted)
    return WatchRequest(channel_id, address, token, expiration)


def resource_id_for(calendar_id: str, user: str) -> str:
    """Opaque and stable per (calendar, user), the shape Google uses (27 URL-safe characters)."""
    digest = hashlib.sha256(f"events\n{calendar_id}\n{user}".encode()).digest()[:20]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


# ---------------------------------------------------------------------------------------------
# Channels and messages


@dataclass(eq=False)
class Channel:
    """One notification channel and its delivery counters (changed only under the hub's lock)."""

    id: str
    resource_id: str
    resource_uri: str
    calendar_id: str
    user: str
    address: str
    token: str | None
    expiration_ms: int
    created: float
    stopped: bool = False
    last_number: int = 0
    messages: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0

    def expired(self, now: float) -> bool:
        return now * 1000 >= self.expiration_ms

    def state(self, now: float) -> str:
        """live, stopped or expired (stopped wins: it was the client's decision)."""
        if self.stopped:
            return "stopped"
        return "expired" if self.expired(now) else "live"

    def resource(self) -> dict[str, Any]:
        """The Channel resource events.watch answers with."""
        out: dict[str, Any] = {
            "kind": "api#channel",
            "id": self.id,
            "resourceId": self.resource_id,
            "resourceUri": self.resource_uri,
        }
        if self.token is not None:
            out["token"] = self.token
        out["expiration"] = str(self.expiration_ms)
        return out

    def headers(self, number: int, state: str) -> dict[str, str]:
        """The headers of one notification; token only when set, as Google documents."""
        out = {"Content-Type": "application/json; utf-8", "User-Agent": USER_AGENT, "X-Goog-Channel-ID": self.id}
        if self.token is not None:
            out["X-Goog-Channel-Token"] = self.token
        out.update(
            {
                "X-Goog-Channel-Expiration": formatdate(self.expiration_ms / 1000.0, usegmt=True),
                "X-Goog-Resource-ID": self.resource_id,
                "X-Goog-Resource-URI": self.resource_uri,
                "X-Goog-Resource-State": state,
                "X-Goog-Message-Number": str(number),
            }
        )
        return out

    def admin_dict(self, now: float) -> dict[str, Any]:
        """The channel as GET /emulator/channels shows it."""
        out = self.resource()
        out.update(
            {
                "calendarId": self.calendar_id,
                "user": self.user,
                "address": self.address,
                "state": self.state(now),
                "created": rfc3339_ms(self.created),
                "messagesSent": self.messages,
                "delivered": self.delivered,
                "failed": self.failed,
                "dropped": self.dropped,
                "lastMessageNumber": self.last_number,
            }
        )
        return out


@dataclass(eq=False)
class _Message:
    """One notification on its way; duplicates are separate objects with the same number."""

    channel: Channel
    number: int
    state: str
    generation: int
    due: float
    attempt: int = 1


# ---------------------------------------------------------------------------------------------
# The hub: channels, and what Google's delivery does its own way


class PushHub(DeliveryHub[_Message, _Message]):
    """Channels and their delivery queue; one condition lock guards everything here.

    ``settings`` returns the emulator's switch dict (read at use, so switch changes apply at
    once): push_retry_base_ms, push_max_attempts and push_deliver_remote are used here.
    """

    name = "google"
    logger = log
    close_wait_s = DELIVERY_TIMEOUT_S + 1
    client_timeout_s = DELIVERY_TIMEOUT_S

    def _clear(self) -> None:
        """Forget channels, queue, faults and log; in-flight results of the old generation are ignored."""
        super()._clear()
        self._channels: dict[str, Channel] = {}
        self._by_calendar: dict[str, dict[str, Channel]] = {}
        self._held: list[_Message] = []
        self._held_deadline: float | None = None
        self._number_rng = random.Random(self._seed)

    # -- channels -------------------------------------------------------------------------------

    def open_channel(self, req: WatchRequest, calendar_id: str, user: str, resource_uri: str) -> Channel:
        """Register a channel and queue its sync message; the id must not name a live channel."""
        with self._cond:
            now = time.time()
            existing = self._channels.get(req.id)
            if existing is not None and existing.state(now) == "live":
                raise PushError(400, "channelIdNotUnique", "Channel id not unique")
            self._make_room(now)
            channel = Channel(
                req.id,
                resource_id_for(calendar_id, user),
                resource_uri,
                calendar_id,
                user,
                req.address,
                req.token,
                req.expiration_ms,
                now,
            )
            if existing is not None:
                self._by_calendar.get(existing.calendar_id, {}).pop(existing.id, None)
            self._channels[channel.id] = channel
            self._by_calendar.setdefault(calendar_id, {})[channel.id] = channel
            self._enqueue(channel, "sync")
            return channel

    def _make_room(self, now: float) -> None:
        """Keep the registry bounded: prune dead channels, then refuse when live ones fill it."""
        if len(self._channels) < MAX_CHANNELS:
            return
        for channel in [c for c in self._channels.values() if c.state(now) != "live"]:
            del self._channels[channel.id]
            self._by_calendar.get(channel.calendar_id, {}).pop(channel.id, None)
        if len(self._channels) >= MAX_CHANNELS:
            raise PushError(403, "quotaExceeded", "Too many live notification channels.", domain="usageLimits")

    def stop(self, body: Mapping[str, Any], user: str) -> None:
        """channels.stop: id + resourceId of a live channel this user created, else 404."""
        channel_id, resource_id = body.get("id"), body.get("resourceId")
        if not isinstance(channel_id, str) or not channel_id:
            raise PushError(400, "required", "Required: channel id.", location="id")
        if not isinstance(resource_id, str) or not resource_id:
            raise PushError(400, "required", "Required: resourceId.", location="resourceId")
        with self._cond:
            channel = self._channels.get(channel_id)
            if (
                channel is None
                or channel.resource_id != resource_id
                or channel.user != user
                or channel.state(time.time()) != "live"
            ):
                raise PushError(404, "notFound", f"Channel '{channel_id}' not found for project 'calsync-emulator'")
            channel.stopped = True

    def expire(self, channel_id: str) -> dict[str, Any] | None:
        """Admin: the channel expires now (no renewal, no more messages); None when unknown."""
        with self._cond:
            channel = self._channels.get(channel_id)
            if channel is None:
                return None
            now = time.time()
            channel.expiration_ms = min(channel.expiration_ms, int(now * 1000))
            return channel.admin_dict(now)

    def channels(self, include_dead: bool = False) -> list[dict[str, Any]]:
        with self._cond:
            now = time.time()
            return [c.admin_dict(now) for c in self._channels.values() if include_dead or c.state(now) == "live"]

    # -- notifications --------------------------------------------------------------------------

    def notify(self, calendar_id: str, state: str = "exists") -> int:
        """Queue one message for every channel on the calendar that may still receive; returns how many."""
        with self._cond:
            now = time.time()
            queued = 0
            for channel in list(self._by_calendar.get(calendar_id, {}).values()):
                if channel.expired(now) or (channel.stopped and not self._faults.deliver_after_stop):
                    continue
                self._enqueue(channel, state)
                queued += 1
            return queued

    def _next_number(self, channel: Channel, state: str) -> int:
        """1 for sync, then increasing but not sequential, as Google documents."""
        number = 1 if state == "sync" else channel.last_number + 1 + self._number_rng.randrange(3)
        channel.last_number = number
        channel.messages += 1
        return number

    def _enqueue(self, channel: Channel, state: str) -> None:
        """Under the lock: number the message, apply drop/duplicate/delay/reorder, queue it."""
        number = self._next_number(channel, state)
        faults = self._faults
        if faults.should_drop(self._fault_rng):
            channel.dropped += 1
            self._record(channel, number, state, 0, "dropped", error="dropped by push fault")
            return
        due = time.monotonic() + faults.delay_ms / 1000.0
        for _ in range(faults.copies(self._fault_rng)):
            if self._pending() >= self._max_queue:
                self._record(channel, number, state, 0, "queue_full", error="delivery queue is full")
                return
            message = _Message(channel, number, state, self._generation, due)
            if faults.reorder:
                self._hold(message)
            else:
                self._push(message)
        self._cond.notify_all()
        self._ensure_worker()

    def _pending(self) -> int:
        return super()._pending() + len(self._held)

    def _hold(self, message: _Message) -> None:
        if not self._held:
            self._held_deadline = time.monotonic() + self._faults.reorder_window_ms / 1000.0
        self._held.append(message)
        if len(self._held) >= self._faults.reorder_batch:
            self._release_held()

    def _release_held(self) -> None:
        """Shuffle the held batch and queue it in that order (same due time, so order is the shuffle)."""
        batch, self._held, self._held_deadline = self._held, [], None
        if not batch:
            return
        self._fault_rng.shuffle(batch)
        due = max(m.due for m in batch)
        for message in batch:
            message.due = due
            self._push(message)

    def _before_take(self, now: float) -> None:
        if self._held and self._held_deadline is not None and now >= self._held_deadline:
            self._release_held()

    def _before_flush_check(self) -> None:
        if self._held:
            self._release_held()
            self._cond.notify_all()

    def _faults_changing(self, faults: PushFaults) -> None:
        if self._held and not faults.reorder:
            self._release_held()

    def _wait_seconds(self, now: float) -> float | None:
        deadlines = [d for d in (self._heap[0][0] if self._heap else None, self._held_deadline) if d is not None]
        return max(min(deadlines) - now, 0.001) if deadlines else None

    # -- delivery -------------------------------------------------------------------------------

    def _skip_reason(self, message: _Message) -> str | None:
        channel = message.channel
        if channel.expired(time.time()):
            return "channel expired"
        if channel.stopped and not self._faults.deliver_after_stop:
            return "channel stopped"
        return None

    def _address(self, message: _Message) -> str:
        return message.channel.address

    def _log_skipped(self, message: _Message, reason: str) -> None:
        self._record(message.channel, message.number, message.state, message.attempt, "skipped", error=reason)

    def _claim(self, first: _Message, now: float) -> _Message:
        return first

    def _size(self, unit: _Message) -> int:
        return 1

    def _post(self, client: httpx.Client, message: _Message) -> tuple[int | None, str | None]:
        channel = message.channel
        return self._send(client, channel.address, headers=channel.headers(message.number, message.state), content=b"")

    def _settle(self, message: _Message, status: int | None, error: str | None) -> None:
        """Under the lock: log the attempt; retry 5xx-retryable and transport errors with backoff."""
        if message.generation != self._generation:
            return
        channel = message.channel
        retryable = status is None or status in RETRY_STATUSES
        if status is not None and 200 <= status < 300:
            channel.delivered += 1
            outcome = "delivered"
        elif retryable and self._may_retry(message.attempt):
            outcome = "retry"
        else:
            channel.failed += 1
            outcome = "gave_up" if retryable else "failed"
        self._record(channel, message.number, message.state, message.attempt, outcome, status, error)
        if outcome == "retry":
            message.due = self._retry_due(message.attempt)
            message.attempt += 1
            self._push(message)

    def _record(
        self,
        channel: Channel,
        number: int,
        state: str,
        attempt: int,
        outcome: str,
        status: int | None = None,
        error: str | None = None,
    ) -> None:
        """Under the lock: one delivery-log entry and its counter."""
        self._count(
            outcome,
            {
                "channelId": channel.id,
                "resourceId": channel.resource_id,
                "address": channel.address,
                "messageNumber": number,
                "state": state,
                "attempt": attempt,
                "outcome": outcome,
                "status": status,
                "error": error,
            },
        )


# ---------------------------------------------------------------------------------------------
# Admin surface


def push_admin_routes(hub: PushHub) -> list[Route]:
    """/emulator endpoints for channels, deliveries, push faults and flushing the queue."""

    async def channels(request: Request) -> Response:
        include_dead = request.query_params.get("all", "").lower() in ("1", "true")
        return JSONResponse({"channels": hub.channels(include_dead)})

    async def expire(request: Request) -> Response:
        found = hub.expire(request.path_params["channel_id"])
        return JSONResponse(found) if found is not None else admin_error(404, "no such channel")

    return [
        Route("/emulator/channels", channels, methods=["GET"]),
        Route("/emulator/channels/{channel_id:path}/expire", expire, methods=["POST"]),
        *delivery_admin_routes(hub),
    ]
