"""Zoom meetings through the REST API v2 with a server-to-server OAuth app.

Zoom has no idempotency key, so a create marks its meeting: the last line of ``agenda`` is
``[calsync:<key>]`` (the agenda is the only free-text field the list endpoint returns). When the
outcome of a create is unknown (5xx, timeout, connection dropped after sending), and by default
before every create, the adapter lists the user's meetings and adopts the one carrying the key
instead of posting again, so neither a retry inside the adapter nor a retry by the conference
outbox after a crash makes a second meeting. An adopted meeting is patched to the spec if it
differs (the event may have changed between the lost create and the retry).
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from calsync.conferencing.base import Conference, ConferenceError, MeetingSpec
from calsync.conferencing.webhook import HttpSession, RetryPolicy, TransientFailure

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_OAUTH_URL",
    "ZoomAdapter",
    "from_settings",
    "marker",
    "meeting_body",
    "patch_body",
]

DEFAULT_BASE_URL = "https://api.zoom.us/v2"
DEFAULT_OAUTH_URL = "https://zoom.us/oauth/token"
TOPIC_MAX = 200
AGENDA_MAX = 2000
LIST_PAGE_SIZE = 300
TOKEN_MARGIN_S = 60.0
_SAFE_KEY = re.compile(r"^[A-Za-z0-9._:@-]{1,100}$")
_MARKER_LINE = re.compile(r"(?:^|\n)(\[calsync:[^\]\s]+\])\s*$")

#: Which Zoom fields each MeetingSpec field feeds (start/end make the duration; an all-day
#: start_time depends on the time zone).
FIELD_MAP: dict[str, tuple[str, ...]] = {
    "title": ("topic",),
    "start": ("start_time", "duration"),
    "end": ("duration",),
    "time_zone": ("timezone", "start_time"),
    "description": ("agenda",),
    "attendees": ("settings",),
}


# ---------------------------------------------------------------------------------------------
# MeetingSpec -> Zoom fields (pure functions)


def marker(idempotency_key: str) -> str:
    """The agenda line that names a create; odd keys are hashed so the marker stays one token."""
    key = (
        idempotency_key
        if _SAFE_KEY.match(idempotency_key)
        else "h-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    )
    return f"[calsync:{key}]"


def agenda_marker(agenda: str | None) -> str | None:
    """The marker an agenda ends with, if any."""
    found = _MARKER_LINE.search(agenda or "")
    return found.group(1) if found else None


def agenda_with(description: str | None, mark: str | None) -> str:
    """The description, cut to fit Zoom's 2000 characters, with the marker as its last line."""
    text = description or ""
    if mark is None:
        return text[:AGENDA_MAX]
    text = text[: AGENDA_MAX - len(mark) - 1]
    return f"{text}\n{mark}" if text else mark


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConferenceError(f"unknown time zone {name!r}", retryable=False) from None


def _instant(text: str) -> datetime:
    try:
        # (3.11's fromisoformat reads a Z itself, but in odd places too: replacing it keeps malformed text rejected)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: FURB162
    except ValueError:
        raise ConferenceError(f"not a date-time: {text!r}", retryable=False) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timing(spec: MeetingSpec) -> tuple[str, int, str]:
    """(start_time in UTC "Z", duration in minutes, timezone). All-day: 00:00 in the zone, 1440/day."""
    tz = spec.time_zone or "UTC"
    all_day = "T" not in spec.start
    if all_day != ("T" not in spec.end):
        raise ConferenceError("start and end must both be dates or both be date-times", retryable=False)
    if all_day:
        try:
            first, last = date.fromisoformat(spec.start), date.fromisoformat(spec.end)
        except ValueError:
            raise ConferenceError(f"not dates: {spec.start!r} / {spec.end!r}", retryable=False) from None
        start = datetime.combine(first, dtime(0), tzinfo=_zone(tz))
        return _utc_text(start), 1440 * max(1, (last - first).days), tz
    start, end = _instant(spec.start), _instant(spec.end)
    minutes = max(1, math.ceil((end - start).total_seconds() / 60))
    return _utc_text(start), minutes, tz


def meeting_body(spec: MeetingSpec, mark: str | None) -> dict[str, Any]:
    """The full create body for a scheduled meeting (type 2)."""
    start_time, duration, tz = timing(spec)
    return {
        "topic": spec.title[:TOPIC_MAX],
        "type": 2,
        "start_time": start_time,
        "duration": duration,
        "timezone": tz,
        "agenda": agenda_with(spec.description, mark),
        "settings": {"meeting_invitees": [{"email": e} for e in spec.attendees]},
    }


def patch_body(spec: MeetingSpec, fields: list[str], mark: str | None) -> dict[str, Any]:
    """Only the Zoom fields that the changed spec fields map to (unknown names are ignored)."""
    full = meeting_body(spec, mark)
    wanted = {zoom for name in fields for zoom in FIELD_MAP.get(name, ())}
    return {key: value for key, value in full.items() if key in wanted}


def _differs(meeting: dict[str, Any], body: dict[str, Any]) -> bool:
    """Whether a meeting found by its marker no longer matches what the create asked for."""
    invitees = (meeting.get("settings") or {}).get("meeting_invitees") or []
    wanted = body["settings"]["meeting_invitees"]
    return any(meeting.get(k) != body[k] for k in ("topic", "start_time", "duration", "timezone", "agenda")) or sorted(
        i.get("email", "") for i in invitees
    ) != sorted(i["email"] for i in wanted)


def _conference(meeting: Any) -> Conference:
    if not isinstance(meeting, dict) or "id" not in meeting or not isinstance(meeting.get("join_url"), str):
        raise ConferenceError("Zoom answered a meeting without id or join_url", retryable=True)
    details = {
        "meeting_id": meeting["id"],
        "passcode": meeting.get("password"),
        "host_url": meeting.get("start_url"),
        "topic": meeting.get("topic"),
        "start_time": meeting.get("start_time"),
        "duration": meeting.get("duration"),
        "timezone": meeting.get("timezone"),
    }
    return Conference(
        "zoom", str(meeting["id"]), meeting["join_url"], {k: v for k, v in details.items() if v is not None}
    )


def _json(response: httpx.Response) -> Any:
    """The body as JSON, or None when it is not JSON (a proxy's error page, say)."""
    try:
        return response.json()
    except ValueError:
        return None


def _failure(response: httpx.Response, what: str) -> ConferenceError:
    """A permanent failure with Zoom's code, message and field errors in the text."""
    body = _json(response)
    if isinstance(body, dict):
        text = f"code {body.get('code', '?')}: {body.get('message') or body.get('reason') or ''}"
        for err in body.get("errors") or []:
            if isinstance(err, dict):
                text += f"; {err.get('field')}: {err.get('message')}"
    else:
        text = response.text[:200]
    return ConferenceError(
        f"Zoom {what} answered {response.status_code} ({text})", status=response.status_code, retryable=False
    )


# ---------------------------------------------------------------------------------------------
# The adapter


class ZoomAdapter:
    """Zoom meetings for one account (server-to-server OAuth app); safe to share between threads."""

    name = "zoom"

    def __init__(
        self,
        account_id: str,
        client_id: str,
        client_secret: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        oauth_url: str = DEFAULT_OAUTH_URL,
        solution_name: str = "Zoom",
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        lookup_before_create: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (account_id and client_id and client_secret):
            raise ValueError("a Zoom adapter needs an account id, a client id and a client secret")
        self.base_url = base_url.rstrip("/")
        self.oauth_url = oauth_url
        self.solution_name = solution_name
        self._account_id = account_id
        self._credentials = (client_id, client_secret)
        self._http = HttpSession(timeout=timeout, policy=policy, sleep=sleep)
        self._clock = clock
        self._lookup_before_create = lookup_before_create
        self._uncertain: set[str] = set()  # keys whose create outcome this process never learned
        self._token: str | None = None
        self._token_good_until = 0.0
        self._token_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> ZoomAdapter | None:
        """From CALSYNC_ZOOM_*; None unless account id, client id and client secret are all set."""

        def value(key: str, default: str = "") -> str:
            return (settings.get(f"CALSYNC_ZOOM_{key}") or "").strip() or default

        account, client, secret = value("ACCOUNT_ID"), value("CLIENT_ID"), value("CLIENT_SECRET")
        if not (account and client and secret):
            return None
        return cls(
            account,
            client,
            secret,
            base_url=value("BASE_URL", DEFAULT_BASE_URL),
            oauth_url=value("OAUTH_URL", DEFAULT_OAUTH_URL),
            solution_name=value("SOLUTION_NAME", "Zoom"),
        )

    @property
    def request_count(self) -> int:
        """Every HTTP request made, OAuth and retries included (settable, e.g. to 0 between rounds)."""
        return self._http.request_count

    @request_count.setter
    def request_count(self, value: int) -> None:
        self._http.request_count = value

    # -- OAuth and one authenticated request ----------------------------------------------------

    def _access_token(self) -> str:
        """The cached token, or a new one when none is cached or it is about to expire."""
        with self._token_lock:
            if self._token is not None and self._clock() < self._token_good_until:
                return self._token
            response = self._http.send(
                "POST",
                self.oauth_url,
                auth=self._credentials,
                params={"grant_type": "account_credentials", "account_id": self._account_id},
            )
            if response.status_code != 200:
                raise _failure(response, "OAuth token request")
            try:
                body = response.json()
                token, lifetime = str(body["access_token"]), float(body.get("expires_in", 3600))
            except (ValueError, KeyError, TypeError):
                raise ConferenceError("Zoom OAuth answered without an access token", retryable=True) from None
            self._token = token
            self._token_good_until = self._clock() + lifetime - min(TOKEN_MARGIN_S, lifetime / 10)
            return token

    def _drop_token(self, token: str) -> None:
        with self._token_lock:
            if self._token == token:
                self._token = None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One attempt; a 401 (token expired or revoked) fetches a new token and tries once more."""
        for _ in range(2):
            token = self._access_token()
            response = self._http.send(
                method, self.base_url + path, headers={"Authorization": f"Bearer {token}"}, **kwargs
            )
            if response.status_code != 401:
                return response
            self._drop_token(token)
        raise _failure(response, f"{method} {path} with a fresh token")

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._http.run(lambda: self._request(method, path, **kwargs), f"Zoom {method} {path}")

    @staticmethod
    def _path(conference_id: str) -> str:
        return "/meetings/" + quote(str(conference_id), safe="")

    # -- ConferenceAdapter ----------------------------------------------------------------------

    def create(self, spec: MeetingSpec, *, idempotency_key: str, maybe_exists: bool = True) -> Conference:
        """Create, or adopt the meeting an earlier attempt with the same key already made."""
        mark = marker(idempotency_key)
        body = meeting_body(spec, mark)
        look = [(maybe_exists and self._lookup_before_create) or idempotency_key in self._uncertain]

        def attempt() -> Conference:
            if look[0]:
                found = self._adopt(mark, body)
                if found is not None:
                    return found
                look[0] = False
            try:
                response = self._request("POST", "/users/me/meetings", json=body)
            except TransientFailure as failure:
                if failure.outcome_unknown:
                    look[0] = True
                    self._uncertain.add(idempotency_key)
                raise
            if response.status_code not in (200, 201):
                raise _failure(response, "create meeting")
            return _conference(_json(response))

        made = self._http.run(attempt, "Zoom create meeting")
        self._uncertain.discard(idempotency_key)
        return made

    def _adopt(self, mark: str, body: dict[str, Any]) -> Conference | None:
        """The meeting carrying ``mark`` (patched to ``body`` if it drifted), or None."""
        meeting = self._find_marked(mark)
        if meeting is None:
            return None
        if _differs(meeting, body):
            response = self._request(
                "PATCH", self._path(str(meeting["id"])), json={k: v for k, v in body.items() if k != "type"}
            )
            if response.status_code == 404:
                return None
            if response.status_code not in (200, 204):
                raise _failure(response, "update adopted meeting")
            meeting = self._fetch(str(meeting["id"]))
        return _conference(meeting) if meeting is not None else None

    def _find_marked(self, mark: str) -> dict[str, Any] | None:
        """Page through the user's meetings for the one whose agenda ends with ``mark``."""
        params: dict[str, Any] = {"type": "scheduled", "page_size": LIST_PAGE_SIZE}
        while True:
            response = self._request("GET", "/users/me/meetings", params=params)
            if response.status_code != 200:
                raise _failure(response, "list meetings")
            page = _json(response)
            if not isinstance(page, dict):
                raise ConferenceError("Zoom answered a meeting list that is not a JSON object", retryable=True)
            for item in page.get("meetings") or []:
                if isinstance(item, dict) and agenda_marker(item.get("agenda")) == mark:
                    return self._fetch(str(item["id"]))
            if not page.get("next_page_token"):
                return None
            params["next_page_token"] = page["next_page_token"]

    def _fetch(self, conference_id: str) -> dict[str, Any] | None:
        """GET inside an attempt: the meeting, or None on 404."""
        response = self._request("GET", self._path(conference_id))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _failure(response, "get meeting")
        body = _json(response)
        if not isinstance(body, dict):
            raise ConferenceError("Zoom answered a meeting that is not a JSON object", retryable=True)
        return body

    def get(self, conference_id: str) -> Conference | None:
        meeting = self._http.run(lambda: self._fetch(conference_id), "Zoom get meeting")
        return _conference(meeting) if meeting is not None else None

    def update(self, conference_id: str, spec: MeetingSpec, fields: list[str]) -> Conference | None:
        """PATCH only what changed: one call (two when the agenda changes, to keep the create marker).

        Zoom answers a PATCH with 204 and no body, and a PATCH of these fields keeps the join
        link, so None (join details unchanged) is returned. Gone: ConferenceError 404."""
        mark = None
        if "description" in fields:  # keep the create marker that ends the agenda
            current = self._http.run(lambda: self._fetch(conference_id), "Zoom get meeting")
            if current is None:
                raise ConferenceError(f"Zoom meeting {conference_id} no longer exists", status=404, retryable=False)
            mark = agenda_marker(current.get("agenda"))
        changes = patch_body(spec, fields, mark)
        if changes:
            response = self._call("PATCH", self._path(conference_id), json=changes)
            if response.status_code == 404:
                raise ConferenceError(f"Zoom meeting {conference_id} no longer exists", status=404, retryable=False)
            if response.status_code not in (200, 204):
                raise _failure(response, "update meeting")
        return None

    def delete(self, conference_id: str) -> None:
        """Gone already (404) is success: the retried delete of a lost answer lands here."""
        response = self._call("DELETE", self._path(conference_id))
        if response.status_code not in (200, 204, 404):
            raise _failure(response, "delete meeting")

    def close(self) -> None:
        self._http.close()


def from_settings(settings: Mapping[str, str]) -> ZoomAdapter | None:
    """Module-level alias of ``ZoomAdapter.from_settings``."""
    return ZoomAdapter.from_settings(settings)
