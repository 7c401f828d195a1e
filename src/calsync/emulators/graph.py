"""A faithful in-memory emulator of Microsoft Graph (Outlook calendars), served over real HTTP.

It reproduces what a sync engine depends on (provider-semantics 2.1-2.5, checklist 5.2):
calendarView delta with opaque skip/delta tokens that fix the window, ``@removed`` for deletions
and for changes outside the window, ``Prefer: odata.maxpagesize`` / ``outlook.timezone`` /
``IdType="ImmutableId"``, recurring series expanded into occurrences and exceptions, changeKey /
``@odata.etag`` with ``If-Match`` -> 412 ``ErrorIrresolvableConflict``, ``transactionId``
de-duplication, subscriptions with the validation handshake, change and lifecycle notifications
(delivered by ``graph_push``), JSON batching (``POST /v1.0/$batch``, in ``graph_batch``: each inner
request served, throttled, faulted and logged as a request of its own, under an outer 200), Graph's
error JSON, and throttling answers. It imports only the
standard library, starlette, httpx, python-dateutil and the sibling emulator modules.

Storage, chosen so paging stays correct while events change (as in the Google emulator):

* each calendar keeps ``order`` (every event that ever entered it, append-only): the first
  round of a delta walks it with a keyset position, so concurrent writes never make a page
  skip an event that existed unchanged throughout the round;
* each calendar keeps ``log`` (one entry per change, ``log[seq - 1]``): later rounds walk it
  from the token's sequence, skipping entries a later change of the same item superseded.

Where Graph's documentation is silent the behaviour is a documented guess, flippable through
``POST /emulator/switches`` (see ``DEFAULT_SWITCHES``).
"""
from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import html
import inspect
import itertools
import json
import logging
import os
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import DAILY, MONTHLY, WEEKLY, YEARLY, rrule, weekday
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.emulators.faults import FaultInjector, RequestLog, admin_error, admin_json, common_admin_routes
from calsync.emulators.graph_batch import BatchItem, BatchPayloadError, parse_batch, run_batch
from calsync.emulators.graph_push import GraphPushHub, Note, push_admin_routes, url_allowed

__all__ = ["GraphEmulator", "GraphError", "create_app", "DEFAULT_SWITCHES", "API_PREFIX", "USER_DOMAIN",
           "TENANT_ID", "LIFECYCLE_EVENTS"]

log = logging.getLogger(__name__)

API_PREFIX = "/v1.0"
USER_DOMAIN = "contoso.example"
TENANT_ID = str(uuid.uuid5(uuid.NAMESPACE_DNS, USER_DOMAIN))
JSON_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
LIST_PAGE_DEFAULT = 10  # documented default page of /events and /calendarView
LIST_PAGE_MAX = 1000
MAX_INSTANCES = 5000  # occurrences expanded per series per request
DEAD_HORIZON_DAYS = 730  # how far ahead dropped occurrences of a changed series are tracked
MAX_SUBSCRIPTIONS_PER_MAILBOX = 1000
CLIENT_STATE_MAX = 128
THROTTLE_WINDOW_S = 600.0
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
GC_FREEZE_THRESHOLD = 20_000
_UTC = timezone.utc

#: Documented-variant and undocumented behaviours that tests may flip with ``POST /emulator/switches``.
DEFAULT_SWITCHES: dict[str, Any] = {
    # delta page size without Prefer: odata.maxpagesize (undocumented; /events and /calendarView default to 10)
    "delta_default_page_size": 10,
    # largest odata.maxpagesize honoured; larger values are capped (undocumented)
    "delta_max_page_size": 1000,
    # stop a delta page after scanning this many candidates: short or empty pages with a nextLink
    "delta_page_scan_limit": None,
    # expired / invalid token answer: "syncStateNotFound" (410 + Location), "resyncRequired" (410 + Location),
    # or "badRequest" (400 syncStateNotFound, no Location)
    "delta_expired_response": "syncStateNotFound",
    # delta tokens older than this many seconds are expired (Outlook documents no fixed lifetime)
    "delta_token_ttl_seconds": None,
    # later rounds re-send this many already-reported changes (documented: replays happen)
    "delta_replay_count": 0,
    # every changed item appears twice in its page (documented: duplicates happen)
    "delta_duplicate_items": False,
    # field quirk: a series' occurrences are never split across pages, even past odata.maxpagesize
    "delta_keep_series_together": False,
    # longest subscription lifetime for Outlook events: 4230 (stored docs) or 10080 (newer docs)
    "subscription_max_minutes": 4230,
    # scope of a "me/events" subscription: the whole "mailbox" or the "default_calendar" (undocumented)
    "me_events_subscription_scope": "mailbox",
    # POST with a transactionId already used: "return_existing" (201, the same event) or "conflict" (409)
    "transaction_id_duplicate": "return_existing",
    # the next N If-Match writes hit Exchange's own changeKey bump and answer 412 (seen in the field)
    "spurious_412_count": 0,
    # per-mailbox throttling (documented: 4 concurrent requests, 10,000 per 10 minutes); None = off
    "mailbox_concurrency_limit": None,
    "mailbox_requests_per_10min": None,
    "throttle_retry_after_seconds": 1,
    # $batch answers in reverse request order (documented: responses may come in any order)
    "batch_reverse_responses": False,
    # notificationUrl: plain http is accepted for loopback hosts (tests); never elsewhere
    "push_allow_http": True,
    # deliver to (and validate) non-loopback receivers; off: they fail / are skipped, so tests never reach out
    "push_deliver_remote": False,
    "push_retry_base_ms": 200,
    "push_max_attempts": 5,
    "delivery_timeout_s": 3.0,
    "validation_timeout_s": 10.0,
}


def _is_int(v: Any, low: int, high: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _is_num(v: Any, low: float, high: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high


_SWITCH_CHECKS: dict[str, Callable[[Any], bool]] = {
    "delta_default_page_size": lambda v: _is_int(v, 1, 10_000),
    "delta_max_page_size": lambda v: _is_int(v, 1, 100_000),
    "delta_page_scan_limit": lambda v: v is None or _is_int(v, 1, 10**9),
    "delta_expired_response": lambda v: v in ("syncStateNotFound", "resyncRequired", "badRequest"),
    "delta_token_ttl_seconds": lambda v: v is None or _is_num(v, 0, 10**9),
    "delta_replay_count": lambda v: _is_int(v, 0, 10_000),
    "delta_duplicate_items": lambda v: isinstance(v, bool),
    "delta_keep_series_together": lambda v: isinstance(v, bool),
    "subscription_max_minutes": lambda v: _is_int(v, 1, 10**6),
    "me_events_subscription_scope": lambda v: v in ("mailbox", "default_calendar"),
    "transaction_id_duplicate": lambda v: v in ("return_existing", "conflict"),
    "spurious_412_count": lambda v: _is_int(v, 0, 10**6),
    "mailbox_concurrency_limit": lambda v: v is None or _is_int(v, 1, 10_000),
    "mailbox_requests_per_10min": lambda v: v is None or _is_int(v, 1, 10**9),
    "throttle_retry_after_seconds": lambda v: _is_int(v, 0, 86_400),
    "batch_reverse_responses": lambda v: isinstance(v, bool),
    "push_allow_http": lambda v: isinstance(v, bool),
    "push_deliver_remote": lambda v: isinstance(v, bool),
    "push_retry_base_ms": lambda v: _is_int(v, 0, 60_000),
    "push_max_attempts": lambda v: _is_int(v, 1, 20),
    "delivery_timeout_s": lambda v: _is_num(v, 0.05, 60),
    "validation_timeout_s": lambda v: _is_num(v, 0.05, 60),
}

# ---------------------------------------------------------------------------------------------
# Errors


class GraphError(Exception):
    """An error answered in Graph's shape: ``{"error": {"code", "message", "innerError": {...}}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self, request_id: str, client_request_id: str | None) -> dict[str, Any]:
        inner: dict[str, Any] = {"date": datetime.now(_UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                                 "request-id": request_id, "client-request-id": client_request_id or request_id}
        return {"error": {"code": self.code, "message": self.message, "innerError": inner}}


def _not_found() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def _malformed_id() -> GraphError:
    return GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")


def _bad(message: str, code: str = "ErrorInvalidRequest") -> GraphError:
    return GraphError(400, code, message)


def _body_read(message: str) -> GraphError:
    return GraphError(400, "RequestBodyRead", message)


def _conflict_412() -> GraphError:
    return GraphError(412, "ErrorIrresolvableConflict",
                      "The send or update operation could not be performed because the change key passed in the "
                      "request does not match the current change key for the item.")


_FAULT_CODES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Injected fault."),
    401: ("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
    403: ("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
    404: ("ErrorItemNotFound", "The specified object was not found in the store."),
    409: ("ErrorIrresolvableConflict", "Injected conflict."),
    410: ("SyncStateNotFound", "The sync state generation is not found."),
    412: ("ErrorIrresolvableConflict", _conflict_412().message),
    429: ("ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
    500: ("ErrorInternalServerError", "An internal server error occurred. The operation failed."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceNotAvailable", "The service is not available. Try the request again after a delay."),
    504: ("GatewayTimeout", "The gateway did not receive a timely response."),
}


def error_for_status(status: int, reason: str | None = None) -> GraphError:
    """Graph's error body for an injected fault; ``reason`` overrides the code (e.g. activityLimitReached)."""
    code, message = _FAULT_CODES.get(status, ("generalException" if status >= 500 else "BadRequest",
                                              f"Injected fault ({status})."))
    return GraphError(status, reason or code, message)


# ---------------------------------------------------------------------------------------------
# Time zones and timestamps

#: Common Windows zone ids (what Outlook stores and returns) and their IANA equivalents.
WINDOWS_ZONES: dict[str, str] = {
    "UTC": "UTC", "Coordinated Universal Time": "UTC", "tzone://Microsoft/Utc": "UTC",
    "GMT Standard Time": "Europe/London", "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin", "Central Europe Standard Time": "Europe/Budapest",
    "Romance Standard Time": "Europe/Paris", "Central European Standard Time": "Europe/Warsaw",
    "E. Europe Standard Time": "Europe/Chisinau", "FLE Standard Time": "Europe/Kiev",
    "GTB Standard Time": "Europe/Bucharest", "Russian Standard Time": "Europe/Moscow",
    "Turkey Standard Time": "Europe/Istanbul", "Israel Standard Time": "Asia/Jerusalem",
    "South Africa Standard Time": "Africa/Johannesburg", "Egypt Standard Time": "Africa/Cairo",
    "Morocco Standard Time": "Africa/Casablanca", "W. Central Africa Standard Time": "Africa/Lagos",
    "E. Africa Standard Time": "Africa/Nairobi", "Arabian Standard Time": "Asia/Dubai",
    "Arab Standard Time": "Asia/Riyadh", "Iran Standard Time": "Asia/Tehran",
    "Pakistan Standard Time": "Asia/Karachi", "India Standard Time": "Asia/Kolkata",
    "Nepal Standard Time": "Asia/Kathmandu", "Bangladesh Standard Time": "Asia/Dhaka",
    "SE Asia Standard Time": "Asia/Bangkok", "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore", "Taipei Standard Time": "Asia/Taipei",
    "Tokyo Standard Time": "Asia/Tokyo", "Korea Standard Time": "Asia/Seoul",
    "AUS Eastern Standard Time": "Australia/Sydney", "E. Australia Standard Time": "Australia/Brisbane",
    "Cen. Australia Standard Time": "Australia/Adelaide", "W. Australia Standard Time": "Australia/Perth",
    "New Zealand Standard Time": "Pacific/Auckland", "Hawaiian Standard Time": "Pacific/Honolulu",
    "Alaskan Standard Time": "America/Anchorage", "Pacific Standard Time": "America/Los_Angeles",
    "US Mountain Standard Time": "America/Phoenix", "Mountain Standard Time": "America/Denver",
    "Central Standard Time": "America/Chicago", "Eastern Standard Time": "America/New_York",
    "Atlantic Standard Time": "America/Halifax", "Newfoundland Standard Time": "America/St_Johns",
    "SA Pacific Standard Time": "America/Bogota", "Pacific SA Standard Time": "America/Santiago",
    "E. South America Standard Time": "America/Sao_Paulo", "Argentina Standard Time": "America/Buenos_Aires",
    "Central Standard Time (Mexico)": "America/Mexico_City", "Canada Central Standard Time": "America/Regina",
    "Dateline Standard Time": "Etc/GMT+12", "UTC-11": "Etc/GMT+11", "UTC+12": "Etc/GMT-12",
}
_WINDOWS_LOWER = {k.lower(): v for k, v in WINDOWS_ZONES.items()}


def _zone(name: Any) -> ZoneInfo:
    """A zone from a Windows or IANA name, or Graph's 400 for an unsupported one."""
    if isinstance(name, str) and name.strip():
        iana = _WINDOWS_LOWER.get(name.strip().lower(), name.strip())
        if ".." not in iana and not iana.startswith("/"):
            try:
                return ZoneInfo(iana)
            except (ZoneInfoNotFoundError, ValueError):
                pass
    raise GraphError(400, "TimeZoneNotSupportedException",
                     f"A valid TimeZone value must be specified. The following TimeZone value is not supported: '{name}'.")


def _fmt_local(dt: datetime) -> str:
    """Graph's dateTime: no offset, seven fractional digits."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0"


def _fmt_ts(ts: float) -> str:
    """createdDateTime / lastModifiedDateTime: UTC, seven fractional digits, Z."""
    dt = datetime.fromtimestamp(ts, _UTC)
    return _fmt_local(dt.replace(tzinfo=None)) + "Z"


def _fmt_instant(dt: datetime) -> str:
    """originalStart-style timestamps: UTC with Z and whole seconds."""
    return dt.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: Any) -> datetime | None:
    """ISO 8601 date or date-time (offset optional, any fraction); None when malformed."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time())
        return datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None


def _parse_instant(value: Any) -> datetime | None:
    """A query-string instant: no offset means UTC (as documented for calendarView delta)."""
    dt = _parse_iso(value)
    if dt is None:
        return None
    return dt.replace(tzinfo=_UTC) if dt.tzinfo is None else dt.astimezone(_UTC)


@dataclass(frozen=True)
class _When:
    """A dateTimeTimeZone as stored: the wall time in the zone the client named, and that name."""

    local: datetime  # naive
    tz_name: str
    zone: ZoneInfo

    @property
    def instant(self) -> datetime:
        return self.local.replace(tzinfo=self.zone).astimezone(_UTC)

    def json(self) -> dict[str, str]:
        return {"dateTime": _fmt_local(self.local), "timeZone": self.tz_name}


def _check_when(value: Any, what: str) -> _When:
    if not isinstance(value, dict):
        raise _body_read(f"Cannot read the value of property '{what}': expected a dateTimeTimeZone object.")
    zone_name = value.get("timeZone")
    zone = _zone(zone_name)
    dt = _parse_iso(value.get("dateTime"))
    if dt is None:
        raise _body_read(f"Cannot convert the literal '{value.get('dateTime')}' to the expected type 'Edm.DateTime'.")
    if dt.tzinfo is not None:
        dt = dt.astimezone(zone).replace(tzinfo=None)
    return _When(dt, str(zone_name).strip(), zone)


# ---------------------------------------------------------------------------------------------
# Recurrence (patternedRecurrence)

_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_INDEX = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
_PATTERNS = {"daily": DAILY, "weekly": WEEKLY, "absoluteMonthly": MONTHLY, "relativeMonthly": MONTHLY,
             "absoluteYearly": YEARLY, "relativeYearly": YEARLY}
_RANGES = ("endDate", "noEnd", "numbered")


def _bad_recurrence(message: str) -> GraphError:
    return GraphError(400, "ErrorCalendarInvalidRecurrence", message)


def _rec_date(value: Any, what: str) -> date:
    try:
        if isinstance(value, str) and len(value) == 10:
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise _bad_recurrence(f"The recurrence {what} '{value}' is not a valid date.")


def _rec_int(pattern: dict[str, Any], key: str, low: int, high: int, default: int) -> int:
    value = pattern.get(key, default)
    if value is None:
        value = default
    if not _is_int(value, 0, high) or (value != default and value < low):
        raise _bad_recurrence(f"The recurrence pattern {key} '{value}' is out of range.")
    return value


def _check_pattern(pattern: Any) -> dict[str, Any]:
    if not isinstance(pattern, dict) or pattern.get("type") not in _PATTERNS:
        raise _bad_recurrence("The recurrence pattern type is missing or not supported.")
    kind = pattern["type"]
    days = pattern.get("daysOfWeek") or []
    if not isinstance(days, list) or any(not isinstance(d, str) or d.lower() not in _DAYS for d in days):
        raise _bad_recurrence("The recurrence pattern daysOfWeek is not valid.")
    first_day = str(pattern.get("firstDayOfWeek") or "sunday").lower()
    index = str(pattern.get("index") or "first").lower()
    if first_day not in _DAYS or index not in _INDEX:
        raise _bad_recurrence("The recurrence pattern firstDayOfWeek or index is not valid.")
    out = {"type": kind, "interval": _rec_int(pattern, "interval", 1, 999, 1),
           "month": _rec_int(pattern, "month", 1, 12, 0), "dayOfMonth": _rec_int(pattern, "dayOfMonth", 1, 31, 0),
           "daysOfWeek": [d.lower() for d in days], "firstDayOfWeek": first_day, "index": index}
    if out["interval"] < 1:
        raise _bad_recurrence("The recurrence pattern interval must be at least 1.")
    if kind in ("weekly", "relativeMonthly", "relativeYearly") and not out["daysOfWeek"]:
        raise _bad_recurrence(f"A {kind} recurrence pattern needs daysOfWeek.")
    if kind in ("absoluteMonthly", "absoluteYearly") and not out["dayOfMonth"]:
        raise _bad_recurrence(f"An {kind} recurrence pattern needs dayOfMonth.")
    if kind in ("absoluteYearly", "relativeYearly") and not out["month"]:
        raise _bad_recurrence(f"A {kind} recurrence pattern needs month.")
    return out


def _check_range(rng: Any) -> dict[str, Any]:
    if not isinstance(rng, dict) or rng.get("type") not in _RANGES:
        raise _bad_recurrence("The recurrence range type is missing or not supported.")
    start = _rec_date(rng.get("startDate"), "startDate")
    out: dict[str, Any] = {"type": rng["type"], "startDate": start.isoformat(), "endDate": "0001-01-01",
                           "recurrenceTimeZone": rng.get("recurrenceTimeZone") or None, "numberOfOccurrences": 0}
    if rng.get("recurrenceTimeZone"):
        _zone(rng["recurrenceTimeZone"])
    if rng["type"] == "endDate":
        end = _rec_date(rng.get("endDate"), "endDate")
        if end < start:
            raise _bad_recurrence("The recurrence range endDate is before its startDate.")
        out["endDate"] = end.isoformat()
    if rng["type"] == "numbered":
        count = rng.get("numberOfOccurrences")
        if not _is_int(count, 1, 999):
            raise _bad_recurrence("The recurrence range numberOfOccurrences must be between 1 and 999.")
        out["numberOfOccurrences"] = count
    return out


def _check_recurrence(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad_recurrence("The recurrence must be a patternedRecurrence object.")
    return {"pattern": _check_pattern(value.get("pattern")), "range": _check_range(value.get("range"))}


class _Series:
    """A compiled series: occurrence starts from the pattern, in the master's start zone."""

    def __init__(self, recurrence: dict[str, Any], start: _When, end: _When) -> None:
        self.zone = start.zone
        self.duration = end.instant - start.instant
        pattern, rng = recurrence["pattern"], recurrence["range"]
        dtstart = datetime.combine(date.fromisoformat(rng["startDate"]), start.local.time())
        kwargs: dict[str, Any] = {"dtstart": dtstart, "interval": pattern["interval"],
                                  "wkst": _DAYS.index(pattern["firstDayOfWeek"])}
        kind = pattern["type"]
        days = [weekday(_DAYS.index(d)) for d in pattern["daysOfWeek"]]
        if kind == "weekly" or kind.startswith("relative"):
            kwargs["byweekday"] = days
        if kind.startswith("relative"):
            kwargs["bysetpos"] = _INDEX[pattern["index"]]
        if kind.startswith("absolute"):
            kwargs["bymonthday"] = pattern["dayOfMonth"]
        if kind.endswith("Yearly"):
            kwargs["bymonth"] = pattern["month"]
        if rng["type"] == "numbered":
            kwargs["count"] = rng["numberOfOccurrences"]
        elif rng["type"] == "endDate":
            kwargs["until"] = datetime.combine(date.fromisoformat(rng["endDate"]), datetime.max.time())
        self.rule = rrule(_PATTERNS[kind], **kwargs)
        self.first_local = dtstart

    def _instant(self, local: datetime) -> datetime:
        return local.replace(tzinfo=self.zone).astimezone(_UTC)

    def starts(self, lo: datetime, hi: datetime, limit: int = MAX_INSTANCES) -> list[datetime]:
        """Occurrence starts (UTC) whose span overlaps [lo, hi)."""
        lo_local = (lo - self.duration - timedelta(days=1)).astimezone(self.zone).replace(tzinfo=None)
        hi_local = (hi + timedelta(days=1)).astimezone(self.zone).replace(tzinfo=None)
        out: list[datetime] = []
        for local in self.rule.xafter(max(lo_local, self.first_local), inc=True):
            if local > hi_local or len(out) >= limit:
                break
            start = self._instant(local)
            if _overlaps(start, start + self.duration, lo, hi):
                out.append(start)
        return out

    def contains(self, start: datetime) -> bool:
        local = start.astimezone(self.zone).replace(tzinfo=None)
        return local in self.rule.between(local - timedelta(seconds=1), local + timedelta(seconds=1), inc=True)


def _overlaps(start: datetime, end: datetime, lo: datetime, hi: datetime) -> bool:
    """calendarView membership: the span overlaps the window (a zero-length event counts at its start)."""
    if start == end:
        return lo <= start < hi
    return start < hi and end > lo


# ---------------------------------------------------------------------------------------------
# Ids, change keys and tokens

_EVENT_KIND = b"E"
_CAL_KIND = b"C"
_PREFIX_REGULAR = "AAMkA"
_PREFIX_IMMUTABLE = "AAkAL"
_PREFIX_CAL = "AQMkA"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None


def _mailbox_header(email: str) -> bytes:
    digest = hashlib.sha256(email.lower().encode()).digest()
    return digest + digest[:16]


@dataclass(frozen=True)
class _IdParts:
    key: bytes
    gen: int
    immutable: bool
    occ: int | None  # occurrence original start (epoch seconds) for instances of a series


def _encode_event_id(header: bytes, key: bytes, gen: int, immutable: bool, occ: int | None = None) -> str:
    raw = header + _EVENT_KIND + key + (0 if immutable else gen).to_bytes(2, "big")
    if occ is not None:
        raw += occ.to_bytes(8, "big", signed=True)
    return (_PREFIX_IMMUTABLE if immutable else _PREFIX_REGULAR) + _b64(raw)


def _decode_event_id(header: bytes, text: str) -> _IdParts:
    """Parse an event id of either form; 400 when malformed, 404 when it names another mailbox."""
    if not isinstance(text, str) or len(text) < 10 or len(text) > 400:
        raise _malformed_id()
    prefix, body = text[:5], text[5:]
    if prefix not in (_PREFIX_REGULAR, _PREFIX_IMMUTABLE):
        raise _malformed_id()
    raw = _unb64(body)
    if raw is None or len(raw) not in (67, 75) or raw[48:49] != _EVENT_KIND:
        raise _malformed_id()
    if raw[:48] != header:
        raise _not_found()
    occ = int.from_bytes(raw[67:75], "big", signed=True) if len(raw) == 75 else None
    return _IdParts(raw[49:65], int.from_bytes(raw[65:67], "big"), prefix == _PREFIX_IMMUTABLE, occ)


def _encode_calendar_id(header: bytes, key: bytes) -> str:
    return _PREFIX_CAL + _b64(header + _CAL_KIND + key)


def _decode_calendar_id(header: bytes, text: str) -> bytes:
    raw = _unb64(text[5:]) if isinstance(text, str) and text.startswith(_PREFIX_CAL) else None
    if raw is None or len(raw) != 65 or raw[48:49] != _CAL_KIND:
        raise _malformed_id()
    if raw[:48] != header:
        raise _not_found()
    return raw[49:]


class _Signer:
    """HMAC-sealed opaque strings (skip and delta tokens): clients can neither read nor forge them."""

    _SIG = 12

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[: self._SIG]

    def seal(self, payload: Any) -> str:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw + self._mac(raw)).decode("ascii").rstrip("=")

    def open(self, token: Any) -> Any | None:
        if not isinstance(token, str) or not token or len(token) > 4096:
            return None
        blob = _unb64(token)
        if blob is None or len(blob) <= self._SIG:
            return None
        raw, sig = blob[: -self._SIG], blob[-self._SIG:]
        if not hmac.compare_digest(sig, self._mac(raw)):
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None


# ---------------------------------------------------------------------------------------------
# Data model


@dataclass(eq=False)
class _Event:
    """A single event, a series master, or (with ``master`` set) an exception of a series."""

    key: bytes
    calendar: bytes
    data: dict[str, Any]
    start: _When
    end: _When
    created: float
    modified: float
    change_key: str
    ical_uid: str
    gen: int = 0
    deleted: bool = False
    transaction_id: str | None = None
    master: _Event | None = None
    original: datetime | None = None  # exceptions: the occurrence's original start (UTC)
    series: _Series | None = None
    exceptions: dict[int, _Event] = field(default_factory=dict)
    cancelled: set[int] = field(default_factory=set)
    dead: dict[tuple[bytes, int], int] = field(default_factory=dict)  # (calendar, occ) -> seq it died at
    left_gen: dict[bytes, int] = field(default_factory=dict)  # calendar -> id generation when it left it
    online: dict[str, Any] | None = None
    is_cancelled: bool = False

    @property
    def is_series(self) -> bool:
        return self.series is not None and self.master is None

    @property
    def all_day(self) -> bool:
        return bool(self.data.get("isAllDay"))


@dataclass(eq=False)
class _Calendar:
    key: bytes
    owner: str
    name: str
    is_default: bool
    change_key: str
    color: str = "auto"
    deleted: bool = False
    order: list[_Event] = field(default_factory=list)
    positions: dict[bytes, int] = field(default_factory=dict)  # event key -> its current index in order
    log: list[tuple[bytes, int | None]] = field(default_factory=list)
    last_seq: dict[tuple[bytes, int | None], int] = field(default_factory=dict)

    @property
    def seq(self) -> int:
        return len(self.log)


@dataclass(eq=False)
class _User:
    email: str
    guid: str
    header: bytes
    default: bytes
    calendars: dict[bytes, _Calendar] = field(default_factory=dict)
    events: dict[bytes, _Event] = field(default_factory=dict)
    transactions: dict[str, bytes] = field(default_factory=dict)

    @property
    def display_name(self) -> str:
        return self.email.split("@", 1)[0].replace(".", " ").title()


@dataclass(eq=False)
class _Subscription:
    id: str
    user: str
    resource: str
    calendar: bytes | None  # None = the whole mailbox
    change_types: tuple[str, ...]
    url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: float
    immutable: bool
    created: float
    paused: bool = False
    notified: int = 0
    skipped: int = 0

    def live(self, now: float) -> bool:
        return now < self.expiration


@dataclass(frozen=True)
class _View:
    """How one request wants events rendered: zone, id form, body type and links."""

    user: _User
    zone: ZoneInfo
    tz_label: str
    immutable: bool
    text_body: bool
    base: str
    expand_props: str | None = None  # singleValueExtendedProperties filter id ("" = all) or None


@dataclass(frozen=True)
class _Change:
    """One committed change, for change notifications after the write."""

    user: str
    calendar: bytes
    change_type: str
    ev: _Event
    occ: int | None
    gen: int
    etag: str | None


# ---------------------------------------------------------------------------------------------
# Event fields

_ENUMS: dict[str, tuple[str, ...]] = {
    "importance": ("low", "normal", "high"),
    "sensitivity": ("normal", "personal", "private", "confidential"),
    "showAs": ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown"),
    "onlineMeetingProvider": ("unknown", "teamsForBusiness", "skypeForBusiness", "skypeForConsumer"),
}
_BOOLS = ("isAllDay", "isReminderOn", "responseRequested", "allowNewTimeProposals", "hideAttendees",
          "isOnlineMeeting")
_READ_ONLY = frozenset({
    "id", "changeKey", "createdDateTime", "lastModifiedDateTime", "iCalUId", "uid", "type", "seriesMasterId",
    "originalStart", "onlineMeeting", "onlineMeetingUrl", "webLink", "isOrganizer", "responseStatus",
    "bodyPreview", "hasAttachments", "isCancelled", "isDraft", "organizer", "originalStartTimeZone",
    "originalEndTimeZone", "occurrenceId", "calendar", "instances", "attachments", "extensions",
    "multiValueExtendedProperties", "cancelledOccurrences", "exceptionOccurrences",
})
_WRITABLE = frozenset({"subject", "body", "start", "end", "location", "locations", "attendees", "categories",
                       "reminderMinutesBeforeStart", "recurrence", "transactionId",
                       "singleValueExtendedProperties", *_BOOLS, *_ENUMS})
_ATTENDEE_TYPES = ("required", "optional", "resource")
_NO_RESPONSE = {"response": "none", "time": "0001-01-01T00:00:00Z"}


def _expect(value: Any, kind: type | tuple[type, ...], name: str, edm: str) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _body_read(f"Cannot convert the literal '{value}' to the expected type '{edm}' (property '{name}').")
    return value


def _check_body(value: Any) -> dict[str, str]:
    _expect(value, dict, "body", "microsoft.graph.itemBody")
    kind = str(value.get("contentType") or "text").lower()
    if kind not in ("text", "html"):
        raise _body_read(f"Requested value '{value.get('contentType')}' was not found.")
    return {"contentType": kind, "content": _expect(value.get("content") or "", str, "body.content", "Edm.String")}


def _check_location(value: Any) -> dict[str, Any]:
    _expect(value, dict, "location", "microsoft.graph.location")
    out = dict(value)
    out["displayName"] = _expect(value.get("displayName") or "", str, "location.displayName", "Edm.String")
    return out


def _check_attendees(value: Any) -> list[dict[str, Any]]:
    _expect(value, list, "attendees", "Collection(microsoft.graph.attendee)")
    out = []
    for item in value:
        email = item.get("emailAddress") if isinstance(item, dict) else None
        address = email.get("address") if isinstance(email, dict) else None
        if not isinstance(email, dict) or not isinstance(address, str) or "@" not in address:
            raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
        kind = item.get("type") or "required"
        if kind not in _ATTENDEE_TYPES:
            raise _body_read(f"Requested value '{kind}' was not found.")
        name = email.get("name") if isinstance(email.get("name"), str) and email.get("name") else address
        out.append({"type": kind, "status": dict(_NO_RESPONSE), "emailAddress": {"name": name, "address": address}})
    return out


def _check_ext_props(value: Any) -> list[dict[str, str]]:
    _expect(value, list, "singleValueExtendedProperties", "Collection(microsoft.graph.singleValueLegacyExtendedProperty)")
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not isinstance(item.get("value"), str):
            raise _body_read("A singleValueExtendedProperty needs string 'id' and 'value'.")
        out.append({"id": item["id"], "value": item["value"]})
    return out


def _check_field(name: str, value: Any) -> Any:
    """One writable property, validated and normalised (times and recurrence are checked later)."""
    if name in _BOOLS:
        return _expect(value, bool, name, "Edm.Boolean")
    if name in _ENUMS:
        if value not in _ENUMS[name]:
            raise _body_read(f"Requested value '{value}' was not found.")
        return value
    if name == "subject":
        return _expect(value if value is not None else "", str, name, "Edm.String")
    if name == "body":
        return _check_body(value)
    if name == "location":
        return _check_location(value)
    if name == "locations":
        return [_check_location(v) for v in _expect(value, list, name, "Collection(microsoft.graph.location)")]
    if name == "attendees":
        return _check_attendees(value)
    if name == "categories":
        items = _expect(value, list, name, "Collection(Edm.String)")
        return [_expect(v, str, name, "Edm.String") for v in items]
    if name == "reminderMinutesBeforeStart":
        return _expect(value, int, name, "Edm.Int32")
    if name == "transactionId":
        return _expect(value, str, name, "Edm.String")
    if name == "singleValueExtendedProperties":
        return _check_ext_props(value)
    return value  # start, end, recurrence: checked with the event as a whole


def _checked_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The writable properties of a POST/PATCH body; unknown names are refused, read-only ones ignored."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@odata.") or name in _READ_ONLY:
            continue
        if name not in _WRITABLE:
            raise _body_read(f"The property '{name}' does not exist on type 'microsoft.graph.event'. Make sure to "
                             "only use property names that are defined by the type or mark the type as open type.")
        out[name] = _check_field(name, value)
    return out


def _check_times(start: _When, end: _When, all_day: bool) -> None:
    if end.instant < start.instant:
        raise GraphError(400, "ErrorCalendarEndDateIsEarlierThanStartDate", "The end date occurs before the start date.")
    if all_day:
        midnight = start.local.time() == datetime.min.time() and end.local.time() == datetime.min.time()
        if not midnight or start.tz_name.lower() != end.tz_name.lower() or end.local <= start.local:
            raise _bad("Your request can't be completed. If isAllDay is true, start and end must be at midnight, "
                       "in the same time zone, and at least one day apart.", "ErrorPropertyValidationFailure")


def _html_of_text(text: str) -> str:
    body = html.escape(text).replace("\r\n", "\n").replace("\n", "<br>\r\n")
    return ('<html>\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\r\n</head>\r\n'
            f"<body>\r\n{body}\r\n</body>\r\n</html>\r\n")


_TAG_RE = re.compile(r"<[^>]+>")


def _text_of_html(markup: str) -> str:
    text = re.sub(r"(?is)<(head|style|script)[^>]*>.*?</\1>", "", markup)
    return " ".join(html.unescape(_TAG_RE.sub(" ", text)).split())


def _body_view(body: dict[str, str] | None, want_text: bool) -> dict[str, str]:
    """Outlook stores bodies as HTML: text comes back wrapped unless Prefer asks for text."""
    if not body or not body.get("content"):
        return {"contentType": "text" if want_text else "html", "content": ""}
    if want_text:
        content = body["content"] if body["contentType"] == "text" else _text_of_html(body["content"])
        return {"contentType": "text", "content": content}
    content = body["content"] if body["contentType"] == "html" else _html_of_text(body["content"])
    return {"contentType": "html", "content": content}


def _preview(body: dict[str, str] | None) -> str:
    if not body:
        return ""
    text = body["content"] if body["contentType"] == "text" else _text_of_html(body["content"])
    return " ".join(text.split())[:255]


def _location_json(loc: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"displayName": "", "locationType": "default", "uniqueIdType": "unknown",
                           "address": {}, "coordinates": {}}
    if loc:
        out.update(loc)
    return out


def _ical_uid(key: bytes, occ_start: datetime | None = None) -> str:
    """Outlook's global object id shape; occurrences embed their date, so each differs."""
    stamp = "00000000" if occ_start is None else f"{occ_start.year:04X}{occ_start.month:02X}{occ_start.day:02X}"
    return "040000008200E00074C5B7101A82E008" + stamp + "0000000000000000100000" + key.hex().upper()


# ---------------------------------------------------------------------------------------------
# Request inputs


@dataclass(frozen=True)
class _Prefer:
    timezone: str | None = None
    immutable: bool = False
    max_page_size: int | None = None
    text_body: bool = False


def _parse_prefer(values: list[str]) -> _Prefer:
    """Prefer headers (several, or comma-separated): outlook.timezone, IdType, odata.maxpagesize, body type."""
    found: dict[str, str] = {}
    for value in values:
        for part in re.findall(r'[^,"]+(?:"[^"]*"[^,"]*)*', value):
            name, sep, raw = part.strip().partition("=")
            if sep:
                found[name.strip().lower()] = raw.strip().strip('"')
    size: int | None = None
    raw_size = found.get("odata.maxpagesize")
    if raw_size is not None:
        size = int(raw_size) if raw_size.isdigit() and 0 < int(raw_size) <= 10**6 else None
    return _Prefer(timezone=found.get("outlook.timezone") or None,
                   immutable=found.get("idtype", "").lower() == "immutableid",
                   max_page_size=size,
                   text_body=found.get("outlook.body-content-type", "").lower() == "text")


class _Params:
    """Query parameters; OData system options are matched case-insensitively, as Graph does."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = {k.lower(): v for k, v in items}

    def get(self, name: str) -> str | None:
        return self._items.get(name.lower())

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._items

    def int(self, name: str, low: int, high: int) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        if not value.isdigit() or not low <= int(value) <= high:
            raise GraphError(400, "BadRequest", f"Invalid value '{value}' for query option '{name}'.")
        return int(value)


_EXPAND_RE = re.compile(r"^singlevalueextendedproperties(?:\(\$filter=id\s+eq\s+'([^']*)'\))?$", re.IGNORECASE)


def _expand_filter(params: _Params) -> str | None:
    """$expand=singleValueExtendedProperties($filter=id eq '...'): the id ("" for all), or None."""
    value = params.get("$expand")
    if value is None:
        return None
    match = _EXPAND_RE.match(value.strip())
    if match is None:
        raise GraphError(400, "BadRequest", f"Parsing OData Select and Expand failed: '{value}' is not supported.")
    return match.group(1) or ""


# ---------------------------------------------------------------------------------------------
# Throttling (per mailbox, documented limits, switched off by default)


class _Throttle:
    """In-flight and per-10-minute request counts per mailbox; answers 429 ApplicationThrottled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[str, int] = {}
        self._recent: dict[str, deque[float]] = {}

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()

    def enter(self, user: str, switches: dict[str, Any]) -> GraphError | None:
        """Count the request in, or refuse it; a refused request is not counted in flight."""
        now = time.monotonic()
        with self._lock:
            limit = switches.get("mailbox_concurrency_limit")
            if limit is not None and self._inflight.get(user, 0) >= limit:
                return self._throttled("Application is over its MailboxConcurrency limit.",
                                       int(switches.get("throttle_retry_after_seconds", 1)))
            rate = switches.get("mailbox_requests_per_10min")
            recent = self._recent.setdefault(user, deque())
            while recent and recent[0] <= now - THROTTLE_WINDOW_S:
                recent.popleft()
            if rate is not None and len(recent) >= rate:
                wait = max(1, int(recent[0] + THROTTLE_WINDOW_S - now + 0.999))
                return self._throttled("Application is over its MailboxRequests limit.", wait)
            recent.append(now)
            self._inflight[user] = self._inflight.get(user, 0) + 1
            return None

    def leave(self, user: str) -> None:
        with self._lock:
            self._inflight[user] = max(0, self._inflight.get(user, 0) - 1)

    @staticmethod
    def _throttled(message: str, retry_after: int) -> GraphError:
        return GraphError(429, "ApplicationThrottled", message, {"Retry-After": str(retry_after)})


class _GraphRequestLog(RequestLog):
    """The request log; an inner request of a JSON batch is logged too, with ``"batch_item"``: its
    id in the batch (the outer ``POST /v1.0/$batch`` is logged once, after its inner requests)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._marking = threading.Lock()

    def add(self, method: str, path: str, query: str, status: int, user: str | None,
            batch_item: str | None = None) -> None:
        with self._marking:  # every add passes here: the entry marked is the one just added
            super().add(method, path, query, status, user)
            if batch_item is not None:
                with self._lock:
                    self._entries[-1]["batch_item"] = batch_item


# ---------------------------------------------------------------------------------------------
# The emulator


class GraphEmulator:
    """All emulator state, in memory, guarded by one lock (HTTP handlers and admin calls share it)."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.RLock()
        self._seed = seed
        self.faults = FaultInjector(self._fault_response, default_prefix=API_PREFIX + "/", seed=seed)
        self.commit_faults = FaultInjector(self._fault_response, default_prefix=API_PREFIX + "/", seed=seed)
        self.requests = _GraphRequestLog()
        self.throttle = _Throttle()
        self._depth = 0
        self._reset_state()
        self.push = GraphPushHub(lambda: self.switches, self._sub_live, seed=seed)

    # -- lifecycle ------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        self._signer = _Signer(os.urandom(32))
        self._users: dict[str, _User] = {}
        self._subs: dict[str, _Subscription] = {}
        self._ck_counter = itertools.count(int(time.time()) << 12)
        self._delta_epoch = 0
        self._user_epochs: dict[str, int] = {}
        self.switches: dict[str, Any] = dict(DEFAULT_SWITCHES)
        self._rng = random.Random(self._seed)
        self._pending: list[_Change] = []

    def reset(self) -> None:
        """Drop everything: mailboxes, events, tokens, subscriptions, switches, faults, logs."""
        with self._lock:
            self._reset_state()
            self.push.reset()
        self.faults.clear()
        self.commit_faults.clear()
        self.requests.clear()
        self.throttle.reset()

    @contextmanager
    def _changes(self) -> Iterator[None]:
        """Hold the lock for a write; afterwards notify subscribers of what it committed, once.

        Changes are recorded only after validation passed, so a failed write (400, 404, 412 ...)
        notifies nobody while a committed one always does.
        """
        with self._lock:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._pending:
                    changes, self._pending = self._pending, []
                    self._notify(changes)

    def set_switches(self, values: Any) -> dict[str, Any]:
        """Flip behaviours; unknown names or bad values raise ValueError."""
        if not isinstance(values, dict):
            raise ValueError("switches must be a JSON object")
        for name, value in values.items():
            check = _SWITCH_CHECKS.get(name)
            if check is None:
                raise ValueError(f"unknown switch {name!r}; known: {sorted(_SWITCH_CHECKS)}")
            if not check(value):
                raise ValueError(f"bad value for switch {name!r}: {value!r}")
        with self._lock:
            self.switches.update(values)
            return dict(self.switches)

    @staticmethod
    def _fault_response(status: int, reason: str | None, rule: dict[str, Any]) -> Response:
        return _error_response(error_for_status(status, reason), None)

    # -- mailboxes ------------------------------------------------------------------------------

    @staticmethod
    def user_email(token: str) -> str:
        """The mailbox a bearer token names: the token itself if it looks like an address."""
        return token.lower() if "@" in token else f"{token.lower()}@{USER_DOMAIN}"

    def ensure_user(self, email: str) -> _User:
        """Create the mailbox and its default calendar ("Calendar") on first sight."""
        with self._lock:
            user = self._users.get(email)
            if user is None:
                key = self._new_key()
                user = _User(email, str(uuid.uuid5(uuid.NAMESPACE_URL, "user:" + email)), _mailbox_header(email), key)
                user.calendars[key] = _Calendar(key, email, "Calendar", True, self._change_key(user))
                self._users[email] = user
            return user

    def _new_key(self) -> bytes:
        return self._rng.getrandbits(128).to_bytes(16, "big")

    def _change_key(self, user: _User) -> str:
        return base64.b64encode(user.header[:16] + next(self._ck_counter).to_bytes(6, "big")).decode()

    def _user(self, email: str) -> _User:
        return self.ensure_user(email)

    # -- calendars ------------------------------------------------------------------------------

    def _calendar(self, user: _User, ref: str | None) -> _Calendar:
        """A live calendar by id, or the default one for ``None``."""
        key = user.default if ref is None else _decode_calendar_id(user.header, ref)
        cal = user.calendars.get(key)
        if cal is None or cal.deleted:
            raise _not_found()
        return cal

    def _calendar_json(self, user: _User, cal: _Calendar) -> dict[str, Any]:
        return {"@odata.etag": f'W/"{cal.change_key}"', "id": _encode_calendar_id(user.header, cal.key),
                "name": cal.name, "color": cal.color, "hexColor": "", "isDefaultCalendar": cal.is_default,
                "changeKey": cal.change_key, "canShare": True, "canViewPrivateItems": True, "canEdit": True,
                "allowedOnlineMeetingProviders": ["teamsForBusiness"],
                "defaultOnlineMeetingProvider": "teamsForBusiness", "isTallyingResponses": True,
                "isRemovable": not cal.is_default,
                "owner": {"name": user.display_name, "address": user.email}}

    def list_calendars(self, email: str, base: str) -> dict[str, Any]:
        with self._lock:
            user = self._user(email)
            cals = [c for c in user.calendars.values() if not c.deleted]
            return {"@odata.context": f"{base}{API_PREFIX}/$metadata#users('{quote(email)}')/calendars",
                    "value": [self._calendar_json(user, c) for c in cals]}

    def get_calendar(self, email: str, ref: str | None) -> dict[str, Any]:
        with self._lock:
            user = self._user(email)
            return self._calendar_json(user, self._calendar(user, ref))

    def create_calendar(self, email: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _bad("The calendar name is required.", "ErrorInvalidRequest")
        with self._lock:
            user = self._user(email)
            if any(c.name.lower() == name.strip().lower() for c in user.calendars.values() if not c.deleted):
                raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already exists.")
            key = self._new_key()
            cal = _Calendar(key, email, name.strip(), False, self._change_key(user))
            if isinstance(body.get("color"), str):
                cal.color = body["color"]
            user.calendars[key] = cal
            return self._calendar_json(user, cal)

    def update_calendar(self, email: str, ref: str | None, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            user = self._user(email)
            cal = self._calendar(user, ref)
            name = body.get("name")
            if name is not None:
                if not isinstance(name, str) or not name.strip():
                    raise _bad("The calendar name must be a non-empty string.")
                cal.name = name.strip()
            if isinstance(body.get("color"), str):
                cal.color = body["color"]
            cal.change_key = self._change_key(user)
            return self._calendar_json(user, cal)

    def delete_calendar(self, email: str, ref: str) -> None:
        with self._changes():
            user = self._user(email)
            cal = self._calendar(user, ref)
            if cal.is_default:
                raise GraphError(400, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted.")
            cal.deleted = True
            for ev in list(cal.order):
                if ev.calendar == cal.key and not ev.deleted:
                    self._delete_event(user, ev)

    # -- rendering ------------------------------------------------------------------------------

    def _event_id(self, view: _View, ev: _Event, occ: int | None = None, cal: bytes | None = None) -> str:
        """The id in the form the request asked for; ids of an earlier calendar keep that calendar's form."""
        gen = ev.gen if cal is None or cal == ev.calendar else ev.left_gen.get(cal, ev.gen)
        return _encode_event_id(view.user.header, ev.key, gen, view.immutable, occ)

    def _times(self, view: _View, ev: _Event, start: datetime, end: datetime) -> tuple[dict[str, str], dict[str, str]]:
        """start/end in the requested zone; all-day events keep their midnights (they float)."""
        if ev.all_day:
            local_start = start.astimezone(ev.start.zone).replace(tzinfo=None)
            local_end = end.astimezone(ev.start.zone).replace(tzinfo=None)
        else:
            local_start = start.astimezone(view.zone).replace(tzinfo=None)
            local_end = end.astimezone(view.zone).replace(tzinfo=None)
        return ({"dateTime": _fmt_local(local_start), "timeZone": view.tz_label},
                {"dateTime": _fmt_local(local_end), "timeZone": view.tz_label})

    def _event_json(self, view: _View, ev: _Event, occ: datetime | None = None) -> dict[str, Any]:
        """The full event resource. ``occ`` renders an occurrence of the series ``ev``."""
        user = view.user
        source = ev
        if occ is not None:
            start, end = occ, occ + (ev.series.duration if ev.series else timedelta())
        else:
            start, end = ev.start.instant, ev.end.instant
        master = ev.master
        kind = "exception" if master is not None else "occurrence" if occ is not None else \
            "seriesMaster" if ev.is_series else "singleInstance"
        original = ev.original if master is not None else occ
        occ_key = int(original.timestamp()) if original is not None else None
        root = master if master is not None else ev
        event_id = self._event_id(view, root, occ_key)
        start_json, end_json = self._times(view, source, start, end)
        data = source.data
        online = source.online if data.get("isOnlineMeeting") else None
        out: dict[str, Any] = {
            "@odata.etag": f'W/"{source.change_key}"',
            "id": event_id,
            "createdDateTime": _fmt_ts(source.created),
            "lastModifiedDateTime": _fmt_ts(source.modified),
            "changeKey": source.change_key,
            "categories": list(data.get("categories") or []),
        }
        if root.transaction_id is not None and kind in ("singleInstance", "seriesMaster"):
            out["transactionId"] = root.transaction_id
        out.update({
            "originalStartTimeZone": source.start.tz_name,
            "originalEndTimeZone": source.end.tz_name,
            "iCalUId": _ical_uid(root.key, original),
            "reminderMinutesBeforeStart": data.get("reminderMinutesBeforeStart", 15),
            "isReminderOn": data.get("isReminderOn", True),
            "hasAttachments": False,
            "subject": data.get("subject", ""),
            "bodyPreview": _preview(data.get("body")),
            "importance": data.get("importance", "normal"),
            "sensitivity": data.get("sensitivity", "normal"),
            "isAllDay": bool(data.get("isAllDay")),
            "isCancelled": source.is_cancelled,
            "isOrganizer": True,
            "responseRequested": data.get("responseRequested", True),
            "seriesMasterId": self._event_id(view, root) if kind in ("exception", "occurrence") else None,
            "showAs": data.get("showAs", "busy"),
            "type": kind,
            "webLink": f"https://outlook.office365.com/owa/?itemid={event_id.replace('=', '%3D')}&exvsurl=1"
                       "&path=/calendar/item",
            "onlineMeetingUrl": None,
            "isOnlineMeeting": bool(data.get("isOnlineMeeting")),
            "onlineMeetingProvider": data.get("onlineMeetingProvider", "teamsForBusiness")
            if data.get("isOnlineMeeting") else "unknown",
            "allowNewTimeProposals": data.get("allowNewTimeProposals", True),
            "isDraft": False,
            "hideAttendees": data.get("hideAttendees", False),
            "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "body": _body_view(data.get("body"), view.text_body),
            "start": start_json,
            "end": end_json,
            "location": _location_json(data.get("location")),
            "locations": [_location_json(v) for v in data.get("locations") or []],
            "recurrence": data.get("recurrence") if kind == "seriesMaster" else None,
            "attendees": [dict(a) for a in data.get("attendees") or []],
            "organizer": {"emailAddress": {"name": user.display_name, "address": user.email}},
            "onlineMeeting": dict(online) if online else None,
        })
        if original is not None:
            out["originalStart"] = _fmt_instant(original)
        if view.expand_props is not None:
            props = data.get("singleValueExtendedProperties") or []
            out["singleValueExtendedProperties"] = [dict(p) for p in props
                                                    if not view.expand_props or p["id"].lower() == view.expand_props.lower()]
        return out

    def _removed_json(self, view: _View, ev: _Event, occ: int | None, cal: bytes) -> dict[str, Any]:
        return {"@odata.type": "#microsoft.graph.event", "id": self._event_id(view, ev, occ, cal),
                "@removed": {"reason": "deleted"}}

    # -- event lookup ---------------------------------------------------------------------------

    def _find(self, user: _User, event_id: str, cal: _Calendar | None) -> tuple[_Event, datetime | None]:
        """(event, None) for a stored item (single, master, exception) or (master, start) for an occurrence."""
        parts = _decode_event_id(user.header, event_id)
        ev = user.events.get(parts.key)
        if ev is None or ev.deleted or (not parts.immutable and parts.gen != ev.gen):
            raise _not_found()
        if cal is not None and ev.calendar != cal.key:
            raise _not_found()
        if parts.occ is None:
            return ev, None
        if not ev.is_series or parts.occ in ev.cancelled:
            raise _not_found()
        exception = ev.exceptions.get(parts.occ)
        if exception is not None:
            return exception, None
        start = datetime.fromtimestamp(parts.occ, _UTC)
        if ev.series is None or not ev.series.contains(start):
            raise _not_found()
        return ev, start

    def get_event(self, view: _View, event_id: str, cal_ref: str | None, scoped: bool) -> dict[str, Any]:
        with self._lock:
            cal = self._calendar(view.user, cal_ref) if scoped else None
            ev, occ = self._find(view.user, event_id, cal)
            return self._event_json(view, ev, occ)

    # -- writes ---------------------------------------------------------------------------------

    def _record(self, user: _User, cal: _Calendar, ev: _Event, occ: int | None, change_type: str) -> None:
        """One change: a calendar log entry and, after the write, a notification."""
        entry = (ev.key, occ)
        cal.log.append(entry)
        cal.last_seq[entry] = cal.seq
        etag = None if change_type == "deleted" else f'W/"{ev.change_key}"'
        self._pending.append(_Change(user.email, cal.key, change_type, ev, occ, ev.gen, etag))

    def _touch(self, user: _User, ev: _Event) -> None:
        ev.change_key = self._change_key(user)
        ev.modified = time.time()

    def _place(self, cal: _Calendar, ev: _Event) -> None:
        cal.positions[ev.key] = len(cal.order)
        cal.order.append(ev)

    def _online_info(self, user: _User) -> dict[str, Any]:
        meeting = base64.urlsafe_b64encode(self._rng.getrandbits(192).to_bytes(24, "big")).decode().rstrip("=")
        context = quote(json.dumps({"Tid": TENANT_ID, "Oid": user.guid}, separators=(",", ":")), safe="")
        conference = str(self._rng.randrange(10**8, 10**9))
        return {"joinUrl": f"https://teams.microsoft.com/l/meetup-join/19%3ameeting_{meeting}%40thread.v2/0"
                           f"?context={context}",
                "conferenceId": conference, "tollNumber": "+1 206-555-0100", "tollFreeNumbers": [],
                "phones": [], "quickDial": f"+12065550100,,{conference}#"}

    def create_event(self, view: _View, cal_ref: str | None, body: dict[str, Any]) -> dict[str, Any]:
        fields = _checked_fields(body)
        with self._changes():
            user = view.user
            cal = self._calendar(user, cal_ref)
            tid = fields.get("transactionId")
            if tid is not None:
                existing = self._by_transaction(user, tid)
                if existing is not None:
                    if self.switches["transaction_id_duplicate"] == "conflict":
                        raise GraphError(409, "ErrorDuplicateTransactionId",
                                         "An event with the same transactionId already exists.")
                    return self._event_json(view, existing)
            ev = self._new_event(user, cal, fields)
            self._record(user, cal, ev, None, "created")
            return self._event_json(view, ev)

    def _by_transaction(self, user: _User, tid: str) -> _Event | None:
        key = user.transactions.get(tid)
        ev = user.events.get(key) if key is not None else None
        return ev if ev is not None and not ev.deleted else None

    def _new_event(self, user: _User, cal: _Calendar, fields: dict[str, Any]) -> _Event:
        if "start" not in fields or "end" not in fields:
            raise _bad("At least one property failed validation: start and end are required.",
                       "ErrorPropertyValidationFailure")
        start, end = _check_when(fields.pop("start"), "start"), _check_when(fields.pop("end"), "end")
        _check_times(start, end, bool(fields.get("isAllDay")))
        recurrence = _check_recurrence(fields.pop("recurrence", None))
        now = time.time()
        key = self._new_key()
        ev = _Event(key, cal.key, {}, start, end, now, now, self._change_key(user), _ical_uid(key),
                    transaction_id=fields.pop("transactionId", None))
        self._apply_fields(user, ev, fields)
        self._set_recurrence(ev, recurrence)
        user.events[key] = ev
        if ev.transaction_id is not None:
            user.transactions[ev.transaction_id] = key
        self._place(cal, ev)
        return ev

    def _apply_fields(self, user: _User, ev: _Event, fields: dict[str, Any]) -> None:
        ev.data.update(fields)
        if "location" in fields:
            loc = fields["location"]
            ev.data["locations"] = [loc] if loc.get("displayName") else []
        if ev.data.get("isOnlineMeeting") and ev.online is None:
            ev.online = self._online_info(user)
        if not ev.data.get("isOnlineMeeting"):
            ev.online = None

    @staticmethod
    def _set_recurrence(ev: _Event, recurrence: dict[str, Any] | None) -> None:
        if recurrence is None:
            ev.data.pop("recurrence", None)
            ev.series = None
            return
        if not recurrence["range"]["recurrenceTimeZone"]:
            recurrence["range"]["recurrenceTimeZone"] = ev.start.tz_name
        ev.data["recurrence"] = recurrence
        ev.series = _Series(recurrence, ev.start, ev.end)

    def update_event(self, view: _View, event_id: str, cal_ref: str | None, scoped: bool, body: dict[str, Any],
                     if_match: str | None) -> dict[str, Any]:
        fields = _checked_fields(body)
        with self._changes():
            user = view.user
            cal = self._calendar(user, cal_ref) if scoped else None
            ev, occ = self._find(user, event_id, cal)
            self._precondition(user, ev, if_match)
            root = ev.master or ev
            if "transactionId" in fields and fields.pop("transactionId") != root.transaction_id:
                raise _bad("The transactionId of an event cannot be changed after it is created.")
            if occ is not None or ev.master is not None:
                target = self._update_instance(user, ev, occ, fields)
            else:
                target = self._update_stored(user, ev, fields)
            return self._event_json(view, target)

    def _precondition(self, user: _User, ev: _Event, if_match: str | None) -> None:
        """If-Match against the current @odata.etag; the spurious switch models Exchange's own bump."""
        if if_match is None:
            return
        if self.switches["spurious_412_count"] > 0:
            self.switches["spurious_412_count"] -= 1
            self._touch(user, ev)
            cal = user.calendars[(ev.master or ev).calendar]
            self._record(user, cal, ev.master or ev, _occ_key(ev), "updated")
        current = f'W/"{ev.change_key}"'
        candidates = [c.strip() for c in if_match.split(",")]
        if not any(c == "*" or c == current or c.removeprefix("W/") == current.removeprefix("W/") for c in candidates):
            raise _conflict_412()

    def _update_stored(self, user: _User, ev: _Event, fields: dict[str, Any]) -> _Event:
        """PATCH a single event or a series master (time or pattern changes drop its exceptions)."""
        start = _check_when(fields.pop("start"), "start") if "start" in fields else ev.start
        end = _check_when(fields.pop("end"), "end") if "end" in fields else ev.end
        all_day = fields.get("isAllDay", ev.data.get("isAllDay", False))
        _check_times(start, end, bool(all_day))
        has_rec = "recurrence" in fields
        recurrence = _check_recurrence(fields.pop("recurrence")) if has_rec else ev.data.get("recurrence")
        cal = user.calendars[ev.calendar]
        reshaped = has_rec or start != ev.start or end != ev.end
        before = self._instance_keys(ev) if reshaped and ev.is_series else set()
        ev.start, ev.end = start, end
        self._apply_fields(user, ev, fields)
        if reshaped:
            self._set_recurrence(ev, recurrence)
            ev.exceptions.clear()
            ev.cancelled.clear()
        self._touch(user, ev)
        self._record(user, cal, ev, None, "updated")
        for occ in before - (self._instance_keys(ev) if ev.is_series else set()):
            ev.dead[(cal.key, occ)] = cal.seq
        return ev

    def _update_instance(self, user: _User, ev: _Event, occ: datetime | None, fields: dict[str, Any]) -> _Event:
        """PATCH an occurrence (it becomes an exception) or an existing exception."""
        if "recurrence" in fields:
            raise _bad("The recurrence of an occurrence or exception cannot be set.", "ErrorCalendarInvalidRecurrence")
        master = ev.master or ev
        if occ is not None:
            duration = master.series.duration if master.series else timedelta()
            local_start = occ.astimezone(master.start.zone).replace(tzinfo=None)
            local_end = (occ + duration).astimezone(master.end.zone).replace(tzinfo=None)
            ev = _Event(master.key, master.calendar, {k: v for k, v in master.data.items() if k != "recurrence"},
                        _When(local_start, master.start.tz_name, master.start.zone),
                        _When(local_end, master.end.tz_name, master.end.zone), time.time(), time.time(),
                        master.change_key, master.ical_uid, master=master, original=occ, online=master.online)
            master.exceptions[int(occ.timestamp())] = ev
        start = _check_when(fields.pop("start"), "start") if "start" in fields else ev.start
        end = _check_when(fields.pop("end"), "end") if "end" in fields else ev.end
        _check_times(start, end, bool(fields.get("isAllDay", ev.data.get("isAllDay", False))))
        ev.start, ev.end = start, end
        self._apply_fields(user, ev, fields)
        self._touch(user, ev)
        self._record(user, user.calendars[master.calendar], master, _occ_key(ev), "updated")
        return ev

    def delete_event(self, email: str, event_id: str, cal_ref: str | None, scoped: bool, if_match: str | None) -> None:
        with self._changes():
            user = self._user(email)
            cal = self._calendar(user, cal_ref) if scoped else None
            ev, occ = self._find(user, event_id, cal)
            self._precondition(user, ev, if_match)
            if occ is None and ev.master is None:
                self._delete_event(user, ev)
                return
            master = ev.master or ev
            key = int(occ.timestamp()) if occ is not None else _occ_key(ev)
            assert key is not None
            master.exceptions.pop(key, None)
            master.cancelled.add(key)
            self._record(user, user.calendars[master.calendar], master, key, "deleted")

    def _delete_event(self, user: _User, ev: _Event) -> None:
        cal = user.calendars[ev.calendar]
        before = self._instance_keys(ev) if ev.is_series else set()
        ev.deleted = True
        self._record(user, cal, ev, None, "deleted")
        for occ in before:
            ev.dead[(cal.key, occ)] = cal.seq

    def cancel_event(self, email: str, event_id: str) -> None:
        """POST /events/{id}/cancel by the organizer: the event leaves the organizer's calendar."""
        self.delete_event(email, event_id, None, False, None)

    def _instance_keys(self, ev: _Event) -> set[int]:
        """Occurrence keys of a series over a bounded horizon, for tracking dropped occurrences."""
        if ev.series is None:
            return set()
        lo = ev.start.instant - timedelta(days=1)
        hi = max(datetime.now(_UTC), ev.start.instant) + timedelta(days=DEAD_HORIZON_DAYS)
        keys = {int(s.timestamp()) for s in ev.series.starts(lo, hi, 2000)}
        return (keys | set(ev.exceptions)) - ev.cancelled

    # -- lists ----------------------------------------------------------------------------------

    def list_events(self, view: _View, cal_ref: str | None, params: _Params, path: str) -> dict[str, Any]:
        """Singles and series masters of a calendar, in creation order, $top/$skip paged."""
        top = params.int("$top", 1, LIST_PAGE_MAX) or LIST_PAGE_DEFAULT
        skip = params.int("$skip", 0, 10**9) or 0
        with self._lock:
            cal = self._calendar(view.user, cal_ref)
            live = list(self._live_events(cal))
            page = [self._event_json(view, ev) for ev in live[skip:skip + top]]
            out: dict[str, Any] = {"@odata.context": f"{view.base}{API_PREFIX}/$metadata#users('{quote(view.user.email)}')/events",
                                   "value": page}
            if skip + top < len(live):
                out["@odata.nextLink"] = f"{view.base}{API_PREFIX}{path}?$top={top}&$skip={skip + top}"
            return out

    def calendar_view(self, view: _View, cal_ref: str | None, params: _Params, path: str) -> dict[str, Any]:
        """Occurrences, exceptions and singles in a window, ordered by start, $top/$skip paged."""
        lo, hi = _window(params)
        top = params.int("$top", 1, LIST_PAGE_MAX) or LIST_PAGE_DEFAULT
        skip = params.int("$skip", 0, 10**9) or 0
        with self._lock:
            cal = self._calendar(view.user, cal_ref)
            items: list[tuple[datetime, str, _Event, datetime | None]] = []
            for ev in self._live_events(cal):
                for start, target, occ in self._instances(ev, lo, hi):
                    items.append((start, target.change_key, target, occ))
            items.sort(key=lambda t: (t[0], t[1]))
            page = [self._event_json(view, t[2], t[3]) for t in items[skip:skip + top]]
            out: dict[str, Any] = {"@odata.context": f"{view.base}{API_PREFIX}/$metadata#Collection(event)", "value": page}
            if skip + top < len(items):
                out["@odata.nextLink"] = (f"{view.base}{API_PREFIX}{path}?startDateTime={quote(_fmt_instant(lo))}"
                                          f"&endDateTime={quote(_fmt_instant(hi))}&$top={top}&$skip={skip + top}")
            return out

    def list_instances(self, view: _View, event_id: str, params: _Params, path: str) -> dict[str, Any]:
        lo, hi = _window(params)
        with self._lock:
            ev, occ = self._find(view.user, event_id, None)
            if occ is not None or not ev.is_series:
                return {"@odata.context": f"{view.base}{API_PREFIX}/$metadata#Collection(event)", "value": []}
            items = sorted(self._instances(ev, lo, hi), key=lambda t: t[0])
            return {"@odata.context": f"{view.base}{API_PREFIX}/$metadata#Collection(event)",
                    "value": [self._event_json(view, target, o) for _, target, o in items]}

    @staticmethod
    def _live_events(cal: _Calendar) -> Iterator[_Event]:
        for i, ev in enumerate(cal.order):
            if ev.calendar == cal.key and not ev.deleted and cal.positions.get(ev.key) == i:
                yield ev

    @staticmethod
    def _instances(ev: _Event, lo: datetime, hi: datetime) -> list[tuple[datetime, _Event, datetime | None]]:
        """What a calendar view shows of one stored event in [lo, hi): (sort start, item, occurrence start)."""
        if not ev.is_series:
            return [(ev.start.instant, ev, None)] if _overlaps(ev.start.instant, ev.end.instant, lo, hi) else []
        assert ev.series is not None
        out: list[tuple[datetime, _Event, datetime | None]] = []
        for start in ev.series.starts(lo, hi):
            key = int(start.timestamp())
            if key not in ev.cancelled and key not in ev.exceptions:
                out.append((start, ev, start))
        for exc in ev.exceptions.values():
            if _overlaps(exc.start.instant, exc.end.instant, lo, hi):
                out.append((exc.start.instant, exc, None))
        out.sort(key=lambda t: int((t[1].original or t[0]).timestamp()) if t[1].master else int(t[0].timestamp()))
        return out

    # -- delta ----------------------------------------------------------------------------------

    def delta(self, view: _View, cal_ref: str | None, params: _Params, path: str, page_size: int | None) -> dict[str, Any]:
        """calendarView/delta: one page of a round; nextLink inside a round, deltaLink at its end."""
        for name in ("$filter", "$orderby", "$search", "$top", "$skip"):
            if name in params:
                raise GraphError(400, "ErrorInvalidUrlQuery", f"The query parameter '{name}' is not supported with "
                                 "change tracking over the 'CalendarView' resource.")
        with self._lock:
            cal = self._calendar(view.user, cal_ref)
            state = self._delta_state(view, cal, params, path)
            view = replace(view, expand_props=state.get("x"))  # first-request options live in the token
            size = min(page_size or self.switches["delta_default_page_size"], self.switches["delta_max_page_size"])
            if state["m"] == "full":
                stream = self._full_stream(view, cal, state)
            else:
                stream = self._log_stream(view, cal, state)
            items, next_key = self._take_page(stream, size)
            out: dict[str, Any] = {"@odata.context": f"{view.base}{API_PREFIX}/$metadata#Collection(event)"}
            link = f"{view.base}{API_PREFIX}{path}"
            if next_key is not None:
                token = self._signer.seal({**state, "k": next_key, "t": "skip"})
                out["@odata.nextLink"] = f"{link}?$skiptoken={quote(token, safe='')}"
            else:
                token = self._signer.seal({**{k: v for k, v in state.items() if k not in ("k", "f")},
                                           "s": state["h"], "t": "delta", "i": int(time.time())})
                out["@odata.deltaLink"] = f"{link}?$deltatoken={quote(token, safe='')}"
            out["value"] = items
            return out

    def _delta_state(self, view: _View, cal: _Calendar, params: _Params, path: str) -> dict[str, Any]:
        """The round's state: from a skip token (mid-round), a delta token (new round) or the window (first)."""
        skip, delta = params.get("$skiptoken"), params.get("$deltatoken")
        base = {"u": view.user.email, "c": cal.key.hex(), "e": self._epoch(view.user.email)}
        if skip:
            payload = self._open_token(view, cal, skip, "skip", path)
            return {k: v for k, v in payload.items() if k != "t"}
        if delta:
            payload = self._open_token(view, cal, delta, "delta", path)
            replay = self.switches["delta_replay_count"]
            return {**base, "ws": payload["ws"], "we": payload["we"], "m": "inc", "x": payload.get("x"),
                    "f": max(0, payload["s"] - replay), "h": cal.seq, "k": None}
        lo, hi = _window(params)
        return {**base, "ws": lo.timestamp(), "we": hi.timestamp(), "m": "full", "f": 0, "h": cal.seq, "k": None,
                "x": view.expand_props}

    def _epoch(self, email: str) -> int:
        return self._delta_epoch + self._user_epochs.get(email, 0)

    def _open_token(self, view: _View, cal: _Calendar, token: str, kind: str, path: str) -> dict[str, Any]:
        opened = self._signer.open(token)
        payload: dict[str, Any] = opened if isinstance(opened, dict) else {}
        window = None
        if isinstance(payload.get("ws"), (int, float)) and isinstance(payload.get("we"), (int, float)):
            window = (payload["ws"], payload["we"])
        ok = (payload.get("t") == kind and payload.get("u") == view.user.email
              and payload.get("c") == cal.key.hex() and payload.get("e") == self._epoch(view.user.email))
        ttl = self.switches["delta_token_ttl_seconds"]
        if ok and kind == "delta" and ttl is not None and time.time() - payload.get("i", 0) > ttl:
            ok = False
        if ok and not (isinstance(payload.get("h"), int) and 0 <= payload["h"] <= cal.seq):
            ok = False
        if not ok:
            raise self._sync_reset(view, path, window if payload.get("c") == cal.key.hex() else None)
        return payload

    def _sync_reset(self, view: _View, path: str, window: tuple[float, float] | None) -> GraphError:
        """The answer to an expired or unknown token, in the switched variant."""
        mode = self.switches["delta_expired_response"]
        if mode == "badRequest":
            return GraphError(400, "syncStateNotFound", "The sync state generation is not found. The delta token is "
                              "expired and data must be synchronized again.")
        headers: dict[str, str] = {}
        if window is not None:
            lo = _fmt_instant(datetime.fromtimestamp(window[0], _UTC))
            hi = _fmt_instant(datetime.fromtimestamp(window[1], _UTC))
            headers["Location"] = (f"{view.base}{API_PREFIX}{path}?startDateTime={quote(lo)}&endDateTime={quote(hi)}"
                                   "&$deltatoken=")
        if mode == "resyncRequired":
            return GraphError(410, "resyncRequired", "The delta token is no longer valid, and the app must reset the "
                              "sync state.", headers)
        return GraphError(410, "SyncStateNotFound",
                          f"The sync state generation is not found; generation={self._delta_epoch}.", headers)

    def _take_page(self, stream: Iterator[tuple[list[Any], Callable[[], dict[str, Any]] | None]],
                   limit: int) -> tuple[list[dict[str, Any]], list[Any] | None]:
        """Fill a page from a keyset stream; returns the items and the resume key (None when the round is done)."""
        items: list[dict[str, Any]] = []
        last: list[Any] | None = None
        scanned = 0
        scan_limit = self.switches["delta_page_scan_limit"]
        together = self.switches["delta_keep_series_together"]
        duplicate = self.switches["delta_duplicate_items"]
        for key, produce in stream:
            if produce is not None:
                if len(items) >= limit and not (together and last is not None and key[0] == last[0]):
                    return items, last
                item = produce()
                items.append(item)
                if duplicate and "@removed" not in item:
                    items.append(item)
            last = key
            scanned += 1
            if scan_limit is not None and scanned >= scan_limit:
                return items, last
        return items, None

    def _full_stream(self, view: _View, cal: _Calendar,
                     state: dict[str, Any]) -> Iterator[tuple[list[Any], Callable[[], dict[str, Any]] | None]]:
        """First round: everything now in the window, by calendar position; keys are [position, occurrence]."""
        lo, hi = datetime.fromtimestamp(state["ws"], _UTC), datetime.fromtimestamp(state["we"], _UTC)
        after = state.get("k")
        start = 0 if after is None else after[0] + (1 if after[1] is None else 0)
        for i in range(start, len(cal.order)):
            ev = cal.order[i]
            if ev.deleted or ev.calendar != cal.key or cal.positions.get(ev.key) != i:
                yield [i, None], None
                continue
            emitted = False
            for begin, target, occ in self._instances(ev, lo, hi):
                sub = int((target.original or begin).timestamp()) if ev.is_series else None
                if after is not None and i == after[0] and after[1] is not None and sub is not None and sub <= after[1]:
                    continue
                emitted = True
                yield [i, sub], _producer(self, view, target, occ)
                if sub is None:
                    break
            if not emitted:
                yield [i, None], None

    def _log_stream(self, view: _View, cal: _Calendar,
                    state: dict[str, Any]) -> Iterator[tuple[list[Any], Callable[[], dict[str, Any]] | None]]:
        """Later rounds: changes since the token, by log sequence; keys are [seq, index within the change]."""
        lo, hi = datetime.fromtimestamp(state["ws"], _UTC), datetime.fromtimestamp(state["we"], _UTC)
        after = state.get("k")
        start = state["f"] + 1 if after is None else after[0] + (1 if after[1] is None else 0)
        for seq in range(start, state["h"] + 1):
            entry = cal.log[seq - 1]
            if cal.last_seq.get(entry) != seq:
                yield [seq, None], None  # superseded by a later change of the same item
                continue
            outputs = self._entry_items(view, cal, entry, state["f"], lo, hi)
            skip_to = after[1] if after is not None and seq == after[0] and after[1] is not None else -1
            emitted = False
            for index, produce in enumerate(outputs):
                if index <= skip_to:
                    continue
                emitted = True
                yield [seq, index], produce
            if not emitted:
                yield [seq, None], None

    def _entry_items(self, view: _View, cal: _Calendar, entry: tuple[bytes, int | None], since: int, lo: datetime,
                     hi: datetime) -> list[Callable[[], dict[str, Any]]]:
        """What one change means to a window: current items, or @removed (gone, moved, or outside)."""
        key, occ = entry
        ev = view.user.events.get(key)
        if ev is None:
            return []
        here = not ev.deleted and ev.calendar == cal.key
        if occ is not None:
            return [self._instance_item(view, cal, ev, occ, here, lo, hi)]
        if not ev.is_series or not here:
            out: list[Callable[[], dict[str, Any]]] = []
            if here and _overlaps(ev.start.instant, ev.end.instant, lo, hi):
                out.append(_producer(self, view, ev, None))
            else:
                out.append(_removed_producer(self, view, ev, None, cal.key))
            out.extend(_removed_producer(self, view, ev, o, cal.key)
                       for (c, o), died in sorted(ev.dead.items()) if c == cal.key and died > since)
            return out
        out = [_removed_producer(self, view, ev, None, cal.key)]  # a master never shows: covers single -> series
        out.extend(_producer(self, view, target, o) for _, target, o in self._instances(ev, lo, hi))
        out.extend(_removed_producer(self, view, ev, o, cal.key)
                   for (c, o), died in sorted(ev.dead.items()) if c == cal.key and died > since)
        return out

    def _instance_item(self, view: _View, cal: _Calendar, master: _Event, occ: int, here: bool, lo: datetime,
                       hi: datetime) -> Callable[[], dict[str, Any]]:
        if here and occ not in master.cancelled and master.is_series:
            exc = master.exceptions.get(occ)
            if exc is not None and _overlaps(exc.start.instant, exc.end.instant, lo, hi):
                return _producer(self, view, exc, None)
            start = datetime.fromtimestamp(occ, _UTC)
            duration = master.series.duration if master.series else timedelta()
            if exc is None and master.series is not None and master.series.contains(start) \
                    and _overlaps(start, start + duration, lo, hi):
                return _producer(self, view, master, start)
        return _removed_producer(self, view, master, occ, cal.key)

    def expire_delta_tokens(self, email: str | None = None) -> int:
        """Admin: every skip and delta token (of one mailbox, or all) is now invalid."""
        with self._lock:
            if email is None:
                self._delta_epoch += 1
                return self._delta_epoch
            self._user_epochs[email] = self._user_epochs.get(email, 0) + 1
            return self._epoch(email)

    # -- admin event operations -----------------------------------------------------------------

    def move_event(self, email: str, event_id: str, cal_id: str) -> dict[str, Any]:
        """Admin: the user moves an event to another calendar in Outlook; its regular id changes."""
        with self._changes():
            user = self._users.get(email)
            if user is None:
                raise _not_found()
            ev, occ = self._find(user, event_id, None)
            if occ is not None or ev.master is not None:
                raise _bad("Only single events and series masters can be moved.")
            target = self._calendar(user, cal_id)
            if target.key == ev.calendar:
                raise _bad("The event is already in that calendar.")
            source = user.calendars[ev.calendar]
            before = self._instance_keys(ev) if ev.is_series else set()
            self._record(user, source, ev, None, "deleted")
            for o in before:
                ev.dead[(source.key, o)] = source.seq
            ev.left_gen[source.key] = ev.gen
            ev.gen += 1
            ev.calendar = target.key
            self._place(target, ev)
            self._touch(user, ev)
            self._record(user, target, ev, None, "created")
            view = _View(user, ZoneInfo("UTC"), "UTC", False, False, "")
            return {"id": self._event_id(view, ev),
                    "immutableId": self._event_id(_View(user, ZoneInfo("UTC"), "UTC", True, False, ""), ev)}

    def cancel_by_organizer(self, email: str, event_id: str) -> None:
        """Admin: the organizer cancelled; this (attendee's) copy gets isCancelled and a 'Canceled:' subject."""
        with self._changes():
            user = self._users.get(email)
            if user is None:
                raise _not_found()
            ev, occ = self._find(user, event_id, None)
            if occ is not None:
                raise _bad("Cancel the series or an exception, not a plain occurrence.")
            ev.is_cancelled = True
            subject = ev.data.get("subject", "")
            if not subject.startswith("Canceled: "):
                ev.data["subject"] = "Canceled: " + subject
            self._touch(user, ev)
            root = ev.master or ev
            self._record(user, user.calendars[root.calendar], root, _occ_key(ev), "updated")

    # -- subscriptions --------------------------------------------------------------------------

    def _sub_live(self, sub_id: str) -> bool:
        sub = self._subs.get(sub_id)
        return sub is not None and sub.live(time.time()) and not sub.paused

    def check_subscription(self, email: str, body: dict[str, Any]) -> dict[str, Any]:
        """Validate a POST /subscriptions body (no handshake yet); returns the normalised fields."""
        user = self._user(email)
        change_types = _change_types(body.get("changeType"))
        url = _notification_url(body.get("notificationUrl"), "notificationUrl", self.switches["push_allow_http"])
        lifecycle = body.get("lifecycleNotificationUrl")
        if lifecycle is not None:
            lifecycle = _notification_url(lifecycle, "lifecycleNotificationUrl", self.switches["push_allow_http"])
        state = body.get("clientState")
        if state is not None and (not isinstance(state, str) or len(state) > CLIENT_STATE_MAX):
            raise _bad(f"clientState must be a string of at most {CLIENT_STATE_MAX} characters.", "InvalidRequest")
        with self._lock:
            calendar = self._resource_calendar(user, body.get("resource"))
        return {"change_types": change_types, "url": url, "lifecycle_url": lifecycle, "client_state": state,
                "resource": body["resource"], "calendar": calendar,
                "expiration": self._expiration(body.get("expirationDateTime"))}

    def _resource_calendar(self, user: _User, resource: Any) -> bytes | None:
        """me/events (mailbox, or default calendar by switch), me/calendar/events, me/calendars/{id}/events."""
        if not isinstance(resource, str) or not resource.strip():
            raise _bad("The resource is required.", "InvalidRequest")
        path = resource.strip().strip("/")
        match = re.fullmatch(r"(?i)(?:me|users/([^/]+))/(events|calendar/events|calendars/([^/]+)/events)", path)
        if match is None:
            raise _bad(f"Resource '{resource}' is not supported for change notifications.", "InvalidRequest")
        owner = match.group(1)
        if owner is not None and owner.lower() not in (user.email, user.guid):
            raise GraphError(403, "ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden; "
                             "Reason: Access is denied. Check credentials and try again.]")
        if match.group(3) is not None:
            return self._calendar(user, match.group(3)).key
        if match.group(2).lower() == "calendar/events":
            return user.default
        return None if self.switches["me_events_subscription_scope"] == "mailbox" else user.default

    def _expiration(self, value: Any) -> float:
        when = _parse_instant(value)
        if when is None:
            raise _bad("expirationDateTime is required and must be an ISO 8601 date and time.", "InvalidRequest")
        now = time.time()
        limit = self.switches["subscription_max_minutes"]
        if when.timestamp() <= now:
            raise GraphError(400, "ExtensionError", "Subscription expiration must be in the future.")
        if when.timestamp() > now + limit * 60:
            raise GraphError(400, "ExtensionError", f"Subscription expiration can only be {limit} minutes in the future.")
        return when.timestamp()

    def add_subscription(self, email: str, fields: dict[str, Any], immutable: bool) -> dict[str, Any]:
        with self._lock:
            now = time.time()
            self._prune_subscriptions(now)
            if sum(1 for s in self._subs.values() if s.user == email) >= MAX_SUBSCRIPTIONS_PER_MAILBOX:
                raise GraphError(403, "ExtensionError", "The maximum number of subscriptions for this mailbox has "
                                 "been reached.")
            sub = _Subscription(str(uuid.UUID(int=self._rng.getrandbits(128), version=4)), email, fields["resource"],
                                fields["calendar"], fields["change_types"], fields["url"], fields["lifecycle_url"],
                                fields["client_state"], fields["expiration"], immutable, now)
            self._subs[sub.id] = sub
            return self._subscription_json(sub)

    def _prune_subscriptions(self, now: float) -> None:
        for sub_id in [s.id for s in self._subs.values() if not s.live(now)]:
            del self._subs[sub_id]

    def _own_subscription(self, email: str, sub_id: str) -> _Subscription:
        sub = self._subs.get(sub_id)
        if sub is None or sub.user != email or not sub.live(time.time()):
            raise GraphError(404, "ResourceNotFound", "The object was not found.")
        return sub

    def _subscription_json(self, sub: _Subscription) -> dict[str, Any]:
        user = self._users[sub.user]
        return {"id": sub.id, "resource": sub.resource, "applicationId": "00000000-0000-0000-0000-0000000ca15c",
                "changeType": ",".join(sub.change_types), "clientState": sub.client_state,
                "notificationUrl": sub.url, "notificationQueryOptions": None,
                "lifecycleNotificationUrl": sub.lifecycle_url,
                "expirationDateTime": _fmt_ts(sub.expiration), "creatorId": user.guid,
                "includeResourceData": False, "latestSupportedTlsVersion": "v1_2",
                "encryptionCertificate": None, "encryptionCertificateId": None, "notificationUrlAppId": None}

    def list_subscriptions(self, email: str, base: str) -> dict[str, Any]:
        with self._lock:
            self._prune_subscriptions(time.time())
            return {"@odata.context": f"{base}{API_PREFIX}/$metadata#subscriptions",
                    "value": [self._subscription_json(s) for s in self._subs.values() if s.user == email]}

    def get_subscription(self, email: str, sub_id: str) -> dict[str, Any]:
        with self._lock:
            return self._subscription_json(self._own_subscription(email, sub_id))

    def subscription_url_for_update(self, email: str, sub_id: str, body: dict[str, Any]) -> tuple[float, str | None]:
        """Validate a PATCH body: the new expiry, and a new notificationUrl when one is given."""
        with self._lock:
            self._own_subscription(email, sub_id)
            expiration = self._expiration(body.get("expirationDateTime"))
            url = body.get("notificationUrl")
            if url is not None:
                url = _notification_url(url, "notificationUrl", self.switches["push_allow_http"])
            return expiration, url

    def renew_subscription(self, email: str, sub_id: str, expiration: float, url: str | None) -> dict[str, Any]:
        with self._lock:
            sub = self._own_subscription(email, sub_id)
            sub.expiration = expiration
            sub.paused = False
            if url is not None:
                sub.url = url
            return self._subscription_json(sub)

    def reauthorize_subscription(self, email: str, sub_id: str) -> None:
        with self._lock:
            self._own_subscription(email, sub_id).paused = False

    def delete_subscription(self, email: str, sub_id: str) -> None:
        with self._lock:
            sub = self._own_subscription(email, sub_id)
            del self._subs[sub.id]

    def admin_subscriptions(self) -> list[dict[str, Any]]:
        with self._lock:
            now = time.time()
            return [{**self._subscription_json(s), "user": s.user, "live": s.live(now), "paused": s.paused,
                     "immutableIds": s.immutable, "notified": s.notified, "skipped": s.skipped}
                    for s in self._subs.values()]

    def expire_subscription(self, sub_id: str) -> bool:
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None:
                return False
            sub.expiration = min(sub.expiration, time.time())
            return True

    def lifecycle(self, sub_id: str, event: str, pause: bool = False) -> dict[str, Any]:
        """Admin: send a lifecycle notification; subscriptionRemoved also removes the subscription."""
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"event must be one of {list(LIFECYCLE_EVENTS)}")
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None:
                raise KeyError(sub_id)
            if sub.lifecycle_url is None:
                raise LookupError("the subscription has no lifecycleNotificationUrl")
            item = {"subscriptionId": sub.id, "subscriptionExpirationDateTime": _fmt_ts(sub.expiration),
                    "tenantId": TENANT_ID, "clientState": sub.client_state, "lifecycleEvent": event}
            if event == "subscriptionRemoved":
                del self._subs[sub.id]
            if event == "reauthorizationRequired" and pause:
                sub.paused = True
            url = sub.lifecycle_url
        self.push.enqueue([Note(url, item, "lifecycle", sub_id)])
        return item

    def _notify(self, changes: list[_Change]) -> None:
        """Under the lock: one change notification per (subscription, change) that matches."""
        now = time.time()
        notes: list[Note] = []
        for sub in list(self._subs.values()):
            if not sub.live(now):
                continue
            for change in changes:
                if change.user != sub.user or change.change_type not in sub.change_types:
                    continue
                if sub.calendar is not None and sub.calendar != change.calendar:
                    continue
                if sub.paused:
                    sub.skipped += 1
                    continue
                sub.notified += 1
                notes.append(Note(sub.url, self._notification_item(sub, change), "change", sub.id))
        if notes:
            self.push.enqueue(notes)

    def _notification_item(self, sub: _Subscription, change: _Change) -> dict[str, Any]:
        user = self._users[sub.user]
        event_id = _encode_event_id(user.header, change.ev.key, change.gen, sub.immutable, change.occ)
        resource = f"Users/{user.guid}/Events/{event_id}"
        data: dict[str, Any] = {"@odata.type": "#Microsoft.Graph.Event", "@odata.id": resource}
        if change.etag is not None:
            data["@odata.etag"] = change.etag
        data["id"] = event_id
        return {"subscriptionId": sub.id, "subscriptionExpirationDateTime": _fmt_ts(sub.expiration),
                "changeType": change.change_type, "resource": resource, "resourceData": data,
                "clientState": sub.client_state, "tenantId": TENANT_ID}

    # -- seeding --------------------------------------------------------------------------------

    def seed(self, ref: str, spec: Any) -> dict[str, Any]:
        """Create ``count`` realistic events at once (benchmarks need 100,000 in seconds); no notifications."""
        options = _seed_options(spec)
        with self._lock:
            user, cal = self._seed_target(ref)
            _Seeder(self, user, cal, options).run()
            return {"created": options["count"], "calendarId": _encode_calendar_id(user.header, cal.key),
                    "user": user.email}

    def _seed_target(self, ref: str) -> tuple[_User, _Calendar]:
        """A mailbox address (its default calendar) or a calendar id of any known mailbox."""
        if "@" in ref:
            user = self.ensure_user(ref.lower())
            return user, user.calendars[user.default]
        for user in self._users.values():
            try:
                return user, self._calendar(user, ref)
            except GraphError:
                continue
        raise _not_found()


def _occ_key(ev: _Event) -> int | None:
    return int(ev.original.timestamp()) if ev.original is not None else None


def _producer(emu: GraphEmulator, view: _View, ev: _Event, occ: datetime | None) -> Callable[[], dict[str, Any]]:
    def produce() -> dict[str, Any]:
        return {"@odata.type": "#microsoft.graph.event", **emu._event_json(view, ev, occ)}
    return produce


def _removed_producer(emu: GraphEmulator, view: _View, ev: _Event, occ: int | None,
                      cal: bytes) -> Callable[[], dict[str, Any]]:
    return lambda: emu._removed_json(view, ev, occ, cal)


def _window(params: _Params) -> tuple[datetime, datetime]:
    """startDateTime / endDateTime, required for calendar views."""
    raw_lo, raw_hi = params.get("startDateTime"), params.get("endDateTime")
    if not raw_lo or not raw_hi:
        raise GraphError(400, "ErrorInvalidParameter", "This request requires a time window specified by the query "
                         "string parameters StartDateTime and EndDateTime.")
    lo, hi = _parse_instant(raw_lo), _parse_instant(raw_hi)
    if lo is None or hi is None:
        raise GraphError(400, "ErrorInvalidParameter", "The value of StartDateTime or EndDateTime is not a valid "
                         "date and time.")
    if hi < lo:
        raise GraphError(400, "ErrorInvalidParameter", "EndDateTime must not be earlier than StartDateTime.")
    return lo, hi


def _change_types(value: Any) -> tuple[str, ...]:
    if not isinstance(value, str) or not value.strip():
        raise _bad("changeType is required.", "InvalidRequest")
    kinds = tuple(p.strip() for p in value.split(","))
    if any(k not in ("created", "updated", "deleted") for k in kinds) or len(set(kinds)) != len(kinds):
        raise _bad(f"changeType '{value}' is not valid; use created, updated and/or deleted.", "InvalidRequest")
    return kinds


def _notification_url(value: Any, name: str, allow_http: bool) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{name} is required.", "InvalidRequest")
    if not url_allowed(value, allow_http):
        raise _bad(f"The {name} must use the HTTPS protocol.", "InvalidRequest")
    return value


# ---------------------------------------------------------------------------------------------
# Seeding

_SEED_TOPICS = ("Budget", "Design", "Roadmap", "Hiring", "Customer", "Incident", "Quarterly", "Security",
                "Onboarding", "Pricing", "Release", "Support", "Marketing", "Data", "Platform", "Mobile")
_SEED_KINDS = ("review", "sync", "planning", "retro", "interview", "workshop", "demo", "1:1", "standup",
               "kickoff", "deep dive", "office hours")
_SEED_LENGTHS = (30, 45, 60, 60, 90, 120)
_SEED_PLACES = ("Room 101", "Room 204", "Blue room", "Cafeteria", "Main hall", "Online")
_SEED_PEOPLE = ("ana", "ben", "chen", "dara", "eli", "fatima", "goran", "hana", "ivan", "jules", "kofi",
                "lena", "mateo", "noor", "omar", "priya", "quinn", "rosa", "sven", "tariq")


def _seed_options(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ValueError("seed spec must be a JSON object")
    allowed = {"count", "start", "days", "seed", "recurring_every", "online_every"}
    if set(spec) - allowed:
        raise ValueError(f"unknown seed keys: {sorted(set(spec) - allowed)}")
    out: dict[str, Any] = {"count": spec.get("count", 100), "days": spec.get("days", 60), "seed": spec.get("seed", 1),
                           "recurring_every": spec.get("recurring_every", 0), "online_every": spec.get("online_every", 0)}
    limits = {"count": (0, 1_000_000), "days": (1, 3650), "seed": (-(2**63), 2**63),
              "recurring_every": (0, 10**9), "online_every": (0, 10**9)}
    for key, (low, high) in limits.items():
        if not _is_int(out[key], low, high):
            raise ValueError(f"{key} must be an integer in [{low}, {high}]")
    start = _parse_instant(spec.get("start", "2026-11-01T00:00:00Z"))
    if start is None:
        raise ValueError("start must be an ISO 8601 timestamp")
    out["start"] = start
    return out


class _Seeder:
    """Builds events directly in storage, skipping per-request validation, for speed."""

    def __init__(self, emu: GraphEmulator, user: _User, cal: _Calendar, options: dict[str, Any]) -> None:
        self.emu = emu
        self.user = user
        self.cal = cal
        self.opt = options
        self.rng = random.Random(options["seed"])
        self.utc = ZoneInfo("UTC")

    def run(self) -> None:
        """Build all events with the cyclic GC paused (and big seeds frozen), as the Google seeder does."""
        now = time.time()
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for i in range(1, self.opt["count"] + 1):
                ev = self._event(i, now)
                self.user.events[ev.key] = ev
                self.emu._place(self.cal, ev)
                entry = (ev.key, None)
                self.cal.log.append(entry)
                self.cal.last_seq[entry] = self.cal.seq
        finally:
            if self.opt["count"] >= GC_FREEZE_THRESHOLD:
                gc.freeze()
            if was_enabled:
                gc.enable()

    def _event(self, i: int, now: float) -> _Event:
        """One seeded event; all choices come from a single 64-bit draw."""
        bits = self.rng.getrandbits(64)
        bits, day = divmod(bits, self.opt["days"])
        bits, hour = divmod(bits, 8)
        bits, quarter = divmod(bits, 4)
        bits, length = divmod(bits, len(_SEED_LENGTHS))
        bits, topic = divmod(bits, len(_SEED_TOPICS))
        bits, kind = divmod(bits, len(_SEED_KINDS))
        bits, place = divmod(bits, len(_SEED_PLACES))
        bits, who = divmod(bits, len(_SEED_PEOPLE))
        start = (self.opt["start"] + timedelta(days=day, hours=9 + hour, minutes=15 * quarter)).replace(tzinfo=None)
        end = start + timedelta(minutes=_SEED_LENGTHS[length])
        title = f"{_SEED_TOPICS[topic]} {_SEED_KINDS[kind]}"
        person = _SEED_PEOPLE[who]
        data: dict[str, Any] = {
            "subject": title,
            "body": {"contentType": "text", "content": f"{title} #{i}: agenda, notes and follow-ups."},
            "location": {"displayName": _SEED_PLACES[place]},
            "locations": [{"displayName": _SEED_PLACES[place]}],
            "attendees": [{"type": "required", "status": dict(_NO_RESPONSE),
                           "emailAddress": {"name": person.title(), "address": f"{person}@example.org"}}],
        }
        key = self.rng.getrandbits(128).to_bytes(16, "big")
        ev = _Event(key, self.cal.key, data, _When(start, "UTC", self.utc), _When(end, "UTC", self.utc), now, now,
                    self.emu._change_key(self.user), _ical_uid(key))
        every = self.opt["online_every"]
        if every and i % every == 0:
            data["isOnlineMeeting"] = True
            data["onlineMeetingProvider"] = "teamsForBusiness"
            ev.online = self.emu._online_info(self.user)
        every = self.opt["recurring_every"]
        if every and i % every == 0:
            rec = {"pattern": {"type": "weekly", "interval": 1, "month": 0, "dayOfMonth": 0,
                               "daysOfWeek": [_DAYS[start.weekday()]], "firstDayOfWeek": "sunday", "index": "first"},
                   "range": {"type": "numbered", "startDate": start.date().isoformat(), "endDate": "0001-01-01",
                             "recurrenceTimeZone": "UTC", "numberOfOccurrences": 4 + bits % 9}}
            data["recurrence"] = rec
            ev.series = _Series(rec, ev.start, ev.end)
        return ev


# ---------------------------------------------------------------------------------------------
# HTTP layer


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _error_response(err: GraphError, client_request_id: str | None) -> Response:
    request_id = str(uuid.uuid4())
    headers = {"request-id": request_id, "client-request-id": client_request_id or request_id, **err.headers}
    if err.status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
                                               'common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"')
    return Response(_json_bytes(err.body(request_id, client_request_id)), status_code=err.status,
                    media_type=JSON_TYPE, headers=headers)


def _ok(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_json_bytes(obj), status_code=status, media_type=JSON_TYPE, headers=headers)


def _bearer_user(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return GraphEmulator.user_email(token)


@dataclass
class _Call:
    """One API request, parsed: who, what, and the inputs handlers need."""

    emu: GraphEmulator
    email: str
    params: _Params
    headers: Any
    body: Any
    args: dict[str, str]
    base: str
    path: str
    prefer: _Prefer

    def view(self) -> _View:
        tz = self.prefer.timezone
        zone = _zone(tz) if tz else ZoneInfo("UTC")
        return _View(self.emu._user(self.email), zone, tz or "UTC", self.prefer.immutable, self.prefer.text_body,
                     self.base, _expand_filter(self.params))

    def obj(self) -> dict[str, Any]:
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise _body_read("The request body must be a JSON object.")
        return self.body


_Handler = Callable[[_Call], "Response | Awaitable[Response]"]


def _applied(c: _Call, extra: str | None = None) -> dict[str, str]:
    """Preference-Applied, as Graph echoes the honoured Prefer options."""
    parts = []
    if c.prefer.timezone:
        parts.append(f'outlook.timezone="{c.prefer.timezone}"')
    if c.prefer.immutable:
        parts.append('IdType="ImmutableId"')
    if extra:
        parts.append(extra)
    return {"Preference-Applied": ", ".join(parts)} if parts else {}


def _cal_arg(c: _Call) -> str | None:
    return c.args.get("cal")


def _h_calendars(c: _Call) -> Response:
    return _ok(c.emu.list_calendars(c.email, c.base))


def _h_calendar_create(c: _Call) -> Response:
    return _ok(c.emu.create_calendar(c.email, c.obj()), 201)


def _h_calendar_get(c: _Call) -> Response:
    return _ok(c.emu.get_calendar(c.email, _cal_arg(c)))


def _h_calendar_patch(c: _Call) -> Response:
    return _ok(c.emu.update_calendar(c.email, _cal_arg(c), c.obj()))


def _h_calendar_delete(c: _Call) -> Response:
    ref = _cal_arg(c)
    if ref is None:
        raise GraphError(400, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted.")
    c.emu.delete_calendar(c.email, ref)
    return Response(status_code=204)


def _h_events_list(c: _Call) -> Response:
    return _ok(c.emu.list_events(c.view(), _cal_arg(c), c.params, c.path), headers=_applied(c))


def _h_event_create(c: _Call) -> Response:
    return _ok(c.emu.create_event(c.view(), _cal_arg(c), c.obj()), 201, _applied(c))


def _h_event_get(c: _Call) -> Response:
    return _ok(c.emu.get_event(c.view(), c.args["ev"], _cal_arg(c), "scoped" in c.args), headers=_applied(c))


def _h_event_patch(c: _Call) -> Response:
    out = c.emu.update_event(c.view(), c.args["ev"], _cal_arg(c), "scoped" in c.args, c.obj(),
                             c.headers.get("if-match"))
    return _ok(out, headers=_applied(c))


def _h_event_delete(c: _Call) -> Response:
    c.emu.delete_event(c.email, c.args["ev"], _cal_arg(c), "scoped" in c.args, c.headers.get("if-match"))
    return Response(status_code=204)


def _h_event_cancel(c: _Call) -> Response:
    c.emu.cancel_event(c.email, c.args["ev"])
    return Response(status_code=202)


def _h_instances(c: _Call) -> Response:
    return _ok(c.emu.list_instances(c.view(), c.args["ev"], c.params, c.path), headers=_applied(c))


def _h_calendar_view(c: _Call) -> Response:
    return _ok(c.emu.calendar_view(c.view(), _cal_arg(c), c.params, c.path), headers=_applied(c))


def _h_delta(c: _Call) -> Response:
    size = c.prefer.max_page_size
    out = c.emu.delta(c.view(), _cal_arg(c), c.params, c.path, size)
    return _ok(out, headers=_applied(c, f"odata.maxpagesize={size}" if size else None))


async def _h_subscription_create(c: _Call) -> Response:
    fields = c.emu.check_subscription(c.email, c.obj())
    for url in (fields["url"], fields["lifecycle_url"]):
        if url is None:
            continue
        result = await c.emu.push.validate(url)
        if not result.ok:
            message = ("Subscription validation request timed out." if result.timed_out else
                       "Subscription validation request failed. Notification endpoint must respond with 200 OK to "
                       "validation request.")
            raise GraphError(400, "ValidationError", message)
    return _ok({"@odata.context": f"{c.base}{API_PREFIX}/$metadata#subscriptions/$entity",
                **c.emu.add_subscription(c.email, fields, c.prefer.immutable)}, 201)


def _h_subscriptions(c: _Call) -> Response:
    return _ok(c.emu.list_subscriptions(c.email, c.base))


def _h_subscription_get(c: _Call) -> Response:
    return _ok(c.emu.get_subscription(c.email, c.args["sub"]))


async def _h_subscription_patch(c: _Call) -> Response:
    expiration, url = c.emu.subscription_url_for_update(c.email, c.args["sub"], c.obj())
    if url is not None:
        result = await c.emu.push.validate(url)
        if not result.ok:
            raise GraphError(400, "ValidationError", "Subscription validation request failed. Notification endpoint "
                             "must respond with 200 OK to validation request.")
    return _ok(c.emu.renew_subscription(c.email, c.args["sub"], expiration, url))


def _h_subscription_delete(c: _Call) -> Response:
    c.emu.delete_subscription(c.email, c.args["sub"])
    return Response(status_code=204)


def _h_subscription_reauthorize(c: _Call) -> Response:
    c.emu.reauthorize_subscription(c.email, c.args["sub"])
    return Response(status_code=204)


_ID = r"[^/]+"
_CALENDAR_PATHS = (r"/me/calendar", rf"/me/calendars/(?P<cal>{_ID})")
_ROUTE_SPECS: list[tuple[str, str, _Handler]] = [
    ("GET", r"/me/calendars", _h_calendars),
    ("POST", r"/me/calendars", _h_calendar_create),
    ("GET", r"/me/calendar", _h_calendar_get),
    ("PATCH", r"/me/calendar", _h_calendar_patch),
    ("GET", rf"/me/calendars/(?P<cal>{_ID})", _h_calendar_get),
    ("PATCH", rf"/me/calendars/(?P<cal>{_ID})", _h_calendar_patch),
    ("DELETE", rf"/me/calendars/(?P<cal>{_ID})", _h_calendar_delete),
    ("GET", r"/me/events", _h_events_list),
    ("POST", r"/me/events", _h_event_create),
    ("GET", rf"/me/events/(?P<ev>{_ID})/instances", _h_instances),
    ("POST", rf"/me/events/(?P<ev>{_ID})/cancel", _h_event_cancel),
    ("GET", rf"/me/events/(?P<ev>{_ID})", _h_event_get),
    ("PATCH", rf"/me/events/(?P<ev>{_ID})", _h_event_patch),
    ("DELETE", rf"/me/events/(?P<ev>{_ID})", _h_event_delete),
    ("GET", r"/me/calendarView/delta(?:\(\))?", _h_delta),
    ("GET", r"/me/calendarView", _h_calendar_view),
    ("POST", r"/subscriptions", _h_subscription_create),
    ("GET", r"/subscriptions", _h_subscriptions),
    ("POST", rf"/subscriptions/(?P<sub>{_ID})/reauthorize", _h_subscription_reauthorize),
    ("GET", rf"/subscriptions/(?P<sub>{_ID})", _h_subscription_get),
    ("PATCH", rf"/subscriptions/(?P<sub>{_ID})", _h_subscription_patch),
    ("DELETE", rf"/subscriptions/(?P<sub>{_ID})", _h_subscription_delete),
]
for _cal_path in _CALENDAR_PATHS:
    _ROUTE_SPECS += [
        ("GET", rf"{_cal_path}/events", _h_events_list),
        ("POST", rf"{_cal_path}/events", _h_event_create),
        ("GET", rf"{_cal_path}/events/(?P<ev>{_ID})/instances", _h_instances),
        ("GET", rf"{_cal_path}/events/(?P<ev>{_ID})(?P<scoped>)", _h_event_get),
        ("PATCH", rf"{_cal_path}/events/(?P<ev>{_ID})(?P<scoped>)", _h_event_patch),
        ("DELETE", rf"{_cal_path}/events/(?P<ev>{_ID})(?P<scoped>)", _h_event_delete),
        ("GET", rf"{_cal_path}/calendarView/delta(?:\(\))?", _h_delta),
        ("GET", rf"{_cal_path}/calendarView", _h_calendar_view),
    ]
_ROUTES: list[tuple[str, re.Pattern[str], _Handler]] = [
    (m, re.compile(p + r"/?$", re.IGNORECASE), h) for m, p, h in _ROUTE_SPECS
]
_USERS_RE = re.compile(r"^/users/([^/]+)(/.*)?$", re.IGNORECASE)


def _normalise_path(path: str, email: str, guid: str) -> str:
    """/users/{address or id}/... of the caller is /me/...; another mailbox is refused."""
    match = _USERS_RE.match(path)
    if match is None:
        return path
    if match.group(1).lower() not in (email, guid):
        raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    return "/me" + (match.group(2) or "")


def _route(method: str, path: str) -> tuple[_Handler, dict[str, str]]:
    known_path = False
    for route_method, pattern, handler in _ROUTES:
        match = pattern.match(path)
        if match:
            known_path = True
            if route_method == method:
                return handler, {k: v for k, v in match.groupdict().items() if v is not None}
    if known_path:
        raise GraphError(405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed for this resource.")
    segment = path.rstrip("/").rsplit("/", 1)[-1] or path
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")


async def _read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise _body_read("The request body is not valid JSON.") from None


async def _handle_api(emu: GraphEmulator, request: Request, email: str | None) -> Response:
    """Authenticate, route and run one API call, mapping errors to Graph's JSON shape."""
    client_request_id = request.headers.get("client-request-id")
    try:
        if email is None:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        user = emu.ensure_user(email)
        path = _normalise_path(request.url.path[len(API_PREFIX):], email, user.guid)
        handler, args = _route(request.method, path)
        body = await _read_json(request) if request.method in ("POST", "PATCH", "PUT") else None
        call = _Call(emu, email, _Params(list(request.query_params.multi_items())), request.headers, body, args,
                     str(request.base_url).rstrip("/"), request.url.path[len(API_PREFIX):],
                     _parse_prefer(request.headers.getlist("prefer")))
        result = handler(call)
        response = await result if inspect.isawaitable(result) else result
        response.headers.setdefault("client-request-id", client_request_id or str(uuid.uuid4()))
        response.headers.setdefault("request-id", response.headers["client-request-id"])
        return response
    except GraphError as err:
        return _error_response(err, client_request_id)
    except Exception:  # a bug must still answer like Graph would, never a bare traceback
        log.exception("graph emulator: unhandled error for %s %s", request.method, request.url.path)
        return _error_response(GraphError(500, "ErrorInternalServerError",
                                          "An internal server error occurred. The operation failed."), client_request_id)


async def _serve(emu: GraphEmulator, request: Request, email: str | None) -> Response:
    """One API request as Graph serves it: mailbox throttle, injected faults, the handler."""
    throttled = emu.throttle.enter(email, emu.switches) if email else None
    if throttled is not None:
        return _error_response(throttled, request.headers.get("client-request-id"))
    try:
        injected = await emu.faults.maybe_fail(request.method, request.url.path)
        if injected is not None:
            return injected
        response = await _handle_api(emu, request, email)
        return await emu.commit_faults.maybe_fail(request.method, request.url.path) or response
    finally:
        if email:
            emu.throttle.leave(email)


BATCH_PATH = API_PREFIX + "/$batch"


async def _serve_batch(emu: GraphEmulator, request: Request, email: str | None) -> Response:
    """``POST /v1.0/$batch`` (see graph_batch): faults may hit the outer POST itself; the mailbox
    throttle counts the inner requests only, each of which is served (and logged) like a request
    of its own, its answer inside the outer 200."""
    client_request_id = request.headers.get("client-request-id")
    injected = await emu.faults.maybe_fail(request.method, request.url.path)
    if injected is not None:
        return injected
    if email is None:
        return _error_response(GraphError(401, "InvalidAuthenticationToken", "Access token is empty."),
                               client_request_id)
    try:
        items = parse_batch(await request.body(), API_PREFIX, request.headers.get("host", ""))
    except BatchPayloadError as exc:
        return _error_response(GraphError(400, "BadRequest", str(exc)), client_request_id)

    async def dispatch(item: BatchItem, inner: Request) -> Response:
        response = await _serve(emu, inner, email)
        emu.requests.add(inner.method, inner.url.path, inner.url.query, response.status_code, email,
                         batch_item=item.id)
        return response

    def refuse(status: int, code: str, message: str) -> Response:
        return _error_response(GraphError(status, code, message), None)

    out = await run_batch(request, items, API_PREFIX, dispatch, refuse,
                          reverse=bool(emu.switches.get("batch_reverse_responses")))
    response = _ok(out)
    response.headers["client-request-id"] = client_request_id or str(uuid.uuid4())
    response.headers["request-id"] = response.headers["client-request-id"]
    return await emu.commit_faults.maybe_fail(request.method, request.url.path) or response


def create_app(emulator: GraphEmulator | None = None) -> Starlette:
    """The Starlette app: the API under /v1.0 plus the /emulator admin surface."""
    emu = emulator or GraphEmulator()

    async def api(request: Request) -> Response:
        email = _bearer_user(request.headers.get("authorization"))
        if request.method == "POST" and request.url.path.rstrip("/").lower() == BATCH_PATH.lower():
            response = await _serve_batch(emu, request, email)
        else:
            response = await _serve(emu, request, email)
        emu.requests.add(request.method, request.url.path, request.url.query, response.status_code, email)
        return response

    async def not_found(request: Request) -> Response:
        return _error_response(GraphError(400, "BadRequest", "Invalid version."), None)

    routes = _admin_routes(emu) + [
        Route(API_PREFIX + "/{rest:path}", api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/{rest:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = emu
    return app


def _admin_routes(emu: GraphEmulator) -> list[Route]:
    """Endpoints tests and benchmarks use to steer the emulator (never logged, faulted or throttled)."""

    async def seed(request: Request) -> Response:
        try:
            spec = await admin_json(request)
            out = await run_in_threadpool(emu.seed, request.path_params["cal"], spec)
        except GraphError:
            return admin_error(404, "no such calendar (give a calendar id or a mailbox address)")
        except ValueError as exc:
            return admin_error(400, str(exc))
        return JSONResponse(out)

    async def expire_delta(request: Request) -> Response:
        try:
            body = await admin_json(request)
            user = body.get("user") if isinstance(body, dict) else None
            if user is not None and not isinstance(user, str):
                raise ValueError("user must be a mailbox address")
        except ValueError as exc:
            return admin_error(400, str(exc))
        return JSONResponse({"epoch": emu.expire_delta_tokens(user.lower() if user else None)})

    async def switches(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(dict(emu.switches))
        try:
            return JSONResponse(emu.set_switches(await admin_json(request)))
        except ValueError as exc:
            return admin_error(400, str(exc))

    async def subscriptions(request: Request) -> Response:
        return JSONResponse({"subscriptions": emu.admin_subscriptions()})

    async def lifecycle(request: Request) -> Response:
        try:
            body = await admin_json(request)
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            pause = body.get("pause", False)
            if not isinstance(pause, bool):
                raise ValueError("pause must be true or false")
            item = emu.lifecycle(request.path_params["sub"], str(body.get("event")), pause)
        except KeyError:
            return admin_error(404, "no such subscription")
        except LookupError as exc:
            return admin_error(409, str(exc))
        except ValueError as exc:
            return admin_error(400, str(exc))
        return JSONResponse(item, status_code=202)

    async def expire_subscription(request: Request) -> Response:
        if not emu.expire_subscription(request.path_params["sub"]):
            return admin_error(404, "no such subscription")
        return JSONResponse({"expired": True})

    async def event_action(request: Request) -> Response:
        try:
            body = await admin_json(request)
            if not isinstance(body, dict) or not isinstance(body.get("user"), str):
                raise ValueError("body needs 'user' (the mailbox address)")
            email, event_id = body["user"].lower(), request.path_params["ev"]
            if request.path_params["action"] == "move":
                if not isinstance(body.get("calendarId"), str):
                    raise ValueError("body needs 'calendarId'")
                return JSONResponse(emu.move_event(email, event_id, body["calendarId"]))
            if request.path_params["action"] == "cancel-by-organizer":
                emu.cancel_by_organizer(email, event_id)
                return JSONResponse({"cancelled": True})
            return admin_error(404, "unknown action (move, cancel-by-organizer)")
        except GraphError as err:
            return admin_error(err.status, err.message)
        except ValueError as exc:
            return admin_error(400, str(exc))

    return common_admin_routes(emu.reset, emu.faults, emu.commit_faults, emu.requests) + [
        Route("/emulator/calendars/{cal}/seed", seed, methods=["POST"]),
        Route("/emulator/delta/expire", expire_delta, methods=["POST"]),
        Route("/emulator/switches", switches, methods=["GET", "POST"]),
        Route("/emulator/subscriptions", subscriptions, methods=["GET"]),
        Route("/emulator/subscriptions/{sub}/lifecycle", lifecycle, methods=["POST"]),
        Route("/emulator/subscriptions/{sub}/expire", expire_subscription, methods=["POST"]),
        Route("/emulator/events/{ev}/{action}", event_action, methods=["POST"]),
    ] + push_admin_routes(emu.push)
