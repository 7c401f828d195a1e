"""Google Calendar API v3 over httpx: listing with sync tokens, and ETag-guarded writes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, tzinfo
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
    canonical_time,
)
from calsync.providers.auth import BearerAuth, StaticToken, TokenSource
from calsync.providers.base import (
    AlreadyExists,
    Capabilities,
    Channel,
    PreconditionFailed,
    ProviderError,
    SyncTokenInvalid,
    fetch_each,
)
from calsync.providers.canonical import (
    canonical_recurrence,
    canonical_text,
    canonical_zone,
    is_utc_name,
)
from calsync.providers.http import (
    RetryingClient,
    RetryPolicy,
    checked_json,
    error_reason,
)
from calsync.series_exdates import excluded_starts

DEFAULT_BASE_URL = "https://www.googleapis.com"
MAX_PAGE = 2500  # the largest page events.list allows
# Google fields calsync does not model but must carry back unchanged when it writes an event.
PROVIDER_PARAMETER = "calsyncProvider"
PRESERVED_FIELDS = (
    "extendedProperties",
    "conferenceData",
    "reminders",
    "transparency",
    "visibility",
    "colorId",
    "guestsCanModify",
    "guestsCanInviteOthers",
    "guestsCanSeeOtherGuests",
    "source",
    "eventType",
)

# What events.list is asked for (Google's partial response, the `fields` parameter): what
# change_from_google reads and the fields preserved for writing back, and the page and sync tokens.
# The rest of each event (htmlLink, creator, organizer, kind, created: two fifths of a listed event's
# bytes) is neither read nor kept, so it is not sent, read or parsed. A field read here must be
# listed (tests/test_inbound_google.py maps rich events whole and as listed).
LISTED_EVENT_FIELDS = (
    "id",
    "etag",
    "status",
    "updated",
    "summary",
    "description",
    "location",
    "start",
    "end",
    "recurrence",
    "recurringEventId",
    "originalStartTime",
    "attendees",
    "iCalUID",
    "sequence",
    *PRESERVED_FIELDS,
)
LISTED_FIELDS = f"items({','.join(dict.fromkeys(LISTED_EVENT_FIELDS))}),nextPageToken,nextSyncToken"


class GoogleProvider:
    """One Google account: a bearer token, or a TokenSource that renews it (providers/auth.py)."""

    name = "google"
    capabilities = Capabilities()

    def __init__(
        self,
        token: str | TokenSource,
        base_url: str | None = None,
        *,
        page_size: int = MAX_PAGE,
        retry: RetryPolicy | None = None,
        send_updates: str = "none",
    ) -> None:
        root = (base_url or DEFAULT_BASE_URL).rstrip("/")
        source = StaticToken(token) if isinstance(token, str) else token
        self.http = RetryingClient(f"{root}/calendar/v3", {}, policy=retry, provider="google", auth=BearerAuth(source))
        self.page_size = page_size
        self.send_updates = send_updates

    @classmethod
    def from_account(cls, account: Account, tokens: TokenSource | None = None, **options: Any) -> GoogleProvider:
        """`tokens`: where an OAuth account's access tokens come from; without it, the stored raw token."""
        return cls(tokens or account.credentials["token"], account.base_url, **options)

    @property
    def request_count(self) -> int:
        return self.http.request_count

    def close(self) -> None:
        self.http.close()

    # --- reading ---------------------------------------------------------------------

    def list_calendars(self) -> list[RemoteCalendar]:
        found: list[RemoteCalendar] = []
        params: dict[str, Any] = {"maxResults": 250}
        while True:
            body = self._json("GET", "/users/me/calendarList", params=params)
            for item in body.get("items", []):
                found.append(
                    RemoteCalendar(
                        remote_id=item["id"],
                        name=item.get("summaryOverride") or item.get("summary", item["id"]),
                        time_zone=item.get("timeZone"),
                        color=item.get("backgroundColor"),
                        primary=bool(item.get("primary")),
                        access_role=item.get("accessRole"),
                    )
                )
            if not body.get("nextPageToken"):
                return found
            params["pageToken"] = body["nextPageToken"]

    def list_changes(self, calendar_id: str, sync_token: str | None) -> Iterator[ChangePage]:
        """Walk events.list page by page; the same query is repeated with each pageToken."""
        base: dict[str, Any] = {"maxResults": self.page_size, "fields": LISTED_FIELDS}
        if sync_token:
            base["syncToken"] = sync_token
        path = f"/calendars/{_q(calendar_id)}/events"
        page_token: str | None = None
        while True:
            params = dict(base, pageToken=page_token) if page_token else base
            response = self.http.request("GET", path, params=params)
            if response.status_code == 410:
                raise SyncTokenInvalid("sync token no longer valid", status=410, reason=error_reason(response))
            body = _checked(response)
            items = [change_from_google(item) for item in body.get("items", [])]
            page_token = body.get("nextPageToken")
            if page_token:
                yield ChangePage(items=items, full=sync_token is None, last=False)
                continue
            token = body.get("nextSyncToken")
            if not token:
                raise ProviderError("events.list ended without nextSyncToken", status=response.status_code)
            yield ChangePage(items=items, full=sync_token is None, last=True, sync_token=token)
            return

    def get_event(self, calendar_id: str, remote_id: str) -> RemoteEvent | None:
        response = self.http.request("GET", f"/calendars/{_q(calendar_id)}/events/{_q(remote_id)}")
        if response.status_code in (404, 410):
            return None
        change = change_from_google(_checked(response))
        return change if isinstance(change, RemoteEvent) else None

    def listing_window(self) -> tuple[datetime, datetime] | None:
        """None: events.list with a sync token covers the whole calendar, so what a listing leaves
        out or reports deleted is gone, not merely out of a window."""
        return None

    def fetch_events(self, calendar_id: str, remote_ids: Sequence[str]) -> dict[str, RemoteEvent | None]:
        """get_event per id (Google's own batch endpoint is not worth it here: with a listing over
        the whole calendar the engine rarely needs this). None only where Google answered 404/410
        (or the event is cancelled, as get_event); any other failure raises."""
        return fetch_each(self.get_event, calendar_id, remote_ids)

    # --- writing ---------------------------------------------------------------------

    def insert_event(
        self, calendar_id: str, data: EventData, *, remote_id: str | None = None, series_remote_id: str | None = None
    ) -> RemoteEvent:
        """POST with our id (a retry meets 409). An instance of a series we hold is written to the
        series' instance id instead (`<series id>_<original start>`, what Google names it), which
        turns that occurrence into an exception; writing it again is harmless."""
        if data.original_start and series_remote_id:
            instance = f"{series_remote_id}_{_instance_suffix(data.original_start)}"
            return self.update_event(calendar_id, instance, data, if_match=None)
        body = event_to_google(data)
        if remote_id:
            body["id"] = remote_id
        response = self.http.request(
            "POST",
            f"/calendars/{_q(calendar_id)}/events",
            json=body,
            idempotent=remote_id is not None,
            params={"conferenceDataVersion": 1, "sendUpdates": self.send_updates},
        )
        if response.status_code == 409:
            raise AlreadyExists("event id already exists", status=409, reason=error_reason(response))
        return _as_event(_checked(response))

    def update_event(self, calendar_id: str, remote_id: str, data: EventData, *, if_match: str | None) -> RemoteEvent:
        """PUT the event. A series whose EXDATEs exclude starts Google's copy still has: those
        instances are cancelled first (how Google keeps a deleted occurrence), then the rule is written
        with the EXDATEs too, so the series reads back as calsync holds it."""
        if data.recurrence and not data.original_start:
            self._cancel_excluded(calendar_id, remote_id, data, if_match)
        headers = {"If-Match": if_match} if if_match else {}
        response = self.http.request(
            "PUT",
            f"/calendars/{_q(calendar_id)}/events/{_q(remote_id)}",
            json=event_to_google(data),
            headers=headers,
            params={"conferenceDataVersion": 1, "sendUpdates": self.send_updates},
        )
        return _as_event(_checked(response))

    def withdraw_create(self, calendar_id: str, data: EventData, *, remote_id: str) -> None:
        """The id is ours: delete whatever the lost create left at it (deleting is idempotent)."""
        self.delete_event(calendar_id, remote_id, if_match=None)

    def delete_event(self, calendar_id: str, remote_id: str, *, if_match: str | None) -> None:
        headers = {"If-Match": if_match} if if_match else {}
        response = self.http.request(
            "DELETE",
            f"/calendars/{_q(calendar_id)}/events/{_q(remote_id)}",
            headers=headers,
            params={"sendUpdates": self.send_updates},
        )
        if response.status_code in (404, 410):
            return  # already gone: deleting is idempotent
        _checked(response)

    def cancel_occurrence(
        self,
        calendar_id: str,
        series_remote_id: str,
        original_start: str,
        *,
        remote_id: str | None = None,
        if_match: str | None = None,
    ) -> RemoteEvent | None:
        """The instance (`<series id>_<original start>`, or the exception's own id) gets status
        cancelled, which is how Google keeps a deleted occurrence. Unlinked (no `if_match`), it is
        read first: one already cancelled, or that the rule no longer yields (an EXDATE), is left as
        it is. A PATCH of the status alone keeps everything else the instance holds."""
        instance = remote_id or f"{series_remote_id}_{_instance_suffix(original_start)}"
        path = f"/calendars/{_q(calendar_id)}/events/{_q(instance)}"
        if if_match is None:
            response = self.http.request("GET", path)
            if response.status_code in (404, 410):
                return None
            current = change_from_google(_checked(response))
            if not isinstance(current, RemoteEvent):
                return None
            if current.data.status == "cancelled":
                return current
            if_match = current.etag
        response = self.http.request(
            "PATCH",
            path,
            json={"status": "cancelled"},
            headers={"If-Match": if_match},
            params={"sendUpdates": self.send_updates},
        )
        if response.status_code in (404, 410):
            return None
        return _as_event(_checked(response))

    def _cancel_excluded(self, calendar_id: str, remote_id: str, data: EventData, if_match: str | None) -> None:
        """Cancel the instances a series update newly excludes (EXDATEs Google's copy lacks). A copy
        changed since `if_match` raises PreconditionFailed before anything is written."""
        wanted = excluded_starts(data.recurrence, data.time_zone)
        if not wanted:
            return
        response = self.http.request("GET", f"/calendars/{_q(calendar_id)}/events/{_q(remote_id)}")
        if response.status_code in (404, 410):
            return  # the update itself says what became of the series
        current = _checked(response)
        if if_match and current.get("etag") != if_match:
            raise PreconditionFailed(f"{remote_id} changed on Google", status=412)
        zone = (current.get("start") or {}).get("timeZone") or data.time_zone
        for start in sorted(wanted - excluded_starts(current.get("recurrence"), zone)):
            self.cancel_occurrence(calendar_id, remote_id, start)

    # --- push notifications ---------------------------------------------------------

    def watch(
        self,
        calendar_id: str,
        channel_id: str,
        address: str,
        token: str,
        ttl_seconds: int | None = None,
    ) -> Channel:
        body: dict[str, Any] = {"id": channel_id, "type": "web_hook", "address": address, "token": token}
        if ttl_seconds:
            body["params"] = {"ttl": str(ttl_seconds)}
        answer = self._json("POST", f"/calendars/{_q(calendar_id)}/events/watch", json=body)
        expiration = answer.get("expiration")
        return Channel(
            channel_id=answer.get("id", channel_id),
            resource_id=answer["resourceId"],
            token=answer.get("token"),
            expiration=datetime.fromtimestamp(int(expiration) / 1000, UTC) if expiration else None,
        )

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        response = self.http.request("POST", "/channels/stop", json={"id": channel_id, "resourceId": resource_id})
        if response.status_code == 404:
            return  # already stopped or expired
        _checked(response)

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return _checked(self.http.request(method, path, **kwargs))


def _q(value: str) -> str:
    return quote(value, safe="")


def _instance_suffix(original_start: str) -> str:
    """The part of an instance id after the series id: 20261207T090000Z, or 20261207 all day."""
    if len(original_start) == 10:
        return original_start.replace("-", "")
    return canonical_time(original_start, False).replace("-", "").replace(":", "")


def _checked(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a success, or the matching ProviderError."""
    return checked_json(response, "Google", error_reason)


def _as_event(body: dict[str, Any]) -> RemoteEvent:
    change = change_from_google(body)
    if not isinstance(change, RemoteEvent):
        raise ProviderError("Google returned a cancelled event for a write")
    return change


# --- mapping -----------------------------------------------------------------------------


def _boundary(value: dict[str, Any] | None) -> tuple[str, bool, str | None]:
    """(canonical time, all-day?, time zone) of a Google EventDateTime."""
    if not value:
        return "", False, None
    if "date" in value:
        return value["date"], True, value.get("timeZone")
    return canonical_time(value["dateTime"], False), False, value.get("timeZone")


def _rule_start(start: str, all_day: bool, time_zone: str | None) -> date | datetime | None:
    """A series' first start as its rule sees it: the date, or the wall time in the zone Google
    expands the rule in (None when that zone is not known here)."""
    if not start:
        return None
    if all_day:
        return date.fromisoformat(start[:10])
    if not time_zone:
        return None
    try:
        zone: tzinfo = UTC if is_utc_name(time_zone) else ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    return datetime.fromisoformat(start).astimezone(zone).replace(tzinfo=None)


def change_from_google(item: dict[str, Any]) -> RemoteChange:
    """A Google event as a neutral change. A cancelled non-instance is a deletion (only its id is sure)."""
    series = item.get("recurringEventId")
    if item.get("status") == "cancelled" and not series:
        return RemoteDeletion(remote_id=item["id"])
    original, _, _ = _boundary(item.get("originalStartTime"))
    start, all_day, tz = _boundary(item.get("start"))
    end, _, _ = _boundary(item.get("end"))
    rules = item.get("recurrence")
    if not start:  # a cancelled instance carries no times: it occupies its original slot
        start = end = original
        all_day = len(original) == 10
    data = EventData(
        title=item.get("summary") or "",
        start=start,
        end=end or start,
        all_day=all_day,
        time_zone=canonical_zone(tz),  # calsync names UTC for a series (Google needs a zone): reads as none
        description=canonical_text(item.get("description")),
        location=canonical_text(item.get("location")),
        status=item.get("status") or "confirmed",
        # (a series' first start is worked out for a series only: zone look-ups are not free)
        recurrence=canonical_recurrence(rules, _rule_start(start, all_day, tz)) if rules is not None else None,
        original_start=original or None,
        attendees=[
            Attendee(
                email=a.get("email", ""),
                name=a.get("displayName"),
                response=a.get("responseStatus", "needsAction"),
                optional=bool(a.get("optional")),
                organizer=bool(a.get("organizer")),
            )
            for a in item.get("attendees") or []
        ],
        conference=conference_summary(item.get("conferenceData")),
        ical_uid=item.get("iCalUID"),
        sequence=int(item.get("sequence") or 0),
        extra={"google": {k: item[k] for k in PRESERVED_FIELDS if k in item}},
    )
    return RemoteEvent(
        remote_id=item["id"],
        etag=item.get("etag", ""),
        data=data,
        series_remote_id=series,
        updated=item.get("updated"),
    )


def conference_summary(conference: dict[str, Any] | None) -> dict[str, Any] | None:
    """The provider-neutral part of conferenceData: solution, conference id, join link, and the
    calsync adapter that made it (a private add-on parameter we stamp on our own conferences)."""
    if not conference or not conference.get("conferenceSolution"):
        return None
    solution = conference.get("conferenceSolution") or {}
    video: dict[str, Any] = next(
        (e for e in conference.get("entryPoints") or [] if e.get("entryPointType") == "video"), {}
    )
    parameters = ((conference.get("parameters") or {}).get("addOnParameters") or {}).get("parameters") or {}
    return {
        "type": (solution.get("key") or {}).get("type"),
        "name": solution.get("name"),
        "conference_id": conference.get("conferenceId"),
        "join_url": video.get("uri"),
        "provider": parameters.get(PROVIDER_PARAMETER),
    }


def conference_data(summary: dict[str, Any]) -> dict[str, Any]:
    """Google conferenceData for a third-party (add-on) conference described by a neutral summary."""
    data: dict[str, Any] = {
        "conferenceSolution": {"key": {"type": summary.get("type") or "addOn"}, "name": summary.get("name") or ""},
        "conferenceId": summary.get("conference_id"),
        "entryPoints": [
            {
                "entryPointType": "video",
                "uri": summary["join_url"],
                "label": summary["join_url"].split("://", 1)[-1][:512],
            }
        ],
    }
    if summary.get("provider"):
        data["parameters"] = {"addOnParameters": {"parameters": {PROVIDER_PARAMETER: summary["provider"]}}}
    return data


def _google_time(value: str, all_day: bool, time_zone: str | None) -> dict[str, Any]:
    if all_day:
        return {"date": value[:10]}
    out: dict[str, Any] = {"dateTime": value}
    if time_zone:
        out["timeZone"] = time_zone
    return out


def event_to_google(data: EventData) -> dict[str, Any]:
    """Body for insert/update: the modelled fields, plus preserved Google fields carried back as they were."""
    body: dict[str, Any] = dict((data.extra or {}).get("google") or {})
    raw_conference = body.pop("conferenceData", None)
    if data.conference is not None:  # keep Google's own copy (and its signature) when it still matches
        same = raw_conference is not None and conference_summary(raw_conference) == data.conference
        body["conferenceData"] = raw_conference if same else conference_data(data.conference)
    body.update(
        {
            "summary": data.title,
            # Google expands a rule in a named zone only ("Missing time zone definition"): a series that
            # came without one (Outlook's UTC series) repeats at the same UTC time, which is what it meant
            "start": _google_time(data.start, data.all_day, data.time_zone or ("UTC" if data.recurrence else None)),
            "end": _google_time(data.end, data.all_day, data.time_zone or ("UTC" if data.recurrence else None)),
            "status": data.status,
        }
    )
    body.update(
        {
            key: value
            for key, value in (
                ("description", data.description),
                ("location", data.location),
                ("recurrence", data.recurrence),
            )
            if value is not None
        }
    )
    if data.attendees:
        body["attendees"] = [
            {
                k: v
                for k, v in {
                    "email": a.email,
                    "displayName": a.name,
                    "responseStatus": a.response,
                    "optional": a.optional or None,
                }.items()
                if v is not None
            }
            for a in data.attendees
        ]
    return body
