"""Microsoft Graph (Outlook calendars) over httpx: calendarView delta, changeKey-guarded writes.

Change tracking
    A full listing is ``GET /me/calendars/{id}/calendarView/delta?startDateTime=&endDateTime=`` over a
    fixed window, ``[now + window[0], now + window[1]]`` (by default 30 days back, 365 days ahead).
    Graph expands recurring series inside the window into occurrences and exceptions (the series
    master itself never appears). Each Graph page becomes one ChangePage; ``@odata.nextLink`` is
    followed as given, and the round's ``@odata.deltaLink`` becomes the sync token.

    Graph fixes the window inside the delta token, so a token would track the same window for ever
    and the calendar would slowly slide out of it. The token we hand the engine is therefore
    ``"<window start, ISO 8601>|<deltaLink URL>"`` (opaque to the engine): when the window's start is
    more than ``rebaseline_after`` (7 days) older than a fresh window's start would be, list_changes
    raises SyncTokenInvalid before sending anything, and the engine does a full sync with
    reconciliation over a new window. A dead token (410 syncStateNotFound / resyncRequired, or 400
    syncStateNotFound) is SyncTokenInvalid too. Events that move out of the window are reported by
    Graph as ``@removed``, i.e. as deletions of the local copy.

Mapping (Graph -> EventData)
    subject -> title; body.content -> description (HTML kept as is; we also write descriptions back as
    ``contentType: html`` so they round-trip unchanged); location.displayName -> location; start/end
    (read in UTC thanks to ``Prefer: outlook.timezone="UTC"``) -> canonical UTC, or dates when
    ``isAllDay``; originalStartTimeZone -> time_zone when it is an IANA name other than UTC;
    attendees (emailAddress.address/name, status.response, type optional); iCalUId -> ical_uid;
    seriesMasterId -> series_remote_id and originalStart -> original_start for occurrences/exceptions.
    ``@removed`` and a cancelled single event are RemoteDeletion; a cancelled occurrence is a
    RemoteEvent with status "cancelled". Graph's recurrence (a JSON pattern/range, not RRULE) is not
    mapped to EventData.recurrence (which stays None); it is kept in ``extra["graph"]["recurrence"]``
    and written back only on insert (re-sending it on PATCH would reshape the series and drop its
    exceptions). A Teams meeting (onlineMeeting.joinUrl) is conference ``{"type": "teams", "name":
    "Microsoft Teams", "join_url", "conference_id"}``. Our own conferences (``conference["provider"]``
    set, e.g. Zoom) are written as a marked block at the end of the HTML body, so Outlook shows the
    join link, and are read back (and stripped from the description) from that block.

Idempotent creates
    The engine adopts an existing remote copy only when its remote id equals the local event id,
    which Graph ids never do (Graph chooses them). Creates are made idempotent with ``transactionId``
    instead: insert_event sends ``transactionId = remote_id or a fresh uuid`` (the engine passes the
    local event id), so a create whose answer was lost and is retried (by RetryingClient, or by a
    later push) gets the first event back (201 with the existing event) rather than a duplicate.
"""
from __future__ import annotations

import html
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from calsync.model import (
    Account,
    Attendee,
    ChangePage,
    EventData,
    RemoteCalendar,
    RemoteChange,
    RemoteDeletion,
    RemoteEvent,
    canonical_instant,
    canonical_time,
)
from calsync.providers.base import (
    Channel,
    ProviderError,
    SyncTokenInvalid,
)
from calsync.providers.http import (
    RetryingClient,
    RetryPolicy,
    provider_error,
)

DEFAULT_BASE_URL = "https://graph.microsoft.com"
DEFAULT_PAGE_SIZE = 100
DEFAULT_WINDOW = (timedelta(days=-30), timedelta(days=365))
REBASELINE_AFTER = timedelta(days=7)
TOKEN_SEPARATOR = "|"
RESET_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
# writable Graph fields calsync does not model but carries back when it writes an event
PRESERVED_FIELDS = ("categories", "importance", "sensitivity", "showAs", "isReminderOn",
                    "reminderMinutesBeforeStart")
KEPT_FIELDS = PRESERVED_FIELDS + ("recurrence", "isOnlineMeeting", "onlineMeetingProvider", "type")
_RESPONSES = {"accepted": "accepted", "declined": "declined", "tentativelyAccepted": "tentative",
              "organizer": "accepted", "none": "needsAction", "notResponded": "needsAction"}
_CONFERENCE_RE = re.compile(r'\s*<div id="calsync-conference" data-conference="([^"]*)">.*?</div>\s*', re.DOTALL)


class GraphProvider:
    """One Microsoft 365 / Outlook mailbox (one bearer token)."""

    name = "graph"

    def __init__(
        self, token: str, base_url: str | None = None, *, page_size: int = DEFAULT_PAGE_SIZE,
        window: tuple[timedelta, timedelta] = DEFAULT_WINDOW, retry: RetryPolicy | None = None,
        rebaseline_after: timedelta = REBASELINE_AFTER,
    ) -> None:
        root = (base_url or DEFAULT_BASE_URL).rstrip("/")
        headers = {
            "Authorization": f"Bearer {token}",
            "Prefer": 'outlook.timezone="UTC", IdType="ImmutableId"',
        }
        self.http = RetryingClient(f"{root}/v1.0", headers, policy=retry, provider="graph")
        self.page_size = page_size
        self.window = window
        self.rebaseline_after = rebaseline_after

    @classmethod
    def from_account(cls, account: Account, **options: Any) -> GraphProvider:
        return cls(account.credentials["token"], account.base_url, **options)

    @property
    def request_count(self) -> int:
        return self.http.request_count

    def close(self) -> None:
        self.http.close()

    # --- reading ---------------------------------------------------------------------

    def list_calendars(self) -> list[RemoteCalendar]:
        found: list[RemoteCalendar] = []
        url: str | None = "/me/calendars"
        while url:
            body = _checked(self.http.request("GET", url))
            for item in body.get("value", []):
                found.append(RemoteCalendar(
                    remote_id=item["id"], name=item.get("name") or item["id"], color=item.get("hexColor") or None,
                    primary=bool(item.get("isDefaultCalendar")),
                    access_role="owner" if item.get("canEdit", True) else "reader",
                ))
            url = body.get("@odata.nextLink")
        return found

    def list_changes(self, calendar_id: str, sync_token: str | None) -> Iterator[ChangePage]:
        """calendarView/delta pages; the last one carries ``"<window start>|<deltaLink>"``."""
        full = sync_token is None
        now = datetime.now(UTC).replace(microsecond=0)
        if sync_token is None:
            start, end = now + self.window[0], now + self.window[1]
            url = f"/me/calendars/{_q(calendar_id)}/calendarView/delta"
            params: dict[str, Any] | None = {"startDateTime": _iso(start), "endDateTime": _iso(end)}
        else:
            start, url = _split_token(sync_token)
            if now + self.window[0] - start > self.rebaseline_after:
                raise SyncTokenInvalid("the delta window is too old: re-baselining over a fresh window")
            params = None
        headers = {"Prefer": f'outlook.timezone="UTC", IdType="ImmutableId", odata.maxpagesize={self.page_size}'}
        while True:
            response = self.http.request("GET", url, params=params, headers=headers)
            if _is_reset(response):  # a dead delta token, or a skip token that died mid-round
                raise SyncTokenInvalid("delta token no longer valid", status=response.status_code,
                                       reason=_error_code(response))
            body = _checked(response)
            items = [change_from_graph(item) for item in body.get("value", [])]
            next_link = body.get("@odata.nextLink")
            if next_link:
                yield ChangePage(items=items, full=full, last=False)
                url, params = next_link, None
                continue
            delta_link = body.get("@odata.deltaLink")
            if not delta_link:
                raise ProviderError("calendarView/delta ended without @odata.deltaLink", status=response.status_code)
            token = f"{_iso(start)}{TOKEN_SEPARATOR}{delta_link}"
            yield ChangePage(items=items, full=full, last=True, sync_token=token)
            return

    def get_event(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        response = self.http.request("GET", f"/me/events/{_q(remote_id)}")
        if response.status_code in (404, 410):
            return None
        change = change_from_graph(_checked(response))
        return change if isinstance(change, RemoteEvent) else None

    # --- writing ---------------------------------------------------------------------

    def insert_event(self, calendar_id: str, data: EventData, *, remote_id: str | None = None) -> RemoteEvent:
        """POST with a transactionId: a retried create gets the first event back, not a second one."""
        body = event_to_graph(data, create=True)
        body["transactionId"] = remote_id or str(uuid.uuid4())
        response = self.http.request("POST", f"/me/calendars/{_q(calendar_id)}/events", json=body)
        return _as_event(_checked(response))

    def update_event(self, calendar_id: str, remote_id: str, data: EventData, *, if_match: str | None) -> RemoteEvent:
        headers = {"If-Match": if_match} if if_match else {}
        response = self.http.request("PATCH", f"/me/events/{_q(remote_id)}", json=event_to_graph(data),
                                     headers=headers)
        return _as_event(_checked(response))

    def delete_event(self, calendar_id: str, remote_id: str, *, if_match: str | None) -> None:
        headers = {"If-Match": if_match} if if_match else {}
        response = self.http.request("DELETE", f"/me/events/{_q(remote_id)}", headers=headers)
        if response.status_code in (404, 410):
            return  # already gone: deleting is idempotent
        _checked(response)

    # --- push notifications ---------------------------------------------------------

    def watch(self, calendar_id: str, channel_id: str, address: str, token: str, ttl_seconds: int | None = None) -> Channel:
        raise ProviderError("push notifications are not implemented for Graph yet")

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        raise ProviderError("push notifications are not implemented for Graph yet")


# --- helpers -------------------------------------------------------------------------------


def _q(value: str) -> str:
    return quote(value, safe="")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _split_token(token: str) -> tuple[datetime, str]:
    start, sep, link = token.partition(TOKEN_SEPARATOR)
    try:
        if not sep or not link:
            raise ValueError(token)
        when = datetime.fromisoformat(start)
        if when.tzinfo is None:
            raise ValueError(token)
    except ValueError:
        raise SyncTokenInvalid("unrecognised Graph sync token") from None
    return when, link


def _error_code(response: httpx.Response) -> str | None:
    try:
        code = response.json()["error"]["code"]
        return code if isinstance(code, str) else None
    except (ValueError, KeyError, TypeError):
        return None


def _is_reset(response: httpx.Response) -> bool:
    if response.status_code == 410:
        return True
    return response.status_code == 400 and (_error_code(response) or "").lower() in RESET_CODES


def _checked(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a success, or the matching ProviderError."""
    if response.status_code < 300:
        return response.json() if response.content else {}
    reason = _error_code(response)
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    status = response.status_code
    text = f"Graph {status} {reason or ''}: {message}".strip()
    raise provider_error(response, text, reason)


def _as_event(body: dict[str, Any]) -> RemoteEvent:
    change = change_from_graph(body)
    if not isinstance(change, RemoteEvent):
        raise ProviderError("Graph returned a cancelled event for a write")
    return change


# --- mapping -----------------------------------------------------------------------------


def _graph_instant(value: dict[str, Any] | None) -> datetime | None:
    """A dateTimeTimeZone as an aware datetime (UTC when the zone is UTC or unknown)."""
    if not value or not value.get("dateTime"):
        return None
    text = value["dateTime"]
    if "." in text:  # Graph sends 7 fractional digits, more than fromisoformat takes
        text = text.split(".", 1)[0]
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_zone(value.get("timeZone")) or UTC)
    return parsed


def _zone(name: str | None) -> ZoneInfo | None:
    if not name or name.upper() in ("UTC", "Z"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _boundary(value: dict[str, Any] | None, all_day: bool) -> str:
    instant = _graph_instant(value)
    if instant is None:
        return ""
    if all_day:  # all-day events keep their midnights in their own zone
        return value["dateTime"][:10] if value else ""
    return canonical_instant(instant)


def _conference_from_body(content: str) -> tuple[str, dict[str, Any] | None]:
    """(description without our conference block, the conference it described)."""
    match = _CONFERENCE_RE.search(content)
    if match is None:
        return content, None
    try:
        conference = json.loads(html.unescape(match.group(1)))
    except ValueError:
        conference = None
    return content[:match.start()] + content[match.end():], conference if isinstance(conference, dict) else None


def change_from_graph(item: dict[str, Any]) -> RemoteChange:
    """A Graph event (or ``@removed`` stub) as a neutral change."""
    series = item.get("seriesMasterId")
    if "@removed" in item or (item.get("isCancelled") and not series):
        return RemoteDeletion(remote_id=item["id"])
    all_day = bool(item.get("isAllDay"))
    start = _boundary(item.get("start"), all_day)
    end = _boundary(item.get("end"), all_day)
    original = canonical_time(item["originalStart"], False) if item.get("originalStart") and series else None
    content = (item.get("body") or {}).get("content") or ""
    content, conference = _conference_from_body(content)
    online = item.get("onlineMeeting") or {}
    if conference is None and online.get("joinUrl"):
        conference = {"type": "teams", "name": "Microsoft Teams", "conference_id": online.get("conferenceId"),
                      "join_url": online["joinUrl"], "provider": None}
    zone = item.get("originalStartTimeZone")
    time_zone = zone if not all_day and _zone(zone) is not None else None
    data = EventData(
        title=item.get("subject") or "",
        start=start,
        end=end or start,
        all_day=all_day,
        time_zone=time_zone,
        description=content or None,
        location=((item.get("location") or {}).get("displayName")) or None,
        status="cancelled" if item.get("isCancelled") else "confirmed",
        recurrence=None,
        original_start=original,
        attendees=[
            Attendee(
                email=(a.get("emailAddress") or {}).get("address", ""),
                name=(a.get("emailAddress") or {}).get("name"),
                response=_RESPONSES.get((a.get("status") or {}).get("response", "none"), "needsAction"),
                optional=a.get("type") == "optional",
            )
            for a in item.get("attendees") or []
        ],
        conference=conference,
        ical_uid=item.get("iCalUId"),
        extra={"graph": {k: item[k] for k in KEPT_FIELDS if item.get(k) is not None}},
    )
    return RemoteEvent(
        remote_id=item["id"], etag=item.get("@odata.etag") or item.get("changeKey") or "", data=data,
        series_remote_id=series, updated=item.get("lastModifiedDateTime"),
    )


def _graph_time(value: str, all_day: bool, time_zone: str | None) -> dict[str, str]:
    if all_day:
        return {"dateTime": f"{value[:10]}T00:00:00", "timeZone": (time_zone or "UTC") if _zone(time_zone) else "UTC"}
    instant = datetime.fromisoformat(value)
    zone = _zone(time_zone)
    if zone is not None:
        return {"dateTime": instant.astimezone(zone).replace(tzinfo=None).isoformat(), "timeZone": time_zone or "UTC"}
    return {"dateTime": instant.astimezone(UTC).replace(tzinfo=None).isoformat(), "timeZone": "UTC"}


def _conference_block(conference: dict[str, Any]) -> str:
    url = html.escape(conference.get("join_url") or "")
    name = html.escape(conference.get("name") or "the meeting")
    payload = html.escape(json.dumps(conference, sort_keys=True, separators=(",", ":")), quote=True)
    return (f'<div id="calsync-conference" data-conference="{payload}">'
            f'Join {name}: <a href="{url}">{url}</a></div>')


def event_to_graph(data: EventData, *, create: bool = False) -> dict[str, Any]:
    """Body for POST/PATCH: the modelled fields, plus preserved Graph fields carried back."""
    kept = (data.extra or {}).get("graph") or {}
    body: dict[str, Any] = {k: kept[k] for k in PRESERVED_FIELDS if k in kept}
    if create and kept.get("recurrence") and kept.get("type") in (None, "seriesMaster"):
        body["recurrence"] = kept["recurrence"]
    content = data.description or ""
    if data.conference and data.conference.get("provider") and data.conference.get("join_url"):
        content = f"{content}{_conference_block(data.conference)}"
    body.update({
        "subject": data.title,
        "body": {"contentType": "html", "content": content},
        "location": {"displayName": data.location or ""},
        "isAllDay": data.all_day,
        "start": _graph_time(data.start, data.all_day, data.time_zone),
        "end": _graph_time(data.end, data.all_day, data.time_zone),
        "attendees": [
            {"type": "optional" if a.optional else "required",
             "emailAddress": {"address": a.email, **({"name": a.name} if a.name else {})}}
            for a in data.attendees
        ],
    })
    return body
