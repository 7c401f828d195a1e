"""Randomised convergence harness: one local calendar mirrored to Google, Outlook (Graph) and a real
CalDAV server at once, changed at random on every side, with faults, token invalidations, forced full
resyncs, killed workers and conflicts resolved at random; at the end every side must hold the same
live events, field for field, with no duplicate, no resurrection and every deletion traceable.

    python bench/chaos.py --seed 1 --ops 300
    python bench/chaos.py --seed 1 --ops 10000 --providers google,graph,radicale
    python bench/chaos.py --seed 3 --ops 300 --skip instance_delete,all_day_series --verbose
    python bench/chaos.py --seeds 1,2,3 --ops 10000      # ~15 minutes a seed on a small machine

What runs (all in this process, no subprocess per operation):
- the Google and Graph emulators, each served twice over one emulator object: the engine's server
  applies the fault switches, the "other client" server (this harness, acting as Google Calendar /
  Outlook users) does not, so injected faults only ever reach calsync; Radicale (and Xandikos with
  --providers ...,xandikos) as real servers, calsync talking to them through the fault proxy and
  the other client directly;
- the engine through its library calls: engine.sync.sync_once (the pass `calsync sync` runs),
  engine.local (what the REST API does), engine.conflicts.resolve_conflict.

Operations (names for --skip): create, create_series, edit, move, delete, series_edit, series_delete,
instance_edit, instance_move, instance_delete (on a remote side as another client, or locally through
engine.local), fault (5xx / 429, some answered after the work was done), token (sync tokens
invalidated), full (a forced full resync of one binding), kill (a sync pass killed after a page or
between a remote write and its checkpoint), resolve (an open conflict resolved keep=local|remote).
A sync pass over all bindings (or some of them) runs every few operations.

Every event the harness makes carries a marker in its title, `c<seed>-<n>`, which is how one event
is recognised on every side. The harness keeps a ledger: which marker it created where, which event
or occurrence it deleted on which side and when, and which conflicts it resolved keeping an edit over
a deletion (the only legitimate way for a deleted event to come back).

At the end (and every --check-every operations): faults cleared, every open conflict resolved at
random, sync passes until one is quiet (bounded), then the checks:
- convergence: each side's live events (and the local store's), as another client sees them, are
  the same set of keys with the same fields; a series is compared as its expanded occurrences
  (each occurrence by its original start, with its own fields) plus its master's own fields;
- duplicates: no marker (or occurrence) twice on one side;
- resurrection: nothing the harness deleted is live anywhere, unless a later delete-vs-edit conflict
  resolution kept the edit (and the edit kept was not itself deleted after the conflict was shown);
- losses: nothing the harness created and never deleted is missing anywhere;
- traceability: every tombstone in the store traces to a deletion in the ledger (and, when the store
  records it, to the side named in `deleted_by`, with a `deletion_proof`);
- no open conflict, no failed or pending outbox row, no failing binding after the faults are gone.
Phantom conflicts are reported apart (not counted as problems): a conflict whose remote side the
harness never changed since the last conflict there was settled, i.e. calsync took its own write (or
a provider's re-spelling of it) for someone else's edit, and asks a person to decide for nothing.

Limits, on purpose: the local API cannot make a series or an exception (no recurrence field, no
"this occurrence" operation), so series are born on the remote sides and only existing exceptions
are edited or deleted locally; a series' own time is never moved (providers reshape differently);
another Outlook client only changes events inside Graph's window (calsync's listing cannot see the
rest), but may move them out of it once calsync has seen them.

The process exits 1 when problems are found; each problem names the marker, and --history prints
what the harness did to it (operation numbers), which is the replay.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
import uuid
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from dateutil.rrule import rrulestr
from icalendar import Calendar
from icalendar import Event as VEvent
from sqlalchemy import Engine, select, update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from calsync import caldav_server
from calsync.emulators import google as google_emu
from calsync.emulators import graph as graph_emu
from calsync.emulators.fault_proxy import FaultProxy
from calsync.emulators.server import RunningServer, serve_in_thread
from calsync.engine import local
from calsync.engine.conflicts import ConflictResolved, resolve_conflict
from calsync.engine.sync import SyncReport, sync_once
from calsync.model import Account
from calsync.providers import provider_for
from calsync.providers.base import Provider
from calsync.providers.html_text import html_to_text
from calsync.providers.http import RetryPolicy
from calsync.store import accounts as account_store
from calsync.store import conflicts as conflict_store
from calsync.store import events as event_store
from calsync.store.common import NotFound
from calsync.store.db import open_engine
from calsync.store.schema import bindings, events, outbox

try:  # being added to the engine: a resolution offered on an older remote side is refused
    from calsync.engine.conflicts import ConflictChanged  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older engine
    class ConflictChanged(Exception):  # type: ignore[no-redef]
        pass

PROVIDERS = ("google", "graph", "radicale", "xandikos")
OP_KINDS = ("create", "create_series", "edit", "move", "delete", "series_edit", "series_delete",
            "instance_edit", "instance_move", "instance_delete", "fault", "token", "full", "kill", "resolve")
WEIGHTS = {"create": 14, "create_series": 4, "edit": 16, "move": 7, "delete": 8, "series_edit": 3,
           "series_delete": 1.5, "instance_edit": 3, "instance_move": 3, "instance_delete": 3, "fault": 3,
           "token": 0.7, "full": 0.7, "kill": 1.5, "resolve": 5}
EXTRA_SKIPS = ("all_day", "all_day_series")  # --skip these too: no all-day events (or series) at all
SERIES_OPS = {"create_series", "series_edit", "series_delete", "instance_edit", "instance_move", "instance_delete"}
MARKER = re.compile(r"\bc\d+-\d+\b")
# the engine's provider clients: few quick inline retries, so injected faults often reach the engine;
# a Retry-After above half a second is not slept through but reported (the account backs off)
RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, max_retry_after=0.5)
PAGE = 25  # small pages: full listings take several pages, so a worker can be killed between them
GRAPH_WINDOW = (timedelta(days=-30), timedelta(days=365))  # providers/graph.py DEFAULT_WINDOW
GRAPH_MARGIN = timedelta(days=2)
LATER = timedelta(days=2)  # sync passes run "later", so a push scheduled for a retry is always due
Key = tuple[str, ...]  # ("s", marker) single, ("r", marker) series master, ("i", marker, original start)


class Killed(Exception):
    """A worker killed mid-sync (raised from the engine's after_page / after_write hooks)."""


# --- times --------------------------------------------------------------------------------------


def canon(value: Any, all_day: bool | None = None) -> str:
    """One spelling per boundary: YYYY-MM-DD for all-day, UTC YYYY-MM-DDTHH:MM:SSZ otherwise.
    A floating (naive) time is read as UTC: every time the harness writes is UTC."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            return text
        if len(text) == 8 and text.isdigit():
            return f"{text[:4]}-{text[4:6]}-{text[6:]}"
        if "T" in text and text[8:9] == "T":  # basic iCalendar form 20261207T090000Z
            value = datetime.strptime(text[:15], "%Y%m%dT%H%M%S")
            value = value.replace(tzinfo=UTC) if text.endswith("Z") else value
        else:
            head = text.replace("Z", "+00:00")
            match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(.*)$", head)
            value = datetime.fromisoformat(match.group(1) + match.group(3)) if match else datetime.fromisoformat(head)
    if isinstance(value, datetime):
        if all_day:
            return value.date().isoformat()
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    raise ValueError(f"not a time: {value!r}")


def parse(text: str) -> datetime | date:
    return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)


def shift(text: str, delta: timedelta) -> str:
    """A boundary moved by `delta` (an all-day one by whole days, at least one when delta is not zero)."""
    value = parse(text)
    if isinstance(value, datetime):
        return canon(value + delta)
    seconds = delta.total_seconds()
    days = round(seconds / 86400) or (1 if seconds > 0 else -1 if seconds < 0 else 0)
    return (value + timedelta(days=days)).isoformat()


def compact(text: str) -> str:
    """20261207T090000Z / 20261207: iCalendar basic form, and Google's instance id suffix."""
    return text.replace("-", "") if len(text) == 10 else text.replace("-", "").replace(":", "")


def instant(text: str) -> datetime:
    value = parse(text)
    return value if isinstance(value, datetime) else datetime(value.year, value.month, value.day, tzinfo=UTC)


def exdate_values(line: str, all_day: bool) -> set[str]:
    """Canonical boundaries of one EXDATE line (VALUE=DATE, UTC, or TZID-local values)."""
    head, _, values = line.partition(":")
    params = dict(p.split("=", 1) for p in head.split(";")[1:] if "=" in p)
    zone = ZoneInfo(params["TZID"]) if "TZID" in params else None
    out: set[str] = set()
    for raw in values.split(","):
        raw = raw.strip()
        if not raw:
            continue
        if len(raw) == 8:
            out.add(canon(raw))
            continue
        value = datetime.strptime(raw[:15], "%Y%m%dT%H%M%S")
        value = value.replace(tzinfo=UTC if raw.endswith("Z") else zone or UTC)
        out.add(canon(value, all_day))
    return out


def expand(start: str, all_day: bool, rule: str, exdates: set[str], hi: datetime) -> list[str]:
    """Original starts of a series (canonical), EXDATEs left out, up to `hi` (at most 1000)."""
    rule = rule.removeprefix("RRULE:")
    if all_day:
        first: datetime = datetime.combine(date.fromisoformat(start), datetime.min.time())
        rule = re.sub(r"UNTIL=(\d{8})T\d{6}Z?", r"UNTIL=\1", rule)
    else:
        first = instant(start)
        rule = re.sub(r"UNTIL=(\d{8})(?=;|$)", r"UNTIL=\1T235959Z", rule)
    out: list[str] = []
    limit = hi.replace(tzinfo=None) if all_day else hi
    for n, value in enumerate(rrulestr(rule, dtstart=first)):
        if n >= 1000 or value > limit:
            break
        key = value.date().isoformat() if all_day else canon(value)
        if key not in exdates:
            out.append(key)
    return out


# --- what one side holds, as another client sees it ---------------------------------------------


def norm_text(value: Any) -> str:
    """Titles, descriptions, locations: None and "" are the same; line-end and outer whitespace is
    layout. (Outlook keeps bodies as HTML and calsync reads them back with html_to_text, which drops
    the spaces at line ends and blank lines around the text; the harness never writes such spaces.)"""
    if value is None:
        return ""
    return "\n".join(line.rstrip() for line in str(value).replace("\r\n", "\n").split("\n")).strip()


def fields(title: Any, start: str, end: str, all_day: bool, description: Any, location: Any) -> tuple[Any, ...]:
    return (norm_text(title), start, end, bool(all_day), norm_text(description), norm_text(location))


def marker_of(title: Any) -> str | None:
    found = MARKER.search(str(title or ""))
    return found.group(0) if found else None


def crash_text() -> str:
    """The exception (type and the start of its message) and where it was raised: a store error's
    message holds a whole statement, and its tail alone does not say what failed."""
    kind, exc, tb = sys.exc_info()
    where = " | ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in traceback.extract_tb(tb)[-6:])
    return f"{kind.__name__ if kind else '?'}: {str(exc)[:400]} | at {where}"


@dataclass
class View:
    side: str
    items: dict[Key, tuple[Any, ...]] = field(default_factory=dict)
    duplicates: list[Key] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things that are wrong in themselves (orphans ...)
    # single events carrying a series' marker: Outlook cannot restore a deleted occurrence, so calsync
    # writes one that comes back elsewhere as a single event standing in for it (marker, fields)
    stand_ins: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def place_stand_ins(self, reference: View) -> None:
        """Each stand-in counts as the occurrence of its series that `reference` (the local store)
        holds with the same fields and this side lacks; one that matches none stays a single event."""
        for mark, value in self.stand_ins:
            match = next((key for key, held in reference.items.items() if key[0] == "i" and key[1] == mark
                          and held == value and key not in self.items), None)
            self.add(match or ("s", mark), value)
        self.stand_ins.clear()

    def add(self, key: Key, value: tuple[Any, ...]) -> None:
        if key in self.items:
            self.duplicates.append(key)
        self.items[key] = value


# --- the event the harness makes ----------------------------------------------------------------


@dataclass
class Spec:
    marker: str
    title: str
    start: str
    end: str
    all_day: bool
    description: str | None
    location: str | None
    rule: str | None = None  # "FREQ=WEEKLY;INTERVAL=1;COUNT=4"

    def graph_recurrence(self) -> dict[str, Any]:
        parts = dict(p.split("=") for p in (self.rule or "").split(";"))
        first = parse(self.start)
        day = first if isinstance(first, date) and not isinstance(first, datetime) else first.date()
        pattern: dict[str, Any] = {"type": parts["FREQ"].lower(), "interval": int(parts.get("INTERVAL", 1))}
        if parts["FREQ"] == "WEEKLY":
            pattern.update(daysOfWeek=[day.strftime("%A").lower()], firstDayOfWeek="sunday")
        return {"pattern": pattern, "range": {"type": "numbered", "startDate": day.isoformat(),
                                              "numberOfOccurrences": int(parts["COUNT"]),
                                              "recurrenceTimeZone": "UTC"}}


# --- sides --------------------------------------------------------------------------------------


class Gone(Exception):
    """The target of another client's change is not there (deleted meanwhile): the operation is skipped."""


class Side:
    """One provider's calendar: calsync's binding to it, and another client changing it."""

    name: str
    kind: str
    base_url: str  # what calsync's account uses (faults apply)
    calendar: str
    binding: str = ""
    account: str = ""

    def credentials(self) -> dict[str, Any]:
        raise NotImplementedError

    def provider(self, account: Account) -> Provider:
        return provider_for(account, retry=RETRY, **self.provider_options())

    def provider_options(self) -> dict[str, Any]:
        return {"page_size": PAGE}

    def tag(self) -> str:
        """How the store names this side in `deleted_by`."""
        return f"{self.kind}:{self.binding}"

    def fault(self, spec: dict[str, Any], after_commit: bool) -> None:
        raise NotImplementedError

    def clear_faults(self) -> None:
        raise NotImplementedError

    def invalidate(self, engine: Engine) -> None:
        raise NotImplementedError

    def create(self, spec: Spec) -> str:
        raise NotImplementedError

    def edit(self, rid: str, changes: dict[str, Any], all_day: bool) -> None:
        raise NotImplementedError

    def delete(self, rid: str) -> None:
        raise NotImplementedError

    def edit_instance(self, series: str, orig: str, all_day: bool, changes: dict[str, Any]) -> None:
        raise NotImplementedError

    def delete_instance(self, series: str, orig: str, all_day: bool) -> None:
        raise NotImplementedError

    def view(self, hi: datetime, lo: datetime) -> View:
        raise NotImplementedError

    def sees(self, start: str, end: str) -> bool:
        """Whether calsync's listing of this side covers an event there (Graph: a window)."""
        return True

    def close(self) -> None:
        pass


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code in (404, 410):
        raise Gone(f"{response.request.method} {response.request.url.path}: {response.status_code}")
    return response.raise_for_status()


def _client_app(module: Any, emu: Any) -> Starlette:
    """The emulator's API without its fault switches: how the other client reaches the same calendar."""
    async def api(request: Request) -> Response:
        user = module._bearer_user(request.headers.get("authorization"))
        response: Response = await module._handle_api(emu, request, user)
        return response
    return Starlette(routes=[Route(module.API_PREFIX + "/{rest:path}", api,
                                  methods=["GET", "POST", "PUT", "PATCH", "DELETE"])])


class EmulatedSide(Side):
    """Google or Graph: one emulator object served twice (faulted for calsync, clean for the other client)."""

    module: Any

    def __init__(self) -> None:
        self.emu = self.module_emulator()
        self.engine_server = serve_in_thread(self.module.create_app(self.emu))
        self.base_url = self.engine_server.url
        try:
            self.client_server: RunningServer | None = serve_in_thread(_client_app(self.module, self.emu))
            client_url = self.client_server.url
        except AttributeError:  # the emulator's internals moved: share the faulted server (and retry)
            self.client_server, client_url = None, self.base_url
        self.http = httpx.Client(base_url=client_url + self.module.API_PREFIX, headers=self.headers(),
                                 timeout=30, transport=httpx.HTTPTransport(retries=2))

    def module_emulator(self) -> Any:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        raise NotImplementedError

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        for _ in range(20):  # only needed when the other client shares the faulted server
            response = self.http.request(method, url, **kwargs)
            if response.status_code not in (429, 500, 502, 503, 504):
                return response
        return response

    def fault(self, spec: dict[str, Any], after_commit: bool) -> None:
        (self.emu.commit_faults if after_commit else self.emu.faults).add(spec)

    def clear_faults(self) -> None:
        self.emu.faults.clear()
        self.emu.commit_faults.clear()

    def close(self) -> None:
        self.http.close()
        self.engine_server.stop()
        if self.client_server:
            self.client_server.stop()


class GoogleSide(EmulatedSide):
    name = kind = "google"
    module = google_emu
    token = "alice"

    def __init__(self) -> None:
        super().__init__()
        self.calendar = self.request("GET", "/calendars/primary").raise_for_status().json()["id"]

    def module_emulator(self) -> Any:
        return google_emu.GoogleEmulator()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def credentials(self) -> dict[str, Any]:
        return {"token": self.token}

    def invalidate(self, engine: Engine) -> None:
        self.emu.invalidate_tokens(self.calendar)

    @property
    def _events(self) -> str:
        return f"/calendars/{self.calendar}/events"

    @staticmethod
    def _time(text: str, all_day: bool) -> dict[str, str]:
        return {"date": text} if all_day else {"dateTime": text, "timeZone": "UTC"}

    def _body(self, changes: dict[str, Any], all_day: bool) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for key, name in (("title", "summary"), ("description", "description"), ("location", "location")):
            if key in changes:
                body[name] = changes[key] or ""
        for key in ("start", "end"):
            if key in changes:
                body[key] = self._time(changes[key], all_day)
        return body

    def create(self, spec: Spec) -> str:
        body = self._body({"title": spec.title, "start": spec.start, "end": spec.end,
                           "description": spec.description, "location": spec.location}, spec.all_day)
        if spec.rule:
            body["recurrence"] = [f"RRULE:{spec.rule}"]
        return str(self.request("POST", self._events, json=body).raise_for_status().json()["id"])

    def edit(self, rid: str, changes: dict[str, Any], all_day: bool) -> None:
        _checked(self.request("PATCH", f"{self._events}/{rid}", json=self._body(changes, all_day)))

    def delete(self, rid: str) -> None:
        _checked(self.request("DELETE", f"{self._events}/{rid}"))

    def edit_instance(self, series: str, orig: str, all_day: bool, changes: dict[str, Any]) -> None:
        self.edit(f"{series}_{compact(orig)}", changes, all_day)

    def delete_instance(self, series: str, orig: str, all_day: bool) -> None:
        self.delete(f"{series}_{compact(orig)}")

    def _list(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        params = {"maxResults": 2500, **params}
        while True:
            body = self.request("GET", self._events, params=params).raise_for_status().json()
            out.extend(body["items"])
            if "nextPageToken" not in body:
                return out
            params["pageToken"] = body["nextPageToken"]

    @staticmethod
    def _when(value: dict[str, Any]) -> tuple[str, bool]:
        return (value["date"], True) if "date" in value else (canon(value["dateTime"]), False)

    def view(self, hi: datetime, lo: datetime) -> View:
        view = View(self.name)
        masters: dict[str, str] = {}
        for item in self._list({}):
            if item.get("status") == "cancelled" or not item.get("recurrence"):
                continue
            mark = marker_of(item.get("summary"))
            masters[item["id"]] = mark or "?"
            view.add(("r", mark or "?"), (norm_text(item.get("summary")), norm_text(item.get("description")),
                                         norm_text(item.get("location"))))
        expanded = self._list({"singleEvents": "true", "timeMin": canon(lo), "timeMax": canon(hi)})
        for item in expanded:
            if item.get("status") == "cancelled":
                continue
            start, all_day = self._when(item["start"])
            end, _ = self._when(item["end"])
            value = fields(item.get("summary"), start, end, all_day, item.get("description"), item.get("location"))
            series = item.get("recurringEventId")
            if series:
                orig, _ = self._when(item["originalStartTime"])
                mark = masters.get(series)
                if mark is None:
                    view.notes.append(f"instance {item['id']} of an unlisted series {series}")
                    mark = marker_of(item.get("summary")) or "?"
                view.add(("i", mark, orig), value)
            else:
                view.add(("s", marker_of(item.get("summary")) or "?"), value)
        return view


class GraphSide(EmulatedSide):
    name = kind = "graph"
    module = graph_emu
    token = "adele"

    def __init__(self) -> None:
        super().__init__()
        calendars = self.request("GET", "/me/calendars").raise_for_status().json()["value"]
        self.calendar = next(str(c["id"]) for c in calendars if c.get("isDefaultCalendar"))

    def module_emulator(self) -> Any:
        return graph_emu.GraphEmulator()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Prefer": 'outlook.timezone="UTC", IdType="ImmutableId"'}

    def credentials(self) -> dict[str, Any]:
        return {"token": self.token}

    def provider_options(self) -> dict[str, Any]:
        return {"page_size": PAGE}  # the default window (30 days back, 365 ahead), not the tests' narrow one

    def invalidate(self, engine: Engine) -> None:
        self.emu.expire_delta_tokens(None)

    def sees(self, start: str, end: str) -> bool:
        now = datetime.now(UTC)
        return now + GRAPH_WINDOW[0] + GRAPH_MARGIN <= instant(start) and \
            instant(end) <= now + GRAPH_WINDOW[1] - GRAPH_MARGIN

    @staticmethod
    def _time(text: str, all_day: bool) -> dict[str, str]:
        value = f"{text}T00:00:00" if all_day else text.removesuffix("Z")
        return {"dateTime": value, "timeZone": "UTC"}

    def _body(self, changes: dict[str, Any], all_day: bool) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if "title" in changes:
            body["subject"] = changes["title"]
        if "description" in changes:
            body["body"] = {"contentType": "text", "content": changes["description"] or ""}
        if "location" in changes:
            body["location"] = {"displayName": changes["location"] or ""}
        for key in ("start", "end"):
            if key in changes:
                body[key] = self._time(changes[key], all_day)
        return body

    def create(self, spec: Spec) -> str:
        body = self._body({"title": spec.title, "start": spec.start, "end": spec.end,
                           "description": spec.description, "location": spec.location}, spec.all_day)
        body["isAllDay"] = spec.all_day
        if spec.rule:
            body["recurrence"] = spec.graph_recurrence()
        path = f"/me/calendars/{self.calendar}/events"
        return str(self.request("POST", path, json=body).raise_for_status().json()["id"])

    def edit(self, rid: str, changes: dict[str, Any], all_day: bool) -> None:
        _checked(self.request("PATCH", f"/me/events/{rid}", json=self._body(changes, all_day)))

    def delete(self, rid: str) -> None:
        _checked(self.request("DELETE", f"/me/events/{rid}"))

    def _occurrence(self, series: str, orig: str, all_day: bool) -> str:
        around = instant(orig)
        params = {"startDateTime": canon(around - timedelta(days=40)), "endDateTime": canon(around + timedelta(days=40))}
        items = _checked(self.request("GET", f"/me/events/{series}/instances", params=params)).json()["value"]
        for item in items:
            if item.get("originalStart") and canon(item["originalStart"], all_day) == orig:
                return str(item["id"])
        raise Gone(f"no occurrence {orig} of {series}")

    def edit_instance(self, series: str, orig: str, all_day: bool, changes: dict[str, Any]) -> None:
        self.edit(self._occurrence(series, orig, all_day), changes, all_day)

    def delete_instance(self, series: str, orig: str, all_day: bool) -> None:
        self.delete(self._occurrence(series, orig, all_day))

    def _paged(self, url: str, params: dict[str, Any] | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            body = self.request("GET", url, params=params).raise_for_status().json()
            out.extend(body["value"])
            link = body.get("@odata.nextLink")
            if not link:
                return out
            url, params = link.split(self.module.API_PREFIX, 1)[1], None

    def _fields(self, item: dict[str, Any]) -> tuple[Any, ...]:
        all_day = bool(item.get("isAllDay"))
        start = canon(item["start"]["dateTime"], all_day)
        end = canon(item["end"]["dateTime"], all_day)
        body = item.get("body") or {}
        text = body.get("content") or ""
        # Outlook stores bodies as HTML (a text body another client wrote comes back wrapped): read
        # it as calsync does, as the text a reader sees
        description = html_to_text(text) if body.get("contentType") == "html" else text
        return fields(item.get("subject"), start, end, all_day, description,
                      (item.get("location") or {}).get("displayName"))

    def view(self, hi: datetime, lo: datetime) -> View:
        view = View(self.name)
        masters: dict[str, tuple[str, bool]] = {}
        for item in self._paged(f"/me/calendars/{self.calendar}/events", {"$top": 1000}):
            if item.get("type") == "seriesMaster" and not item.get("isCancelled"):
                mark = marker_of(item.get("subject")) or "?"
                masters[item["id"]] = (mark, bool(item.get("isAllDay")))
                value = self._fields(item)
                view.add(("r", mark), (value[0], value[4], value[5]))
        params = {"startDateTime": canon(lo), "endDateTime": canon(hi), "$top": 1000}
        for item in self._paged(f"/me/calendars/{self.calendar}/calendarView", params):
            if item.get("isCancelled"):
                continue
            value = self._fields(item)
            if item.get("seriesMasterId"):
                found = masters.get(item["seriesMasterId"])
                if found is None:
                    view.notes.append(f"instance {item['id']} of an unlisted series")
                    found = (marker_of(item.get("subject")) or "?", value[3])
                view.add(("i", found[0], canon(item["originalStart"], found[1])), value)
            else:
                mark = marker_of(item.get("subject")) or "?"
                if any(found[0] == mark for found in masters.values()):
                    view.stand_ins.append((mark, value))
                else:
                    view.add(("s", mark), value)
        return view


class DavSide(Side):
    """Radicale or Xandikos, real servers: calsync through the fault proxy, the other client directly."""

    kind = "caldav"

    def __init__(self, kind: str) -> None:
        self.name = kind
        self.server = caldav_server.start_server(kind)
        self.proxy = FaultProxy(self.server.url)
        self.proxy_server = serve_in_thread(self.proxy)
        self.base_url = self.proxy_server.url + "/"
        self.http = self.server.client()
        self.calendar = caldav_server.make_calendar(self.server, f"chaos-{uuid.uuid4().hex[:8]}", http=self.http)
        self.bogus = "dav:http://radicale.org/ns/sync/0000" if kind == "radicale" else "dav:" + "0" * 40

    def credentials(self) -> dict[str, Any]:
        return {"username": self.server.username, "password": self.server.password}

    def provider_options(self) -> dict[str, Any]:
        return {"batch_size": PAGE, "page_events": PAGE}

    def fault(self, spec: dict[str, Any], after_commit: bool) -> None:
        (self.proxy.commit_faults if after_commit else self.proxy.faults).add(spec)

    def clear_faults(self) -> None:
        self.proxy.faults.clear()
        self.proxy.commit_faults.clear()

    def invalidate(self, engine: Engine) -> None:
        """A token the server never issued (real servers forget tokens: Radicale prunes them)."""
        with engine.begin() as conn:
            conn.execute(update(bindings).where(bindings.c.id == self.binding, bindings.c.sync_token.is_not(None))
                         .values(sync_token=self.bogus))

    def href(self, rid: str) -> str:
        name = rid.split("#", 1)[0]
        return name if name.startswith("/") else f"{self.calendar}{name}.ics"

    def _put(self, href: str, cal: Calendar, etag: str | None) -> None:
        headers = {"Content-Type": "text/calendar; charset=utf-8", **({"If-Match": etag} if etag else
                                                                       {"If-None-Match": "*"})}
        answer = self.http.put(href, content=cal.to_ical(), headers=headers)
        if answer.status_code == 412:
            raise Gone(f"PUT {href}: 412 (changed meanwhile)")
        if answer.status_code not in (200, 201, 204):
            raise RuntimeError(f"PUT {href}: {answer.status_code} {answer.text[:200]}")

    def _mutate(self, rid: str, change: Callable[[Calendar], None]) -> None:
        answer = self.http.get(self.href(rid))
        if answer.status_code in (404, 410):
            raise Gone(f"GET {rid}: {answer.status_code}")
        answer.raise_for_status()
        cal = Calendar.from_ical(answer.text)
        change(cal)
        self._put(self.href(rid), cal, answer.headers.get("ETag"))

    @staticmethod
    def _value(text: str) -> datetime | date:
        value = parse(text)
        return value.astimezone(UTC) if isinstance(value, datetime) else value

    def _set(self, vevent: Any, changes: dict[str, Any]) -> None:
        for key, name in (("title", "SUMMARY"), ("description", "DESCRIPTION"), ("location", "LOCATION")):
            if key in changes:
                vevent.pop(name, None)
                if changes[key]:
                    vevent.add(name, changes[key])
        for key, name in (("start", "DTSTART"), ("end", "DTEND")):
            if key in changes:
                vevent.pop(name, None)
                vevent.add(name, self._value(changes[key]))
        sequence = int(vevent.get("SEQUENCE", 0)) + 1
        vevent.pop("SEQUENCE", None)
        vevent.add("SEQUENCE", sequence)
        vevent.pop("DTSTAMP", None)
        vevent.add("DTSTAMP", datetime.now(UTC).replace(microsecond=0))

    def create(self, spec: Spec) -> str:
        name = f"other-{spec.marker}-{uuid.uuid4().hex[:6]}"
        cal = Calendar()
        cal.add("PRODID", "-//calsync chaos//other client//EN")
        cal.add("VERSION", "2.0")
        vevent = VEvent()
        vevent.add("UID", f"{name}@other")
        self._set(vevent, {"title": spec.title, "start": spec.start, "end": spec.end,
                           "description": spec.description, "location": spec.location})
        if spec.rule:
            vevent.add("RRULE", dict(p.split("=") for p in spec.rule.split(";")))
        cal.add_component(vevent)
        self._put(self.href(name), cal, None)
        return name

    @staticmethod
    def _master(cal: Calendar) -> Any:
        for vevent in cal.walk("VEVENT"):
            if vevent.get("RECURRENCE-ID") is None:
                return vevent
        raise Gone("no master VEVENT")

    def edit(self, rid: str, changes: dict[str, Any], all_day: bool) -> None:
        if "#" in rid:
            raise Gone("an exception is edited through its series")
        self._mutate(rid, lambda cal: self._set(self._master(cal), changes))

    def delete(self, rid: str) -> None:
        answer = self.http.delete(self.href(rid))
        if answer.status_code in (404, 410):
            raise Gone(f"DELETE {rid}: {answer.status_code}")
        if answer.status_code not in (200, 204):
            raise RuntimeError(f"DELETE {rid}: {answer.status_code}")

    @staticmethod
    def _override(cal: Calendar, orig: str, all_day: bool) -> Any:
        for vevent in cal.walk("VEVENT"):
            if vevent.get("RECURRENCE-ID") is not None and canon(vevent["RECURRENCE-ID"].dt, all_day) == orig:
                return vevent
        return None

    def _occurs(self, master: Any, orig: str, all_day: bool) -> bool:
        exdates = self._exdates(master, all_day)
        start = canon(master["DTSTART"].dt, all_day)
        rule = master["RRULE"].to_ical().decode()
        return orig in expand(start, all_day, rule, exdates, instant(orig) + timedelta(days=1))

    def edit_instance(self, series: str, orig: str, all_day: bool, changes: dict[str, Any]) -> None:
        def change(cal: Calendar) -> None:
            found = self._override(cal, orig, all_day)
            if found is None:
                master = self._master(cal)
                if master.get("RRULE") is None or not self._occurs(master, orig, all_day):
                    raise Gone(f"no occurrence {orig}")
                found = VEvent()
                for name in ("UID", "SUMMARY", "DESCRIPTION", "LOCATION"):
                    if master.get(name) is not None:
                        found.add(name, master[name])
                duration = self._duration(master)
                found.add("RECURRENCE-ID", self._value(orig))
                found.add("DTSTART", self._value(orig))
                found.add("DTEND", self._value(orig) + duration)
                cal.add_component(found)
            self._set(found, changes)
        self._mutate(series, change)

    def delete_instance(self, series: str, orig: str, all_day: bool) -> None:
        def change(cal: Calendar) -> None:
            master = self._master(cal)
            found = self._override(cal, orig, all_day)
            if found is not None:
                cal.subcomponents.remove(found)
            elif master.get("RRULE") is None or not self._occurs(master, orig, all_day):
                raise Gone(f"no occurrence {orig}")
            master.add("EXDATE", [self._value(orig)])
            self._set(master, {})
        self._mutate(series, change)

    @staticmethod
    def _exdates(vevent: Any, all_day: bool) -> set[str]:
        found = vevent.get("EXDATE")
        out: set[str] = set()
        for prop in found if isinstance(found, list) else [found] if found is not None else []:
            out.update(canon(d.dt, all_day) for d in prop.dts)
        return out

    @staticmethod
    def _duration(vevent: Any) -> timedelta:
        if vevent.get("DTEND") is not None:
            return vevent["DTEND"].dt - vevent["DTSTART"].dt
        return vevent["DURATION"].dt if vevent.get("DURATION") is not None else timedelta()

    @staticmethod
    def _fields(vevent: Any, all_day: bool) -> tuple[Any, ...]:
        start = vevent["DTSTART"].dt
        end = start + DavSide._duration(vevent)
        return fields(vevent.get("SUMMARY"), canon(start, all_day), canon(end, all_day), all_day,
                      vevent.get("DESCRIPTION"), vevent.get("LOCATION"))

    def resources(self) -> list[tuple[str, str]]:
        body = ('<?xml version="1.0" encoding="utf-8"?><C:calendar-query xmlns:D="DAV:" '
                'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/></D:prop>'
                '<C:filter><C:comp-filter name="VCALENDAR"/></C:filter></C:calendar-query>')
        answer = self.http.request("REPORT", self.calendar, content=body,
                                   headers={"Depth": "1", "Content-Type": "application/xml"})
        answer.raise_for_status()
        out = []
        for response in ET.fromstring(answer.content).iter("{DAV:}response"):
            href = response.findtext("{DAV:}href") or ""
            data = response.find(".//{urn:ietf:params:xml:ns:caldav}calendar-data")
            if data is not None and data.text:
                out.append((href, data.text))
        return out

    def view(self, hi: datetime, lo: datetime) -> View:
        view = View(self.name)
        for href, text in self.resources():
            cal = Calendar.from_ical(text)
            vevents = list(cal.walk("VEVENT"))
            masters = [v for v in vevents if v.get("RECURRENCE-ID") is None]
            if len(masters) != 1:
                view.notes.append(f"{href}: {len(masters)} master VEVENTs")
                if not masters:
                    continue
            master = masters[0]
            all_day = not isinstance(master["DTSTART"].dt, datetime)
            value = self._fields(master, all_day)
            mark = marker_of(master.get("SUMMARY")) or "?"
            if str(master.get("STATUS", "")).upper() == "CANCELLED":
                continue
            if master.get("RRULE") is None:
                view.add(("s", mark), value)
                continue
            view.add(("r", mark), (value[0], value[4], value[5]))
            overrides = {canon(v["RECURRENCE-ID"].dt, all_day): v for v in vevents if v.get("RECURRENCE-ID") is not None}
            starts = expand(value[1], all_day, master["RRULE"].to_ical().decode(), self._exdates(master, all_day), hi)
            duration = instant(value[2]) - instant(value[1])
            for orig in starts:
                over = overrides.pop(orig, None)
                if over is not None:
                    if str(over.get("STATUS", "")).upper() != "CANCELLED":
                        view.add(("i", mark, orig), self._fields(over, all_day))
                    continue
                end = shift(orig, duration) if duration else orig
                view.add(("i", mark, orig), (value[0], orig, end, all_day, value[4], value[5]))
            for orig in overrides:
                view.notes.append(f"{href}: override {orig} of {mark} that the rule does not produce")
        return view

    def close(self) -> None:
        self.http.close()
        self.proxy_server.stop()
        self.server.close()


def store_view(engine: Engine, calendar_id: str, hi: datetime) -> tuple[View, list[dict[str, Any]]]:
    """The local store's live events in the same shape (and its rows, tombstones included)."""
    view = View("local")
    with engine.begin() as conn:
        rows = event_store.list_events(conn, calendar_id=calendar_id, include_deleted=True)
    live = [r for r in rows if not r["deleted"]]
    by_id = {r["id"]: r for r in live}
    exceptions: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in live:
        if row["recurring_event_id"]:
            if row["recurring_event_id"] not in by_id:
                view.notes.append(f"live exception {row['id']} ({row['title']}) of a deleted or unknown series")
                continue
            key = row["original_start"]
            if key in exceptions[row["recurring_event_id"]]:
                view.duplicates.append(("i", marker_of(row["title"]) or "?", key))
            exceptions[row["recurring_event_id"]][key] = row
    for row in sorted(live, key=lambda r: (r["title"], r["id"])):
        if row["recurring_event_id"]:
            continue
        mark = marker_of(row["title"]) or "?"
        value = fields(row["title"], row["start"], row["end"], row["all_day"], row["description"], row["location"])
        if row["original_start"] and not row["recurrence"]:
            view.add(("i", mark, canon(row["original_start"], row["all_day"])), value)
            view.notes.append(f"orphan exception {row['id']} ({row['title']})")
            continue
        if not row["recurrence"]:
            view.add(("s", mark), value)
            continue
        view.add(("r", mark), (value[0], value[4], value[5]))
        lines = list(row["recurrence"])
        rules = [ln for ln in lines if ln.upper().startswith("RRULE")]
        exdates: set[str] = set()
        for line in lines:
            if line.upper().startswith("EXDATE"):
                exdates |= exdate_values(line, row["all_day"])
        if len(rules) != 1 or len(rules) + sum(ln.upper().startswith("EXDATE") for ln in lines) != len(lines):
            view.notes.append(f"{mark}: recurrence the harness does not expand: {lines}")
            if not rules:
                continue
        duration = instant(row["end"]) - instant(row["start"])
        own = exceptions.pop(row["id"], {})
        for orig in expand(row["start"], row["all_day"], rules[0], exdates, hi):
            over = own.pop(orig, None)
            if over is not None:
                if over["status"] != "cancelled":
                    view.add(("i", mark, orig), fields(over["title"], over["start"], over["end"], over["all_day"],
                                                       over["description"], over["location"]))
                continue
            view.add(("i", mark, orig), (value[0], orig, shift(orig, duration), row["all_day"], value[4], value[5]))
        for orig, over in own.items():
            if over["status"] != "cancelled":
                view.notes.append(f"{mark}: live exception at {orig} that its rule does not produce")
    for series_id, rest in exceptions.items():
        for orig in rest:
            view.notes.append(f"exception at {orig} of series {series_id} that has no recurrence")
    return view, rows


class LocalSide:
    """calsync's own surface: what the REST API does (engine.local)."""

    name = "local"

    def __init__(self, engine: Engine, calendar: str) -> None:
        self.engine, self.calendar = engine, calendar
        params = inspect.signature(local.delete_event).parameters
        self.delete_kwargs = {"via": "the chaos harness"} if "via" in params else {}

    def create(self, spec: Spec) -> str:
        return local.create_event(self.engine, self.calendar, {
            "title": spec.title, "all_day": spec.all_day, "start": spec.start, "end": spec.end,
            "description": spec.description, "location": spec.location}).event_id

    def edit(self, event_id: str, changes: dict[str, Any]) -> None:
        try:
            local.update_event(self.engine, event_id, changes, None)
        except NotFound as exc:
            raise Gone(str(exc)) from None

    def delete(self, event_id: str) -> None:
        try:
            local.delete_event(self.engine, event_id, None, **self.delete_kwargs)
        except NotFound as exc:
            raise Gone(str(exc)) from None


# --- the world ----------------------------------------------------------------------------------


class World:
    """A fresh store, one hub calendar, and a two-way binding of it to each provider's calendar."""

    def __init__(self, providers: Iterable[str], policy: str = "ask") -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="calsync-chaos-"))
        self.engine = open_engine(f"sqlite:///{self.folder / 'chaos.db'}")
        self.sides: dict[str, Side] = {}
        try:
            for name in providers:
                self.sides[name] = GoogleSide() if name == "google" else GraphSide() if name == "graph" \
                    else DavSide(name)
            with self.engine.begin() as conn:
                self.hub = account_store.create_calendar(conn, "chaos hub")
                for side in self.sides.values():
                    side.account = account_store.create_account(conn, side.kind, f"chaos-{side.name}", side.base_url,
                                                                side.credentials())
                    side.binding = account_store.create_binding(conn, self.hub, side.account, side.calendar, "two-way",
                                                                policy)
        except BaseException:
            self.close()
            raise
        self.by_account = {s.account: s for s in self.sides.values()}
        self.by_binding = {s.binding: s for s in self.sides.values()}
        self.local = LocalSide(self.engine, self.hub)

    def make_provider(self, account: Account) -> Provider:
        return self.by_account[account.id].provider(account)

    def side_of_tag(self, tag: str | None) -> str | None:
        if tag == "local":
            return "local"
        for side in self.sides.values():
            if tag == side.tag():
                return side.name
        return None

    def close(self, keep: bool = False) -> None:
        for side in self.sides.values():
            with contextlib.suppress(Exception):  # best effort at shutdown
                side.close()
        if hasattr(self, "engine"):
            self.engine.dispose()
        if not keep:
            shutil.rmtree(self.folder, ignore_errors=True)


# --- the ledger ---------------------------------------------------------------------------------


@dataclass
class Deletion:
    op: int
    side: str
    marker: str
    orig: str | None  # None: the whole event (or series); else one occurrence


@dataclass
class Resolution:
    op: int
    marker: str
    orig: str | None  # the conflicted event is this occurrence's exception
    side: str  # the conflicted binding's side
    kept_side: str  # "local" or the binding's side
    revives: bool  # a delete-vs-edit conflict resolved keeping the edit
    asof: int  # the operation number at which the conflict last showed its sides


@dataclass
class Known:
    """What the harness knows of one event (from the store, plus its own creates not yet synced)."""

    marker: str
    series: bool
    all_day: bool
    start: str
    end: str
    local_id: str | None = None
    ids: dict[str, str] = field(default_factory=dict)  # side -> remote id
    linked: set[str] = field(default_factory=set)  # sides whose copy calsync has seen (a link in the store)
    instances: list[str] = field(default_factory=list)
    exceptions: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # orig -> (local id, start, end)


@dataclass
class Problem:
    kind: str
    marker: str
    detail: str
    op: int


@dataclass
class Config:
    seed: int = 1
    ops: int = 300
    providers: tuple[str, ...] = ("google", "graph", "radicale")
    recurring: bool = True
    skip: frozenset[str] = frozenset()
    sync_every: tuple[int, int] = (2, 8)
    check_every: int = 0
    verbose: bool = False
    history: bool = False
    keep: bool = False  # leave the store (SQLite file) behind when problems were found
    progress: int = 0
    quiet_passes: int = 10
    policy: str = "ask"
    out: Callable[[str], None] = print


@dataclass
class Result:
    seed: int
    ops: int
    problems: list[Problem]
    stats: Counter[str]
    elapsed: float

    def summary(self) -> str:
        s = self.stats
        return (f"seed={self.seed} ops={self.ops} syncs={s['syncs']} conflicts opened={s['conflicts_opened']} "
                f"resolved={s['resolved']} faults={s['faults']} kills={s['kills']} tokens={s['tokens']} "
                f"full={s['full']} skipped={s['skipped']} phantom conflicts={s['phantom_conflicts']} "
                f"problems={len(self.problems)} elapsed={self.elapsed:.1f}s")


# --- the chaos ----------------------------------------------------------------------------------


class Chaos:
    def __init__(self, world: World, cfg: Config) -> None:
        self.world, self.cfg = world, cfg
        self.engine = world.engine
        self.rng = random.Random(cfg.seed)
        self.op = 0
        self.serial = 0
        self.stats: Counter[str] = Counter()
        self.problems: list[Problem] = []
        self.seen_problems: set[tuple[str, str, str]] = set()
        self.history: dict[str, list[str]] = defaultdict(list)
        self.created: dict[str, tuple[int, str, Spec, list[str]]] = {}
        self.deletions: list[Deletion] = []
        self.resolutions: list[Resolution] = []
        self.conflicts_seen: dict[str, Any] = {}  # conflict id -> updated_at last seen
        self.asof: dict[str, int] = {}
        self.open_conflicts = 0
        self.index: dict[str, Known] = {}
        self.index_dirty = True
        self.fresh: list[tuple[str, str, str, Spec]] = []  # (marker, side, id, spec) not yet seen in the store
        self.gone_on: set[tuple[str, str]] = set()  # (marker, side) the harness deleted there
        self.touched: dict[tuple[str, str], int] = {}  # (marker, side) -> last operation changing it there
        self.phantoms: list[str] = []
        self.next_sync = self.op + self.rng.randint(*cfg.sync_every)
        self.started = time.perf_counter()
        self.resolve_kwargs = "remote_etag" in inspect.signature(resolve_conflict).parameters
        self.now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.lo = self.now - timedelta(days=400)
        self.hi = self.now + timedelta(days=800)
        self.sides = ["local", *world.sides]

    # --- bookkeeping ---------------------------------------------------------------------------

    def log(self, text: str) -> None:
        if self.cfg.verbose:
            self.cfg.out(f"#{self.op:>5} {text}")

    def note(self, marker: str, text: str) -> None:
        self.history[marker].append(f"#{self.op} {text}")
        self.log(f"{marker}: {text}")

    def problem(self, kind: str, marker: str, detail: str) -> None:
        key = (kind, marker, detail)
        if key in self.seen_problems:
            return
        self.seen_problems.add(key)
        self.problems.append(Problem(kind, marker, detail, self.op))
        self.cfg.out(f"PROBLEM #{self.op} {kind} {marker}: {detail}")

    def new_marker(self) -> str:
        self.serial += 1
        return f"c{self.cfg.seed}-{self.serial}"

    # --- the store's view, for choosing targets ------------------------------------------------

    def refresh(self) -> None:
        if not self.index_dirty:
            return
        with self.engine.begin() as conn:
            rows = event_store.list_events(conn, calendar_id=self.world.hub)
        side_of = {s.binding: s.name for s in self.world.sides.values()}
        index: dict[str, Known] = {}
        by_id: dict[str, Known] = {}
        for row in sorted(rows, key=lambda r: (r["recurring_event_id"] is not None, r["title"], r["id"])):
            mark = marker_of(row["title"])
            if mark is None:
                continue
            ids = {side_of[link["binding_id"]]: link["remote_id"] for link in row["links"]
                   if not link["remote_deleted"] and link["binding_id"] in side_of}
            if row["recurring_event_id"]:
                series = by_id.get(row["recurring_event_id"])
                if series is not None and row["original_start"]:
                    series.exceptions[row["original_start"]] = (row["id"], row["start"], row["end"])
                continue
            if mark in index:  # a duplicate: the checks at the end will say so
                continue
            known = Known(mark, bool(row["recurrence"]), row["all_day"], row["start"], row["end"], row["id"], ids,
                          set(ids))
            if known.series:
                rules = [ln for ln in row["recurrence"] if ln.upper().startswith("RRULE")]
                exdates: set[str] = set()
                for line in row["recurrence"]:
                    if line.upper().startswith("EXDATE"):
                        exdates |= exdate_values(line, row["all_day"])
                try:
                    known.instances = expand(row["start"], row["all_day"], rules[0], exdates, self.hi) if rules else []
                except (ValueError, TypeError):
                    known.instances = []
            index[mark] = known
            by_id[row["id"]] = known
        keep = []
        for mark, side, rid, spec in self.fresh:
            known = index.get(mark)
            if known is not None and side in known.ids:
                continue  # the store knows it now
            if (mark, side) in self.gone_on:
                continue
            if known is None:
                known = index[mark] = Known(mark, bool(spec.rule), spec.all_day, spec.start, spec.end)
                if spec.rule:
                    known.instances = list(self.created[mark][3])
            known.ids.setdefault(side, rid)
            keep.append((mark, side, rid, spec))
        self.fresh = keep[-400:]
        for known in index.values():
            for side in list(known.ids):
                if (known.marker, side) in self.gone_on:
                    del known.ids[side]
        self.index = index
        self.index_dirty = False

    def eligible(self, side: str, known: Known, start: str | None = None, end: str | None = None) -> bool:
        if side == "local":
            return known.local_id is not None
        if side not in known.ids:
            return False
        remote = self.world.sides[side]
        return remote.sees(start or known.start, end or known.end)

    def pick(self, side: str, series: bool | None) -> Known | None:
        self.refresh()
        candidates = [k for k in self.index.values() if (series is None or k.series == series)
                      and self.eligible(side, k, *(self._series_span(k) if k.series else (None, None)))]
        return self.rng.choice(candidates) if candidates else None

    def _series_span(self, known: Known) -> tuple[str, str]:
        """A series is within a windowed listing when its first and last occurrences are."""
        if not known.instances:
            return known.start, known.end
        return known.instances[0], known.instances[-1]

    def pick_instance(self, side: str) -> tuple[Known, str] | None:
        self.refresh()
        options: list[tuple[Known, str]] = []
        for known in self.index.values():
            if not known.series:
                continue
            if side == "local":  # the local API edits and deletes exceptions, it cannot make one
                options.extend((known, orig) for orig in sorted(known.exceptions))
            elif side in known.ids:
                duration = instant(known.end) - instant(known.start)
                for orig in sorted(set(known.instances) | set(known.exceptions)):
                    start, end = known.exceptions.get(orig, ("", orig, shift(orig, duration)))[1:]
                    if self.world.sides[side].sees(min(orig, start), max(shift(orig, duration), end)):
                        options.append((known, orig))
        return self.rng.choice(options) if options else None

    # --- random content --------------------------------------------------------------------------

    def when(self, side: str, all_day: bool, days: tuple[int, int] = (-365, 730)) -> tuple[str, str]:
        remote = self.world.sides.get(side)
        for _ in range(50):
            offset = self.rng.randint(*days)
            if all_day:
                first = (self.now + timedelta(days=offset)).date()
                start, end = first.isoformat(), (first + timedelta(days=self.rng.choice((1, 1, 2)))).isoformat()
            else:
                at = self.now + timedelta(days=offset, minutes=15 * self.rng.randint(24, 80))
                start, end = canon(at), canon(at + timedelta(minutes=self.rng.choice((30, 60, 60, 90, 120))))
            if remote is None or remote.sees(start, end):
                return start, end
        raise AssertionError("no time the side can see")

    def description(self) -> str | None:
        n = self.rng.randint(1, 999)
        return self.rng.choice((None, f"note {n}", f"note {n}\nsecond line {n}", "agenda: a & b < c"))

    def location(self) -> str | None:
        return self.rng.choice((None, None, f"Room {self.rng.randint(1, 40)}"))

    def title(self, marker: str, what: str = "r") -> str:
        return f"{marker} {what}{self.rng.randint(1, 9999)}"

    # --- operations ------------------------------------------------------------------------------

    def choose_kind(self) -> str:
        kinds = [k for k in OP_KINDS if k not in self.cfg.skip and (self.cfg.recurring or k not in SERIES_OPS)]
        live = len(self.index)
        weights = []
        for kind in kinds:
            w = WEIGHTS[kind]
            if kind in ("create", "create_series") and live > 150:
                w *= 0.3
            if kind in ("delete", "series_delete") and live < 30:
                w *= 0.3
            if kind == "resolve" and not self.open_conflicts:
                w = 0.0
            weights.append(w)
        return self.rng.choices(kinds, weights)[0]

    def step(self) -> None:
        self.op += 1
        kind = self.choose_kind()
        try:
            done = getattr(self, f"op_{kind}")()
        except Gone as exc:
            self.log(f"{kind}: skipped ({exc})")
            done = False
        if done is False:
            self.stats["skipped"] += 1
        else:
            self.stats[f"op_{kind}"] += 1
        if self.op >= self.next_sync:
            self.sync_pass()
            self.next_sync = self.op + self.rng.randint(*self.cfg.sync_every)

    def remote_sides(self) -> list[str]:
        return list(self.world.sides)

    def op_create(self) -> bool:
        side = self.rng.choice(self.sides)
        all_day = self.rng.random() < 0.15 and "all_day" not in self.cfg.skip
        marker = self.new_marker()
        start, end = self.when(side, all_day)
        spec = Spec(marker, self.title(marker), start, end, all_day, self.description(), self.location())
        rid = self.world.local.create(spec) if side == "local" else self.world.sides[side].create(spec)
        self.created[marker] = (self.op, side, spec, [])
        self.fresh.append((marker, side, rid, spec))
        self.index_dirty = True
        self.note(marker, f"create@{side} {start}{' all-day' if all_day else ''}")
        return True

    def op_create_series(self) -> bool:
        side = self.rng.choice(self.remote_sides())  # the local API cannot make a series (no recurrence field)
        all_day = self.rng.random() < 0.2 and not {"all_day", "all_day_series"} & self.cfg.skip
        marker = self.new_marker()
        freq = self.rng.choice(("WEEKLY", "WEEKLY", "DAILY"))
        interval, count = self.rng.choice((1, 1, 2)), self.rng.randint(3, 6)
        rule = f"FREQ={freq};INTERVAL={interval};COUNT={count}"
        step = timedelta(weeks=interval) if freq == "WEEKLY" else timedelta(days=interval)
        for _ in range(50):
            start, end = self.when(side, all_day)
            last = shift(start, step * (count - 1))
            if side == "local" or self.world.sides[side].sees(start, shift(end, step * (count - 1))):
                break
        spec = Spec(marker, self.title(marker), start, end, all_day, self.description(), self.location(), rule)
        rid = self.world.sides[side].create(spec)
        instances = expand(start, all_day, rule, set(), self.hi)
        assert instances[-1] == last, (instances, last)
        self.created[marker] = (self.op, side, spec, instances)
        self.fresh.append((marker, side, rid, spec))
        self.index_dirty = True
        self.note(marker, f"create_series@{side} {start} {rule}")
        return True

    def _changes(self, known: Known, move: bool, side: str) -> dict[str, Any]:
        if move:
            if self.rng.random() < 0.5:
                # anywhere in the whole span, on every side: an Outlook user moving an event out of
                # Graph's window is what the engine must not take for a deletion. (Not one calsync
                # has not seen yet: an event that leaves the window before the first sync after its
                # creation is never listed, the limit of any windowed listing.)
                start, end = self.when("local" if side != "graph" or side in known.linked else side,
                                       known.all_day)
            else:
                delta = timedelta(hours=self.rng.choice((-48, -5, -1, 1, 3, 26)))
                start, end = shift(known.start, delta), shift(known.end, delta)
            return {"start": start, "end": end}
        changes: dict[str, Any] = {"title": self.title(known.marker)}
        if self.rng.random() < 0.4:
            changes["description"] = self.description()
        if self.rng.random() < 0.3:
            changes["location"] = self.location()
        return changes

    def _edit(self, series: bool, move: bool) -> bool:
        side = self.rng.choice(self.sides)
        known = self.pick(side, series)
        if known is None:
            return False
        changes = self._changes(known, move, side)
        if side == "local":
            assert known.local_id is not None
            self.world.local.edit(known.local_id, changes)
        else:
            self.world.sides[side].edit(known.ids[side], changes, known.all_day)
        self.touched[(known.marker, side)] = self.op
        self.index_dirty = True
        self.note(known.marker, f"{'move' if move else 'series_edit' if series else 'edit'}@{side} "
                                f"{changes.get('start', '')}{changes.get('title', '')}")
        return True

    def op_edit(self) -> bool:
        return self._edit(False, False)

    def op_move(self) -> bool:
        return self._edit(False, True)

    def op_series_edit(self) -> bool:
        return self._edit(True, False)  # a series' own time is never moved (providers reshape differently)

    def _delete(self, series: bool) -> bool:
        side = self.rng.choice(self.sides)
        known = self.pick(side, series)
        if known is None:
            return False
        if side == "local":
            assert known.local_id is not None
            self.world.local.delete(known.local_id)
        else:
            self.world.sides[side].delete(known.ids[side])
        self.deletions.append(Deletion(self.op, side, known.marker, None))
        self.touched[(known.marker, side)] = self.op
        self.gone_on.add((known.marker, side))
        self.index_dirty = True
        self.note(known.marker, f"{'series_delete' if series else 'delete'}@{side}")
        return True

    def op_delete(self) -> bool:
        return self._delete(False)

    def op_series_delete(self) -> bool:
        return self._delete(True)

    def _instance(self, what: str) -> bool:
        side = self.rng.choice(self.sides)
        found = self.pick_instance(side)
        if found is None:
            return False
        known, orig = found
        if what == "delete":
            if side == "local":
                self.world.local.delete(known.exceptions[orig][0])
            else:
                self.world.sides[side].delete_instance(known.ids[side], orig, known.all_day)
            # the ledger spells an occurrence as every view does (a store's original start may be
            # spelled otherwise: an all-day one as a UTC instant)
            self.deletions.append(Deletion(self.op, side, known.marker, canon(orig, known.all_day)))
            self.note(known.marker, f"instance_delete@{side} {orig}")
        else:
            changes: dict[str, Any] = {"title": self.title(known.marker, "i")}
            if what == "move":
                hours = self.rng.choice((-30, -3, 2, 5, 30)) if not known.all_day else self.rng.choice((-24, 24, 48))
                current = known.exceptions.get(orig, ("", orig, ""))[1]
                duration = instant(known.end) - instant(known.start)
                start = shift(current, timedelta(hours=hours))
                changes = {"start": start, "end": shift(start, duration)}
            elif self.rng.random() < 0.3:
                changes["description"] = self.description()
            if side == "local":
                self.world.local.edit(known.exceptions[orig][0], changes)
            else:
                self.world.sides[side].edit_instance(known.ids[side], orig, known.all_day, changes)
            self.note(known.marker, f"instance_{what}@{side} {orig} {changes.get('start', changes.get('title'))}")
        self.touched[(known.marker, side)] = self.op
        self.index_dirty = True
        return True

    def op_instance_edit(self) -> bool:
        return self._instance("edit")

    def op_instance_move(self) -> bool:
        return self._instance("move")

    def op_instance_delete(self) -> bool:
        return self._instance("delete")

    def op_fault(self) -> bool:
        side = self.world.sides[self.rng.choice(self.remote_sides())]
        status = self.rng.choice((500, 502, 503, 503, 429))
        spec: dict[str, Any] = {"status": status, "count": self.rng.randint(1, 6)}
        if status == 429:
            spec["retry_after"] = self.rng.choice((0, 0, 1))
        methods = self.rng.choice((None, None, ["GET"], ["POST", "PUT", "PATCH", "DELETE"], ["REPORT"]))
        if methods:
            spec["methods"] = methods
        after = methods != ["GET"] and self.rng.random() < 0.35
        side.fault(spec, after)
        self.stats["faults"] += 1
        self.log(f"fault@{side.name} {spec}{' after commit' if after else ''}")
        return True

    def op_token(self) -> bool:
        side = self.world.sides[self.rng.choice(self.remote_sides())]
        side.invalidate(self.engine)
        self.stats["tokens"] += 1
        self.log(f"tokens invalidated@{side.name}")
        return True

    def op_full(self) -> bool:
        side = self.world.sides[self.rng.choice(self.remote_sides())]
        self.log(f"full resync@{side.name}")
        self.stats["full"] += 1
        self.run_sync([side.binding], full=True)
        return True

    def op_kill(self) -> bool:
        side = self.world.sides[self.rng.choice(self.remote_sides())]
        self.stats["kills"] += 1
        if self.rng.random() < 0.5:
            page = self.rng.randint(1, 3)

            def after_page(pages: int, result: Any) -> None:
                if result.binding_id == side.binding and pages >= page:
                    raise Killed(f"after page {pages} of {side.name}")
            self.log(f"kill@{side.name} after page {page}")
            self.run_sync(None, full=self.rng.random() < 0.4, after_page=after_page)
        else:
            writes = self.rng.randint(1, 3)
            count = [0]

            def after_write(event_id: str, what: str) -> None:
                count[0] += 1
                if count[0] >= writes:
                    raise Killed(f"after write {count[0]} ({what} {event_id})")
            self.log(f"kill after write {writes}")
            self.run_sync(None, after_write=after_write)
        return True

    def op_resolve(self) -> bool:
        with self.engine.begin() as conn:
            listed = conflict_store.list_conflicts(conn)
        if not listed:
            return False
        for conflict in self.rng.sample(listed, min(len(listed), self.rng.randint(1, 3))):
            self.resolve(conflict)
        return True

    # --- conflicts -------------------------------------------------------------------------------

    def conflict_marker(self, conn: Any, conflict: dict[str, Any]) -> tuple[str, str | None]:
        (event,) = event_store.get_events(conn, [conflict["event_id"]])
        if event["recurring_event_id"]:
            (series,) = event_store.get_events(conn, [event["recurring_event_id"]])
            return marker_of(series["title"]) or "?", (canon(event["original_start"], series["all_day"])
                                                       if event["original_start"] else None)
        return marker_of(event["title"]) or "?", None

    def observe_conflicts(self) -> None:
        with self.engine.begin() as conn:
            listed = conflict_store.list_conflicts(conn)
            for conflict in listed:
                if conflict["id"] not in self.conflicts_seen:
                    self.stats["conflicts_opened"] += 1
                    mark, orig = self.conflict_marker(conn, conflict)
                    self.note(mark, f"conflict opened on {self.world.by_binding[conflict['binding_id']].name}"
                                    f"{' at ' + orig if orig else ''} ({conflict['kind']})")
                    self.check_cause(conflict, mark, orig)
                if self.conflicts_seen.get(conflict["id"]) != conflict["updated_at"]:
                    self.conflicts_seen[conflict["id"]] = conflict["updated_at"]
                    self.asof[conflict["id"]] = self.op
        self.open_conflicts = len(listed)

    DIFFERING = ("title", "start", "end", "all_day", "time_zone", "description", "location", "recurrence",
                 "status", "original_start", "attendees", "conference")

    def check_cause(self, conflict: dict[str, Any], mark: str, orig: str | None) -> None:
        """A conflict needs a change on its remote side that the harness made there (on this event,
        or for a series on any of its occurrences) after the last conflict there was shown and
        settled; one without is a phantom (an echo of calsync's own write, or a provider's
        re-spelling, taken for someone else's edit). Phantoms are reported apart, not as problems."""
        side = self.world.by_binding[conflict["binding_id"]].name
        touched = self.touched.get((mark, side), -1)
        settled = [r.asof for r in self.resolutions if r.marker == mark and r.side == side]
        if touched >= 0 and not (settled and max(settled) > touched):
            return
        local, remote, base = conflict["local"] or {}, conflict["remote"] or {}, conflict["base"] or {}
        differ = [k for k in self.DIFFERING if remote.get(k) != base.get(k)] if conflict["remote"] else ["deleted"]
        apart = [k for k in self.DIFFERING if remote.get(k) != local.get(k)] if conflict["remote"] and \
            conflict["local"] else ["deleted"]
        text = (f"#{self.op} {mark}{' at ' + orig if orig else ''} on {side} ({conflict['kind']}): the harness "
                f"{'never changed it there' if touched < 0 else f'last changed it there at #{touched}'}; remote "
                f"differs from base in {differ}, from local in {apart}: " + "; ".join(
                    f"{k}: base={base.get(k)!r} remote={remote.get(k)!r} local={local.get(k)!r}"
                    for k in dict.fromkeys([*apart, *differ]) if k != "deleted"))
        self.phantoms.append(text)
        self.stats["phantom_conflicts"] += 1
        self.note(mark, f"phantom conflict: {text}")

    def resolve(self, conflict: dict[str, Any]) -> None:
        keep = self.rng.choice(("local", "remote"))
        with self.engine.begin() as conn:
            mark, orig = self.conflict_marker(conn, conflict)
        side = self.world.by_binding[conflict["binding_id"]].name
        kwargs = {"remote_etag": conflict["remote_etag"] or ""} if self.resolve_kwargs else {}
        try:
            resolve_conflict(self.engine, conflict["id"], keep=keep, **kwargs)
        except ConflictChanged:
            self.note(mark, f"resolve keep={keep} on {side}: refused, the remote side changed")
            return
        except ConflictResolved:
            return
        revives = (conflict["local"] is None and keep == "remote" and conflict["remote"] is not None) or \
                  (conflict["remote"] is None and keep == "local" and conflict["local"] is not None)
        self.resolutions.append(Resolution(self.op, mark, orig, side, "local" if keep == "local" else side, revives,
                                           self.asof.get(conflict["id"], self.op)))
        self.stats["resolved"] += 1
        self.index_dirty = True
        self.note(mark, f"resolved keep={keep} on {side}{' at ' + orig if orig else ''} "
                        f"({conflict['kind']}{', revives' if revives else ''})")
        self.observe_conflicts()

    # --- syncing ---------------------------------------------------------------------------------

    def run_sync(self, binding_ids: list[str] | None, *, full: bool = False, **hooks: Any) -> SyncReport | None:
        self.stats["syncs"] += 1
        report = None
        try:
            # budgets={}: the emulators meter nothing, and pacing is not what this harness looks at
            # (tests/test_one_shot_budgets.py is); paced, the short runs took twice as long
            report = sync_once(self.engine, binding_ids=binding_ids, full=full, make_provider=self.world.make_provider,
                               now=datetime.now(UTC) + LATER, budgets={}, **hooks)
        except Killed as exc:
            self.log(f"worker killed: {exc}")
        except Exception:  # noqa: BLE001 - an engine crash is a finding, not the end of the run
            self.problem("crash", "-", crash_text())
        self.index_dirty = True
        self.observe_conflicts()
        return report

    def sync_pass(self) -> None:
        ids = None
        if self.rng.random() < 0.25:
            chosen = [s.binding for s in self.world.sides.values() if self.rng.random() < 0.5]
            ids = chosen or None
        report = self.run_sync(ids)
        if report is not None and self.cfg.verbose:
            busy = [f"{self.world.by_binding[r.binding_id].name}:{r.status}" for r in report.inbound + report.outbound
                    if r.status != "ok"]
            self.log(f"sync{'' if ids is None else ' (some)'}{' ' + ' '.join(busy) if busy else ''}")

    # --- convergence and checks ------------------------------------------------------------------

    def converge(self) -> bool:
        for side in self.world.sides.values():
            side.clear_faults()
        quiet_run = 0
        for _ in range(self.cfg.quiet_passes):
            with self.engine.begin() as conn:
                listed = conflict_store.list_conflicts(conn)
            for conflict in listed:
                self.resolve(conflict)
            report = self.run_sync(None)
            if report is None:
                continue
            busy = not report.ok or bool(listed) or self.open_conflicts or any(
                r.created or r.updated or r.deleted or getattr(r, "conflicts", 0) for r in report.inbound) or any(
                r.created or r.updated or r.deleted or r.held or r.retried or r.failed for r in report.outbound)
            quiet_run = 0 if busy else quiet_run + 1
            if quiet_run:
                return True
        failing = []
        if report is not None:
            failing = [f"{self.world.by_binding[r.binding_id].name}: {r.status} {r.message or ''}"
                       for r in report.inbound + report.outbound if r.status not in ("ok", "skipped")]
        self.problem("not-quiet", "-", f"no quiet pass in {self.cfg.quiet_passes} passes; last failures: {failing}")
        return False

    def deletions_of(self, marker: str, orig: str | None) -> list[Deletion]:
        return [d for d in self.deletions if d.marker == marker and (d.orig is None or d.orig == orig)]

    def revived(self, d: Deletion) -> bool:
        for r in self.resolutions:
            if r.marker != d.marker or r.op < d.op:
                continue
            if d.orig is None and (r.orig is not None or not r.revives):
                continue
            if d.orig is not None and r.orig is not None and (r.orig != d.orig or not r.revives):
                continue
            # the edit kept was itself deleted after the conflict last showed it: not a revival by choice
            if d.side == r.kept_side and d.op >= r.asof:
                continue
            return True
        return False

    def check(self) -> None:
        local_view, rows = store_view(self.engine, self.world.hub, self.hi)
        views = [local_view]
        for side in self.world.sides.values():
            views.append(side.view(self.hi, self.lo))
            views[-1].place_stand_ins(local_view)
        names = [v.side for v in views]
        for view in views:
            for key in dict.fromkeys(view.duplicates):
                self.problem("duplicate", key[1], f"{view.side} holds {key} more than once")
            for text in view.notes:
                self.problem("malformed", marker_of(text) or "-", f"{view.side}: {text}")
        keys = sorted(set().union(*(v.items for v in views)))
        for key in keys:
            values = [v.items.get(key) for v in views]
            if len({repr(x) for x in values}) > 1:
                shown = "; ".join(f"{n}={'missing' if x is None else x}" for n, x in zip(names, values))
                self.problem("diverged", key[1], f"{key}: {shown}")
        live = {key for v in views for key in v.items}
        markers_live = {key[1] for key in live}
        for key in sorted(live):
            orig = key[2] if key[0] == "i" else None
            found = self.deletions_of(key[1], orig)
            if found:
                last = max(found, key=lambda d: d.op)
                if not self.revived(last):
                    where = [v.side for v in views if key in v.items]
                    self.problem("resurrected", key[1], f"{key} deleted at #{last.op} on {last.side}, "
                                                        f"live on {where}")
        for marker, (op, side, spec, instances) in sorted(self.created.items()):
            if any(d.marker == marker and d.orig is None for d in self.deletions):
                continue
            main = ("r", marker) if spec.rule else ("s", marker)
            missing = [v.side for v in views if main not in v.items]
            if missing:
                self.problem("lost", marker, f"created at #{op} on {side}, never deleted, missing on {missing}")
            for orig in instances:
                if self.deletions_of(marker, orig):
                    continue
                gone = [v.side for v in views if ("i", marker, orig) not in v.items]
                if len(gone) == len(views):
                    self.problem("lost", marker, f"occurrence {orig} (created at #{op}), never deleted, missing "
                                                 "everywhere")
        del markers_live
        by_id = {r["id"]: r for r in rows}
        for row in rows:
            if not row["deleted"]:
                continue
            series = by_id.get(row["recurring_event_id"]) if row["recurring_event_id"] else None
            mark = marker_of(series["title"] if series else row["title"]) or "?"
            orig = canon(row["original_start"], row["all_day"]) if row["original_start"] else None
            found = self.deletions_of(mark, orig) if row["recurring_event_id"] or row["original_start"] else \
                [d for d in self.deletions if d.marker == mark and d.orig is None]
            if not found:
                self.problem("untraceable", mark, f"tombstone {row['id']} ({row['title']}{' at ' + orig if orig else ''})"
                                                  " with no deletion in the ledger")
                continue
            if row.get("deleted_by"):  # the column is new: used when the store has it
                side = self.world.side_of_tag(row["deleted_by"])
                if side is None or (not any(d.side == side for d in found) and not any(
                        r.marker == mark and r.kept_side == side for r in self.resolutions)):
                    self.problem("provenance", mark, f"tombstone {row['title']} deleted_by={row['deleted_by']} "
                                                     f"({side}); the ledger deleted it on "
                                                     f"{sorted({d.side for d in found})}; proof: {row.get('deletion_proof')!r}")
                if "deletion_proof" in row and not row["deletion_proof"]:
                    self.problem("provenance", mark, f"tombstone {row['title']} without deletion_proof")
        with self.engine.begin() as conn:
            left = conflict_store.list_conflicts(conn)
            queued = conn.execute(select(outbox.c.status, outbox.c.binding_id, outbox.c.last_error, outbox.c.attempts,
                                         outbox.c.next_attempt_at, events.c.id, events.c.title, events.c.deleted,
                                         events.c.status.label("event_status"), events.c.original_start,
                                         events.c.recurring_event_id, events.c.ical_uid, events.c.extra)
                                  .join(events, events.c.id == outbox.c.event_id)
                                  .where(outbox.c.status != "done")).mappings().all()
            titles = {r["id"]: r["title"] for r in event_store.get_events(conn, [q["recurring_event_id"] for q in queued
                                                                                 if q["recurring_event_id"]])}
        if left:
            self.problem("open-conflicts", "-", f"{len(left)} conflicts still open after convergence")
        for q in queued:
            title = q["title"] or titles.get(q["recurring_event_id"], "")
            what = (f"{'deleted ' if q['deleted'] else ''}{q['event_status']} event {q['id'][:8]} ({q['title']!r}"
                    f"{', occurrence ' + q['original_start'] + ' of ' + repr(titles.get(q['recurring_event_id'])) if q['original_start'] else ''})")
            self.problem("outbox", marker_of(title) or "-",
                         f"{q['status']} row for {self.world.by_binding[q['binding_id']].name} after convergence, "
                         f"{what}, uid={q['ical_uid']}, extra={sorted(q['extra'] or {})}, attempts={q['attempts']}: "
                         f"{(q['last_error'] or '')[:300]}")

    def checkpoint(self) -> None:
        self.converge()
        self.check()

    # --- the run ---------------------------------------------------------------------------------

    def run(self) -> Result:
        cfg = self.cfg
        self.run_sync(None)
        progress = cfg.progress or max(100, cfg.ops // 20)
        while self.op < cfg.ops:
            self.step()
            if cfg.check_every and self.op % cfg.check_every == 0 and self.op < cfg.ops:
                self.checkpoint()
            if self.op % progress == 0:
                cfg.out(f"  seed={cfg.seed} op {self.op}/{cfg.ops} syncs={self.stats['syncs']} "
                        f"events={len(self.index)} conflicts open={self.open_conflicts} "
                        f"opened={self.stats['conflicts_opened']} problems={len(self.problems)} "
                        f"{time.perf_counter() - self.started:.0f}s")
        self.checkpoint()
        return Result(cfg.seed, self.op, self.problems, self.stats, time.perf_counter() - self.started)


def run(cfg: Config) -> Result:
    world = World(cfg.providers, cfg.policy)
    keep = False
    try:
        chaos = Chaos(world, cfg)
        result = chaos.run()
        if chaos.phantoms:
            cfg.out(f"phantom conflicts (reported, not counted as problems): {len(chaos.phantoms)}")
            for text in chaos.phantoms[:20]:
                cfg.out(f"    {text[:600]}")
        if result.problems and (cfg.history or cfg.verbose):
            for marker in sorted({p.marker for p in result.problems if p.marker in chaos.history}):
                cfg.out(f"history of {marker}:")
                for line in chaos.history[marker]:
                    cfg.out(f"    {line}")
        if result.problems and cfg.keep:
            keep = True
            cfg.out(f"store kept: {world.folder / 'chaos.db'}")
        return result
    finally:
        world.close(keep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", help="several seeds in turn, e.g. 1,2,3 (overrides --seed)")
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--providers", default="google,graph,radicale",
                        help=f"comma-separated, of {', '.join(PROVIDERS)}")
    parser.add_argument("--no-recurring", action="store_true", help="no series and no occurrence operations")
    parser.add_argument("--skip", default="", help=f"operation kinds left out, of {', '.join(OP_KINDS)}; "
                                                   f"also {' or '.join(EXTRA_SKIPS)}: no such events")
    parser.add_argument("--sync-every", default="2,8", help="a sync pass every MIN..MAX operations")
    parser.add_argument("--check-every", type=int, default=0, help="converge and check every N operations too")
    parser.add_argument("--progress", type=int, default=0, help="a progress line every N operations")
    parser.add_argument("--history", action="store_true", help="print what was done to each problem's event")
    parser.add_argument("--verbose", action="store_true", help="every operation and sync")
    parser.add_argument("--keep", action="store_true", help="keep the store of a run that found problems")
    parser.add_argument("--policy", default="ask", choices=["ask", "merge"],
                        help="the bindings' conflict policy (merge: field by field, asking only on a clash)")
    args = parser.parse_args(argv)
    providers = tuple(p for p in args.providers.split(",") if p)
    unknown = set(providers) - set(PROVIDERS) | ({k for k in args.skip.split(",") if k} - set(OP_KINDS) - set(EXTRA_SKIPS))
    if unknown:
        parser.error(f"unknown: {sorted(unknown)}")
    low, high = (int(x) for x in args.sync_every.split(","))
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    results = []
    for seed in seeds:
        cfg = Config(seed=seed, ops=args.ops, providers=providers, recurring=not args.no_recurring,
                     skip=frozenset(k for k in args.skip.split(",") if k), sync_every=(low, high),
                     check_every=args.check_every, verbose=args.verbose, history=args.history, keep=args.keep,
                     progress=args.progress, policy=args.policy, out=lambda text: print(text, flush=True))
        result = run(cfg)
        results.append(result)
        kinds = Counter(p.kind for p in result.problems)
        print(f"operations: {', '.join(f'{k[3:]}={v}' for k, v in sorted(result.stats.items()) if k.startswith('op_'))}")
        if result.problems:
            print(f"problems by kind: {dict(kinds)}; replay: python bench/chaos.py --seed {seed} --ops {args.ops}"
                  f"{' --providers ' + args.providers if args.providers != 'google,graph,radicale' else ''}"
                  f"{' --skip ' + args.skip if args.skip else ''}{' --no-recurring' if args.no_recurring else ''}"
                  f"{' --policy ' + args.policy if args.policy != 'ask' else ''}"
                  " --history")
        print(result.summary(), flush=True)
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
