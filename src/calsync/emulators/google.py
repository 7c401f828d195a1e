"""A faithful in-memory emulator of the Google Calendar API v3, served over real HTTP.

It reproduces what a sync engine depends on (see docs/reference provider-semantics 1.1-1.9
and the emulator checklist 5.1): sync tokens and their invalidation, paging that stays
correct while the calendar changes, deleted events in incremental results, recurring
series and their exceptions, ETags and conditional requests, conference data and Google's
error bodies. Push notifications (events.watch, channels.stop, delivery to a receiver with
retries and fault switches) live in ``google_push``; every committed event change notifies
the calendar's channels once. It imports only the standard library, starlette, httpx,
python-dateutil and the sibling emulator modules, so it can be lifted out and run alone.

Storage layout per calendar, chosen for the hot paths:

* ``order``: every event ever created, by an immutable creation ordinal (index in the
  list). Full listings page over it with keyset tokens, so concurrent inserts and deletes
  never make a page skip an event that existed unchanged throughout the walk.
* ``log``: one entry per change (``log[seq - 1]`` is the id changed at sequence ``seq``).
  Incremental listings page over it from the token's sequence, skipping entries that a
  later change of the same event superseded; no scan of the whole calendar is needed.
"""
from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rruleset, rrulestr
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.emulators.faults import (
    FaultInjector,
    RequestLog,
    admin_error,
    admin_json,
    common_admin_routes,
)
from calsync.emulators.google_push import DEFAULT_TTL_SECONDS, PushError, PushHub, parse_watch, push_admin_routes

__all__ = ["ApiError", "GoogleEmulator", "create_app", "DEFAULT_SWITCHES", "API_PREFIX"]

log = logging.getLogger(__name__)

API_PREFIX = "/calendar/v3"
JSON_TYPE = "application/json; charset=UTF-8"
MAX_RESULTS_DEFAULT = 250
MAX_RESULTS_CAP = 2500
EXPANSION_HORIZON_S = 730 * 86400  # expand open-ended series about two years ahead
EXPANSION_MAX_INSTANCES = 1000
EXPANSION_MAX_SCAN = 50_000
SPAN_SCAN_LIMIT = 5000
GC_FREEZE_THRESHOLD = 20_000  # seeds at least this big are moved out of the GC's sight
BASE32HEX = "0123456789abcdefghijklmnopqrstuv"
_CLIENT_ID_RE = re.compile(r"^[0-9a-v]{5,1024}$")
_UTC = timezone.utc
_MEET_ICON = "https://fonts.gstatic.com/s/i/productlogos/meet_2020q4/v6/web-512dp/logo_meet_2020q4_color_2x_web_512dp.png"

#: Documented-variant behaviours that tests may flip with ``POST /emulator/switches``.
DEFAULT_SWITCHES: dict[str, Any] = {
    # reason of the 400 for syncToken + a restricted parameter ("invalid" or "syncTokenWithRequestRestrictions")
    "sync_token_restriction_reason": "invalid",
    # stop a page after scanning this many candidates, giving short or empty pages with nextPageToken
    "page_scan_limit": None,
    # quirk seen in the field: a full listing with orderBy or q yields no nextSyncToken
    "no_sync_token_with_order_or_q": False,
    # sync tokens older than this many seconds answer 410 (None = never expire)
    "sync_token_ttl_seconds": None,
    # updatedMin older than this many seconds answers 410 updatedMinTooLongAgo (None = no horizon)
    "updated_min_horizon_seconds": None,
    # outcome of a hangoutsMeet createRequest: "success" or "failure"
    "conference_create_status": "success",
    # events.watch: accept plain-http receiver addresses on loopback hosts (tests); never elsewhere
    "push_allow_http": True,
    # events.watch: the longest channel lifetime granted; Google publishes no maximum for Calendar
    "push_max_ttl_seconds": DEFAULT_TTL_SECONDS,
    # push delivery: first retry delay (doubling per attempt) and attempts per message, for 5xx/transport errors
    "push_retry_base_ms": 200,
    "push_max_attempts": 5,
    # push delivery to non-loopback receivers (off: they are logged as skipped, so tests never reach out)
    "push_deliver_remote": False,
}

_SWITCH_CHECKS: dict[str, Callable[[Any], bool]] = {
    "sync_token_restriction_reason": lambda v: v in ("invalid", "syncTokenWithRequestRestrictions"),
    "page_scan_limit": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
    "no_sync_token_with_order_or_q": lambda v: isinstance(v, bool),
    "sync_token_ttl_seconds": lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0),
    "updated_min_horizon_seconds": lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0),
    "conference_create_status": lambda v: v in ("success", "failure"),
    "push_allow_http": lambda v: isinstance(v, bool),
    "push_max_ttl_seconds": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 10 * 365 * 86400,
    "push_retry_base_ms": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 60_000,
    "push_max_attempts": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 20,
    "push_deliver_remote": lambda v: isinstance(v, bool),
}

# Query parameters that do not change what a list returns, so page tokens ignore them.
_NON_SEMANTIC_PARAMS = frozenset({
    "pageToken", "alt", "prettyPrint", "fields", "quotaUser", "key", "userIp", "oauth_token",
    "access_token", "callback", "$.xgafv", "upload_protocol", "uploadType",
})
_SYNC_RESTRICTED = ("iCalUID", "orderBy", "privateExtendedProperty", "q", "sharedExtendedProperty",
                    "timeMin", "timeMax", "updatedMin")

# ---------------------------------------------------------------------------------------------
# Errors


class ApiError(Exception):
    """An error answered in Google's JSON error shape."""

    def __init__(self, status: int, reason: str, message: str, domain: str = "global",
                 location_type: str | None = None, location: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.domain = domain
        self.location_type = location_type
        self.location = location
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` document Google sends."""
        item: dict[str, Any] = {"domain": self.domain, "reason": self.reason, "message": self.message}
        if self.location_type is not None:
            item["locationType"] = self.location_type
        if self.location is not None:
            item["location"] = self.location
        return {"error": {"code": self.status, "message": self.message, "errors": [item]}}


class _NotModified(Exception):
    """Raised by a conditional get whose If-None-Match names the current ETag."""

    def __init__(self, etag: str) -> None:
        super().__init__(etag)
        self.etag = etag


def _not_found() -> ApiError:
    return ApiError(404, "notFound", "Not Found")


def _invalid(message: str, location: str | None = None, reason: str = "invalid",
             domain: str = "global") -> ApiError:
    return ApiError(400, reason, message, domain, "parameter" if location else None, location)


def _required(message: str, location: str | None = None) -> ApiError:
    return ApiError(400, "required", message, "global", "parameter" if location else None, location)


def _full_sync_required() -> ApiError:
    return ApiError(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required.",
                    "calendar", "parameter", "syncToken")


def _precondition_failed() -> ApiError:
    return ApiError(412, "conditionNotMet", "Precondition Failed", "global", "header", "If-Match")


def _deleted() -> ApiError:
    return ApiError(410, "deleted", "Resource has been deleted")


def _time_range_empty() -> ApiError:
    return ApiError(400, "timeRangeEmpty", "The specified time range is empty.", "calendar", "parameter", "timeMax")


_FAULT_REASONS: dict[str, tuple[str, str]] = {
    "rateLimitExceeded": ("usageLimits", "Rate Limit Exceeded"),
    "userRateLimitExceeded": ("usageLimits", "User Rate Limit Exceeded"),
    "quotaExceeded": ("usageLimits", "Calendar usage limits exceeded."),
    "backendError": ("global", "Backend Error"),
    "authError": ("global", "Invalid Credentials"),
    "notFound": ("global", "Not Found"),
    "deleted": ("global", "Resource has been deleted"),
    "fullSyncRequired": ("calendar", "Sync token is no longer valid, a full sync is required."),
}


def error_for_status(status: int, reason: str | None = None) -> ApiError:
    """Google's error body for an injected fault: rate limits, backend errors, auth, or a given reason."""
    if reason is None:
        reason = {429: "rateLimitExceeded", 403: "rateLimitExceeded", 401: "authError", 404: "notFound",
                  410: "deleted"}.get(status, "backendError" if status >= 500 else "invalid")
    domain, message = _FAULT_REASONS.get(reason, ("global", "Injected fault: " + reason))
    if reason == "authError":
        return ApiError(status, reason, message, domain, "header", "Authorization")
    if reason == "fullSyncRequired":
        return ApiError(status, reason, message, domain, "parameter", "syncToken")
    return ApiError(status, reason, message, domain)


# ---------------------------------------------------------------------------------------------
# Time helpers


def _fmt_ts(ts: float) -> str:
    """RFC 3339 UTC with milliseconds, the form Google uses for created/updated."""
    return datetime.fromtimestamp(ts, _UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fmt_dt(dt: datetime) -> str:
    """RFC 3339 with offset and whole seconds; UTC written as Z."""
    text = dt.replace(microsecond=0).isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _parse_rfc3339(value: str) -> datetime | None:
    """Parse an RFC 3339 timestamp; None when malformed."""
    if not isinstance(value, str) or len(value) < 19 or value[10] not in "Tt":
        return None
    try:
        return datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None


def _zone(name: Any, what: str) -> ZoneInfo:
    """An IANA zone, or a 400 naming the field, as Google does for bad time zones."""
    if isinstance(name, str) and name and ".." not in name and not name.startswith("/"):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise _invalid(f"Invalid time zone definition for {what} time.")


def _midnight_ts(d: date, zone: ZoneInfo) -> float:
    return datetime.combine(d, dtime(), zone).timestamp()


def _norm_edt(value: Any, what: str, cal_zone: ZoneInfo) -> tuple[dict[str, Any], float, bool]:
    """Validate an EventDateTime; returns (normalized JSON, epoch seconds, all-day?)."""
    if not isinstance(value, dict):
        raise _invalid(f"Invalid {what} time.")
    date_s, dt_s, tz_s = value.get("date"), value.get("dateTime"), value.get("timeZone")
    zone = _zone(tz_s, what) if tz_s is not None else None
    if date_s is not None and dt_s is not None:
        raise _invalid(f"Invalid {what} time: both date and dateTime given.")
    if date_s is not None:
        try:
            d = date.fromisoformat(date_s) if isinstance(date_s, str) and len(date_s) == 10 else None
        except ValueError:
            d = None
        if d is None:
            raise _invalid(f"Invalid {what} time.")
        return {"date": d.isoformat()}, _midnight_ts(d, cal_zone), True
    if dt_s is None:
        raise _required(f"Missing {what} time.")
    dt = _parse_rfc3339(dt_s)
    if dt is None:
        raise _invalid(f"Invalid {what} time.")
    if dt.tzinfo is None:
        if zone is None:
            raise _required(f"Missing time zone definition for {what} time.")
        dt = dt.replace(tzinfo=zone)
    out: dict[str, Any] = {"dateTime": _fmt_dt(dt.astimezone(zone or cal_zone))}
    if tz_s is not None:
        out["timeZone"] = tz_s
    return out, dt.replace(microsecond=0).timestamp(), False


# ---------------------------------------------------------------------------------------------
# Ids and tokens


_B32_PAIRS = [a + b for a in BASE32HEX for b in BASE32HEX]  # 10 bits -> two base32hex characters
_PAIR_SHIFTS = tuple(range(0, 130, 10))


def _random_id(rng: random.Random | None = None) -> str:
    """A 26-character base32hex id (130 random bits), the shape of Google's generated event ids."""
    n = rng.getrandbits(130) if rng is not None else int.from_bytes(os.urandom(17), "big") >> 6
    return "".join([_B32_PAIRS[(n >> shift) & 1023] for shift in _PAIR_SHIFTS])


class _Signer:
    """HMAC-signed opaque strings: sync tokens, page tokens and conference signatures."""

    _SIG_LEN = 12

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[: self._SIG_LEN]

    def seal(self, payload: Any) -> str:
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw + self._mac(raw)).decode("ascii").rstrip("=")

    def open(self, token: str) -> Any | None:
        """The payload, or None when the string was not sealed by this signer."""
        if not isinstance(token, str) or not token or len(token) > 4096:
            return None
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            return None
        raw, sig = blob[: -self._SIG_LEN], blob[-self._SIG_LEN:]
        if len(blob) <= self._SIG_LEN or not hmac.compare_digest(sig, self._mac(raw)):
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def sign_text(self, text: str) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._secret, text.encode(), hashlib.sha256).digest()).decode()


# ---------------------------------------------------------------------------------------------
# Recurrence


@dataclass(frozen=True, slots=True)
class _Occ:
    """One occurrence of a series: original start (the instance key) and its times."""

    key: float
    end_ts: float
    start_json: dict[str, Any]
    end_json: dict[str, Any]
    suffix: str


def _until_for(value: str, all_day: bool, zone: ZoneInfo | None) -> str:
    """Rewrite UNTIL so its form matches DTSTART (dateutil requires UTC for aware, naive for dates)."""
    parts = value.split(";")
    for i, part in enumerate(parts):
        name, _, raw = part.partition("=")
        if name.upper() != "UNTIL":
            continue
        raw = raw.strip().upper()
        if all_day:
            parts[i] = "UNTIL=" + raw[:8]
        elif not raw.endswith("Z"):
            if len(raw) == 8:
                local = datetime.strptime(raw, "%Y%m%d").replace(hour=23, minute=59, second=59, tzinfo=zone)
            else:
                local = datetime.strptime(raw, "%Y%m%dT%H%M%S").replace(tzinfo=zone)
            parts[i] = "UNTIL=" + local.astimezone(_UTC).strftime("%Y%m%dT%H%M%SZ")
    return ";".join(parts)


def _ical_datetime(value: str, params: list[str], dtstart: datetime, zone: ZoneInfo | None) -> datetime:
    """An RDATE/EXDATE value in the same form as DTSTART so rruleset can compare them."""
    value = value.strip().upper()
    tzid = next((p.split("=", 1)[1] for p in params if p.upper().startswith("TZID=")), None)
    if len(value) == 8:
        d = datetime.strptime(value, "%Y%m%d")
        if zone is None:
            return d
        return dtstart.replace(year=d.year, month=d.month, day=d.day)
    if value.endswith("Z"):
        dt = datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=_UTC)
    else:
        local_zone = ZoneInfo(tzid) if tzid else (zone or _UTC)
        dt = datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=local_zone)
    if zone is None:
        return datetime(dt.year, dt.month, dt.day)
    return dt.astimezone(zone)


def _compile_rules(lines: list[str], dtstart: datetime, zone: ZoneInfo | None, all_day: bool) -> tuple[rruleset, bool]:
    """Build an rruleset from RRULE/EXRULE/RDATE/EXDATE lines; returns it and whether it is bounded."""
    rs = rruleset()
    bounded = True
    for line in lines:
        head, sep, value = line.partition(":")
        if not sep:
            raise ValueError(line)
        name, *params = head.split(";")
        name = name.strip().upper()
        if name in ("RRULE", "EXRULE"):
            rule = rrulestr(_until_for(value, all_day, zone), dtstart=dtstart)
            if not isinstance(rule, rrule):
                raise ValueError(line)
            if name == "RRULE":
                bounded = bounded and ("COUNT=" in value.upper() or "UNTIL=" in value.upper())
                rs.rrule(rule)
            else:
                rs.exrule(rule)
        elif name in ("RDATE", "EXDATE"):
            add = rs.rdate if name == "RDATE" else rs.exdate
            for item in value.split(","):
                add(_ical_datetime(item, params, dtstart, zone))
        else:
            raise ValueError(line)
    return rs, bounded


class _Series:
    """A compiled recurring event: expands occurrences with dateutil, bounded."""

    def __init__(self, data: dict[str, Any], cal_zone: ZoneInfo) -> None:
        start, end = data["start"], data["end"]
        self.cal_zone = cal_zone
        self.all_day = "date" in start
        if self.all_day:
            d0, d1 = date.fromisoformat(start["date"]), date.fromisoformat(end["date"])
            self.zone: ZoneInfo | None = None
            self.dtstart = datetime(d0.year, d0.month, d0.day)
            self.days = (d1 - d0).days
            self.duration = timedelta(0)
            self.end_zone_name = ""
        else:
            self.zone = ZoneInfo(start["timeZone"])
            self.dtstart = datetime.fromisoformat(start["dateTime"]).astimezone(self.zone)
            self.duration = datetime.fromisoformat(end["dateTime"]) - self.dtstart
            self.end_zone_name = end.get("timeZone") or start["timeZone"]
            self.days = 0
        self.rset, self.bounded = _compile_rules(list(data["recurrence"]), self.dtstart, self.zone, self.all_day)
        self._cache: dict[tuple[Any, ...], list[_Occ]] = {}

    def occ(self, dt: datetime) -> _Occ:
        """The occurrence starting at ``dt`` (a rule value)."""
        if self.all_day:
            d0 = dt.date()
            d1 = d0 + timedelta(days=self.days)
            return _Occ(_midnight_ts(d0, self.cal_zone), _midnight_ts(d1, self.cal_zone),
                        {"date": d0.isoformat()}, {"date": d1.isoformat()}, d0.strftime("%Y%m%d"))
        assert self.zone is not None
        end = (dt.astimezone(_UTC) + self.duration).astimezone(ZoneInfo(self.end_zone_name))
        return _Occ(dt.timestamp(), end.timestamp(),
                    {"dateTime": _fmt_dt(dt), "timeZone": self.zone.key},
                    {"dateTime": _fmt_dt(end), "timeZone": self.end_zone_name},
                    dt.astimezone(_UTC).strftime("%Y%m%dT%H%M%SZ"))

    def occurrences(self, time_min: float | None, time_max: float | None, now: float) -> list[_Occ]:
        """Occurrences overlapping (time_min, time_max), up to timeMax or about two years ahead."""
        horizon = time_max if time_max is not None else max(self.dtstart_ts, now) + EXPANSION_HORIZON_S
        cache_key = (time_min, time_max, int(horizon // 3600) if time_max is None else None)
        hit = self._cache.get(cache_key)
        if hit is not None:
            return hit
        out: list[_Occ] = []
        for n, dt in enumerate(self.rset):
            if n >= EXPANSION_MAX_SCAN:
                break
            occ = self.occ(dt)
            if occ.key >= horizon:
                break
            if time_min is not None and occ.end_ts <= time_min:
                continue
            out.append(occ)
            if len(out) >= EXPANSION_MAX_INSTANCES:
                break
        if len(self._cache) > 8:
            self._cache.clear()
        self._cache[cache_key] = out
        return out

    @property
    def dtstart_ts(self) -> float:
        return _midnight_ts(self.dtstart.date(), self.cal_zone) if self.all_day else self.dtstart.timestamp()

    def span_end(self) -> float:
        """End of the last occurrence, or infinity for an open-ended series."""
        if not self.bounded:
            return math.inf
        last: datetime | None = None
        for n, dt in enumerate(self.rset):
            if n >= SPAN_SCAN_LIMIT:
                return math.inf
            last = dt
        return self.occ(last).end_ts if last is not None else self.dtstart_ts

    def find(self, suffix: str) -> _Occ | None:
        """The occurrence an instance id suffix names, if the rule produces it."""
        try:
            if self.all_day:
                if len(suffix) != 8:
                    return None
                dt = datetime.strptime(suffix, "%Y%m%d")
            else:
                if len(suffix) != 16:
                    return None
                assert self.zone is not None
                dt = datetime.strptime(suffix, "%Y%m%dT%H%M%SZ").replace(tzinfo=_UTC).astimezone(self.zone)
        except ValueError:
            return None
        found = self.rset.after(dt, inc=True)
        return self.occ(found) if found is not None and found == dt else None


# ---------------------------------------------------------------------------------------------
# State


@dataclass(eq=False, slots=True)
class _Event:
    """One stored event (single, series, or exception of a series), including tombstones."""

    id: str
    ordinal: int
    data: dict[str, Any]
    ical_uid: str
    created: str
    creator: dict[str, Any]
    organizer: dict[str, Any]
    sequence: int = 0
    etag: str = ""
    updated: str = ""
    updated_ts: float = 0.0
    change_seq: int = 0
    start_ts: float = 0.0
    end_ts: float = 0.0
    span_end_ts: float = 0.0
    recurring_event_id: str | None = None
    original_start: dict[str, Any] | None = None
    original_key: float | None = None
    conference_request_ids: set[str] = field(default_factory=set)
    compiled: _Series | None = None
    cache: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.data.get("status", "confirmed")

    @property
    def cancelled(self) -> bool:
        return self.data.get("status") == "cancelled"

    @property
    def is_series(self) -> bool:
        return bool(self.data.get("recurrence")) and self.recurring_event_id is None


@dataclass(eq=False)
class _Calendar:
    """A calendar, its events, its change log and its token epoch."""

    id: str
    owner: str
    primary: bool
    summary: str
    time_zone: str
    etag: str
    updated: str
    description: str | None = None
    location: str | None = None
    epoch: int = 0
    events: dict[str, _Event] = field(default_factory=dict)
    order: list[_Event] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    exceptions: dict[str, dict[float, str]] = field(default_factory=dict)
    ical_index: dict[str, str] = field(default_factory=dict)
    events_etag: str = ""

    @property
    def seq(self) -> int:
        """Current change sequence: the number of changes ever made to this calendar's events."""
        return len(self.log)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


# ---------------------------------------------------------------------------------------------
# Request inputs


class Params:
    """Read-only view of query parameters with Google-style validation errors."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.items = items
        self._map: dict[str, list[str]] = {}
        for k, v in items:
            self._map.setdefault(k, []).append(v)

    def __contains__(self, name: str) -> bool:
        return name in self._map

    def get(self, name: str) -> str | None:
        values = self._map.get(name)
        return values[0] if values else None

    def getlist(self, name: str) -> list[str]:
        return list(self._map.get(name, []))

    def bool(self, name: str, default: bool | None = None) -> bool | None:
        raw = self.get(name)
        if raw is None:
            return default
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise _invalid(f"Invalid boolean value for: {name}", name)

    def int(self, name: str) -> int | None:
        raw = self.get(name)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise _invalid(f"Invalid value for: {name}", name) from None

    def time(self, name: str, keep_ms: bool = False) -> float | None:
        """An RFC 3339 parameter as epoch seconds; timeMin/timeMax ignore milliseconds as Google documents."""
        raw = self.get(name)
        if raw is None:
            return None
        dt = _parse_rfc3339(raw)
        if dt is None or dt.tzinfo is None:
            raise _invalid(f"Bad Request: {name} must be an RFC3339 timestamp with a time zone offset.", name)
        return (dt if keep_ms else dt.replace(microsecond=0)).timestamp()

    def semantic_hash(self, extra: str) -> str:
        """Hash of everything that shapes the result, to tie page tokens to their query."""
        kept = sorted((k, v) for k, v in self.items if k not in _NON_SEMANTIC_PARAMS)
        return hashlib.sha256(json.dumps([extra, kept]).encode()).hexdigest()[:16]


@dataclass
class _ListQuery:
    """A validated events.list / events.instances request."""

    max_results: int
    page_token: str | None
    sync_token: str | None
    single_events: bool
    show_deleted: bool
    order_by: str | None
    time_min: float | None
    time_max: float | None
    updated_min: float | None
    text: str | None
    ical_uid: str | None
    private_props: list[tuple[str, str]]
    shared_props: list[tuple[str, str]]
    qhash: str

    @property
    def has_content_filters(self) -> bool:
        return bool(self.text or self.ical_uid or self.private_props or self.shared_props)


def _max_results(params: Params) -> int:
    value = params.int("maxResults")
    if value is None:
        return MAX_RESULTS_DEFAULT
    if value < 1:
        raise _invalid(f"Invalid value '{value}'. Values must be within the range: [1, {MAX_RESULTS_CAP}]",
                       "maxResults")
    return min(value, MAX_RESULTS_CAP)


def _prop_filters(params: Params, name: str) -> list[tuple[str, str]]:
    out = []
    for raw in params.getlist(name):
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise _invalid(f"Invalid value for: {name}. Expected propertyName=value.", name)
        out.append((key, value))
    return out


# ---------------------------------------------------------------------------------------------
# Body normalization

_STR_FIELDS = ("summary", "description", "location", "colorId")
_BOOL_FIELDS = ("endTimeUnspecified", "anyoneCanAddSelf", "guestsCanInviteOthers", "guestsCanModify",
                "guestsCanSeeOtherGuests", "privateCopy")
_ENUMS = {
    "status": ("confirmed", "tentative", "cancelled"),
    "transparency": ("opaque", "transparent"),
    "visibility": ("default", "public", "private", "confidential"),
    "eventType": ("default",),
}
_WRITABLE = frozenset(_STR_FIELDS + _BOOL_FIELDS + tuple(_ENUMS) + (
    "start", "end", "recurrence", "attendees", "reminders", "extendedProperties", "source"))
_SCHEDULE_FIELDS = ("start", "end", "recurrence", "location")
_ATTENDEE_STR = ("email", "displayName", "comment", "id")
_ATTENDEE_BOOL = ("optional", "resource", "organizer", "self")
_RESPONSE_STATUSES = ("needsAction", "declined", "tentative", "accepted")


def _check_attendees(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _invalid("Invalid attendees value.")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise _invalid("Invalid attendee.")
        if not isinstance(item.get("email"), str) or not item["email"]:
            raise _required("Missing attendee email.")
        att: dict[str, Any] = {}
        for key in _ATTENDEE_STR:
            if item.get(key) is not None:
                if not isinstance(item[key], str):
                    raise _invalid(f"Invalid attendee {key}.")
                att[key] = item[key]
        for key in _ATTENDEE_BOOL:
            if item.get(key) is not None:
                att[key] = bool(item[key])
        if item.get("additionalGuests") is not None:
            if not isinstance(item["additionalGuests"], int) or isinstance(item["additionalGuests"], bool):
                raise _invalid("Invalid attendee additionalGuests.")
            att["additionalGuests"] = item["additionalGuests"]
        status = item.get("responseStatus") or "needsAction"
        if status not in _RESPONSE_STATUSES:
            raise _invalid("Invalid attendee responseStatus.")
        att["responseStatus"] = status
        out.append(att)
    return out


def _check_reminders(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid("Invalid reminders value.")
    out: dict[str, Any] = {"useDefault": bool(value.get("useDefault", False))}
    overrides = value.get("overrides")
    if overrides is not None:
        if not isinstance(overrides, list) or len(overrides) > 5:
            raise _invalid("Invalid reminder overrides: at most 5 are allowed.")
        checked = []
        for item in overrides:
            minutes = item.get("minutes") if isinstance(item, dict) else None
            method = item.get("method") if isinstance(item, dict) else None
            if method not in ("email", "popup") or not isinstance(minutes, int) or not 0 <= minutes <= 40320:
                raise _invalid("Invalid reminder override.")
            checked.append({"method": method, "minutes": minutes})
        if checked and out["useDefault"]:
            raise _invalid("Cannot specify both default reminders and overrides at the same time.")
        out["overrides"] = checked
    return out


def _check_string_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _invalid(f"Invalid extendedProperties.{what}: values must be strings.")
    return dict(value)


def _check_ext_props(value: Any) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict) or set(value) - {"private", "shared"}:
        raise _invalid("Invalid extendedProperties value.")
    return {k: _check_string_map(v, k) for k, v in value.items() if v is not None}


def _check_field(name: str, value: Any) -> Any:
    """Validate one writable field's value (already known not to be None)."""
    if name in _STR_FIELDS:
        if not isinstance(value, str):
            raise _invalid(f"Invalid value for {name}.")
        return value
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise _invalid(f"Invalid value for {name}.")
        return value
    if name in _ENUMS:
        if value not in _ENUMS[name]:
            raise _invalid(f"Invalid {name} value.")
        return value
    if name in ("start", "end"):
        return value  # checked with the calendar's zone in _check_times
    if name == "recurrence":
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise _invalid("Invalid recurrence rule.")
        return list(value)
    if name == "attendees":
        return _check_attendees(value)
    if name == "reminders":
        return _check_reminders(value)
    if name == "extendedProperties":
        return _check_ext_props(value)
    if name == "source":
        if not isinstance(value, dict) or not all(isinstance(value.get(k, ""), str) for k in ("title", "url")):
            raise _invalid("Invalid source value.")
        return {k: value[k] for k in ("title", "url") if k in value}
    raise AssertionError(name)


def _fresh_data(body: dict[str, Any]) -> dict[str, Any]:
    """Writable fields of a full body (insert, import, update): absent or null fields are unset."""
    return {k: _check_field(k, v) for k, v in body.items() if k in _WRITABLE and v is not None}


def _patched_data(old: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """PATCH: each given field replaces the stored one (null clears it); extended properties merge by key."""
    data = dict(old)
    for key, value in body.items():
        if key not in _WRITABLE:
            continue
        if value is None:
            data.pop(key, None)
        elif key == "extendedProperties":
            data[key] = _merge_ext_props(old.get(key, {}), value)
        else:
            data[key] = _check_field(key, value)
    return data


def _merge_ext_props(old: dict[str, dict[str, str]], patch: Any) -> dict[str, dict[str, str]]:
    if not isinstance(patch, dict) or set(patch) - {"private", "shared"}:
        raise _invalid("Invalid extendedProperties value.")
    merged = {k: dict(v) for k, v in old.items()}
    for scope, values in patch.items():
        if values is None:
            merged.pop(scope, None)
            continue
        if not isinstance(values, dict):
            raise _invalid(f"Invalid extendedProperties.{scope}.")
        target = merged.setdefault(scope, {})
        for key, value in values.items():
            if value is None:
                target.pop(key, None)
            elif isinstance(value, str):
                target[key] = value
            else:
                raise _invalid(f"Invalid extendedProperties.{scope}: values must be strings.")
    return merged


_ENTRY_POINT_STR = ("entryPointType", "uri", "label", "pin", "accessCode", "meetingCode", "passcode", "password",
                    "regionCode")


def _check_entry_point(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("entryPointType"), str) or \
            not isinstance(value.get("uri"), str):
        raise _invalid("Invalid conference entry point: entryPointType and uri are required.")
    out: dict[str, Any] = {}
    for key in _ENTRY_POINT_STR:
        if value.get(key) is not None:
            if not isinstance(value[key], str):
                raise _invalid(f"Invalid conference entry point {key}.")
            out[key] = value[key]
    features = value.get("entryPointFeatures")
    if features is not None:
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise _invalid("Invalid conference entry point features.")
        out["entryPointFeatures"] = list(features)
    return out


def _check_conference(value: dict[str, Any]) -> dict[str, Any]:
    """A copied ConferenceData (no createRequest): conferenceSolution and at least one entry point."""
    solution = value.get("conferenceSolution")
    entry_points = value.get("entryPoints")
    key = solution.get("key") if isinstance(solution, dict) else None
    if not isinstance(key, dict) or not isinstance(key.get("type"), str) or \
            not isinstance(entry_points, list) or not entry_points:
        raise _invalid("Invalid conference data: conferenceSolution and entryPoints are required.")
    out: dict[str, Any] = {}
    for name in ("conferenceId", "notes", "signature"):
        if value.get(name) is not None:
            if not isinstance(value[name], str):
                raise _invalid(f"Invalid conference data {name}.")
            out[name] = value[name]
    clean_solution: dict[str, Any] = {"key": {"type": key["type"]}}
    for name in ("name", "iconUri"):
        if solution.get(name) is not None:
            if not isinstance(solution[name], str):
                raise _invalid(f"Invalid conference solution {name}.")
            clean_solution[name] = solution[name]
    out["conferenceSolution"] = clean_solution
    out["entryPoints"] = [_check_entry_point(e) for e in entry_points]
    params = value.get("parameters")
    if params is not None:
        add_on = params.get("addOnParameters") if isinstance(params, dict) else None
        inner = add_on.get("parameters", {}) if isinstance(add_on, dict) else None
        if not isinstance(inner, dict) or not all(isinstance(v, str) for v in inner.values()):
            raise _invalid("Invalid conference parameters: addOnParameters.parameters must map strings to strings.")
        out["parameters"] = {"addOnParameters": {"parameters": dict(inner)}}
    return out


@dataclass
class _Times:
    start_ts: float
    end_ts: float
    span_end_ts: float
    compiled: _Series | None


def _check_times(data: dict[str, Any], cal_zone: ZoneInfo) -> _Times:
    """Normalize start/end in place and check the range and recurrence; returns the derived times."""
    if "start" not in data:
        raise _required("Missing start time.")
    if "end" not in data:
        raise _required("Missing end time.")
    data["start"], start_ts, start_all_day = _norm_edt(data["start"], "start", cal_zone)
    data["end"], end_ts, end_all_day = _norm_edt(data["end"], "end", cal_zone)
    if start_all_day != end_all_day:
        raise _invalid("Start and end times must either both be date or both be dateTime.")
    if end_ts < start_ts or (start_all_day and end_ts == start_ts):
        raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.", "calendar")
    compiled: _Series | None = None
    span_end = end_ts
    if data.get("recurrence"):
        if not start_all_day and "timeZone" not in data["start"]:
            raise _required("Missing time zone definition for start time.")
        try:
            compiled = _Series(data, cal_zone)
            span_end = compiled.span_end()
        except (ValueError, TypeError, OverflowError, ZoneInfoNotFoundError, KeyError):
            raise _invalid("Invalid recurrence rule.") from None
    return _Times(start_ts, end_ts, span_end, compiled)


# ---------------------------------------------------------------------------------------------
# The emulator


class GoogleEmulator:
    """All emulator state, in memory, guarded by one lock (HTTP handlers and tests share it)."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.RLock()
        self._seed = seed
        self.faults = FaultInjector(self._fault_response, default_prefix=API_PREFIX + "/", seed=seed)
        # `"after_commit": true` rules: the request is carried out, then its answer is replaced (a lost answer)
        self.commit_faults = FaultInjector(self._fault_response, default_prefix=API_PREFIX + "/", seed=seed)
        self.requests = RequestLog()
        self._write_depth = 0
        self._reset_state()
        self.push = PushHub(lambda: self.switches, seed=seed)

    # -- lifecycle ------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        self._signer = _Signer(os.urandom(32))
        self._calendars: dict[str, _Calendar] = {}
        self._owned: dict[str, list[str]] = {}
        self._etag_counter = 0
        self.switches: dict[str, Any] = dict(DEFAULT_SWITCHES)
        self._rng = random.Random(self._seed)
        self._dirty: set[str] = set()  # calendars whose events changed in the current write

    def reset(self) -> None:
        """Drop everything: users, calendars, events, tokens, faults, request log, switches, channels."""
        with self._lock:
            self._reset_state()
            self.push.reset()
        self.faults.clear()
        self.commit_faults.clear()
        self.requests.clear()

    @contextmanager
    def _changes(self) -> Iterator[None]:
        """Hold the lock for a write; afterwards notify watchers of each calendar it changed, once.

        Only ``_touch`` marks a calendar, and it runs after validation, so a failed write
        (400, 404, 412 ...) notifies nobody while a committed one always does.
        """
        with self._lock:
            self._write_depth += 1
            try:
                yield
            finally:
                self._write_depth -= 1
                if self._write_depth == 0 and self._dirty:
                    changed, self._dirty = self._dirty, set()
                    for cal_id in changed:
                        self.push.notify(cal_id, "exists")

    def set_switches(self, values: Any) -> dict[str, Any]:
        """Flip documented-variant behaviours; unknown names or bad values raise ValueError."""
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
        return _error_response(error_for_status(status, reason))

    # -- small helpers --------------------------------------------------------------------------

    def _next_etag(self) -> str:
        """Quoted, opaque, strictly increasing: every change gets a new one."""
        self._etag_counter = max(self._etag_counter + 1, time.time_ns() // 1000)
        return f'"{self._etag_counter}"'

    @staticmethod
    def user_email(token: str) -> str:
        """The user a bearer token names: the token itself if it looks like an email."""
        return token if "@" in token else f"{token}@example.com"

    def ensure_user(self, email: str) -> _Calendar:
        """Create the user's primary calendar on first sight; returns it."""
        with self._lock:
            cal = self._calendars.get(email)
            if cal is None:
                cal = self._new_calendar(email, email, primary=True, summary=email, time_zone="UTC")
            return cal

    def _new_calendar(self, cal_id: str, owner: str, primary: bool, summary: str, time_zone: str,
                      description: str | None = None, location: str | None = None) -> _Calendar:
        now = _fmt_ts(time.time())
        cal = _Calendar(cal_id, owner, primary, summary, time_zone, self._next_etag(), now,
                        description=description, location=location)
        cal.events_etag = cal.etag
        self._calendars[cal_id] = cal
        self._owned.setdefault(owner, []).append(cal_id)
        return cal

    def _calendar(self, user: str, ref: str) -> _Calendar:
        cal = self._calendars.get(user if ref == "primary" else ref)
        if cal is None or cal.owner != user:
            raise _not_found()
        return cal

    def _touch(self, cal: _Calendar, ev: _Event, now: float, now_text: str | None = None) -> None:
        """Record a change: new ETag and updated time, one change-log entry, caches dropped."""
        ev.etag = self._next_etag()
        ev.updated_ts = now
        ev.updated = now_text or _fmt_ts(now)
        cal.log.append(ev.id)
        ev.change_seq = len(cal.log)
        ev.cache.clear()
        cal.updated = ev.updated
        cal.events_etag = ev.etag
        self._dirty.add(cal.id)

    def _store_new(self, cal: _Calendar, ev: _Event, now: float, now_text: str | None = None) -> None:
        ev.ordinal = len(cal.order)
        cal.order.append(ev)
        cal.events[ev.id] = ev
        if ev.recurring_event_id is not None and ev.original_key is not None:
            cal.exceptions.setdefault(ev.recurring_event_id, {})[ev.original_key] = ev.id
        else:
            cal.ical_index[ev.ical_uid] = ev.id
        self._touch(cal, ev, now, now_text)

    def _new_event_id(self, cal: _Calendar) -> str:
        while True:
            candidate = _random_id()
            if candidate not in cal.events:
                return candidate

    # -- calendars ------------------------------------------------------------------------------

    def calendar_list(self, user: str, params: Params) -> dict[str, Any]:
        """users/me/calendarList: the user's calendars, primary first, offset-paged."""
        with self._lock:
            self.ensure_user(user)
            ids = self._owned.get(user, [])
            wanted = params.int("maxResults")
            limit = 100 if wanted is None else min(wanted, 250)
            if limit < 1:
                raise _invalid("Invalid value for: maxResults", "maxResults")
            offset = 0
            token = params.get("pageToken")
            if token is not None:
                payload = self._signer.open(token)
                if not isinstance(payload, dict) or payload.get("cl") != user:
                    raise _invalid("Invalid page token value.", "pageToken")
                offset = int(payload.get("o", 0))
            page = ids[offset: offset + limit]
            out: dict[str, Any] = {"kind": "calendar#calendarList", "etag": self._list_etag(ids),
                                   "items": [self._list_entry(self._calendars[c]) for c in page]}
            if offset + limit < len(ids):
                out["nextPageToken"] = self._signer.seal({"cl": user, "o": offset + limit})
            return out

    def _list_etag(self, ids: list[str]) -> str:
        digest = hashlib.sha1("|".join(self._calendars[c].etag for c in ids).encode()).hexdigest()
        return f'"{int(digest[:12], 16)}"'

    def calendar_list_get(self, user: str, ref: str) -> dict[str, Any]:
        with self._lock:
            return self._list_entry(self._calendar(user, ref))

    def insert_calendar(self, user: str, body: dict[str, Any]) -> dict[str, Any]:
        """calendars.insert: a secondary calendar with a server-generated group id."""
        with self._lock:
            fields = self._calendar_fields(body, None)
            cal_id = f"{_random_id()}@group.calendar.google.com"
            cal = self._new_calendar(cal_id, user, False, fields["summary"], fields.get("timeZone", "UTC"),
                                     fields.get("description"), fields.get("location"))
            return self._calendar_dict(cal)

    def get_calendar(self, user: str, ref: str) -> dict[str, Any]:
        with self._lock:
            return self._calendar_dict(self._calendar(user, ref))

    def write_calendar(self, user: str, ref: str, body: dict[str, Any], patch: bool) -> dict[str, Any]:
        """calendars.patch / calendars.update."""
        with self._lock:
            cal = self._calendar(user, ref)
            fields = self._calendar_fields(body, cal if patch else None)
            cal.summary = fields["summary"]
            cal.time_zone = fields.get("timeZone", cal.time_zone)
            cal.description = fields.get("description")
            cal.location = fields.get("location")
            cal.etag = self._next_etag()
            return self._calendar_dict(cal)

    def delete_calendar(self, user: str, ref: str) -> None:
        with self._lock:
            cal = self._calendar(user, ref)
            if cal.primary:
                raise ApiError(400, "cannotDeletePrimaryCalendar", "Cannot delete primary calendar; use clear instead.")
            del self._calendars[cal.id]
            self._owned[user].remove(cal.id)
            self.push.notify(cal.id, "not_exists")

    @staticmethod
    def _calendar_fields(body: dict[str, Any], base: _Calendar | None) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if base is not None:
            fields = {"summary": base.summary, "timeZone": base.time_zone}
            if base.description is not None:
                fields["description"] = base.description
            if base.location is not None:
                fields["location"] = base.location
        for key in ("summary", "description", "location", "timeZone"):
            if key not in body:
                continue
            value = body[key]
            if value is None:
                fields.pop(key, None)
            elif not isinstance(value, str):
                raise _invalid(f"Invalid value for {key}.")
            else:
                fields[key] = value
        if not fields.get("summary"):
            raise _required("Missing title.")
        if "timeZone" in fields:
            _zone(fields["timeZone"], "calendar")
        return fields

    @staticmethod
    def _calendar_dict(cal: _Calendar) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "calendar#calendar", "etag": cal.etag, "id": cal.id, "summary": cal.summary}
        if cal.description is not None:
            out["description"] = cal.description
        if cal.location is not None:
            out["location"] = cal.location
        out["timeZone"] = cal.time_zone
        out["conferenceProperties"] = {"allowedConferenceSolutionTypes": ["hangoutsMeet"]}
        return out

    @staticmethod
    def _list_entry(cal: _Calendar) -> dict[str, Any]:
        out = GoogleEmulator._calendar_dict(cal)
        out["kind"] = "calendar#calendarListEntry"
        out.update({"colorId": "14", "backgroundColor": "#9fe1e7", "foregroundColor": "#000000",
                    "selected": True, "accessRole": "owner", "defaultReminders": []})
        if cal.primary:
            out["primary"] = True
        return out

    # -- event rendering ------------------------------------------------------------------------

    @staticmethod
    def _html_link(cal_id: str, event_id: str) -> str:
        eid = base64.urlsafe_b64encode(f"{event_id} {cal_id}".encode()).decode().rstrip("=")
        return f"https://www.google.com/calendar/event?eid={eid}"

    def _event_dict(self, cal: _Calendar, ev: _Event) -> dict[str, Any]:
        """The full Event resource, fields in Google's usual order, only fields the schema knows."""
        data = ev.data
        out: dict[str, Any] = {"kind": "calendar#event", "etag": ev.etag, "id": ev.id, "status": ev.status,
                               "htmlLink": self._html_link(cal.id, ev.id), "created": ev.created,
                               "updated": ev.updated}
        for key in ("summary", "description", "location", "colorId"):
            if key in data:
                out[key] = data[key]
        out["creator"] = ev.creator
        out["organizer"] = ev.organizer
        for key in ("start", "end", "endTimeUnspecified"):
            if key in data:
                out[key] = data[key]
        if ev.recurring_event_id is None and data.get("recurrence"):
            out["recurrence"] = data["recurrence"]
        if ev.recurring_event_id is not None:
            out["recurringEventId"] = ev.recurring_event_id
            out["originalStartTime"] = ev.original_start
        for key in ("transparency", "visibility"):
            if key in data:
                out[key] = data[key]
        out["iCalUID"] = ev.ical_uid
        out["sequence"] = ev.sequence
        for key in ("attendees", "anyoneCanAddSelf", "guestsCanInviteOthers", "guestsCanModify",
                    "guestsCanSeeOtherGuests", "privateCopy"):
            if key in data:
                out[key] = data[key]
        conference = data.get("conferenceData")
        if conference:
            link = self._meet_link(conference)
            if link:
                out["hangoutLink"] = link
            out["conferenceData"] = conference
        out["reminders"] = data.get("reminders", {"useDefault": True})
        for key in ("extendedProperties", "source"):
            if key in data:
                out[key] = data[key]
        out["eventType"] = data.get("eventType", "default")
        return out

    @staticmethod
    def _meet_link(conference: dict[str, Any]) -> str | None:
        if ((conference.get("conferenceSolution") or {}).get("key") or {}).get("type") != "hangoutsMeet":
            return None
        for entry in conference.get("entryPoints") or []:
            if entry.get("entryPointType") == "video":
                return entry.get("uri")
        return None

    @staticmethod
    def _minimal_dict(ev: _Event) -> dict[str, Any]:
        """A tombstone as incremental results show it: only id (+ series keys for instances)."""
        out: dict[str, Any] = {"kind": "calendar#event", "etag": ev.etag, "id": ev.id, "status": "cancelled"}
        if ev.recurring_event_id is not None:
            out["recurringEventId"] = ev.recurring_event_id
            out["originalStartTime"] = ev.original_start
        return out

    def _fragment(self, cal: _Calendar, ev: _Event, full: bool) -> str:
        """Cached JSON text of an event, so listing 2500 unchanged events costs almost nothing."""
        variant = "full" if full or not ev.cancelled else "min"
        text = ev.cache.get(variant)
        if text is None:
            obj = self._event_dict(cal, ev) if variant == "full" else self._minimal_dict(ev)
            text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
            ev.cache[variant] = text
        return text

    def _instance_dict(self, cal: _Calendar, series: _Event, occ: _Occ, full: bool) -> dict[str, Any]:
        """A generated instance of a series (no stored exception for it)."""
        iid = f"{series.id}_{occ.suffix}"
        if series.cancelled and not full:
            return {"kind": "calendar#event", "etag": series.etag, "id": iid, "status": "cancelled",
                    "recurringEventId": series.id, "originalStartTime": occ.start_json}
        out = self._event_dict(cal, series)
        out.pop("recurrence", None)
        out["id"] = iid
        out["htmlLink"] = self._html_link(cal.id, iid)
        out["start"] = occ.start_json
        out["end"] = occ.end_json
        rebuilt: dict[str, Any] = {}
        for key, value in out.items():
            rebuilt[key] = value
            if key == "end":
                rebuilt["recurringEventId"] = series.id
                rebuilt["originalStartTime"] = occ.start_json
        return rebuilt

    # -- event lookup ---------------------------------------------------------------------------

    def _virtual(self, cal: _Calendar, event_id: str) -> tuple[_Event, _Occ] | None:
        """Resolve ``<seriesId>_<start>`` to a live series and an occurrence it generates."""
        base, sep, suffix = event_id.rpartition("_")
        series = cal.events.get(base) if sep else None
        if series is None or not series.is_series or series.cancelled:
            return None
        occ = self._compiled(cal, series).find(suffix)
        return (series, occ) if occ is not None else None

    def _compiled(self, cal: _Calendar, series: _Event) -> _Series:
        if series.compiled is None:
            series.compiled = _Series(series.data, cal.zone)
        return series.compiled

    def _materialize(self, cal: _Calendar, series: _Event, occ: _Occ, event_id: str) -> _Event:
        """An exception event (not yet stored) copying the series for one occurrence."""
        data = {k: v for k, v in series.data.items() if k != "recurrence"}
        data["start"], data["end"] = dict(occ.start_json), dict(occ.end_json)
        ev = _Event(event_id, -1, data, series.ical_uid, _fmt_ts(time.time()), series.creator,
                    series.organizer, sequence=series.sequence, etag=series.etag,
                    recurring_event_id=series.id, original_start=dict(occ.start_json), original_key=occ.key)
        ev.conference_request_ids = set(series.conference_request_ids)
        return ev

    # -- event reads ----------------------------------------------------------------------------

    def get_event(self, user: str, cal_ref: str, event_id: str, if_none_match: str | None = None) -> dict[str, Any]:
        """events.get: deleted events come back with status cancelled; If-None-Match may give 304."""
        with self._lock:
            cal = self._calendar(user, cal_ref)
            ev = cal.events.get(event_id)
            if ev is not None:
                etag, result = ev.etag, self._event_dict(cal, ev)
            else:
                virtual = self._virtual(cal, event_id)
                if virtual is None:
                    raise _not_found()
                etag, result = virtual[0].etag, self._instance_dict(cal, virtual[0], virtual[1], True)
            if if_none_match is not None and _etag_matches(if_none_match, etag):
                raise _NotModified(etag)
            return result

    # -- event writes ---------------------------------------------------------------------------

    def insert_event(self, user: str, cal_ref: str, body: Any, params: Params, import_: bool = False) -> dict[str, Any]:
        """events.insert and events.import (import updates the event with the same iCalUID)."""
        with self._changes():
            cal = self._calendar(user, cal_ref)
            if not isinstance(body, dict):
                raise _invalid("Invalid event body.")
            version = _conference_version(params)
            ical_uid = body.get("iCalUID")
            if ical_uid is not None and (not isinstance(ical_uid, str) or not ical_uid):
                raise _invalid("Invalid iCalUID value.", "iCalUID")
            if import_ and ical_uid is None:
                raise _required("Missing iCalUID.", "iCalUID")
            if import_ and ical_uid in cal.ical_index:
                existing = cal.events[cal.ical_index[ical_uid]]
                return self._write(cal, existing, body, version, patch=False, import_=True)
            event_id = self._checked_new_id(cal, body.get("id"))
            if not import_ and ical_uid is not None and ical_uid in cal.ical_index:
                raise ApiError(409, "duplicate", "The requested identifier already exists.")
            data = _fresh_data(body)
            times = _check_times(data, cal.zone)
            now = time.time()
            request_ids: set[str] = set()
            self._apply_conference(data, request_ids, body, version, mode="insert")
            ev = _Event(event_id, -1, data, ical_uid or f"{event_id}@google.com", _fmt_ts(now),
                        {"email": user, "self": True}, self._organizer(cal, body if import_ else None),
                        sequence=self._client_sequence(body, 0), conference_request_ids=request_ids)
            self._apply_times(ev, times)
            self._store_new(cal, ev, now)
            return self._event_dict(cal, ev)

    def _checked_new_id(self, cal: _Calendar, wanted: Any) -> str:
        if wanted is None:
            return self._new_event_id(cal)
        if not isinstance(wanted, str) or not _CLIENT_ID_RE.match(wanted):
            raise _invalid("Invalid resource id value.", "id")
        if wanted in cal.events:
            raise ApiError(409, "duplicate", "The requested identifier already exists.")
        return wanted

    @staticmethod
    def _organizer(cal: _Calendar, body: dict[str, Any] | None) -> dict[str, Any]:
        given = (body or {}).get("organizer")
        if isinstance(given, dict) and isinstance(given.get("email"), str) and given["email"]:
            out = {"email": given["email"]}
            if isinstance(given.get("displayName"), str):
                out["displayName"] = given["displayName"]
            if given["email"] == cal.id:
                out["self"] = True
            return out
        if cal.primary:
            return {"email": cal.id, "self": True}
        return {"email": cal.id, "displayName": cal.summary, "self": True}

    @staticmethod
    def _client_sequence(body: dict[str, Any], current: int) -> int:
        value = body.get("sequence")
        if value is None:
            return current
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
            raise _invalid("Invalid sequence value.", "sequence")
        return max(value, current)

    @staticmethod
    def _apply_times(ev: _Event, times: _Times) -> None:
        ev.start_ts, ev.end_ts, ev.span_end_ts = times.start_ts, times.end_ts, times.span_end_ts
        ev.compiled = times.compiled

    def write_event(self, user: str, cal_ref: str, event_id: str, body: Any, params: Params,
                    if_match: str | None, patch: bool) -> dict[str, Any]:
        """events.update (PUT) and events.patch; an instance id creates the exception on first write."""
        with self._changes():
            cal = self._calendar(user, cal_ref)
            if not isinstance(body, dict):
                raise _invalid("Invalid event body.")
            version = _conference_version(params)
            ev = cal.events.get(event_id)
            fresh = None
            if ev is None:
                virtual = self._virtual(cal, event_id)
                if virtual is None:
                    raise _not_found()
                fresh = self._materialize(cal, virtual[0], virtual[1], event_id)
                ev = fresh
            if if_match is not None and not _etag_matches(if_match, ev.etag):
                raise _precondition_failed()
            return self._write(cal, ev, body, version, patch=patch, import_=False, fresh=fresh is not None)

    def _write(self, cal: _Calendar, ev: _Event, body: dict[str, Any], version: int, patch: bool,
               import_: bool, fresh: bool = False) -> dict[str, Any]:
        """Apply an update/patch/import body to ``ev``; everything is validated before anything changes."""
        data = _patched_data(ev.data, body) if patch else _fresh_data(body)
        if ev.recurring_event_id is not None:
            data.pop("recurrence", None)  # an exception cannot become a series
        times = _check_times(data, cal.zone)
        if "conferenceData" in ev.data:
            data["conferenceData"] = ev.data["conferenceData"]
        request_ids = set(ev.conference_request_ids)
        self._apply_conference(data, request_ids, body, version, mode="patch" if patch else "update")
        changed = any(ev.data.get(k) != data.get(k) for k in _SCHEDULE_FIELDS)
        sequence = self._client_sequence(body, ev.sequence + (1 if changed else 0))
        organizer = self._organizer(cal, body) if import_ and "organizer" in body else ev.organizer
        was_cancelled = ev.cancelled and not fresh
        ev.data, ev.conference_request_ids, ev.sequence, ev.organizer = data, request_ids, sequence, organizer
        self._apply_times(ev, times)
        now = time.time()
        if fresh:
            self._store_new(cal, ev, now)
        else:
            self._touch(cal, ev, now)
        if ev.cancelled and not was_cancelled and ev.is_series:
            self._cancel_exceptions(cal, ev, now)
        return self._event_dict(cal, ev)

    def delete_event(self, user: str, cal_ref: str, event_id: str, if_match: str | None) -> None:
        """events.delete: leaves a cancelled tombstone; deleting a series cancels its exceptions."""
        with self._changes():
            cal = self._calendar(user, cal_ref)
            ev = cal.events.get(event_id)
            now = time.time()
            if ev is None:
                virtual = self._virtual(cal, event_id)
                if virtual is None:
                    raise _not_found()
                if if_match is not None and not _etag_matches(if_match, virtual[0].etag):
                    raise _precondition_failed()
                fresh = self._materialize(cal, virtual[0], virtual[1], event_id)
                fresh.data["status"] = "cancelled"
                self._store_new(cal, fresh, now)
                return
            if ev.cancelled:
                raise _deleted()
            if if_match is not None and not _etag_matches(if_match, ev.etag):
                raise _precondition_failed()
            ev.data = {**ev.data, "status": "cancelled"}
            self._touch(cal, ev, now)
            if ev.is_series:
                self._cancel_exceptions(cal, ev, now)

    def _cancel_exceptions(self, cal: _Calendar, series: _Event, now: float) -> None:
        for exc_id in cal.exceptions.get(series.id, {}).values():
            exc = cal.events[exc_id]
            if not exc.cancelled:
                exc.data = {**exc.data, "status": "cancelled"}
                self._touch(cal, exc, now)

    # -- conference data ------------------------------------------------------------------------

    def _apply_conference(self, data: dict[str, Any], request_ids: set[str], body: dict[str, Any],
                          version: int, mode: str) -> None:
        """conferenceData is honoured only with conferenceDataVersion=1, as Google documents."""
        if version != 1:
            return
        if "conferenceData" not in body:
            if mode == "update":
                data.pop("conferenceData", None)
            return
        incoming = body["conferenceData"]
        if not incoming:
            data.pop("conferenceData", None)
            return
        if not isinstance(incoming, dict):
            raise _invalid("Invalid conference data.")
        request = incoming.get("createRequest")
        if isinstance(request, dict):
            self._conference_create(data, request_ids, request)
        else:
            self._conference_copy(data, incoming)

    def _conference_create(self, data: dict[str, Any], request_ids: set[str], request: dict[str, Any]) -> None:
        """createRequest: a Meet conference for hangoutsMeet; a repeated requestId is ignored."""
        request_id = request.get("requestId")
        if not isinstance(request_id, str) or not request_id:
            raise _required("Missing conference create request id.")
        if request_id in request_ids:
            return
        request_ids.add(request_id)
        key = request.get("conferenceSolutionKey")
        kind = key.get("type") if isinstance(key, dict) else None
        outcome = self.switches["conference_create_status"] if kind == "hangoutsMeet" else "failure"
        create = {"requestId": request_id, "conferenceSolutionKey": {"type": kind if isinstance(kind, str) else ""},
                  "status": {"statusCode": outcome}}
        if outcome != "success":
            data["conferenceData"] = {"createRequest": create}
            return
        code = "-".join("".join(self._rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n)) for n in (3, 4, 3))
        data["conferenceData"] = {
            "createRequest": create,
            "entryPoints": [{"entryPointType": "video", "uri": f"https://meet.google.com/{code}",
                             "label": f"meet.google.com/{code}"}],
            "conferenceSolution": {"key": {"type": "hangoutsMeet"}, "name": "Google Meet", "iconUri": _MEET_ICON},
            "conferenceId": code,
            "signature": self._signer.sign_text("meet:" + code),
        }

    def _conference_copy(self, data: dict[str, Any], incoming: dict[str, Any]) -> None:
        """Copy conference data as given; Meet data is only accepted with the signature we issued."""
        conference = _check_conference(incoming)
        if conference["conferenceSolution"]["key"]["type"] == "hangoutsMeet":
            code = conference.get("conferenceId", "")
            if conference.get("signature") != self._signer.sign_text("meet:" + code):
                return  # Meet data without our signature is not copied
        data["conferenceData"] = conference

    # -- listing --------------------------------------------------------------------------------

    def list_events(self, user: str, cal_ref: str, params: Params) -> str:
        """events.list: full or incremental, keyset-paged; returns the response JSON text."""
        with self._lock:
            cal = self._calendar(user, cal_ref)
            query = self._list_query(cal, params)
            sync_seq = self._open_sync_token(cal, query.sync_token) if query.sync_token else None
            page = self._open_page_token(cal, query) if query.page_token else None
            high_water, epoch = (page["h"], page["e"]) if page else (cal.seq, cal.epoch)
            after = page["k"] if page else None
            now = time.time()
            if sync_seq is not None:
                stream = self._log_stream(cal, query, sync_seq, after, incremental=True, now=now)
            elif query.order_by == "updated":
                stream = self._log_stream(cal, query, 0, after, incremental=False, now=now)
            elif query.order_by == "startTime":
                stream = self._start_time_stream(cal, query, after, now)
            else:
                stream = self._ordinal_stream(cal, query, after, now)
            items, next_key = _take_page(stream, query.max_results, self.switches["page_scan_limit"])
            meta = self._events_meta(cal)
            if next_key is not None:
                meta["nextPageToken"] = self._signer.seal(
                    {"c": cal.id, "q": query.qhash, "k": next_key, "h": high_water, "e": epoch})
            elif not (self.switches["no_sync_token_with_order_or_q"] and (query.order_by or query.text)):
                meta["nextSyncToken"] = self._sync_token(cal, query.sync_token, sync_seq, high_water, epoch, now)
            return _collection_json(meta, items)

    def list_instances(self, user: str, cal_ref: str, event_id: str, params: Params) -> str:
        """events.instances: the occurrences of one series, exceptions merged, keyset-paged."""
        with self._lock:
            cal = self._calendar(user, cal_ref)
            series = cal.events.get(event_id)
            if series is None:
                raise _not_found()
            time_min, time_max = params.time("timeMin"), params.time("timeMax")
            if time_min is not None and time_max is not None and time_max <= time_min:
                raise _time_range_empty()
            show_deleted = bool(params.bool("showDeleted", False))
            max_results = _max_results(params)
            qhash = params.semantic_hash(f"instances:{cal.id}:{event_id}")
            after = None
            token = params.get("pageToken")
            if token is not None:
                payload = self._signer.open(token)
                if not isinstance(payload, dict) or payload.get("q") != qhash:
                    raise _invalid("Invalid page token value.", "pageToken")
                after = payload["k"]
            original = params.time("originalStart")
            query = _ListQuery(max_results, token, None, True, show_deleted, None, time_min, time_max, None,
                               None, None, [], [], qhash)
            stream = self._instances_stream(cal, series, query, after, original)
            items, next_key = _take_page(stream, max_results, self.switches["page_scan_limit"])
            meta = self._events_meta(cal)
            if next_key is not None:
                meta["nextPageToken"] = self._signer.seal({"q": qhash, "k": next_key})
            return _collection_json(meta, items)

    def _instances_stream(self, cal: _Calendar, series: _Event, query: _ListQuery, after: Any,
                          original: float | None) -> Iterator[tuple[Any, Callable[[], str] | None]]:
        if not series.is_series:
            return
        after_key = after[0] if after else None
        for inst in self._expand(cal, series, query, after_key, merge=True,
                                 include_cancelled=query.show_deleted, full=query.show_deleted,
                                 now=time.time()):
            if original is not None and inst.key != original:
                yield [inst.key], None
                continue
            yield [inst.key], inst.produce

    def _list_query(self, cal: _Calendar, params: Params) -> _ListQuery:
        """Validate events.list parameters in the order Google reports them."""
        max_results = _max_results(params)
        sync_token = params.get("syncToken")
        time_min, time_max = params.time("timeMin"), params.time("timeMax")
        updated_min = params.time("updatedMin", keep_ms=True)
        show_deleted_given = params.bool("showDeleted")
        single_events = bool(params.bool("singleEvents", False))
        if sync_token is not None:
            restricted = [p for p in _SYNC_RESTRICTED if p in params]
            if restricted or show_deleted_given is False:
                raise _invalid("Sync token cannot be used with other request restrictions.",
                               reason=self.switches["sync_token_restriction_reason"])
        order_by = params.get("orderBy")
        if order_by is not None and order_by not in ("startTime", "updated"):
            raise _invalid("Invalid value for: orderBy", "orderBy")
        if order_by == "startTime" and not single_events:
            raise _invalid("The requested ordering is not available for the particular query.", "orderBy")
        if time_min is not None and time_max is not None and time_max <= time_min:
            raise _time_range_empty()
        horizon = self.switches["updated_min_horizon_seconds"]
        if updated_min is not None and horizon is not None and updated_min < time.time() - horizon:
            raise ApiError(410, "updatedMinTooLongAgo",
                           "The requested minimum modification time lies too far in the past.",
                           "calendar", "parameter", "updatedMin")
        return _ListQuery(
            max_results=max_results, page_token=params.get("pageToken"), sync_token=sync_token,
            single_events=single_events, show_deleted=bool(show_deleted_given), order_by=order_by,
            time_min=time_min, time_max=time_max, updated_min=updated_min, text=params.get("q") or None,
            ical_uid=params.get("iCalUID"), private_props=_prop_filters(params, "privateExtendedProperty"),
            shared_props=_prop_filters(params, "sharedExtendedProperty"),
            qhash=params.semantic_hash(f"events:{cal.id}"),
        )

    def _open_sync_token(self, cal: _Calendar, token: str) -> int:
        """The change sequence a sync token names, or 410 when it is forged, foreign or invalidated."""
        payload = self._signer.open(token)
        if not isinstance(payload, dict) or payload.get("t") != "s" or payload.get("c") != cal.id:
            raise _full_sync_required()
        if payload.get("e") != cal.epoch or not isinstance(payload.get("s"), int) or not 0 <= payload["s"] <= cal.seq:
            raise _full_sync_required()
        ttl = self.switches["sync_token_ttl_seconds"]
        if ttl is not None and time.time() - payload.get("i", 0) / 1000.0 > ttl:
            raise _full_sync_required()
        return payload["s"]

    def _sync_token(self, cal: _Calendar, given: str | None, given_seq: int | None, seq: int, epoch: int,
                    now: float) -> str:
        """nextSyncToken: the same string back when nothing changed since the token given."""
        if given is not None and given_seq == seq and epoch == cal.epoch:
            return given
        return self._signer.seal({"t": "s", "c": cal.id, "e": epoch, "s": seq, "i": int(now * 1000)})

    def _open_page_token(self, cal: _Calendar, query: _ListQuery) -> dict[str, Any]:
        payload = self._signer.open(query.page_token or "")
        if not isinstance(payload, dict) or payload.get("c") != cal.id or payload.get("q") != query.qhash:
            raise _invalid("Invalid page token value: it does not belong to this query.", "pageToken")
        return payload

    def _events_meta(self, cal: _Calendar) -> dict[str, Any]:
        meta: dict[str, Any] = {"kind": "calendar#events", "etag": cal.events_etag, "summary": cal.summary}
        if cal.description is not None:
            meta["description"] = cal.description
        meta.update({"updated": cal.updated, "timeZone": cal.time_zone, "accessRole": "owner",
                     "defaultReminders": []})
        return meta

    # -- streams: each yields (resume key, producer or None for a scanned-but-filtered candidate) --

    def _ordinal_stream(self, cal: _Calendar, query: _ListQuery, after: Any,
                        now: float) -> Iterator[tuple[Any, Callable[[], str] | None]]:
        """Full listing in creation order; keys are [ordinal, instance key or None]."""
        start, after_sub = (0, None) if after is None else (after[0] + (1 if after[1] is None else 0), after[1])
        order = cal.order
        for i in range(start, len(order)):
            ev = order[i]
            sub = after_sub if after is not None and i == after[0] else None
            if query.single_events and ev.recurring_event_id is not None and ev.recurring_event_id in cal.events:
                yield [i, None], None  # exceptions are merged into their series' expansion
            elif query.single_events and ev.is_series:
                emitted = False
                for inst in self._expand(cal, ev, query, sub, merge=True, include_cancelled=query.show_deleted,
                                         full=query.show_deleted, now=now):
                    emitted = True
                    yield [i, inst.key], inst.produce
                if not emitted:
                    yield [i, None], None
            else:
                yield [i, None], self._plain_producer(cal, ev, query, incremental=False)

    def _log_stream(self, cal: _Calendar, query: _ListQuery, from_seq: int, after: Any, incremental: bool,
                    now: float) -> Iterator[tuple[Any, Callable[[], str] | None]]:
        """Changes in sequence order (incremental sync, orderBy=updated); keys are [seq, instance key]."""
        if after is None:
            start, after_sub = from_seq + 1, None
        else:
            start, after_sub = after[0] + (1 if after[1] is None else 0), after[1]
        log_ = cal.log
        for seq in range(start, len(log_) + 1):
            ev = cal.events[log_[seq - 1]]
            if ev.change_seq != seq:
                yield [seq, None], None  # superseded by a later change of the same event
                continue
            sub = after_sub if after is not None and seq == after[0] else None
            if query.single_events and ev.is_series:
                emitted = False
                for inst in self._expand(cal, ev, query, sub, merge=False,
                                         include_cancelled=incremental or query.show_deleted,
                                         full=query.show_deleted, now=now, filtered=not incremental):
                    emitted = True
                    yield [seq, inst.key], inst.produce
                if not emitted:
                    yield [seq, None], None
            else:
                yield [seq, None], self._plain_producer(cal, ev, query, incremental=incremental)

    def _start_time_stream(self, cal: _Calendar, query: _ListQuery, after: Any,
                           now: float) -> Iterator[tuple[Any, Callable[[], str] | None]]:
        """orderBy=startTime (singleEvents only): everything sorted by (start, id)."""
        entries: list[tuple[float, str, Callable[[], str]]] = []
        for ev in cal.order:
            if ev.recurring_event_id is not None and ev.recurring_event_id in cal.events:
                continue
            if ev.is_series:
                for inst in self._expand(cal, ev, query, None, merge=True, include_cancelled=query.show_deleted,
                                         full=query.show_deleted, now=now):
                    entries.append((inst.start_ts, inst.id, inst.produce))
            else:
                produce = self._plain_producer(cal, ev, query, incremental=False)
                if produce is not None:
                    entries.append((ev.start_ts, ev.id, produce))
        entries.sort(key=lambda e: (e[0], e[1]))
        for start_ts, eid, produce in entries:
            if after is not None and (start_ts, eid) <= (after[0], after[1]):
                continue
            yield [start_ts, eid], produce

    def _plain_producer(self, cal: _Calendar, ev: _Event, query: _ListQuery,
                        incremental: bool) -> Callable[[], str] | None:
        """Producer for a stored event as itself, or None when the query hides it."""
        if incremental:
            return lambda: self._fragment(cal, ev, query.show_deleted)
        if query.updated_min is not None and ev.updated_ts < query.updated_min:
            return None
        if ev.cancelled and not self._cancelled_visible(cal, ev, query):
            return None
        if not self._in_window(ev.start_ts, ev.span_end_ts if ev.is_series else ev.end_ts, query):
            return None
        if not _content_match(ev.data, ev.ical_uid, query):
            return None
        return lambda: self._fragment(cal, ev, query.show_deleted)

    @staticmethod
    def _cancelled_visible(cal: _Calendar, ev: _Event, query: _ListQuery) -> bool:
        """Google's showDeleted x singleEvents rules for a cancelled event in a full listing."""
        if query.show_deleted or query.updated_min is not None:
            return not (query.single_events and ev.is_series)
        if query.single_events or ev.recurring_event_id is None:
            return False
        series = cal.events.get(ev.recurring_event_id)
        return series is not None and not series.cancelled  # cancelled instance of a live series

    @staticmethod
    def _in_window(start_ts: float, end_ts: float, query: _ListQuery) -> bool:
        """timeMin bounds the END, timeMax the START, both exclusive."""
        if query.time_min is not None and end_ts <= query.time_min:
            return False
        return query.time_max is None or start_ts < query.time_max

    def _expand(self, cal: _Calendar, series: _Event, query: _ListQuery, after_key: float | None, merge: bool,
                include_cancelled: bool, full: bool, now: float, filtered: bool = True) -> Iterator[_Inst]:
        """Instances of a series by original start; stored exceptions replace (merge) or are left out."""
        if series.cancelled and not include_cancelled:
            return
        series_ok = not filtered or (_content_match(series.data, series.ical_uid, query) and
                                     (query.updated_min is None or series.updated_ts >= query.updated_min))
        exceptions = cal.exceptions.get(series.id, {})
        items: dict[float, _Inst] = {}
        if series_ok:
            window = (query.time_min, query.time_max) if filtered else (None, None)
            for occ in self._compiled(cal, series).occurrences(window[0], window[1], now):
                if occ.key not in exceptions:
                    items[occ.key] = _Inst(occ.key, occ.key, f"{series.id}_{occ.suffix}",
                                           _instance_producer(self, cal, series, occ, full))
        if merge:
            for key, exc_id in exceptions.items():
                exc = cal.events[exc_id]
                if exc.cancelled and not include_cancelled:
                    continue
                if query.updated_min is not None and exc.updated_ts < query.updated_min:
                    continue
                if not self._in_window(exc.start_ts, exc.end_ts, query):
                    continue
                if _content_match(exc.data, exc.ical_uid, query):
                    items[key] = _Inst(key, exc.start_ts, exc.id, _fragment_producer(self, cal, exc, full))
        for key in sorted(items):
            if after_key is None or key > after_key:
                yield items[key]

    # -- push notifications ---------------------------------------------------------------------

    def watch_events(self, user: str, cal_ref: str, body: dict[str, Any], base_url: str) -> dict[str, Any]:
        """events.watch: open a channel on a calendar the user owns; its sync message is queued at once."""
        with self._lock:
            cal = self._calendar(user, cal_ref)
            uri = f"{base_url}{API_PREFIX}/calendars/{quote(cal_ref, safe='@')}/events?alt=json"
            try:
                request = parse_watch(body, int(time.time() * 1000), bool(self.switches["push_allow_http"]),
                                      int(self.switches["push_max_ttl_seconds"]))
                return self.push.open_channel(request, cal.id, user, uri).resource()
            except PushError as err:
                raise _push_api_error(err) from None

    def stop_channel(self, user: str, body: dict[str, Any]) -> None:
        """channels.stop: only the user who created the channel may stop it."""
        try:
            self.push.stop(body, user)
        except PushError as err:
            raise _push_api_error(err) from None

    # -- seeding --------------------------------------------------------------------------------

    def seed(self, calendar_id: str, spec: Any) -> int:
        """Create ``count`` realistic events in one go (benchmarks need 100,000 in seconds)."""
        options = _seed_options(spec)
        with self._changes():
            cal = self._calendars.get(calendar_id)
            if cal is None and _is_user_email(calendar_id):
                cal = self.ensure_user(calendar_id)
            if cal is None:
                raise _not_found()
            _Seeder(self, cal, options).run()
            return options["count"]

    def invalidate_tokens(self, calendar_id: str) -> int:
        """Every sync token issued for the calendar now answers 410; returns the new epoch."""
        with self._lock:
            cal = self._calendars.get(calendar_id)
            if cal is None:
                raise _not_found()
            cal.epoch += 1
            return cal.epoch


# ---------------------------------------------------------------------------------------------
# Listing helpers


@dataclass(slots=True)
class _Inst:
    """One instance in an expansion: original-start key, actual start, id, and its JSON producer."""

    key: float
    start_ts: float
    id: str
    produce: Callable[[], str]


def _instance_producer(emu: GoogleEmulator, cal: _Calendar, series: _Event, occ: _Occ,
                       full: bool) -> Callable[[], str]:
    return lambda: json.dumps(emu._instance_dict(cal, series, occ, full), separators=(",", ":"), ensure_ascii=False)


def _fragment_producer(emu: GoogleEmulator, cal: _Calendar, ev: _Event, full: bool) -> Callable[[], str]:
    return lambda: emu._fragment(cal, ev, full)


def _content_match(data: dict[str, Any], ical_uid: str, query: _ListQuery) -> bool:
    """iCalUID, q (substring over text fields) and extended-property filters (all must match)."""
    if not query.has_content_filters:
        return True
    if query.ical_uid is not None and ical_uid != query.ical_uid:
        return False
    ext = data.get("extendedProperties") or {}
    for scope, wanted in (("private", query.private_props), ("shared", query.shared_props)):
        values = ext.get(scope) or {}
        if any(values.get(k) != v for k, v in wanted):
            return False
    if query.text:
        return query.text.lower() in _search_text(data)
    return True


def _search_text(data: dict[str, Any]) -> str:
    parts = [data.get(k) or "" for k in ("summary", "description", "location")]
    for att in data.get("attendees") or []:
        parts.append(att.get("email", ""))
        parts.append(att.get("displayName", ""))
    return "\n".join(parts).lower()


def _take_page(stream: Iterator[tuple[Any, Callable[[], str] | None]], limit: int,
               scan_limit: int | None) -> tuple[list[str], Any | None]:
    """Fill a page from a keyset stream; returns the items and the resume key (None when done)."""
    items: list[str] = []
    last: Any = None
    scanned = 0
    for key, produce in stream:
        if produce is not None:
            if len(items) >= limit:
                return items, last
            items.append(produce())
        last = key
        scanned += 1
        if scan_limit is not None and scanned >= scan_limit:
            return items, last
    return items, None


def _collection_json(meta: dict[str, Any], items: list[str]) -> str:
    head = json.dumps(meta, separators=(",", ":"), ensure_ascii=False)
    return head[:-1] + ',"items":[' + ",".join(items) + "]}"


def _etag_matches(header: str, etag: str) -> bool:
    """If-Match / If-None-Match comparison: ``*`` or any listed ETag equal to the current one."""
    candidates = [c.strip() for c in header.split(",")]
    return any(c == "*" or c == etag or c.removeprefix("W/") == etag for c in candidates)


def _conference_version(params: Params) -> int:
    value = params.int("conferenceDataVersion")
    if value is None:
        return 0
    if value not in (0, 1):
        raise _invalid("Invalid value for: conferenceDataVersion. Values must be within the range: [0, 1]",
                       "conferenceDataVersion")
    return value


def _push_api_error(err: PushError) -> ApiError:
    return ApiError(err.status, err.reason, err.message, err.domain,
                    "parameter" if err.location else None, err.location)


def _is_user_email(calendar_id: str) -> bool:
    return "@" in calendar_id and not calendar_id.endswith("@group.calendar.google.com")


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
    allowed = {"count", "start", "days", "seed", "conference_every", "recurring_every"}
    if set(spec) - allowed:
        raise ValueError(f"unknown seed keys: {sorted(set(spec) - allowed)}")
    out: dict[str, Any] = {"count": spec.get("count", 100), "days": spec.get("days", 60), "seed": spec.get("seed", 1),
                           "conference_every": spec.get("conference_every", 0),
                           "recurring_every": spec.get("recurring_every", 0)}
    limits = {"count": (0, 1_000_000), "days": (1, 3650), "seed": (-(2**63), 2**63),
              "conference_every": (0, 10**9), "recurring_every": (0, 10**9)}
    for key, (low, high) in limits.items():
        value = out[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{key} must be an integer in [{low}, {high}]")
    start = _parse_rfc3339(spec.get("start", "2026-11-01T00:00:00Z"))
    if start is None or start.tzinfo is None:
        raise ValueError("start must be an RFC 3339 timestamp with an offset")
    out["start_ts"] = start.timestamp()
    return out


class _Seeder:
    """Builds events directly in storage, skipping per-request validation, for speed."""

    def __init__(self, emu: GoogleEmulator, cal: _Calendar, options: dict[str, Any]) -> None:
        self.emu = emu
        self.cal = cal
        self.opt = options
        self.rng = random.Random(options["seed"])
        self.creator = {"email": cal.owner, "self": True}
        self.organizer = GoogleEmulator._organizer(cal, None)

    def run(self) -> None:
        """Build all events with the cyclic GC paused.

        Every seeded object would otherwise be rescanned by each gen-2 collection (about 1 s
        lost per 100,000 events); big seeds are then frozen (gc.freeze) so later collections
        skip them and a page of 2500 is not stalled by a 300 ms GC pause. Seeded objects hold
        no reference cycles, so reset still frees them by reference counting.
        """
        now = time.time()
        created = _fmt_ts(now)
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for i in range(1, self.opt["count"] + 1):
                self.emu._store_new(self.cal, self._event(i, created), now, created)
        finally:
            if self.opt["count"] >= GC_FREEZE_THRESHOLD:
                gc.freeze()
            if was_enabled:
                gc.enable()

    def _event(self, i: int, created: str) -> _Event:
        """One seeded event; all choices come from a single 64-bit draw (random.choice is too slow here)."""
        bits = self.rng.getrandbits(64)
        bits, day = divmod(bits, self.opt["days"])
        bits, hour = divmod(bits, 8)
        bits, quarter = divmod(bits, 4)
        bits, length = divmod(bits, len(_SEED_LENGTHS))
        bits, topic = divmod(bits, len(_SEED_TOPICS))
        bits, kind = divmod(bits, len(_SEED_KINDS))
        bits, place = divmod(bits, len(_SEED_PLACES))
        bits, who = divmod(bits, len(_SEED_PEOPLE))
        bits, status = divmod(bits, len(_RESPONSE_STATUSES))
        start_ts = self.opt["start_ts"] + day * 86400 + (9 + hour) * 3600 + quarter * 900
        end_ts = start_ts + _SEED_LENGTHS[length] * 60
        title = f"{_SEED_TOPICS[topic]} {_SEED_KINDS[kind]}"
        attendees = [{"email": f"{_SEED_PEOPLE[who]}@example.org", "responseStatus": _RESPONSE_STATUSES[status]}]
        if bits % 3 == 0:
            other = _SEED_PEOPLE[(who + 1 + bits % 7) % len(_SEED_PEOPLE)]
            attendees.append({"email": f"{other}@example.org", "responseStatus": "needsAction"})
        data: dict[str, Any] = {
            "summary": title,
            "description": f"{title} #{i}: agenda, notes and follow-ups.",
            "location": _SEED_PLACES[place],
            "start": {"dateTime": _utc_text(start_ts)},
            "end": {"dateTime": _utc_text(end_ts)},
            "attendees": attendees,
        }
        event_id = _random_id(self.rng)
        while event_id in self.cal.events:
            event_id = _random_id(self.rng)
        ev = _Event(event_id, -1, data, f"{event_id}@google.com", created, self.creator, self.organizer,
                    start_ts=start_ts, end_ts=end_ts, span_end_ts=end_ts)
        every = self.opt["conference_every"]
        if every and i % every == 0:
            data["conferenceData"] = self._zoom(self.rng)
        every = self.opt["recurring_every"]
        if every and i % every == 0:
            weeks = 4 + bits % 9
            data["recurrence"] = [f"RRULE:FREQ=WEEKLY;COUNT={weeks}"]
            data["start"]["timeZone"] = "UTC"
            data["end"]["timeZone"] = "UTC"
            ev.span_end_ts = end_ts + (weeks - 1) * 7 * 86400
        return ev

    @staticmethod
    def _zoom(rng: random.Random) -> dict[str, Any]:
        meeting = str(rng.randrange(10**9, 10**11))
        return {
            "conferenceId": meeting,
            "conferenceSolution": {"key": {"type": "addOn"}, "name": "Zoom",
                                   "iconUri": "https://zoom.example/icon.png"},
            "entryPoints": [{"entryPointType": "video", "uri": f"https://zoom.example/j/{meeting}",
                             "label": f"zoom.example/j/{meeting}", "meetingCode": meeting}],
        }


def _utc_text(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# ---------------------------------------------------------------------------------------------
# HTTP layer


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _error_response(err: ApiError) -> Response:
    headers = dict(err.headers)
    if err.status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/"')
    return Response(_json_bytes(err.body()), status_code=err.status, media_type=JSON_TYPE, headers=headers)


def _ok(obj: Any, status: int = 200, etag: str | None = None) -> Response:
    body = obj.encode() if isinstance(obj, str) else _json_bytes(obj)
    headers = {"ETag": etag} if etag else None
    return Response(body, status_code=status, media_type=JSON_TYPE, headers=headers)


def _bearer_user(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return GoogleEmulator.user_email(token)


@dataclass
class _Call:
    """One API request, parsed: who, what, and the inputs every handler may need."""

    emu: GoogleEmulator
    user: str
    params: Params
    headers: Any
    body: Any
    args: dict[str, str]
    base_url: str = ""


_Handler = Callable[[_Call], Response]


def _h_calendar_list(c: _Call) -> Response:
    return _ok(c.emu.calendar_list(c.user, c.params))


def _h_calendar_list_get(c: _Call) -> Response:
    return _ok(c.emu.calendar_list_get(c.user, c.args["cal"]))


def _h_calendar_insert(c: _Call) -> Response:
    return _ok(c.emu.insert_calendar(c.user, _object_body(c.body)))


def _h_calendar_get(c: _Call) -> Response:
    return _ok(c.emu.get_calendar(c.user, c.args["cal"]))


def _h_calendar_patch(c: _Call) -> Response:
    return _ok(c.emu.write_calendar(c.user, c.args["cal"], _object_body(c.body), patch=True))


def _h_calendar_update(c: _Call) -> Response:
    return _ok(c.emu.write_calendar(c.user, c.args["cal"], _object_body(c.body), patch=False))


def _h_calendar_delete(c: _Call) -> Response:
    c.emu.delete_calendar(c.user, c.args["cal"])
    return Response(status_code=204)


def _h_events_list(c: _Call) -> Response:
    return _ok(c.emu.list_events(c.user, c.args["cal"], c.params))


def _h_events_insert(c: _Call) -> Response:
    ev = c.emu.insert_event(c.user, c.args["cal"], _object_body(c.body), c.params)
    return _ok(ev, etag=ev["etag"])


def _h_events_import(c: _Call) -> Response:
    ev = c.emu.insert_event(c.user, c.args["cal"], _object_body(c.body), c.params, import_=True)
    return _ok(ev, etag=ev["etag"])


def _h_events_instances(c: _Call) -> Response:
    return _ok(c.emu.list_instances(c.user, c.args["cal"], c.args["ev"], c.params))


def _h_events_get(c: _Call) -> Response:
    ev = c.emu.get_event(c.user, c.args["cal"], c.args["ev"], c.headers.get("if-none-match"))
    return _ok(ev, etag=ev["etag"])


def _h_events_update(c: _Call) -> Response:
    ev = c.emu.write_event(c.user, c.args["cal"], c.args["ev"], _object_body(c.body), c.params,
                           c.headers.get("if-match"), patch=False)
    return _ok(ev, etag=ev["etag"])


def _h_events_patch(c: _Call) -> Response:
    ev = c.emu.write_event(c.user, c.args["cal"], c.args["ev"], _object_body(c.body), c.params,
                           c.headers.get("if-match"), patch=True)
    return _ok(ev, etag=ev["etag"])


def _h_events_delete(c: _Call) -> Response:
    c.emu.delete_event(c.user, c.args["cal"], c.args["ev"], c.headers.get("if-match"))
    return Response(status_code=204)


def _h_events_watch(c: _Call) -> Response:
    return _ok(c.emu.watch_events(c.user, c.args["cal"], _object_body(c.body), c.base_url))


def _h_channels_stop(c: _Call) -> Response:
    c.emu.stop_channel(c.user, _object_body(c.body))
    return Response(status_code=204)


_CAL = r"(?P<cal>[^/]+)"
_EV = r"(?P<ev>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], _Handler]] = [
    (m, re.compile(p + r"/?$"), h) for m, p, h in [
        ("GET", r"/users/me/calendarList", _h_calendar_list),
        ("GET", rf"/users/me/calendarList/{_CAL}", _h_calendar_list_get),
        ("POST", r"/calendars", _h_calendar_insert),
        ("GET", rf"/calendars/{_CAL}", _h_calendar_get),
        ("PATCH", rf"/calendars/{_CAL}", _h_calendar_patch),
        ("PUT", rf"/calendars/{_CAL}", _h_calendar_update),
        ("DELETE", rf"/calendars/{_CAL}", _h_calendar_delete),
        ("GET", rf"/calendars/{_CAL}/events", _h_events_list),
        ("POST", rf"/calendars/{_CAL}/events", _h_events_insert),
        ("POST", rf"/calendars/{_CAL}/events/import", _h_events_import),
        ("POST", rf"/calendars/{_CAL}/events/watch", _h_events_watch),
        ("POST", r"/channels/stop", _h_channels_stop),
        ("GET", rf"/calendars/{_CAL}/events/{_EV}/instances", _h_events_instances),
        ("GET", rf"/calendars/{_CAL}/events/{_EV}", _h_events_get),
        ("PUT", rf"/calendars/{_CAL}/events/{_EV}", _h_events_update),
        ("PATCH", rf"/calendars/{_CAL}/events/{_EV}", _h_events_patch),
        ("DELETE", rf"/calendars/{_CAL}/events/{_EV}", _h_events_delete),
    ]
]


def _object_body(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "parseError", "Parse Error")
    return body


def _route(method: str, subpath: str) -> tuple[_Handler, dict[str, str]] | None:
    for route_method, pattern, handler in _ROUTES:
        if route_method == method:
            match = pattern.match(subpath)
            if match:
                return handler, match.groupdict()
    return None


async def _read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "parseError", "Parse Error") from None


async def _handle_api(emu: GoogleEmulator, request: Request, user: str | None) -> Response:
    """Authenticate, route and run one API call, mapping errors to Google's JSON shape."""
    try:
        if user is None:
            raise ApiError(401, "authError", "Invalid Credentials", "global", "header", "Authorization")
        found = _route(request.method, request.url.path[len(API_PREFIX):])
        if found is None:
            raise _not_found()
        handler, args = found
        body = await _read_json(request) if request.method in ("POST", "PUT", "PATCH") else None
        emu.ensure_user(user)
        call = _Call(emu, user, Params(list(request.query_params.multi_items())), request.headers, body, args,
                     str(request.base_url).rstrip("/"))
        return handler(call)
    except ApiError as err:
        return _error_response(err)
    except _NotModified as nm:
        return Response(status_code=304, headers={"ETag": nm.etag})
    except Exception:  # a bug must still answer like Google would, never a bare traceback
        log.exception("google emulator: unhandled error for %s %s", request.method, request.url.path)
        return _error_response(ApiError(500, "backendError", "Backend Error"))


def create_app(emulator: GoogleEmulator | None = None) -> Starlette:
    """The Starlette app: the API under /calendar/v3 plus the /emulator admin surface."""
    emu = emulator or GoogleEmulator()

    async def api(request: Request) -> Response:
        user = _bearer_user(request.headers.get("authorization"))
        response = await emu.faults.maybe_fail(request.method, request.url.path)
        if response is None:
            response = await _handle_api(emu, request, user)
            response = await emu.commit_faults.maybe_fail(request.method, request.url.path) or response
        emu.requests.add(request.method, request.url.path, request.url.query, response.status_code, user)
        return response

    async def not_found(request: Request) -> Response:
        return _error_response(_not_found())

    routes = _admin_routes(emu) + [
        Route(API_PREFIX + "/{rest:path}", api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/{rest:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = emu
    return app




def _admin_routes(emu: GoogleEmulator) -> list[Route]:
    """POST/DELETE endpoints tests and benchmarks use to steer the emulator (never logged or faulted)."""

    async def invalidate(request: Request) -> Response:
        try:
            epoch = emu.invalidate_tokens(request.path_params["cal"])
        except ApiError:
            return admin_error(404, "no such calendar")
        return JSONResponse({"calendarId": request.path_params["cal"], "epoch": epoch})

    async def seed(request: Request) -> Response:
        try:
            spec = await admin_json(request)
            created = await run_in_threadpool(emu.seed, request.path_params["cal"], spec)
        except ApiError:
            return admin_error(404, "no such calendar")
        except ValueError as exc:
            return admin_error(400, str(exc))
        return JSONResponse({"created": created})

    async def switches(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(dict(emu.switches))
        try:
            return JSONResponse(emu.set_switches(await admin_json(request)))
        except ValueError as exc:
            return admin_error(400, str(exc))

    return common_admin_routes(emu.reset, emu.faults, emu.commit_faults, emu.requests) + [
        Route("/emulator/calendars/{cal}/invalidate-tokens", invalidate, methods=["POST"]),
        Route("/emulator/calendars/{cal}/seed", seed, methods=["POST"]),
        Route("/emulator/switches", switches, methods=["GET", "POST"]),
    ] + push_admin_routes(emu.push)
