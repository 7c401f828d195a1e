"""A Zoom-compatible emulator (server-to-server OAuth + the meetings API), served over real HTTP.

It reproduces what calsync's Zoom adapter depends on: account-credentials OAuth tokens that
expire, meeting create / get / partial update / delete with Zoom's status codes (201, 204,
404 code 3001, 400 code 300, 401 code 124), token-paged listing, and Zoom's error bodies.
It imports only the standard library, starlette and the shared fault module, so it can be
lifted out and run alone.

Admin surface (never logged, never faulted): ``POST /emulator/reset``, ``POST|GET|DELETE
/emulator/faults``, ``GET|DELETE /emulator/requests``, ``POST /emulator/expire-tokens`` and
``GET|POST /emulator/config`` (``{"token_lifetime": seconds}``). A fault spec may carry
``"after_commit": true``: the request is carried out first and its answer is then replaced by
the fault (or delayed by its latency), which is how a lost response is simulated.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import logging
import random
import re
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.emulators.common import bearer_token, object_body, read_json_body
from calsync.emulators.faults import (
    FaultInjector,
    RequestLog,
    admin_error,
    admin_json,
    common_admin_routes,
)

__all__ = ["API_PREFIX", "TOKEN_PATH", "OAuthError", "ZoomApiError", "ZoomEmulator", "create_app"]

log = logging.getLogger(__name__)

API_PREFIX = "/v2"
TOKEN_PATH = "/oauth/token"  # noqa: S105 (a URL path, the OAuth token endpoint, not a password)
DEFAULT_TOKEN_LIFETIME = 3600
MAX_TOKENS_KEPT = 1000
PAGE_SIZE_DEFAULT = 30
PAGE_SIZE_MAX = 300
TOPIC_MAX = 200
AGENDA_MAX = 2000
DURATION_MAX = 366 * 1440
JOIN_HOST = "https://zoom.example"
SCOPES = (
    "meeting:read:meeting:admin meeting:write:meeting:admin meeting:update:meeting:admin "
    "meeting:delete:meeting:admin meeting:read:list_meetings:admin"
)
LIST_TYPES = frozenset({"scheduled", "live", "upcoming", "upcoming_meetings", "previous_meetings"})
DEFAULT_SETTINGS: dict[str, Any] = {
    "host_video": False,
    "participant_video": False,
    "join_before_host": False,
    "mute_upon_entry": False,
    "waiting_room": True,
    "approval_type": 2,
    "audio": "voip",
    "auto_recording": "none",
    "email_notification": True,
}
_START_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?$")
_PASSWORD_RE = re.compile(r"^[A-Za-z0-9@\-_*]{1,10}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_ALNUM = string.ascii_letters + string.digits


class ZoomApiError(Exception):
    """An API failure rendered as Zoom renders it: ``{"code": ..., "message": ...}``."""

    def __init__(self, status: int, code: int, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def response(self) -> Response:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            body["errors"] = self.errors
        return JSONResponse(body, status_code=self.status)


class OAuthError(Exception):
    """A token-endpoint failure rendered as zoom.us/oauth renders it: ``{"reason", "error"}``."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason

    def response(self) -> Response:
        return JSONResponse({"reason": self.reason, "error": self.error}, status_code=self.status)


def _invalid(field: str, message: str) -> ZoomApiError:
    return ZoomApiError(400, 300, "Validation Failed.", [{"field": field, "message": message}])


def _not_found(meeting_id: object) -> ZoomApiError:
    return ZoomApiError(404, 3001, f"Meeting does not exist: {meeting_id}.")


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# field validation (pure functions; each raises ZoomApiError 400/300 with the field named)


def _check_topic(value: Any) -> str:
    if not isinstance(value, str) or len(value) > TOPIC_MAX:
        raise _invalid("topic", f"topic must be a string of at most {TOPIC_MAX} characters")
    return value


def _check_type(value: Any) -> int:
    if isinstance(value, bool) or value not in (1, 2):
        raise _invalid("type", "type must be 1 (instant) or 2 (scheduled); recurring meetings are not emulated")
    return int(value)


def _check_timezone(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid("timezone", "timezone must be an IANA time zone name")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid("timezone", f"unknown time zone: {value}") from None
    return value


def _check_start(value: Any, tz: str) -> datetime:
    """An instant: UTC ("...Z"), with an offset, or local wall time in ``tz`` (Zoom's rules)."""
    if not isinstance(value, str) or not _START_RE.match(value):
        raise _invalid("start_time", "start_time must look like yyyy-MM-ddTHH:mm:ssZ or yyyy-MM-ddTHH:mm:ss")
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=ZoneInfo(tz))
        instant = parsed.astimezone(UTC).replace(microsecond=0)
    except (ValueError, OverflowError):
        raise _invalid("start_time", f"not a valid date and time: {value}") from None
    if not 1970 <= instant.year <= 2099:
        raise _invalid("start_time", "start_time must be between 1970 and 2099")
    return instant


def _check_duration(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= DURATION_MAX:
        raise _invalid("duration", f"duration must be an integer number of minutes in [0, {DURATION_MAX}]")
    return value


def _check_agenda(value: Any) -> str:
    if not isinstance(value, str) or len(value) > AGENDA_MAX:
        raise _invalid("agenda", f"agenda must be a string of at most {AGENDA_MAX} characters")
    return value


def _check_password(value: Any) -> str:
    if not isinstance(value, str) or not _PASSWORD_RE.match(value):
        raise _invalid("password", "password: at most 10 characters of a-z A-Z 0-9 @ - _ *")
    return value


def _check_settings(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid("settings", "settings must be a JSON object")
    invitees = value.get("meeting_invitees")
    if invitees is not None and not _invitee_list(invitees):
        raise _invalid("settings.meeting_invitees", 'meeting_invitees must be a list of {"email": address}')
    return value


def _invitee_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(i, dict) and isinstance(i.get("email"), str) and bool(_EMAIL_RE.match(i["email"])) for i in value
    )


def _bad_body() -> ZoomApiError:
    return ZoomApiError(400, 300, "Request Body should be a valid JSON object.")


def _object_body(body: Any) -> dict[str, Any]:
    return object_body(body, _bad_body)


@dataclass
class _Changes:
    """Validated meeting fields from a create or patch body (None = not given)."""

    topic: str | None = None
    type: int | None = None
    start: datetime | None = None
    duration: int | None = None
    timezone: str | None = None
    agenda: str | None = None
    password: str | None = None
    settings: dict[str, Any] | None = None


def _parse_changes(body: dict[str, Any], current_tz: str) -> _Changes:
    """Validate every given field before anything is applied, so a bad field changes nothing."""
    out = _Changes()
    if "timezone" in body:
        out.timezone = _check_timezone(body["timezone"])
    if "topic" in body:
        out.topic = _check_topic(body["topic"])
    if "type" in body:
        out.type = _check_type(body["type"])
    if "start_time" in body:
        out.start = _check_start(body["start_time"], out.timezone or current_tz)
    if "duration" in body:
        out.duration = _check_duration(body["duration"])
    if "agenda" in body:
        out.agenda = _check_agenda(body["agenda"])
    if "password" in body:
        out.password = _check_password(body["password"])
    if "settings" in body:
        out.settings = _check_settings(body["settings"])
    return out


# ---------------------------------------------------------------------------------------------
# The emulator


@dataclass
class _Token:
    client_id: str
    expires_at: float


class ZoomEmulator:
    """All emulator state, in memory, guarded by one lock (HTTP handlers and tests share it).

    With ``account_id`` / ``client_id`` / ``client_secret`` given, the token endpoint demands
    exactly those; otherwise any non-empty credentials are accepted.
    """

    def __init__(
        self,
        account_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
        seed: int = 0,
        host_email: str = "host@zoom.example",
    ) -> None:
        self.account_id = account_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.host_email = host_email
        self.host_id = _host_id(account_id or host_email)
        self._default_lifetime = token_lifetime
        self._seed = seed
        self._lock = threading.RLock()
        self.faults = FaultInjector(_fault_response, default_prefix=API_PREFIX + "/", seed=seed)
        self.commit_faults = FaultInjector(_fault_response, default_prefix=API_PREFIX + "/", seed=seed + 1)
        self.requests = RequestLog()
        self._reset_state()

    def _reset_state(self) -> None:
        self.token_lifetime = self._default_lifetime
        self._tokens: dict[str, _Token] = {}
        self._meetings: dict[int, dict[str, Any]] = {}
        self._order: list[int] = []  # every meeting ever created, by creation ordinal
        self._ordinal: dict[int, int] = {}
        self._rng = random.Random(self._seed)

    def reset(self) -> None:
        """Drop meetings, tokens, faults and the request log; credentials stay as configured."""
        with self._lock:
            self._reset_state()
        self.faults.clear()
        self.commit_faults.clear()
        self.requests.clear()

    # -- OAuth ----------------------------------------------------------------------------------

    def issue_token(
        self, grant_type: str | None, account_id: str | None, client_id: str | None, client_secret: str | None
    ) -> dict[str, Any]:
        """The account-credentials grant; raises OAuthError in Zoom's shape."""
        if not grant_type:
            raise OAuthError(400, "invalid_request", "Missing grant type")
        if grant_type != "account_credentials":
            raise OAuthError(400, "unsupported_grant_type", "unsupported grant type")
        if not client_id or not client_secret:
            raise OAuthError(401, "invalid_client", "Client ID or client secret is missing.")
        if (self.client_id is not None and client_id != self.client_id) or (
            self.client_secret is not None and client_secret != self.client_secret
        ):
            raise OAuthError(401, "invalid_client", "Invalid client_id or client_secret")
        if not account_id:
            raise OAuthError(400, "invalid_request", "Missing account_id")
        if self.account_id is not None and account_id != self.account_id:
            raise OAuthError(400, "invalid_request", "Invalid account_id")
        with self._lock:
            token = "emu." + "".join(self._rng.choice(_ALNUM) for _ in range(40))
            lifetime = self.token_lifetime
            self._tokens[token] = _Token(client_id, time.time() + lifetime)
            while len(self._tokens) > MAX_TOKENS_KEPT:
                del self._tokens[next(iter(self._tokens))]
        return {"access_token": token, "token_type": "bearer", "expires_in": lifetime, "scope": SCOPES}

    def token_owner(self, token: str | None) -> str | None:
        """The client id a token was issued to (expired or not), for the request log."""
        with self._lock:
            found = self._tokens.get(token or "")
            return found.client_id if found else None

    def authenticate(self, token: str | None) -> str:
        """The client id behind a valid token; raises 401 code 124 otherwise."""
        with self._lock:
            found = self._tokens.get(token or "")
            if found is None:
                raise ZoomApiError(401, 124, "Invalid access token.")
            if found.expires_at <= time.time():
                raise ZoomApiError(401, 124, "Access token is expired.")
            return found.client_id

    def expire_tokens(self) -> int:
        """Make every issued token expired now (as if an hour had passed); returns how many."""
        with self._lock:
            for token in self._tokens.values():
                token.expires_at = 0.0
            return len(self._tokens)

    def set_config(self, values: Any) -> dict[str, Any]:
        """Change emulator settings (today only ``token_lifetime``); ValueError on bad input."""
        if not isinstance(values, dict) or set(values) - {"token_lifetime"}:
            raise ValueError('config must be a JSON object with only "token_lifetime"')
        lifetime = values.get("token_lifetime", self.token_lifetime)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int) or not 1 <= lifetime <= 86_400:
            raise ValueError("token_lifetime must be an integer number of seconds in [1, 86400]")
        with self._lock:
            self.token_lifetime = lifetime
        return self.config()

    def config(self) -> dict[str, Any]:
        return {"token_lifetime": self.token_lifetime}

    # -- meetings -------------------------------------------------------------------------------

    def _check_user(self, user_id: str) -> None:
        if user_id not in ("me", self.host_id, self.host_email):
            raise ZoomApiError(404, 1001, f"User does not exist: {user_id}.")

    def _new_id(self) -> int:
        while True:
            meeting_id = self._rng.randrange(10**10, 10**11)
            if meeting_id not in self._ordinal:
                return meeting_id

    def _random_text(self, n: int, alphabet: str = _ALNUM) -> str:
        return "".join(self._rng.choice(alphabet) for _ in range(n))

    def create_meeting(self, user_id: str, body: Any) -> dict[str, Any]:
        """POST /users/{userId}/meetings: the new meeting as Zoom returns it."""
        self._check_user(user_id)
        data = _object_body(body)
        ch = _parse_changes(data, "UTC")  # the emulated host's own time zone
        now = datetime.now(UTC).replace(microsecond=0)
        with self._lock:
            meeting_id = self._new_id()
            password = ch.password or self._random_text(6)
            encrypted = self._random_text(32)
            meeting: dict[str, Any] = {
                "uuid": base64.b64encode(self._rng.randbytes(16)).decode(),
                "id": meeting_id,
                "host_id": self.host_id,
                "host_email": self.host_email,
                "topic": ch.topic if ch.topic is not None else "Zoom Meeting",
                "type": ch.type or 2,
                "status": "waiting",
                "start_time": _utc_text(ch.start or now),
                "duration": ch.duration if ch.duration is not None else 60,
                "timezone": ch.timezone or "UTC",
                "agenda": ch.agenda or "",
                "created_at": _utc_text(now),
                "start_url": f"{JOIN_HOST}/s/{meeting_id}?zak={self._random_text(48)}",
                "join_url": f"{JOIN_HOST}/j/{meeting_id}?pwd={encrypted}",
                "password": password,
                "h323_password": "".join(self._rng.choice(string.digits) for _ in range(6)),
                "encrypted_password": encrypted,
                "pre_schedule": False,
                "settings": {**DEFAULT_SETTINGS, **(ch.settings or {})},
            }
            self._ordinal[meeting_id] = len(self._order)
            self._order.append(meeting_id)
            self._meetings[meeting_id] = meeting
            return copy.deepcopy(meeting)

    def _lookup(self, meeting_id: str) -> dict[str, Any]:
        if not _is_number(meeting_id) or int(meeting_id) not in self._meetings:
            raise _not_found(meeting_id)
        return self._meetings[int(meeting_id)]

    def get_meeting(self, meeting_id: str) -> dict[str, Any]:
        """GET /meetings/{meetingId}; 404 code 3001 once deleted or never made."""
        with self._lock:
            return copy.deepcopy(self._lookup(meeting_id))

    def update_meeting(self, meeting_id: str, body: Any) -> None:
        """PATCH /meetings/{meetingId}: only the given fields change; settings merge key by key."""
        data = _object_body(body)
        with self._lock:
            meeting = self._lookup(meeting_id)
            ch = _parse_changes(data, meeting["timezone"])
            for name in ("topic", "type", "duration", "timezone", "agenda", "password"):
                value = getattr(ch, name)
                if value is not None:
                    meeting[name] = value
            if ch.start is not None:
                meeting["start_time"] = _utc_text(ch.start)
            if ch.settings is not None:
                meeting["settings"].update(ch.settings)

    def delete_meeting(self, meeting_id: str) -> None:
        """DELETE /meetings/{meetingId}; a second delete answers 404 code 3001 like Zoom."""
        with self._lock:
            self._lookup(meeting_id)
            del self._meetings[int(meeting_id)]

    def list_meetings(self, user_id: str, params: dict[str, str]) -> dict[str, Any]:
        """GET /users/{userId}/meetings, paged by an opaque keyset token (stable under deletes)."""
        self._check_user(user_id)
        page_size = _page_size(params.get("page_size"))
        kind = params.get("type") or "scheduled"
        if kind not in LIST_TYPES:
            raise _invalid("type", f"type must be one of {sorted(LIST_TYPES)}")
        start = _decode_page_token(params.get("next_page_token"))
        keep = _list_filter(kind, time.time())
        with self._lock:
            total = sum(1 for m in self._meetings.values() if keep(m))
            page: list[dict[str, Any]] = []
            next_token = ""
            for ordinal in range(start, len(self._order)):
                meeting = self._meetings.get(self._order[ordinal])
                if meeting is None or not keep(meeting):
                    continue
                if len(page) == page_size:
                    next_token = _encode_page_token(ordinal)
                    break
                page.append(_summary(meeting))
        return {"page_size": page_size, "total_records": total, "next_page_token": next_token, "meetings": page}


def _is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() alone accepts "²", which int() then rejects."""
    return text.isascii() and text.isdigit()


def _host_id(seed: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(seed.encode()).digest()[:16]).decode().rstrip("=")


def _summary(meeting: dict[str, Any]) -> dict[str, Any]:
    """The fields Zoom's list endpoint shows for each meeting."""
    keys = (
        "uuid",
        "id",
        "host_id",
        "topic",
        "type",
        "start_time",
        "duration",
        "timezone",
        "agenda",
        "created_at",
        "join_url",
    )
    return {k: meeting[k] for k in keys}


def _list_filter(kind: str, now: float) -> Callable[[dict[str, Any]], bool]:
    def ends(m: dict[str, Any]) -> float:
        start = datetime.fromisoformat(m["start_time"]).timestamp()
        return start + float(m["duration"]) * 60

    if kind in ("upcoming", "upcoming_meetings"):
        return lambda m: ends(m) >= now
    if kind == "previous_meetings":
        return lambda m: ends(m) < now
    if kind == "live":
        return lambda m: False  # nobody ever starts a meeting in the emulator
    return lambda m: True


def _page_size(raw: str | None) -> int:
    if raw is None or raw == "":
        return PAGE_SIZE_DEFAULT
    if not _is_number(raw) or int(raw) < 1:
        raise _invalid("page_size", "page_size must be a positive integer")
    return min(int(raw), PAGE_SIZE_MAX)  # Zoom caps rather than rejects


def _encode_page_token(ordinal: int) -> str:
    return base64.urlsafe_b64encode(f"zoomemu:{ordinal}".encode()).decode().rstrip("=")


def _decode_page_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    prefix, _, number = text.partition(":")
    if prefix != "zoomemu" or not _is_number(number):
        raise _invalid("next_page_token", "Invalid next_page_token.")
    return int(number)


# ---------------------------------------------------------------------------------------------
# HTTP layer


_FAULT_DEFAULTS: dict[int, tuple[int, str]] = {
    400: (300, "Bad Request"),
    401: (124, "Invalid access token."),
    403: (200, "No permission."),
    404: (3001, "Meeting does not exist."),
    429: (429, "You have reached the maximum per-second rate limit for this API. Try again later."),
}


def _fault_response(status: int, reason: str | None, rule: dict[str, Any]) -> Response:
    """Injected errors in Zoom's shapes: OAuth style on the token endpoint, API style elsewhere."""
    if str(rule.get("path_prefix", "")).startswith("/oauth"):
        error = "too_many_requests" if status == 429 else "server_error" if status >= 500 else "invalid_request"
        return OAuthError(status, error, reason or "Injected fault").response()
    code, message = _FAULT_DEFAULTS.get(status, (status, "Internal Error" if status >= 500 else "Error"))
    return ZoomApiError(status, code, reason or message).response()


@dataclass
class _Call:
    emu: ZoomEmulator
    args: dict[str, str]
    params: dict[str, str]
    body: Any


_Handler = Callable[[_Call], Response]


def _h_create(c: _Call) -> Response:
    return JSONResponse(c.emu.create_meeting(c.args["user"], c.body), status_code=201)


def _h_list(c: _Call) -> Response:
    return JSONResponse(c.emu.list_meetings(c.args["user"], c.params))


def _h_get(c: _Call) -> Response:
    return JSONResponse(c.emu.get_meeting(c.args["meeting"]))


def _h_patch(c: _Call) -> Response:
    c.emu.update_meeting(c.args["meeting"], c.body)
    return Response(status_code=204)


def _h_delete(c: _Call) -> Response:
    c.emu.delete_meeting(c.args["meeting"])
    return Response(status_code=204)


_ROUTES: list[tuple[re.Pattern[str], dict[str, _Handler]]] = [
    (re.compile(r"^/users/(?P<user>[^/]+)/meetings/?$"), {"POST": _h_create, "GET": _h_list}),
    (re.compile(r"^/meetings/(?P<meeting>[^/]+)/?$"), {"GET": _h_get, "PATCH": _h_patch, "DELETE": _h_delete}),
]


def _route(method: str, subpath: str) -> tuple[_Handler, dict[str, str]]:
    for pattern, handlers in _ROUTES:
        match = pattern.match(subpath)
        if match:
            if method not in handlers:
                raise ZoomApiError(405, 405, f"Method not allowed: {method}.")
            return handlers[method], match.groupdict()
    raise ZoomApiError(404, 404, "The requested resource was not found.")


def _bearer(request: Request) -> str | None:
    return bearer_token(request.headers.get("authorization"))


async def _handle_api(emu: ZoomEmulator, request: Request) -> Response:
    """Authenticate, route and run one API call; every failure answers in Zoom's shape."""
    try:
        emu.authenticate(_bearer(request))
        handler, args = _route(request.method, request.url.path[len(API_PREFIX) :])
        body = await read_json_body(request, _bad_body) if request.method in ("POST", "PATCH") else None
        return handler(_Call(emu, args, dict(request.query_params), body))
    except ZoomApiError as err:
        return err.response()
    except Exception:  # a bug must still answer like Zoom would, never a bare traceback
        log.exception("zoom emulator: unhandled error for %s %s", request.method, request.url.path)
        return ZoomApiError(500, 500, "Internal Error").response()


def _basic_credentials(request: Request) -> tuple[str | None, str | None]:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None, None
    return (user, password) if sep else (None, None)


async def _token_params(request: Request) -> dict[str, str]:
    """grant_type / account_id from the query string, or from a form body (both are accepted)."""
    params = dict(request.query_params)
    if "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
        raw = (await request.body()).decode("utf-8", "replace")
        for key, values in parse_qs(raw).items():
            params.setdefault(key, values[0])
    return params


async def _handle_token(emu: ZoomEmulator, request: Request) -> tuple[Response, str | None]:
    if request.method != "POST":
        return OAuthError(405, "invalid_request", "The token endpoint only accepts POST").response(), None
    params = await _token_params(request)
    client_id, secret = _basic_credentials(request)
    try:
        token = emu.issue_token(params.get("grant_type"), params.get("account_id"), client_id, secret)
    except OAuthError as err:
        return err.response(), client_id
    return JSONResponse(token, headers={"Cache-Control": "no-store"}), client_id


async def _with_faults(emu: ZoomEmulator, request: Request, run: Callable[[], Any]) -> Response:
    """Faults before (request refused) and after commit (answer lost), then the request log."""
    path = request.url.path
    response = await emu.faults.maybe_fail(request.method, path)
    user = emu.token_owner(_bearer(request))
    if response is None:
        response, user2 = await run()
        user = user or user2
        late = await emu.commit_faults.maybe_fail(request.method, path)
        response = late or response
    emu.requests.add(request.method, path, request.url.query, response.status_code, user)
    return response


def create_app(emulator: ZoomEmulator | None = None) -> Starlette:
    """The Starlette app: /oauth/token, the API under /v2, and the /emulator admin surface."""
    emu = emulator or ZoomEmulator()
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    async def token(request: Request) -> Response:
        return await _with_faults(emu, request, lambda: _handle_token(emu, request))

    async def api(request: Request) -> Response:
        async def run() -> tuple[Response, str | None]:
            return await _handle_api(emu, request), None

        return await _with_faults(emu, request, run)

    async def not_found(request: Request) -> Response:
        return ZoomApiError(404, 404, "The requested resource was not found.").response()

    routes = [
        *_admin_routes(emu),
        Route(TOKEN_PATH, token, methods=methods),
        Route(API_PREFIX + "/{rest:path}", api, methods=methods),
        Route("/{rest:path}", not_found, methods=methods),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = emu
    return app


def _admin_routes(emu: ZoomEmulator) -> list[Route]:
    """Endpoints tests use to steer the emulator (never logged or faulted)."""

    async def expire(request: Request) -> Response:
        return JSONResponse({"expired": emu.expire_tokens()})

    async def config(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(emu.config())
        try:
            return JSONResponse(emu.set_config(await admin_json(request)))
        except ValueError as exc:
            return admin_error(400, str(exc))

    return [
        *common_admin_routes(emu.reset, emu.faults, emu.commit_faults, emu.requests),
        Route("/emulator/expire-tokens", expire, methods=["POST"]),
        Route("/emulator/config", config, methods=["GET", "POST"]),
    ]
