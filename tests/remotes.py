"""Provider-neutral remote calendars for the parametrised suites.

A `Remote` is one provider's calendar service, changed as *another* client would change it (never
through calsync), with the same admin surface everywhere: fault rules (also ``after_commit``) and a
request log. Google and Graph are our emulators; Radicale and Xandikos are the real servers, behind
`calsync.emulators.fault_proxy` so that faults and request counts work the same way for them.
`MemoryRemote` (calsync.providers.memory, no server) is one more, outside REMOTES: the shared
suites stay as they are; the provider conformance suite runs over ALL_REMOTES.

Use the `remote` fixture (parametrised over REMOTES) or `push_remote` (providers with push).
"""
from __future__ import annotations

import math
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import unquote

import httpx
import pytest
from dateutil.rrule import rrulestr
from icalendar import Calendar, Event
from sqlalchemy import Engine, update

from calsync.emulators.fault_proxy import FaultProxy
from calsync.emulators.server import RunningServer, serve_in_thread
from calsync.model import Account, Attendee, EventData
from calsync.providers import ical, provider_for
from calsync.providers.base import Provider
from calsync.providers.http import RetryPolicy
from calsync.providers.memory import MemoryProvider, MemoryService, starts_between
from calsync.providers.memory import occurs as memory_occurs
from calsync.series_exdates import excluded_starts
from calsync.store import accounts as account_store
from calsync.store.schema import bindings
from tests.caldav_servers import (
    CalDAVServer,
    DavCalendar,
    ics,
    make_calendar,
    start_server,
)
from tests.helpers import GRAPH_TEST_WINDOW, SEED_START, graph_window_params

REMOTES = ("google", "graph", "radicale", "xandikos")
ALL_REMOTES = ("memory", *REMOTES)  # the in-memory service too (the shared suites run over REMOTES)
PUSH_REMOTES = ("google", "graph")
DAY = datetime(2026, 12, 1, 9, tzinfo=UTC)
QUICK_RETRY = RetryPolicy(base_delay=0.05)


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc_time(value: datetime) -> dict[str, str]:
    """A Google / Graph dateTimeTimeZone in UTC."""
    return {"dateTime": value.astimezone(UTC).replace(tzinfo=None).isoformat(), "timeZone": "UTC"}


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def _with_count(line: str, count: int) -> str:
    """An RRULE line ending after `count` occurrences (COUNT in place of COUNT or UNTIL); other lines as they are."""
    if not line.upper().startswith("RRULE:"):
        return line
    parts = [p for p in line[len("RRULE:"):].split(";") if p.split("=", 1)[0].upper() not in ("COUNT", "UNTIL")]
    return "RRULE:" + ";".join([*parts, f"COUNT={count}"])


def _instant(text: str) -> datetime:
    """A UTC dateTime as Google, Graph (Prefer: outlook.timezone="UTC") or iCalendar readers give it."""
    value = datetime.fromisoformat(text.split(".", 1)[0])
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Remote:
    """What every provider's test double offers; subclasses speak the provider's own API."""

    name: str  # the parametrisation id
    kind: str  # calsync's provider name (account kind)
    url: str  # the base URL calsync's account uses; its /emulator/... is the admin surface
    calendar: str  # the default calendar's remote id
    push: bool = False
    create_method = "POST"  # the HTTP method of calsync's create, and of its update
    update_method = "PUT"
    # what withdrawing a create whose answer may have been lost sends (Provider.withdraw_create)
    withdraw_methods: tuple[str, ...] = ("DELETE",)
    default_page_size = 2500  # what calsync asks for when nobody says otherwise

    # --- calsync's side -----------------------------------------------------------------------

    def credentials(self) -> dict[str, Any]:
        raise NotImplementedError

    def page_options(self, page_size: int) -> dict[str, Any]:
        """Provider options that make one page (or one fetch batch) hold `page_size` events."""
        return {"page_size": page_size}

    def make_provider(self, page_size: int = 2500) -> Callable[[Account], Provider]:
        def make(account: Account) -> Provider:
            return provider_for(account, retry=QUICK_RETRY, **self.page_options(page_size))
        return make

    def bind(self, engine: Engine, calendar: str | None = None, *, direction: str = "two-way",
             policy: str = "ask", local_calendar: str | None = None) -> str:
        """An account (one per remote) and a binding of `calendar` to a (new) local calendar."""
        name = f"{self.name}-tester"
        with engine.begin() as conn:
            existing = [a for a in account_store.list_accounts(conn) if a["name"] == name]
            account = existing[0]["id"] if existing else account_store.create_account(
                conn, self.kind, name, self.url, self.credentials())
            target = local_calendar or account_store.create_calendar(conn, f"{self.name}:{calendar or self.calendar}")
            return account_store.create_binding(conn, target, account, calendar or self.calendar, direction, policy)

    def full_requests(self, events: int, page_size: int) -> int:
        """Requests of a full listing of `events` events (and of an incremental one with that many changes)."""
        return max(1, math.ceil(events / page_size))

    def provider(self, page_size: int = 2500) -> Provider:
        """calsync's client of this remote, made as the engine makes it (for suites that call the
        provider's methods directly, tests/test_provider_conformance.py)."""
        return self.make_provider(page_size)(
            Account("", self.kind, f"{self.name}-tester", self.url, self.credentials()))

    def refused_token(self, token: str, calendar: str | None = None) -> str:
        """A sync token the provider must now refuse in place of `token` (issued for `calendar`):
        `token` itself, invalidated on the service, or where a service cannot be told to forget
        tokens, one it never issued (what invalidate_tokens stores)."""
        raise NotImplementedError

    def invalidate_tokens(self, engine: Engine, calendar: str | None = None) -> None:
        """Make the provider refuse the sync tokens calsync holds for `calendar`."""
        raise NotImplementedError

    # --- another client's side ----------------------------------------------------------------

    def new_calendar(self, name: str) -> str:
        raise NotImplementedError

    def insert(self, title: str, at: datetime | None = None, calendar: str | None = None, *,
               location: str | None = None, description: str | None = None) -> str:
        """Create a one-hour event (at `at`, default 2026-12-01 09:00 UTC); returns its remote id."""
        raise NotImplementedError

    def change(self, remote_id: str, calendar: str | None = None, *, title: str | None = None,
               at: datetime | None = None, location: str | None = None, description: str | None = None,
               attendees: list[str] | None = None) -> None:
        """Edit some fields; `at` moves the event (keeping one hour); `attendees` (e-mail addresses)
        replaces the attendee list."""
        raise NotImplementedError

    def cancel(self, remote_id: str, calendar: str | None = None) -> None:
        """Cancel the event the provider's way (it stays as a cancelled event or disappears)."""
        raise NotImplementedError

    def delete(self, remote_id: str, calendar: str | None = None) -> None:
        raise NotImplementedError

    def titles(self, calendar: str | None = None) -> dict[str, str]:
        """Every live event of the calendar: remote id -> title."""
        raise NotImplementedError

    def text_of(self, remote_id: str, calendar: str | None = None) -> str:
        """The event as another client sees it, as text (to look for join links, titles ...)."""
        raise NotImplementedError

    def all_titles(self, calendar: str | None = None) -> dict[str, str]:
        """titles(), but also what lies outside calsync's listing window where it has one (Graph)."""
        return self.titles(calendar)

    def seed(self, count: int, calendar: str | None = None) -> None:
        raise NotImplementedError

    # recurring series (weekly, half-hour occurrences, UTC), changed as another client would
    def insert_series(self, title: str, at: datetime, count: int, calendar: str | None = None) -> str:
        """A weekly series of `count` half-hour occurrences from `at`; returns the series' remote id."""
        raise NotImplementedError

    def move_occurrence(self, series_id: str, original_start: datetime, to: datetime, title: str,
                        calendar: str | None = None) -> None:
        """Move and rename one occurrence (it becomes an exception of the series)."""
        raise NotImplementedError

    def delete_occurrence(self, series_id: str, original_start: datetime, calendar: str | None = None) -> None:
        """Delete one occurrence (plain or moved) the provider's way: Google cancels the instance,
        Outlook deletes the occurrence, a CalDAV client adds an EXDATE (and drops the override)."""
        raise NotImplementedError

    def occurrences(self, lo: datetime, hi: datetime, calendar: str | None = None) -> list[tuple[datetime, str]]:
        """What a person sees in [lo, hi): (start, title) of every live event and occurrence, sorted."""
        return [(at, title) for at, title, _kind in self.occurrence_kinds(lo, hi, calendar)]

    def occurrence_kinds(self, lo: datetime, hi: datetime,
                         calendar: str | None = None) -> list[tuple[datetime, str, str]]:
        """occurrences(), each with what the service says it is: "single" (no series), or an instance of
        a series: "occurrence" (as the rule makes it) or "exception" (changed from the rule), where the
        service tells those two apart (Graph's type, a CalDAV override, a memory exception), else
        "instance" (Google: an instance is an instance, moved or not)."""
        raise NotImplementedError

    def set_series_count(self, series_id: str, count: int, calendar: str | None = None) -> None:
        """Another client changes the series' rule to end after `count` occurrences (its COUNT);
        everything else of the series stays as it is (the service does what it does to exceptions)."""
        raise NotImplementedError

    def occurrence_state(self, series_id: str, original_start: datetime, calendar: str | None = None) -> str:
        """How the service holds one occurrence: "live", "cancelled" (an instance kept with status
        cancelled), "gone" (not listed at all) or "excluded" (an EXDATE on the series, no override)."""
        raise NotImplementedError

    restorable: bool = False  # a cancelled event can be confirmed again (`restore`)

    def remove_conference(self, remote_id: str, calendar: str | None = None) -> None:
        """The user takes the conference calsync wrote off the event, the way their client would."""
        raise NotImplementedError

    def restore(self, remote_id: str, calendar: str | None = None) -> None:
        """Undo a cancellation (or Google's deletion): the event is confirmed again (if `restorable`)."""
        raise NotImplementedError

    # --- admin surface (same on every remote) -------------------------------------------------

    def listed_calendar(self, entry: dict[str, Any]) -> str | None:
        """The calendar whose events a logged request listed (None for any other request)."""
        raise NotImplementedError

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url.rstrip('/')}/emulator{path}", **kwargs).raise_for_status()

    def fault(self, **spec: Any) -> None:
        self.admin("POST", "/faults", json=spec)

    def clear_faults(self) -> None:
        self.admin("DELETE", "/faults")

    def requests(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", "/requests").json()["requests"])

    def clear_requests(self) -> None:
        self.admin("DELETE", "/requests")

    def writes(self) -> list[str]:
        """Methods of the write requests in the log (what reached the provider as a change)."""
        return [r["method"] for r in self.requests() if r["method"] in ("POST", "PUT", "PATCH", "DELETE")
                and not r["path"].endswith("/$batch")]  # Graph's JSON batch: its items are logged each


# --- Google -----------------------------------------------------------------------------------


class GoogleRemote(Remote):
    name = kind = "google"
    push = True

    def __init__(self, url: str, user: str = "alice") -> None:
        self.url, self.user = url, user
        self.http = httpx.Client(base_url=f"{url}/calendar/v3", headers={"Authorization": f"Bearer {user}"})
        self.calendar = self.http.get("/calendars/primary").raise_for_status().json()["id"]

    def credentials(self) -> dict[str, Any]:
        return {"token": self.user}

    def invalidate_tokens(self, engine: Engine, calendar: str | None = None) -> None:
        self.admin("POST", f"/calendars/{calendar or self.calendar}/invalidate-tokens")

    def refused_token(self, token: str, calendar: str | None = None) -> str:
        self.admin("POST", f"/calendars/{calendar or self.calendar}/invalidate-tokens")
        return token

    def new_calendar(self, name: str) -> str:
        return str(self.http.post("/calendars", json={"summary": name}).raise_for_status().json()["id"])

    def _events(self, calendar: str | None) -> str:
        return f"/calendars/{calendar or self.calendar}/events"

    def insert(self, title: str, at: datetime | None = None, calendar: str | None = None, *,
               location: str | None = None, description: str | None = None,
               extended_properties: dict[str, Any] | None = None) -> str:
        """Also with Google's extendedProperties ({"private": {...}, "shared": {...}}), which only Google has."""
        start = at or DAY
        body = {"summary": title, "start": {"dateTime": start.isoformat()},
                "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
                **({"location": location} if location else {}), **({"description": description} if description else {}),
                **({"extendedProperties": extended_properties} if extended_properties else {})}
        return str(self.http.post(self._events(calendar), json=body).raise_for_status().json()["id"])

    def change(self, remote_id: str, calendar: str | None = None, *, title: str | None = None,
               at: datetime | None = None, location: str | None = None, description: str | None = None,
               attendees: list[str] | None = None) -> None:
        body: dict[str, Any] = {}
        if attendees is not None:
            body["attendees"] = [{"email": email} for email in attendees]
        if title is not None:
            body["summary"] = title
        if at is not None:
            body["start"] = {"dateTime": at.isoformat()}
            body["end"] = {"dateTime": (at + timedelta(hours=1)).isoformat()}
        if location is not None:
            body["location"] = location
        if description is not None:
            body["description"] = description
        self.http.patch(f"{self._events(calendar)}/{remote_id}", json=body).raise_for_status()

    def cancel(self, remote_id: str, calendar: str | None = None) -> None:
        self.http.patch(f"{self._events(calendar)}/{remote_id}", json={"status": "cancelled"}).raise_for_status()

    def delete(self, remote_id: str, calendar: str | None = None) -> None:
        self.http.delete(f"{self._events(calendar)}/{remote_id}").raise_for_status()

    restorable = True  # a deleted or cancelled Google event is status=cancelled until confirmed again

    def restore(self, remote_id: str, calendar: str | None = None) -> None:
        self.http.patch(f"{self._events(calendar)}/{remote_id}", json={"status": "confirmed"}).raise_for_status()

    def remove_conference(self, remote_id: str, calendar: str | None = None) -> None:
        """PUT the event back without conferenceData (conferenceDataVersion=1 makes that a removal)."""
        path = f"{self._events(calendar)}/{remote_id}"
        current = self.http.get(path, params={"conferenceDataVersion": 1}).raise_for_status().json()
        body = {k: v for k, v in current.items() if k != "conferenceData"}
        self.http.put(path, params={"conferenceDataVersion": 1}, json=body).raise_for_status()

    def titles(self, calendar: str | None = None) -> dict[str, str]:
        out: dict[str, str] = {}
        params: dict[str, Any] = {"maxResults": 2500}
        while True:
            body = self.http.get(self._events(calendar), params=params).raise_for_status().json()
            out.update({e["id"]: e.get("summary", "") for e in body["items"] if e.get("status") != "cancelled"})
            if "nextPageToken" not in body:
                return out
            params["pageToken"] = body["nextPageToken"]

    def text_of(self, remote_id: str, calendar: str | None = None) -> str:
        response = self.http.get(f"{self._events(calendar)}/{remote_id}", params={"conferenceDataVersion": 1})
        return "" if response.status_code == 404 else response.raise_for_status().text

    def seed(self, count: int, calendar: str | None = None) -> None:
        body = {"count": count, "start": SEED_START, "days": 60, "seed": 7}
        self.admin("POST", f"/calendars/{calendar or self.calendar}/seed", json=body)

    def insert_series(self, title: str, at: datetime, count: int, calendar: str | None = None) -> str:
        body = {"summary": title, "start": _utc_time(at), "end": _utc_time(at + timedelta(hours=1)),
                "recurrence": [f"RRULE:FREQ=WEEKLY;COUNT={count}"]}
        return str(self.http.post(self._events(calendar), json=body).raise_for_status().json()["id"])

    @staticmethod
    def instance_id(series_id: str, original_start: datetime) -> str:
        """Google's id of one instance of a series: `<series id>_<original start in UTC>`."""
        return f"{series_id}_{original_start.astimezone(UTC):%Y%m%dT%H%M%SZ}"

    def move_occurrence(self, series_id: str, original_start: datetime, to: datetime, title: str,
                        calendar: str | None = None) -> None:
        self.http.patch(f"{self._events(calendar)}/{self.instance_id(series_id, original_start)}", json={
            "summary": title, "start": _utc_time(to), "end": _utc_time(to + timedelta(hours=1))}).raise_for_status()

    def delete_occurrence(self, series_id: str, original_start: datetime, calendar: str | None = None) -> None:
        """DELETE of the instance id: Google keeps it as a cancelled instance."""
        self.http.delete(f"{self._events(calendar)}/{self.instance_id(series_id, original_start)}").raise_for_status()

    def occurrence_state(self, series_id: str, original_start: datetime, calendar: str | None = None) -> str:
        response = self.http.get(f"{self._events(calendar)}/{self.instance_id(series_id, original_start)}")
        if response.status_code == 404:
            return "gone"
        return "cancelled" if response.raise_for_status().json().get("status") == "cancelled" else "live"

    def occurrence_kinds(self, lo: datetime, hi: datetime,
                         calendar: str | None = None) -> list[tuple[datetime, str, str]]:
        """singleEvents=true: each series expanded; an instance names its series (recurringEventId)."""
        params: dict[str, Any] = {"timeMin": _utc(lo), "timeMax": _utc(hi), "singleEvents": "true", "maxResults": 2500}
        items = self.http.get(self._events(calendar), params=params).raise_for_status().json()["items"]
        return sorted((_instant(i["start"]["dateTime"]), i.get("summary", ""),
                       "instance" if i.get("recurringEventId") else "single") for i in items
                      if i.get("status") != "cancelled")

    def set_series_count(self, series_id: str, count: int, calendar: str | None = None) -> None:
        path = f"{self._events(calendar)}/{series_id}"
        lines = self.http.get(path).raise_for_status().json()["recurrence"]
        self.http.patch(path, json={"recurrence": [_with_count(line, count) for line in lines]}).raise_for_status()

    def extended_properties(self, remote_id: str, calendar: str | None = None) -> dict[str, Any]:
        """The event's extendedProperties as Google holds them ({} when it has none)."""
        event = self.http.get(f"{self._events(calendar)}/{remote_id}").raise_for_status().json()
        return dict(event.get("extendedProperties") or {})

    def listed_calendar(self, entry: dict[str, Any]) -> str | None:
        match = re.fullmatch(r"/calendar/v3/calendars/([^/]+)/events", entry["path"])
        return unquote(match.group(1)) if match and entry["method"] == "GET" else None


# --- Microsoft Graph --------------------------------------------------------------------------


class GraphRemote(Remote):
    name = kind = "graph"
    push = True
    update_method = "PATCH"
    withdraw_methods = ("POST", "DELETE")  # the create replayed with its transactionId, then deleted
    default_page_size = 100

    def __init__(self, url: str, user: str = "adele") -> None:
        self.url, self.user = url, user
        self.http = httpx.Client(base_url=f"{url}/v1.0", headers={
            "Authorization": f"Bearer {user}", "Prefer": 'outlook.timezone="UTC", IdType="ImmutableId"'})
        calendars = self.http.get("/me/calendars").raise_for_status().json()["value"]
        self.calendar = next(str(c["id"]) for c in calendars if c.get("isDefaultCalendar"))

    def page_options(self, page_size: int) -> dict[str, Any]:
        return {"page_size": page_size, "window": GRAPH_TEST_WINDOW}

    def credentials(self) -> dict[str, Any]:
        return {"token": self.user}

    def invalidate_tokens(self, engine: Engine, calendar: str | None = None) -> None:
        self.admin("POST", "/delta/expire")

    def refused_token(self, token: str, calendar: str | None = None) -> str:
        self.admin("POST", "/delta/expire")
        return token

    def new_calendar(self, name: str) -> str:
        return str(self.http.post("/me/calendars", json={"name": name}).raise_for_status().json()["id"])

    @staticmethod
    def _time(at: datetime) -> dict[str, str]:
        return {"dateTime": at.astimezone(UTC).replace(tzinfo=None).isoformat(), "timeZone": "UTC"}

    def insert(self, title: str, at: datetime | None = None, calendar: str | None = None, *,
               location: str | None = None, description: str | None = None) -> str:
        start = at or DAY
        body: dict[str, Any] = {"subject": title, "start": self._time(start),
                                "end": self._time(start + timedelta(hours=1))}
        if location:
            body["location"] = {"displayName": location}
        if description:
            body["body"] = {"contentType": "text", "content": description}
        path = f"/me/calendars/{calendar or self.calendar}/events"
        return str(self.http.post(path, json=body).raise_for_status().json()["id"])

    def change(self, remote_id: str, calendar: str | None = None, *, title: str | None = None,
               at: datetime | None = None, location: str | None = None, description: str | None = None,
               attendees: list[str] | None = None) -> None:
        body: dict[str, Any] = {}
        if attendees is not None:
            body["attendees"] = [{"type": "required", "emailAddress": {"address": email}} for email in attendees]
        if title is not None:
            body["subject"] = title
        if at is not None:
            body.update(start=self._time(at), end=self._time(at + timedelta(hours=1)))
        if location is not None:
            body["location"] = {"displayName": location}
        if description is not None:
            body["body"] = {"contentType": "text", "content": description}
        self.http.patch(f"/me/events/{remote_id}", json=body).raise_for_status()

    def cancel(self, remote_id: str, calendar: str | None = None) -> None:
        self.http.post(f"/me/events/{remote_id}/cancel", json={"comment": "cancelled"}).raise_for_status()

    def delete(self, remote_id: str, calendar: str | None = None) -> None:
        self.http.delete(f"/me/events/{remote_id}").raise_for_status()

    def remove_conference(self, remote_id: str, calendar: str | None = None) -> None:
        """Outlook: the user deletes the join block from the body (and the join link from the location)."""
        current = self.http.get(f"/me/events/{remote_id}").raise_for_status().json()
        content = (current.get("body") or {}).get("content") or ""
        stripped = re.sub(r'<div id="calsync-conference".*?</div>', "", content, flags=re.DOTALL)
        assert stripped != content, "no calsync conference block in the body"
        body: dict[str, Any] = {"body": {"contentType": (current.get("body") or {}).get("contentType", "html"),
                                         "content": stripped}}
        if "://" in ((current.get("location") or {}).get("displayName") or ""):
            body["location"] = {"displayName": ""}
        self.http.patch(f"/me/events/{remote_id}", json=body).raise_for_status()

    def titles(self, calendar: str | None = None) -> dict[str, str]:
        url = f"/me/calendars/{calendar or self.calendar}/calendarView/delta"
        params: dict[str, Any] | None = graph_window_params()
        out: dict[str, str] = {}
        while True:
            body = self.http.get(url, params=params, headers={
                "Prefer": 'outlook.timezone="UTC", IdType="ImmutableId", odata.maxpagesize=500',
            }).raise_for_status().json()
            out.update({e["id"]: e.get("subject", "") for e in body["value"]
                        if "@removed" not in e and not e.get("isCancelled")})
            if "@odata.nextLink" not in body:
                return out
            url, params = body["@odata.nextLink"], None

    def all_titles(self, calendar: str | None = None) -> dict[str, str]:
        """/events lists singles and series masters whatever their dates: what no window shows too."""
        url = f"/me/calendars/{calendar or self.calendar}/events"
        params: dict[str, Any] | None = {"$top": 500}
        out: dict[str, str] = {}
        while True:
            body = self.http.get(url, params=params).raise_for_status().json()
            out.update({e["id"]: e.get("subject", "") for e in body["value"] if not e.get("isCancelled")})
            if "@odata.nextLink" not in body:
                return out
            url, params = body["@odata.nextLink"], None

    def text_of(self, remote_id: str, calendar: str | None = None) -> str:
        response = self.http.get(f"/me/events/{remote_id}")
        return "" if response.status_code == 404 else response.raise_for_status().text

    def seed(self, count: int, calendar: str | None = None) -> None:
        body = {"count": count, "start": SEED_START, "days": 60, "seed": 7}
        self.admin("POST", f"/calendars/{calendar or self.calendar}/seed", json=body)

    def insert_series(self, title: str, at: datetime, count: int, calendar: str | None = None) -> str:
        body = {"subject": title, "start": self._time(at), "end": self._time(at + timedelta(hours=1)),
                "recurrence": {"pattern": {"type": "weekly", "interval": 1,
                                           "daysOfWeek": [at.astimezone(UTC).strftime("%A").lower()]},
                               "range": {"type": "numbered", "startDate": at.astimezone(UTC).date().isoformat(),
                                         "numberOfOccurrences": count}}}
        path = f"/me/calendars/{calendar or self.calendar}/events"
        return str(self.http.post(path, json=body).raise_for_status().json()["id"])

    def occurrence_id(self, series_id: str, original_start: datetime) -> str:
        """The id of the series' occurrence (or exception) that was to start at `original_start`."""
        params = {"startDateTime": _utc(original_start - timedelta(days=1)),
                  "endDateTime": _utc(original_start + timedelta(days=2))}
        items = self.http.get(f"/me/events/{series_id}/instances", params=params).raise_for_status().json()["value"]
        found = [i["id"] for i in items if i.get("originalStart") and _instant(i["originalStart"]) == original_start]
        assert found, f"no occurrence of {series_id} at {original_start}"
        return str(found[0])

    def move_occurrence(self, series_id: str, original_start: datetime, to: datetime, title: str,
                        calendar: str | None = None) -> None:
        self.http.patch(f"/me/events/{self.occurrence_id(series_id, original_start)}", json={
            "subject": title, "start": self._time(to), "end": self._time(to + timedelta(hours=1))}).raise_for_status()

    def delete_occurrence(self, series_id: str, original_start: datetime, calendar: str | None = None) -> None:
        """Outlook deletes the occurrence (Graph keeps no EXDATE: it is just no longer listed)."""
        self.http.delete(f"/me/events/{self.occurrence_id(series_id, original_start)}").raise_for_status()

    def occurrence_state(self, series_id: str, original_start: datetime, calendar: str | None = None) -> str:
        params = {"startDateTime": _utc(original_start - timedelta(days=1)),
                  "endDateTime": _utc(original_start + timedelta(days=2))}
        items = self.http.get(f"/me/events/{series_id}/instances", params=params).raise_for_status().json()["value"]
        found = [i for i in items if i.get("originalStart") and _instant(i["originalStart"]) == original_start]
        if not found:
            return "gone"
        return "cancelled" if found[0].get("isCancelled") else "live"

    KINDS: ClassVar[dict[str, str]] = {"singleInstance": "single", "occurrence": "occurrence",
                                       "exception": "exception"}

    def occurrence_kinds(self, lo: datetime, hi: datetime,
                         calendar: str | None = None) -> list[tuple[datetime, str, str]]:
        """calendarView: occurrences, exceptions and single events, each with its type."""
        params: dict[str, Any] = {"startDateTime": _utc(lo), "endDateTime": _utc(hi), "$top": 1000}
        items = self.http.get(f"/me/calendars/{calendar or self.calendar}/calendarView", params=params
                              ).raise_for_status().json()["value"]
        return sorted((_instant(i["start"]["dateTime"]), i.get("subject", ""), self.KINDS[i["type"]]) for i in items
                      if not i.get("isCancelled"))

    def set_series_count(self, series_id: str, count: int, calendar: str | None = None) -> None:
        """PATCH of the whole recurrence (Graph replaces it): a numbered range of `count`."""
        recurrence = self.http.get(f"/me/events/{series_id}").raise_for_status().json()["recurrence"]
        recurrence["range"] = {**recurrence["range"], "type": "numbered", "numberOfOccurrences": count}
        recurrence["range"].pop("endDate", None)
        self.http.patch(f"/me/events/{series_id}", json={"recurrence": recurrence}).raise_for_status()

    def listed_calendar(self, entry: dict[str, Any]) -> str | None:
        match = re.fullmatch(r"/v1\.0/me/calendars/([^/]+)/calendarView/delta", entry["path"])
        return unquote(match.group(1)) if match and entry["method"] == "GET" else None


# --- CalDAV (real servers behind the fault proxy) -----------------------------------------------


class CalDAVRemote(Remote):
    """A real Radicale or Xandikos; calsync talks to it through a FaultProxy, the other client directly."""

    kind = "caldav"
    create_method = "PUT"  # with If-None-Match: *
    default_page_size = 200

    def __init__(self, server: CalDAVServer, proxy_url: str) -> None:
        self.server, self.name = server, server.kind
        self.url = proxy_url + "/"
        self.calendars: dict[str, DavCalendar] = {}
        self.calendar = self.new_calendar("Test calendar")

    def close(self) -> None:
        for dav in self.calendars.values():
            dav.http.close()

    def credentials(self) -> dict[str, Any]:
        return {"username": self.server.username, "password": self.server.password}

    def page_options(self, page_size: int) -> dict[str, Any]:
        return {"batch_size": page_size, "page_events": page_size}

    def full_requests(self, events: int, page_size: int) -> int:
        """One sync-collection REPORT, then one calendar-multiget per batch of changed members."""
        return 1 + math.ceil(events / page_size)

    def _bogus_token(self) -> str:
        return "dav:http://radicale.org/ns/sync/0000" if self.server.kind == "radicale" else "dav:" + "0" * 40

    def invalidate_tokens(self, engine: Engine, calendar: str | None = None) -> None:
        """A token the server never issued (a real server forgets tokens: Radicale prunes them)."""
        bogus = self._bogus_token()
        with engine.begin() as conn:
            conn.execute(update(bindings).where(bindings.c.remote_calendar_id == (calendar or self.calendar))
                         .where(bindings.c.sync_token.is_not(None)).values(sync_token=bogus))

    def refused_token(self, token: str, calendar: str | None = None) -> str:
        return self._bogus_token()

    def new_calendar(self, name: str) -> str:
        dav = make_calendar(self.server)
        self.calendars[dav.path] = dav
        return dav.path

    def _dav(self, calendar: str | None) -> DavCalendar:
        return self.calendars[calendar or self.calendar]

    def insert(self, title: str, at: datetime | None = None, calendar: str | None = None, *,
               location: str | None = None, description: str | None = None) -> str:
        name = f"other-{uuid.uuid4().hex[:12]}"
        body = "".join([f"LOCATION:{location}\n" if location else "",
                        f"DESCRIPTION:{description}\n" if description else ""])
        self._dav(calendar).put(name, ics(f"{name}@other", title, at or DAY, body=body))
        return name

    def change(self, remote_id: str, calendar: str | None = None, *, title: str | None = None,
               at: datetime | None = None, location: str | None = None, description: str | None = None,
               attendees: list[str] | None = None) -> None:
        dav = self._dav(calendar)
        text, etag = dav.get(remote_id)
        parsed = Calendar.from_ical(text)
        vevent = parsed.events[0]
        if attendees is not None:
            vevent.pop("ATTENDEE", None)
            for email in attendees:
                vevent.add("ATTENDEE", f"mailto:{email}")
        for key, value in (("SUMMARY", title), ("LOCATION", location), ("DESCRIPTION", description)):
            if value is not None:
                vevent.pop(key, None)
                vevent.add(key, value)
        if at is not None:
            for key, value in (("DTSTART", at), ("DTEND", at + timedelta(hours=1))):
                vevent.pop(key, None)
                vevent.add(key, value.astimezone(UTC))
        vevent.pop("SEQUENCE", None)
        vevent.add("SEQUENCE", int(vevent.get("SEQUENCE", 0)) + 1)
        dav.put(remote_id, parsed.to_ical().decode(), if_match=etag)

    def cancel(self, remote_id: str, calendar: str | None = None) -> None:
        dav = self._dav(calendar)
        text, etag = dav.get(remote_id)
        parsed = Calendar.from_ical(text)
        parsed.events[0].pop("STATUS", None)
        parsed.events[0].add("STATUS", "CANCELLED")
        dav.put(remote_id, parsed.to_ical().decode(), if_match=etag)

    def delete(self, remote_id: str, calendar: str | None = None) -> None:
        self._dav(calendar).delete(remote_id)

    restorable = True  # STATUS:CANCELLED back to STATUS:CONFIRMED

    def _rewrite_vevent(self, remote_id: str, calendar: str | None, edit: Callable[[Any], None]) -> None:
        dav = self._dav(calendar)
        text, etag = dav.get(remote_id)
        parsed = Calendar.from_ical(text)
        edit(parsed.events[0])
        dav.put(remote_id, parsed.to_ical().decode(), if_match=etag)

    def restore(self, remote_id: str, calendar: str | None = None) -> None:
        def confirm(vevent: Any) -> None:
            vevent.pop("STATUS", None)
            vevent.add("STATUS", "CONFIRMED")
        self._rewrite_vevent(remote_id, calendar, confirm)

    def remove_conference(self, remote_id: str, calendar: str | None = None) -> None:
        """The CONFERENCE property goes (and URL, when it is the same join link)."""
        def drop(vevent: Any) -> None:
            assert vevent.get("CONFERENCE") is not None, "no CONFERENCE on the event"
            joins = {str(p) for p in (vevent["CONFERENCE"] if isinstance(vevent["CONFERENCE"], list)
                                      else [vevent["CONFERENCE"]])}
            vevent.pop("CONFERENCE", None)
            if str(vevent.get("URL", "")) in joins:
                vevent.pop("URL", None)
        self._rewrite_vevent(remote_id, calendar, drop)

    def titles(self, calendar: str | None = None) -> dict[str, str]:
        dav = self._dav(calendar)
        out: dict[str, str] = {}
        for name in dav.names():
            text, etag = dav.get(name)
            for event in ical.remote_events(name, etag, text):
                if event.data.status != "cancelled":
                    out[event.remote_id] = event.data.title
        return out

    def text_of(self, remote_id: str, calendar: str | None = None) -> str:
        dav = self._dav(calendar)
        return dav.get(remote_id)[0] if dav.exists(remote_id) else ""

    def seed(self, count: int, calendar: str | None = None) -> None:
        self._dav(calendar).seed(count, prefix=f"seed{uuid.uuid4().hex[:4]}")

    def insert_series(self, title: str, at: datetime, count: int, calendar: str | None = None) -> str:
        name = f"other-{uuid.uuid4().hex[:12]}"
        self._dav(calendar).put(name, ics(f"{name}@other", title, at, body=f"RRULE:FREQ=WEEKLY;COUNT={count}"))
        return name

    def _series_edit(self, series_id: str, calendar: str | None, edit: Callable[[Any, Any], None]) -> None:
        """Apply `edit(calendar object, master VEVENT)` to a series' resource and PUT it back (If-Match)."""
        dav = self._dav(calendar)
        text, etag = dav.get(series_id)
        parsed: Any = Calendar.from_ical(text)
        master = next(e for e in parsed.events if "RECURRENCE-ID" not in e)
        edit(parsed, master)
        dav.put(series_id, parsed.to_ical().decode(), if_match=etag)

    @staticmethod
    def _drop_override(parsed: Any, original_start: datetime) -> None:
        for comp in [e for e in parsed.events if "RECURRENCE-ID" in e]:
            if comp["RECURRENCE-ID"].dt == original_start:
                parsed.subcomponents.remove(comp)

    def move_occurrence(self, series_id: str, original_start: datetime, to: datetime, title: str,
                        calendar: str | None = None) -> None:
        def add_override(parsed: Any, master: Any) -> None:
            self._drop_override(parsed, original_start)
            override = Event()
            values: dict[str, Any] = {
                "UID": master["UID"], "DTSTAMP": datetime.now(UTC).replace(microsecond=0),
                "RECURRENCE-ID": original_start.astimezone(UTC), "DTSTART": to.astimezone(UTC),
                "DTEND": (to + timedelta(hours=1)).astimezone(UTC), "SUMMARY": title}
            for key, value in values.items():
                override.add(key, value)
            parsed.add_component(override)
        self._series_edit(series_id, calendar, add_override)

    def delete_occurrence(self, series_id: str, original_start: datetime, calendar: str | None = None) -> None:
        """An EXDATE on the master, and the occurrence's override (if it was moved) removed."""
        def exclude(parsed: Any, master: Any) -> None:
            self._drop_override(parsed, original_start)
            master.add("EXDATE", original_start.astimezone(UTC))
        self._series_edit(series_id, calendar, exclude)

    def occurrence_state(self, series_id: str, original_start: datetime, calendar: str | None = None) -> str:
        parsed: Any = Calendar.from_ical(self._dav(calendar).get(series_id)[0])
        master = next(e for e in parsed.events if "RECURRENCE-ID" not in e)
        override = next((e for e in parsed.events if "RECURRENCE-ID" in e
                         and e["RECURRENCE-ID"].dt == original_start), None)
        if override is not None:
            return "cancelled" if str(override.get("STATUS", "")).upper() == "CANCELLED" else "live"
        excluded = {d.dt for prop in _as_list(master.get("EXDATE")) for d in prop.dts}
        return "excluded" if original_start in excluded else "live"

    def occurrence_kinds(self, lo: datetime, hi: datetime,
                         calendar: str | None = None) -> list[tuple[datetime, str, str]]:
        """Each resource expanded as a CalDAV client shows it: RRULE less EXDATEs, overrides in place
        (an override is an "exception")."""
        dav = self._dav(calendar)
        out: list[tuple[datetime, str, str]] = []
        for name in dav.names():
            parsed: Any = Calendar.from_ical(dav.get(name)[0])
            master = next(e for e in parsed.events if "RECURRENCE-ID" not in e)
            overrides = {e["RECURRENCE-ID"].dt: e for e in parsed.events if "RECURRENCE-ID" in e}
            start = master["DTSTART"].dt
            if "RRULE" not in master:
                starts: list[datetime] = [start]
            else:
                rule = rrulestr(master["RRULE"].to_ical().decode(), dtstart=start)
                excluded = {d.dt for prop in _as_list(master.get("EXDATE")) for d in prop.dts}
                starts = [s for s in rule if s not in excluded]
            for at in starts:
                comp = overrides.pop(at, master)
                kind = "single" if "RRULE" not in master else "occurrence" if comp is master else "exception"
                if str(comp.get("STATUS", "")).upper() != "CANCELLED":
                    out.append((comp["DTSTART"].dt if comp is not master else at, str(comp.get("SUMMARY", "")), kind))
        return sorted((at.astimezone(UTC), title, kind) for at, title, kind in out if lo <= at < hi)

    def set_series_count(self, series_id: str, count: int, calendar: str | None = None) -> None:
        def recount(parsed: Any, master: Any) -> None:
            rule = master["RRULE"]
            rule.pop("UNTIL", None)
            rule["COUNT"] = [count]
        self._series_edit(series_id, calendar, recount)

    def listed_calendar(self, entry: dict[str, Any]) -> str | None:
        return unquote(entry["path"]) if entry["method"] == "REPORT" else None


# --- the in-memory service (no server: calsync.providers.memory) ---------------------------------


class MemoryRemote(Remote):
    """A MemoryService: calsync reaches it through MemoryProvider, the other client calls the service
    itself. The admin surface works on the service (faults by provider method, the call log)."""

    name = kind = "memory"
    url = "memory://"
    create_method = "insert_event"  # the "methods" of a fault rule are provider method names here
    update_method = "update_event"
    withdraw_methods = ("delete_event",)
    default_page_size = 100
    restorable = True  # a cancelled event is confirmed again by an edit
    # an HTTP method in a fault rule, as the provider methods that send it
    VERBS: ClassVar[dict[str, tuple[str, ...]]] = {
        "GET": ("list_changes", "get_event", "fetch_events", "list_calendars"), "REPORT": ("list_changes",),
        "POST": ("insert_event",), "PUT": ("update_event",), "PATCH": ("update_event",),
        "DELETE": ("delete_event", "cancel_occurrence")}
    WRITES = ("insert_event", "update_event", "delete_event", "cancel_occurrence")

    def __init__(self, service: MemoryService | None = None) -> None:
        self.service = service or MemoryService()
        self.calendar = self.service.add_calendar("Test calendar", primary=True)
        self._log_start = 0

    def credentials(self) -> dict[str, Any]:
        return {}

    def make_provider(self, page_size: int = 100) -> Callable[[Account], Provider]:
        def make(account: Account) -> Provider:
            return MemoryProvider(self.service, page_size=page_size)
        return make

    def invalidate_tokens(self, engine: Engine | None = None, calendar: str | None = None) -> None:
        self.service.invalidate_tokens(calendar or self.calendar)

    def refused_token(self, token: str, calendar: str | None = None) -> str:
        self.service.invalidate_tokens(calendar or self.calendar)
        return token

    def new_calendar(self, name: str) -> str:
        return self.service.add_calendar(name)

    def _cal(self, calendar: str | None) -> str:
        return calendar or self.calendar

    def insert(self, title: str, at: datetime | None = None, calendar: str | None = None, *,
               location: str | None = None, description: str | None = None) -> str:
        start = at or DAY
        data = EventData(title=title, start=_utc(start), end=_utc(start + timedelta(hours=1)), location=location,
                         description=description)
        return self.service.insert(self._cal(calendar), data).remote_id

    def change(self, remote_id: str, calendar: str | None = None, *, title: str | None = None,
               at: datetime | None = None, location: str | None = None, description: str | None = None,
               attendees: list[str] | None = None) -> None:
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = title
        if at is not None:
            changes.update(start=_utc(at), end=_utc(at + timedelta(hours=1)))
        if location is not None:
            changes["location"] = location or None
        if description is not None:
            changes["description"] = description or None
        if attendees is not None:
            changes["attendees"] = [Attendee(email=email) for email in attendees]
        self.service.edit(self._cal(calendar), remote_id, **changes)

    def cancel(self, remote_id: str, calendar: str | None = None) -> None:
        self.service.edit(self._cal(calendar), remote_id, status="cancelled")

    def restore(self, remote_id: str, calendar: str | None = None) -> None:
        self.service.edit(self._cal(calendar), remote_id, status="confirmed")

    def delete(self, remote_id: str, calendar: str | None = None) -> None:
        self.service.delete(self._cal(calendar), remote_id)

    def remove_conference(self, remote_id: str, calendar: str | None = None) -> None:
        self.service.edit(self._cal(calendar), remote_id, conference=None)

    def titles(self, calendar: str | None = None) -> dict[str, str]:
        return {rid: e.data.title for rid, e in self.service.events(self._cal(calendar)).items()
                if e.data.status != "cancelled"}

    def text_of(self, remote_id: str, calendar: str | None = None) -> str:
        found = self.service.events(self._cal(calendar)).get(remote_id)
        return "" if found is None else repr(found.data)

    def seed(self, count: int, calendar: str | None = None) -> None:
        first = datetime.fromisoformat(SEED_START)
        for n in range(count):
            self.insert(f"seeded {n}", first + timedelta(days=n % 60, hours=8 + n % 9), calendar)

    def insert_series(self, title: str, at: datetime, count: int, calendar: str | None = None) -> str:
        data = EventData(title=title, start=_utc(at), end=_utc(at + timedelta(hours=1)),
                         recurrence=[f"RRULE:FREQ=WEEKLY;COUNT={count}"])
        return self.service.insert(self._cal(calendar), data).remote_id

    def move_occurrence(self, series_id: str, original_start: datetime, to: datetime, title: str,
                        calendar: str | None = None) -> None:
        self.service.move_occurrence(self._cal(calendar), series_id, _utc(original_start), title=title,
                                     start=_utc(to), end=_utc(to + timedelta(hours=1)))

    def delete_occurrence(self, series_id: str, original_start: datetime, calendar: str | None = None) -> None:
        """An EXDATE on the series, its exception (if it was moved) deleted: the memory service's model."""
        self.service.delete_occurrence(self._cal(calendar), series_id, _utc(original_start))

    def occurrence_state(self, series_id: str, original_start: datetime, calendar: str | None = None) -> str:
        held = self.service.events(self._cal(calendar))
        start = _utc(original_start)
        if any(e.series_remote_id == series_id and e.data.original_start == start for e in held.values()):
            return "live"
        series = held[series_id].data
        if not memory_occurs(series, start):
            return "gone"
        return "excluded" if start in excluded_starts(series.recurrence, series.time_zone) else "live"

    def occurrence_kinds(self, lo: datetime, hi: datetime,
                         calendar: str | None = None) -> list[tuple[datetime, str, str]]:
        """Series expanded (rule less EXDATEs, exceptions in place of their occurrence), and single events."""
        held = self.service.events(self._cal(calendar))
        moved = {(e.series_remote_id, e.data.original_start) for e in held.values() if e.series_remote_id}
        out: list[tuple[datetime, str, str]] = []
        for rid, event in held.items():
            data = event.data
            if data.status == "cancelled":
                continue
            if not data.recurrence:
                out.append((_instant(data.start), data.title, "exception" if event.series_remote_id else "single"))
                continue
            excluded = excluded_starts(data.recurrence, data.time_zone)
            out.extend((_instant(start), data.title, "occurrence") for start in starts_between(data, lo, hi)
                       if start not in excluded and (rid, start) not in moved)
        return sorted((at, title, kind) for at, title, kind in out if lo <= at < hi)

    def set_series_count(self, series_id: str, count: int, calendar: str | None = None) -> None:
        lines = self.service.events(self._cal(calendar))[series_id].data.recurrence or []
        self.service.edit(self._cal(calendar), series_id, recurrence=[_with_count(line, count) for line in lines])

    # --- admin surface: the service's fault switches and call log -----------------------------------

    def fault(self, **spec: Any) -> None:
        """status (required), count (None: every call), methods (provider method names or HTTP
        verbs; none: any), after_commit, skip. Latency and rates are not modelled."""
        unknown = set(spec) - {"status", "count", "methods", "after_commit", "skip"}
        if unknown or "status" not in spec:
            raise ValueError(f"memory fault rules take status, count, methods, after_commit, skip; got {spec}")
        methods = [m for name in spec.get("methods") or ["*"] for m in self.VERBS.get(name.upper(), (name,))]
        for method in dict.fromkeys(methods):
            self.service.inject(method, int(spec["status"]), count=spec.get("count") or 10**9,
                                after_commit=bool(spec.get("after_commit")), skip=int(spec.get("skip") or 0))

    def clear_faults(self) -> None:
        self.service.clear_faults()

    def requests(self) -> list[dict[str, Any]]:
        return [{"method": method, "path": calendar} for method, calendar in self.service.log[self._log_start:]]

    def clear_requests(self) -> None:
        self._log_start = len(self.service.log)
        self._position = self.service.position

    def writes(self) -> list[str]:
        return [r["method"] for r in self.requests() if r["method"] in self.WRITES]

    def stored_writes(self) -> int:
        """Changes the service stored (by anyone) since clear_requests: a call that changed nothing adds none."""
        return self.service.position - getattr(self, "_position", 0)

    def listed_calendar(self, entry: dict[str, Any]) -> str | None:
        return str(entry["path"]) if entry["method"] == "list_changes" else None


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _dav_servers() -> Iterator[dict[str, tuple[CalDAVServer, RunningServer, FaultProxy]]]:
    """Radicale and Xandikos, each started on first use, with its fault proxy; stopped at the end."""
    running: dict[str, tuple[CalDAVServer, RunningServer, FaultProxy]] = {}
    yield running
    for server, proxy_server, _proxy in running.values():
        proxy_server.stop()
        server.stop()
        shutil.rmtree(server.storage, ignore_errors=True)


def _dav_remote(kind: str, running: dict[str, tuple[CalDAVServer, RunningServer, FaultProxy]]) -> CalDAVRemote:
    try:
        __import__(kind)
    except ImportError:
        pytest.skip(f"{kind} is not installed: pip install -e '.[dev]'")
    if kind not in running:
        server = start_server(kind)
        proxy = FaultProxy(server.url)
        running[kind] = (server, serve_in_thread(proxy), proxy)
    server, proxy_server, proxy = running[kind]
    proxy.reset()
    return CalDAVRemote(server, proxy_server.url)


def open_remote(name: str, request: pytest.FixtureRequest) -> Remote:
    """A fresh remote of the given kind: emulator reset, or a new calendar on the real server."""
    if name == "google":
        url = request.getfixturevalue("google_url")
        return GoogleRemote(url)
    if name == "graph":
        return GraphRemote(request.getfixturevalue("graph_url"))
    if name == "memory":
        return MemoryRemote()
    remote = _dav_remote(name, request.getfixturevalue("_dav_servers"))
    request.addfinalizer(remote.close)
    return remote


@pytest.fixture(params=REMOTES)
def remote(request: pytest.FixtureRequest) -> Remote:
    """Each provider in turn: Google, Graph (emulators), Radicale, Xandikos (real servers)."""
    return open_remote(str(request.param), request)


@pytest.fixture(params=PUSH_REMOTES)
def push_remote(request: pytest.FixtureRequest) -> Remote:
    """The providers that push change notifications."""
    return open_remote(str(request.param), request)
