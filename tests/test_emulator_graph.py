"""The Microsoft Graph emulator over real HTTP (provider-semantics 2.1-2.5, checklist 5.2).

One emulator and one notification receiver (a small Starlette app) run on loopback ports for
the whole module; the emulator is reset before each test, and each test gets its own receiver
path, so a stray in-flight notification from an earlier test can never be counted.
``POST /emulator/push/flush`` waits until the delivery queue is empty, so tests do not sleep to
"let deliveries happen".
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from calsync.emulators.server import RunningServer, serve_in_thread

WINDOW = {"startDateTime": "2026-11-01T00:00:00Z", "endDateTime": "2026-12-01T00:00:00Z"}
REMOVED_KEYS = {"@odata.type", "id", "@removed"}

# ------------------------------------------------------------------------------------------------
# the notification receiver


@dataclass
class Hook:
    """One test's receiving URL: answers validations by ``mode`` and notifications from ``plan``."""

    base: str
    name: str = field(default_factory=lambda: uuid.uuid4().hex)
    mode: str = "echo"  # echo | encoded | json | status500 | slow
    plan: deque[int] = field(default_factory=deque)
    slow_s: float = 0.0
    validations: list[str] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.base}/hook/{self.name}"

    def items(self) -> list[dict[str, Any]]:
        return [item for post in self.posts for item in post["value"]]


class Receiver:
    """A Starlette app standing in for a webhook endpoint; hooks are looked up by path name."""

    def __init__(self) -> None:
        self.hooks: dict[str, Hook] = {}
        self.app = Starlette(routes=[Route("/hook/{name}", self._handle, methods=["POST"])])
        self.server: RunningServer | None = None

    def hook(self, **kwargs: Any) -> Hook:
        assert self.server is not None
        hook = Hook(self.server.url, **kwargs)
        self.hooks[hook.name] = hook
        return hook

    async def _handle(self, request: Request) -> Response:
        hook = self.hooks[request.path_params["name"]]
        token = request.query_params.get("validationToken")
        if token is not None:
            hook.validations.append(token)
            return await self._validate(hook, token)
        hook.posts.append(json.loads(await request.body()))
        status = hook.plan.popleft() if hook.plan else 202
        if hook.slow_s:
            await asyncio.sleep(hook.slow_s)
        return Response(status_code=status)

    @staticmethod
    async def _validate(hook: Hook, token: str) -> Response:
        if hook.mode == "encoded":
            return PlainTextResponse(quote(token))
        if hook.mode == "json":
            return Response(json.dumps(token), media_type="application/json")
        if hook.mode == "status500":
            return PlainTextResponse(token, status_code=500)
        if hook.mode == "slow":
            await asyncio.sleep(1.0)
        return PlainTextResponse(token)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    rec.server = serve_in_thread(rec.app)
    yield rec
    rec.server.stop()



@pytest.fixture()
def url(graph_server: RunningServer) -> str:
    """Base URL of a freshly reset emulator with fast push retries."""
    httpx.post(f"{graph_server.url}/emulator/reset").raise_for_status()
    httpx.post(f"{graph_server.url}/emulator/switches", json={"push_retry_base_ms": 10}).raise_for_status()
    return graph_server.url


# ------------------------------------------------------------------------------------------------
# a small client


class Graph:
    """httpx against /v1.0 as one mailbox, with helpers for events, delta rounds and admin calls."""

    def __init__(self, base: str, user: str = "alice", prefer: str | None = None) -> None:
        self.base = base
        headers = {"Authorization": f"Bearer {user}"}
        if prefer:
            headers["Prefer"] = prefer
        self.http = httpx.Client(base_url=base + "/v1.0", headers=headers, timeout=20)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.post(path, **kw)

    def patch(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.patch(path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.delete(path, **kw)

    def admin(self, path: str, body: Any = None) -> httpx.Response:
        return httpx.post(f"{self.base}/emulator/{path}", json=body if body is not None else {}, timeout=30)

    def switches(self, **values: Any) -> None:
        self.admin("switches", values).raise_for_status()

    def flush(self) -> dict[str, Any]:
        out = self.admin("push/flush", {"timeout": 20})
        out.raise_for_status()
        return dict(out.json())

    def event(self, subject: str = "Meeting", start: str = "2026-11-02T09:00:00", minutes: int = 60,
              tz: str = "UTC", cal: str | None = None, **extra: Any) -> dict[str, Any]:
        begin = datetime.fromisoformat(start)
        body = {"subject": subject, "start": {"dateTime": start, "timeZone": tz},
                "end": {"dateTime": (begin + timedelta(minutes=minutes)).isoformat(), "timeZone": tz}, **extra}
        path = f"/me/calendars/{cal}/events" if cal else "/me/events"
        response = self.post(path, json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def delta_round(self, first: str | None = None, params: dict[str, str] | None = None,
                    page: int | None = None, prefer: str | None = None,
                    path: str = "/me/calendarView/delta") -> tuple[list[dict[str, Any]], str, int]:
        """Follow nextLinks to the deltaLink: (all items, the deltaLink, number of pages)."""
        headers = {}
        prefs = [p for p in (f"odata.maxpagesize={page}" if page else None, prefer) if p]
        if prefs:
            headers["Prefer"] = ", ".join(prefs)
        response = self.get(first, headers=headers) if first else self.get(path, params=params or WINDOW,
                                                                           headers=headers)
        items: list[dict[str, Any]] = []
        pages = 0
        while True:
            assert response.status_code == 200, response.text
            body = response.json()
            pages += 1
            assert ("@odata.nextLink" in body) != ("@odata.deltaLink" in body)
            items.extend(body["value"])
            if "@odata.deltaLink" in body:
                return items, body["@odata.deltaLink"], pages
            response = self.get(body["@odata.nextLink"], headers=headers)

    def subscribe(self, hook: Hook, resource: str = "me/events", minutes: int = 60,
                  change: str = "created,updated,deleted", **extra: Any) -> httpx.Response:
        expiry = (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
        body = {"changeType": change, "notificationUrl": hook.url, "resource": resource,
                "expirationDateTime": expiry, "clientState": "s3cret", **extra}
        return self.post("/subscriptions", json=body, headers=extra.pop("headers", None) or {})


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "innerError"} <= set(body["error"])
    assert {"request-id", "date"} <= set(body["error"]["innerError"])
    return str(body["error"]["code"])


def live_ids(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in items if "@removed" not in i}


def removed_ids(items: list[dict[str, Any]]) -> set[str]:
    return {i["id"] for i in items if "@removed" in i}


@pytest.fixture()
def alice(url: str) -> Graph:
    return Graph(url, "alice")


WEEKLY5 = {"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
           "range": {"type": "numbered", "startDate": "2026-11-02", "numberOfOccurrences": 5}}

# ------------------------------------------------------------------------------------------------
# auth, routing and errors


def test_missing_token_is_401_in_graph_error_shape(url: str) -> None:
    response = httpx.get(f"{url}/v1.0/me/events")
    assert response.status_code == 401
    assert error_code(response) == "InvalidAuthenticationToken"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_token_names_a_mailbox_with_a_default_calendar(url: str) -> None:
    cal = Graph(url, "bob").get("/me/calendar").json()
    assert cal["isDefaultCalendar"] is True and cal["name"] == "Calendar"
    assert cal["owner"]["address"] == "bob@contoso.example"
    assert Graph(url, "carol@fabrikam.example").get("/me/calendar").json()["owner"]["address"] == "carol@fabrikam.example"


def test_users_path_of_the_caller_is_me_and_other_mailboxes_are_refused(alice: Graph) -> None:
    assert alice.get("/users/alice@contoso.example/calendar").status_code == 200
    response = alice.get("/users/bob@contoso.example/calendar")
    assert response.status_code == 403 and error_code(response) == "ErrorAccessDenied"


def test_bad_ids_unknown_segments_and_bad_json_are_graph_shaped_4xx(alice: Graph) -> None:
    assert error_code(alice.get("/me/events/AAMkAnotanid")) == "ErrorInvalidIdMalformed"
    ev = alice.event()
    bob_view = Graph(alice.base, "bob").get(f"/me/events/{ev['id']}")
    assert bob_view.status_code == 404 and error_code(bob_view) == "ErrorItemNotFound"
    unknown = alice.get("/me/nonsense")
    assert unknown.status_code == 400 and error_code(unknown) == "BadRequest"
    bad_json = alice.post("/me/events", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and error_code(bad_json) == "RequestBodyRead"
    assert alice.http.put("/me/events").status_code == 405


def test_unknown_properties_are_refused_and_read_only_ones_ignored(alice: Graph) -> None:
    ev = alice.event()
    response = alice.patch(f"/me/events/{ev['id']}", json={"zoomLink": "x"})
    assert response.status_code == 400 and error_code(response) == "RequestBodyRead"
    patched = alice.patch(f"/me/events/{ev['id']}", json={"onlineMeetingUrl": "https://zoom.example/j/1",
                                                          "id": "ignored", "subject": "ok"}).json()
    assert patched["onlineMeetingUrl"] is None and patched["id"] == ev["id"] and patched["subject"] == "ok"
    bad_enum = alice.patch(f"/me/events/{ev['id']}", json={"showAs": "sleeping"})
    assert bad_enum.status_code == 400 and error_code(bad_enum) == "RequestBodyRead"


# ------------------------------------------------------------------------------------------------
# calendars


def test_calendars_list_create_rename_and_delete(alice: Graph) -> None:
    created = alice.post("/me/calendars", json={"name": "Work"})
    assert created.status_code == 201
    cal = created.json()
    assert cal["isDefaultCalendar"] is False and cal["@odata.etag"] == f'W/"{cal["changeKey"]}"'
    assert error_code(alice.post("/me/calendars", json={"name": "work"})) == "ErrorFolderExists"
    names = sorted(c["name"] for c in alice.get("/me/calendars").json()["value"])
    assert names == ["Calendar", "Work"]
    renamed = alice.patch(f"/me/calendars/{cal['id']}", json={"name": "Job"}).json()
    assert renamed["name"] == "Job" and renamed["changeKey"] != cal["changeKey"]
    default = alice.get("/me/calendar").json()
    assert error_code(alice.delete(f"/me/calendars/{default['id']}")) == "ErrorDeleteDistinguishedFolder"
    assert alice.delete(f"/me/calendars/{cal['id']}").status_code == 204
    assert alice.get(f"/me/calendars/{cal['id']}").status_code == 404


# ------------------------------------------------------------------------------------------------
# events


def test_event_resource_has_graph_fields_and_formats(alice: Graph) -> None:
    ev = alice.event(location={"displayName": "Room 1"},
                     attendees=[{"emailAddress": {"address": "bob@example.org", "name": "Bob"}, "type": "optional"}])
    assert len(ev["id"]) > 90 and ev["type"] == "singleInstance" and ev["seriesMasterId"] is None
    assert ev["@odata.etag"] == f'W/"{ev["changeKey"]}"'
    assert ev["start"] == {"dateTime": "2026-11-02T09:00:00.0000000", "timeZone": "UTC"}
    assert ev["createdDateTime"].endswith("Z") and len(ev["createdDateTime"].split(".")[1]) == 8
    assert ev["location"]["displayName"] == "Room 1" and ev["locations"][0]["displayName"] == "Room 1"
    assert ev["attendees"] == [{"type": "optional", "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
                                "emailAddress": {"name": "Bob", "address": "bob@example.org"}}]
    assert ev["organizer"]["emailAddress"]["address"] == "alice@contoso.example"
    assert ev["isCancelled"] is False and ev["isOnlineMeeting"] is False and ev["onlineMeeting"] is None
    assert "transactionId" not in ev  # only returned when the app set one
    assert alice.get(f"/me/events/{ev['id']}").json() == ev


def test_prefer_outlook_timezone_converts_times(alice: Graph) -> None:
    ev = alice.event(start="2026-11-02T09:00:00", tz="Pacific Standard Time")
    assert ev["start"] == {"dateTime": "2026-11-02T17:00:00.0000000", "timeZone": "UTC"}
    assert ev["originalStartTimeZone"] == "Pacific Standard Time"
    response = alice.get(f"/me/events/{ev['id']}", headers={"Prefer": 'outlook.timezone="Europe/Berlin"'})
    assert response.json()["start"] == {"dateTime": "2026-11-02T18:00:00.0000000", "timeZone": "Europe/Berlin"}
    assert 'outlook.timezone="Europe/Berlin"' in response.headers["preference-applied"]
    bad = alice.get(f"/me/events/{ev['id']}", headers={"Prefer": 'outlook.timezone="Mars/Olympus"'})
    assert bad.status_code == 400 and error_code(bad) == "TimeZoneNotSupportedException"


def test_text_bodies_come_back_as_html_unless_text_is_preferred(alice: Graph) -> None:
    ev = alice.event(body={"contentType": "text", "content": "line one\nline <two>"})
    assert ev["body"]["contentType"] == "html" and "line one<br>" in ev["body"]["content"]
    assert "&lt;two&gt;" in ev["body"]["content"] and ev["bodyPreview"] == "line one line <two>"
    text = alice.get(f"/me/events/{ev['id']}", headers={"Prefer": 'outlook.body-content-type="text"'}).json()
    assert text["body"] == {"contentType": "text", "content": "line one\nline <two>"}


def test_every_change_bumps_change_key_etag_and_last_modified(alice: Graph) -> None:
    ev = alice.event()
    time.sleep(0.01)
    first = alice.patch(f"/me/events/{ev['id']}", json={"subject": "A"}).json()
    second = alice.patch(f"/me/events/{ev['id']}", json={"subject": "A"}).json()
    assert len({ev["changeKey"], first["changeKey"], second["changeKey"]}) == 3
    assert len({ev["@odata.etag"], first["@odata.etag"], second["@odata.etag"]}) == 3
    assert first["lastModifiedDateTime"] > ev["lastModifiedDateTime"]
    assert first["createdDateTime"] == ev["createdDateTime"]


def test_if_match_with_a_stale_etag_is_412_irresolvable_conflict(alice: Graph) -> None:
    ev = alice.event()
    fresh = alice.patch(f"/me/events/{ev['id']}", json={"subject": "v2"}, headers={"If-Match": ev["@odata.etag"]})
    assert fresh.status_code == 200
    stale = alice.patch(f"/me/events/{ev['id']}", json={"subject": "v3"}, headers={"If-Match": ev["@odata.etag"]})
    assert stale.status_code == 412 and error_code(stale) == "ErrorIrresolvableConflict"
    assert "change key" in stale.json()["error"]["message"]
    assert alice.get(f"/me/events/{ev['id']}").json()["subject"] == "v2"
    assert alice.delete(f"/me/events/{ev['id']}", headers={"If-Match": ev["@odata.etag"]}).status_code == 412
    assert alice.patch(f"/me/events/{ev['id']}", json={"subject": "v4"}, headers={"If-Match": "*"}).status_code == 200
    current = alice.get(f"/me/events/{ev['id']}").json()["@odata.etag"]
    assert alice.delete(f"/me/events/{ev['id']}", headers={"If-Match": current}).status_code == 204


def test_spurious_412_switch_models_exchanges_own_change_key_bump(alice: Graph) -> None:
    ev = alice.event()
    alice.switches(spurious_412_count=1)
    first = alice.patch(f"/me/events/{ev['id']}", json={"subject": "x"}, headers={"If-Match": ev["@odata.etag"]})
    assert first.status_code == 412
    reread = alice.get(f"/me/events/{ev['id']}").json()
    assert reread["changeKey"] != ev["changeKey"] and reread["subject"] == "Meeting"
    retry = alice.patch(f"/me/events/{ev['id']}", json={"subject": "x"}, headers={"If-Match": reread["@odata.etag"]})
    assert retry.status_code == 200


def test_transaction_id_makes_a_retried_post_return_the_same_event(alice: Graph) -> None:
    first = alice.event(transactionId="tx-1")
    again = alice.event(subject="retry", transactionId="tx-1")
    assert again["id"] == first["id"] and again["subject"] == "Meeting" and again["transactionId"] == "tx-1"
    assert len(alice.get("/me/events").json()["value"]) == 1
    changed = alice.patch(f"/me/events/{first['id']}", json={"transactionId": "tx-2"})
    assert changed.status_code == 400
    alice.switches(transaction_id_duplicate="conflict")
    body = {"subject": "s", "transactionId": "tx-1", "start": first["start"], "end": first["end"]}
    assert alice.post("/me/events", json=body).status_code == 409
    alice.delete(f"/me/events/{first['id']}")
    assert alice.post("/me/events", json=body).status_code == 201  # a deleted event frees its transactionId


def test_time_validation(alice: Graph) -> None:
    base = {"subject": "x", "start": {"dateTime": "2026-11-02T10:00:00", "timeZone": "UTC"}}
    backwards = alice.post("/me/events", json={**base, "end": {"dateTime": "2026-11-02T09:00:00", "timeZone": "UTC"}})
    assert error_code(backwards) == "ErrorCalendarEndDateIsEarlierThanStartDate"
    zone = alice.post("/me/events", json={**base, "end": {"dateTime": "2026-11-02T11:00:00", "timeZone": "Nowhere"}})
    assert error_code(zone) == "TimeZoneNotSupportedException"
    missing = alice.post("/me/events", json={"subject": "x"})
    assert missing.status_code == 400
    not_midnight = alice.post("/me/events", json={**base, "isAllDay": True,
                                                  "end": {"dateTime": "2026-11-03T10:00:00", "timeZone": "UTC"}})
    assert not_midnight.status_code == 400


def test_all_day_events_keep_their_midnights(alice: Graph) -> None:
    ev = alice.post("/me/events", json={
        "subject": "Offsite", "isAllDay": True,
        "start": {"dateTime": "2026-11-05T00:00:00", "timeZone": "Pacific Standard Time"},
        "end": {"dateTime": "2026-11-06T00:00:00", "timeZone": "Pacific Standard Time"}}).json()
    assert ev["isAllDay"] is True and ev["start"]["dateTime"] == "2026-11-05T00:00:00.0000000"
    berlin = alice.get(f"/me/events/{ev['id']}", headers={"Prefer": 'outlook.timezone="Europe/Berlin"'}).json()
    assert berlin["end"]["dateTime"] == "2026-11-06T00:00:00.0000000"


def test_online_meetings_get_a_teams_join_url(alice: Graph) -> None:
    ev = alice.event(isOnlineMeeting=True, onlineMeetingProvider="teamsForBusiness")
    assert ev["onlineMeeting"]["joinUrl"].startswith("https://teams.microsoft.com/l/meetup-join/")
    assert ev["onlineMeetingProvider"] == "teamsForBusiness" and ev["onlineMeetingUrl"] is None
    kept = alice.patch(f"/me/events/{ev['id']}", json={"subject": "renamed"}).json()
    assert kept["onlineMeeting"]["joinUrl"] == ev["onlineMeeting"]["joinUrl"]
    off = alice.patch(f"/me/events/{ev['id']}", json={"isOnlineMeeting": False}).json()
    assert off["onlineMeeting"] is None and off["onlineMeetingProvider"] == "unknown"


def test_immutable_ids_survive_a_move_while_regular_ids_change(alice: Graph) -> None:
    work = alice.post("/me/calendars", json={"name": "Work"}).json()
    ev = alice.event()
    immutable = alice.get(f"/me/events/{ev['id']}", headers={"Prefer": 'IdType="ImmutableId"'}).json()["id"]
    assert immutable != ev["id"]
    moved = alice.admin(f"events/{ev['id']}/move", {"user": "alice@contoso.example", "calendarId": work["id"]})
    assert moved.status_code == 200 and moved.json()["immutableId"] == immutable
    assert alice.get(f"/me/events/{ev['id']}").status_code == 404
    assert alice.get(f"/me/events/{moved.json()['id']}").status_code == 200
    again = alice.get(f"/me/events/{immutable}", headers={"Prefer": 'IdType="ImmutableId"'})
    assert again.status_code == 200 and again.json()["id"] == immutable
    assert alice.get(f"/me/calendars/{work['id']}/events/{immutable}").status_code == 200
    assert alice.get(f"/me/calendar/events/{immutable}").status_code == 404


def test_single_value_extended_properties_come_back_when_expanded(alice: Graph) -> None:
    prop = {"id": "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name calsync", "value": "k-1"}
    ev = alice.event(singleValueExtendedProperties=[prop])
    assert "singleValueExtendedProperties" not in ev
    expand = f"singleValueExtendedProperties($filter=id eq '{prop['id']}')"
    got = alice.get(f"/me/events/{ev['id']}", params={"$expand": expand}).json()
    assert got["singleValueExtendedProperties"] == [prop]
    alice.event(subject="second")
    items, link, pages = alice.delta_round(params={**WINDOW, "$expand": expand}, page=1)
    assert pages == 2 and [i["singleValueExtendedProperties"] for i in items] == [[prop], []]
    alice.patch(f"/me/events/{ev['id']}", json={"subject": "v2"})
    assert alice.delta_round(link)[0][0]["singleValueExtendedProperties"] == [prop]  # kept in the deltaLink
    assert alice.get(f"/me/events/{ev['id']}", params={"$expand": "attachments"}).status_code == 400


def test_list_events_pages_with_top_and_skip(alice: Graph) -> None:
    for i in range(12):
        alice.event(subject=f"e{i}")
    first = alice.get("/me/events").json()
    assert len(first["value"]) == 10 and "$skip=10" in first["@odata.nextLink"]
    rest = alice.get(first["@odata.nextLink"]).json()
    assert [e["subject"] for e in rest["value"]] == ["e10", "e11"] and "@odata.nextLink" not in rest


def test_cancel_by_organizer_marks_the_copy_cancelled(alice: Graph) -> None:
    ev = alice.event(subject="Review")
    assert alice.admin(f"events/{ev['id']}/cancel-by-organizer", {"user": "alice@contoso.example"}).status_code == 200
    got = alice.get(f"/me/events/{ev['id']}").json()
    assert got["isCancelled"] is True and got["subject"] == "Canceled: Review"
    assert alice.post(f"/me/events/{ev['id']}/cancel", json={"comment": "bye"}).status_code == 202
    assert alice.get(f"/me/events/{ev['id']}").status_code == 404


# ------------------------------------------------------------------------------------------------
# recurring series


def test_series_expand_into_occurrences_exceptions_and_cancellations(alice: Graph) -> None:
    master = alice.event(subject="Weekly", minutes=30, recurrence=WEEKLY5)
    assert master["type"] == "seriesMaster" and master["recurrence"]["range"]["numberOfOccurrences"] == 5
    view = alice.get("/me/calendarView", params={**WINDOW, "$top": "50"}).json()["value"]
    occs = [e for e in view if e["type"] == "occurrence"]
    assert len(occs) == 5 and len({o["id"] for o in occs}) == 5 and len({o["iCalUId"] for o in occs}) == 5
    assert all(o["seriesMasterId"] == master["id"] and o["recurrence"] is None for o in occs)
    assert occs[1]["originalStart"] == "2026-11-09T09:00:00Z"
    assert alice.get(f"/me/events/{occs[1]['id']}").json()["start"]["dateTime"] == "2026-11-09T09:00:00.0000000"
    moved = alice.patch(f"/me/events/{occs[1]['id']}", json={
        "start": {"dateTime": "2026-11-10T15:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-11-10T15:30:00", "timeZone": "UTC"}}).json()
    assert moved["type"] == "exception" and moved["id"] == occs[1]["id"]
    assert moved["originalStart"] == "2026-11-09T09:00:00Z"
    assert alice.delete(f"/me/events/{occs[2]['id']}").status_code == 204
    assert alice.get(f"/me/events/{occs[2]['id']}").status_code == 404
    instances = alice.get(f"/me/events/{master['id']}/instances", params=WINDOW).json()["value"]
    assert [i["type"] for i in instances] == ["occurrence", "exception", "occurrence", "occurrence"]
    bad = alice.post("/me/events", json={"subject": "x", "start": master["start"], "end": master["end"],
                                         "recurrence": {"pattern": {"type": "weekly"}, "range": WEEKLY5["range"]}})
    assert bad.status_code == 400 and error_code(bad) == "ErrorCalendarInvalidRecurrence"


def test_monthly_relative_and_daily_patterns(alice: Graph) -> None:
    alice.event(subject="Second Tuesday", start="2026-11-10T09:00:00", recurrence={
        "pattern": {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["tuesday"], "index": "second"},
        "range": {"type": "endDate", "startDate": "2026-11-10", "endDate": "2027-03-31"}})
    alice.event(subject="Daily", start="2026-11-28T08:00:00", recurrence={
        "pattern": {"type": "daily", "interval": 2}, "range": {"type": "noEnd", "startDate": "2026-11-28"}})
    view = alice.get("/me/calendarView", params={"startDateTime": "2026-11-01", "endDateTime": "2027-01-01",
                                                "$top": "100"}).json()["value"]
    tuesdays = [e["start"]["dateTime"][:10] for e in view if e["subject"] == "Second Tuesday"]
    assert tuesdays == ["2026-11-10", "2026-12-08"]
    daily = [e["start"]["dateTime"][:10] for e in view if e["subject"] == "Daily"]
    assert daily[:3] == ["2026-11-28", "2026-11-30", "2026-12-02"] and len(daily) == 17


# ------------------------------------------------------------------------------------------------
# delta


def test_delta_needs_a_window_and_refuses_unsupported_options(alice: Graph) -> None:
    missing = alice.get("/me/calendarView/delta")
    assert missing.status_code == 400 and error_code(missing) == "ErrorInvalidParameter"
    refused = alice.get("/me/calendarView/delta", params={**WINDOW, "$filter": "subject eq 'x'"})
    assert refused.status_code == 400
    assert alice.get("/me/calendarView/delta", params={**WINDOW, "$select": "subject"}).status_code == 200
    assert alice.get("/me/calendarView/delta()", params=WINDOW).status_code == 200  # OData function form


def test_delta_pages_honour_maxpagesize_and_encode_the_window_in_the_links(alice: Graph) -> None:
    for i in range(5):
        alice.event(subject=f"e{i}", start=f"2026-11-0{i + 2}T09:00:00")
    first = alice.get("/me/calendarView/delta", params=WINDOW, headers={"Prefer": "odata.maxpagesize=2"})
    assert first.headers["preference-applied"] == "odata.maxpagesize=2"
    body = first.json()
    assert len(body["value"]) == 2 and "@odata.deltaLink" not in body
    link = urlsplit(body["@odata.nextLink"])
    assert link.path == "/v1.0/me/calendarView/delta" and set(parse_qs(link.query)) == {"$skiptoken"}
    items, delta_link, pages = alice.delta_round(page=2)
    assert pages == 3 and [i["subject"] for i in items] == [f"e{i}" for i in range(5)]
    assert all(i["@odata.type"] == "#microsoft.graph.event" and i["@odata.etag"] for i in items)
    assert set(parse_qs(urlsplit(delta_link).query)) == {"$deltatoken"}


def test_delta_default_page_size_is_switchable(alice: Graph) -> None:
    for i in range(12):
        alice.event(subject=f"e{i}")
    assert alice.delta_round()[2] == 2  # 10 per page by default
    alice.switches(delta_default_page_size=5)
    assert alice.delta_round()[2] == 3


def test_delta_rounds_report_creates_updates_and_deletes(alice: Graph) -> None:
    keep, change, drop = alice.event(subject="keep"), alice.event(subject="change"), alice.event(subject="drop")
    _, link, _ = alice.delta_round()
    quiet, link2, _ = alice.delta_round(link)
    assert quiet == []
    alice.patch(f"/me/events/{change['id']}", json={"subject": "changed"})
    alice.delete(f"/me/events/{drop['id']}")
    new = alice.event(subject="new")
    items, _, _ = alice.delta_round(link2)
    assert {i["subject"] for i in live_ids(items).values()} == {"changed", "new"}
    assert removed_ids(items) == {drop["id"]}
    gone = next(i for i in items if "@removed" in i)
    assert set(gone) == REMOVED_KEYS and gone["@removed"] == {"reason": "deleted"}
    assert keep["id"] not in live_ids(items) and new["id"] in live_ids(items)


def test_delta_window_is_fixed_and_changes_outside_it_come_as_removed(alice: Graph) -> None:
    inside = alice.event(subject="inside")
    _, link, _ = alice.delta_round()
    outside = alice.event(subject="outside", start="2027-03-01T09:00:00")
    alice.patch(f"/me/events/{inside['id']}", json={"start": {"dateTime": "2027-02-01T09:00:00", "timeZone": "UTC"},
                                                    "end": {"dateTime": "2027-02-01T10:00:00", "timeZone": "UTC"}})
    items, _, _ = alice.delta_round(link)
    assert live_ids(items) == {}
    assert removed_ids(items) == {inside["id"], outside["id"]}


def test_first_round_holds_only_what_exists_now(alice: Graph) -> None:
    gone = alice.event(subject="gone")
    alice.delete(f"/me/events/{gone['id']}")
    alice.event(subject="here")
    items, _, _ = alice.delta_round()
    assert [i["subject"] for i in items] == ["here"]


def test_delta_paging_stays_correct_while_events_change(alice: Graph) -> None:
    stable = [alice.event(subject=f"s{i}", start=f"2026-11-{i + 2:02d}T09:00:00") for i in range(9)]
    doomed = alice.event(subject="doomed")
    headers = {"Prefer": "odata.maxpagesize=2"}
    response = alice.get("/me/calendarView/delta", params=WINDOW, headers=headers).json()
    seen = list(response["value"])
    alice.delete(f"/me/events/{doomed['id']}")
    added = alice.event(subject="added-mid-round")
    unseen = next(ev for ev in stable if ev["id"] not in {i["id"] for i in seen})
    alice.delete(f"/me/events/{seen[0]['id']}")  # offset paging would now skip one
    alice.patch(f"/me/events/{unseen['id']}", json={"subject": "changed-mid-round"})
    while "@odata.nextLink" in response:
        response = alice.get(response["@odata.nextLink"], headers=headers).json()
        seen.extend(response["value"])
    ids = [i["id"] for i in seen]
    for ev in stable:
        if ev["id"] != seen[0]["id"]:
            assert ids.count(ev["id"]) == 1, ev["subject"]
    after, _, _ = alice.delta_round(response["@odata.deltaLink"])
    assert added["id"] in live_ids(after) and doomed["id"] in removed_ids(after)
    assert live_ids(after)[unseen["id"]]["subject"] == "changed-mid-round"


def test_series_changes_report_occurrences_and_dropped_ones(alice: Graph) -> None:
    master = alice.event(subject="Weekly", recurrence=WEEKLY5)
    items, link, _ = alice.delta_round()
    occurrences = [i for i in items if i["type"] == "occurrence"]
    assert len(occurrences) == 5 and all(i["type"] != "seriesMaster" for i in items)
    shorter = {**WEEKLY5, "range": {**WEEKLY5["range"], "numberOfOccurrences": 3}}
    alice.patch(f"/me/events/{master['id']}", json={"recurrence": shorter})
    items, link, _ = alice.delta_round(link)
    assert len([i for i in items if i.get("type") == "occurrence"]) == 3
    assert {o["id"] for o in occurrences[3:]} <= removed_ids(items)
    alice.delete(f"/me/events/{master['id']}")
    items, _, _ = alice.delta_round(link)
    assert {o["id"] for o in occurrences[:3]} <= removed_ids(items) and live_ids(items) == {}


def test_expired_delta_tokens_answer_410_with_a_restart_location(alice: Graph) -> None:
    alice.event()
    _, link, _ = alice.delta_round()
    alice.admin("delta/expire").raise_for_status()
    expired = alice.get(link)
    assert expired.status_code == 410 and error_code(expired) == "SyncStateNotFound"
    restart = expired.headers["location"]
    assert restart.endswith("$deltatoken=") and "startDateTime=2026-11-01" in restart
    items, _, _ = alice.delta_round(restart)
    assert len(items) == 1
    forged = alice.get("/me/calendarView/delta", params={"$deltatoken": "forged"})
    assert forged.status_code == 410
    alice.switches(delta_expired_response="resyncRequired")
    alice.admin("delta/expire")
    assert error_code(alice.get(restart.replace("$deltatoken=", "$deltatoken=x"))) == "resyncRequired"
    alice.switches(delta_expired_response="badRequest")
    response = alice.get(link)
    assert response.status_code == 400 and error_code(response) == "syncStateNotFound"


def test_skip_tokens_expire_too_and_ttl_switch_ages_out_delta_tokens(alice: Graph) -> None:
    for i in range(3):
        alice.event(subject=f"e{i}")
    page = alice.get("/me/calendarView/delta", params=WINDOW, headers={"Prefer": "odata.maxpagesize=1"}).json()
    alice.admin("delta/expire", {"user": "alice@contoso.example"})
    assert alice.get(page["@odata.nextLink"]).status_code == 410
    _, link, _ = alice.delta_round()
    alice.switches(delta_token_ttl_seconds=0)
    time.sleep(1.1)
    assert alice.get(link).status_code == 410


def test_scan_limit_gives_short_and_empty_pages_with_next_links(alice: Graph) -> None:
    for i in range(4):
        alice.event(subject=f"far{i}", start="2027-05-01T09:00:00")
    alice.event(subject="near")
    alice.switches(delta_page_scan_limit=2)
    first = alice.get("/me/calendarView/delta", params=WINDOW).json()
    assert first["value"] == [] and "@odata.nextLink" in first
    items, _, pages = alice.delta_round()
    assert [i["subject"] for i in items] == ["near"] and pages == 3


def test_duplicates_and_replays_are_switchable(alice: Graph) -> None:
    ev = alice.event()
    _, link, _ = alice.delta_round()
    alice.patch(f"/me/events/{ev['id']}", json={"subject": "v2"})
    alice.switches(delta_duplicate_items=True)
    items, link2, _ = alice.delta_round(link)
    assert [i["id"] for i in items] == [ev["id"], ev["id"]]
    alice.switches(delta_duplicate_items=False, delta_replay_count=1)
    replayed, _, _ = alice.delta_round(link2)
    assert [i["subject"] for i in replayed] == ["v2"]


def test_keep_series_together_quirk_overfills_pages(alice: Graph) -> None:
    alice.event(subject="Weekly", recurrence=WEEKLY5)
    assert alice.delta_round(page=2)[2] == 3
    alice.switches(delta_keep_series_together=True)
    first = alice.get("/me/calendarView/delta", params=WINDOW, headers={"Prefer": "odata.maxpagesize=2"}).json()
    assert len(first["value"]) == 5 and "@odata.deltaLink" in first


def test_delta_renders_each_request_in_its_preferred_zone_and_id_form(alice: Graph) -> None:
    ev = alice.event(start="2026-11-02T09:00:00")
    items, _, _ = alice.delta_round(prefer='outlook.timezone="Tokyo Standard Time", IdType="ImmutableId"')
    assert items[0]["start"] == {"dateTime": "2026-11-02T18:00:00.0000000", "timeZone": "Tokyo Standard Time"}
    assert items[0]["id"] != ev["id"] and items[0]["id"].startswith("AAkAL")


def test_delta_is_per_calendar_and_a_move_is_a_removal_in_the_old_one(alice: Graph) -> None:
    work = alice.post("/me/calendars", json={"name": "Work"}).json()
    home = alice.event(subject="home")
    office = alice.event(subject="office", cal=work["id"])
    work_path = f"/me/calendars/{work['id']}/calendarView/delta"
    work_items, work_link, _ = alice.delta_round(path=work_path)
    assert [i["subject"] for i in work_items] == ["office"]
    home_items, home_link, _ = alice.delta_round()
    assert [i["subject"] for i in home_items] == ["home"] and office["id"] not in live_ids(home_items)
    token = parse_qs(urlsplit(home_link).query)["$deltatoken"][0]
    assert alice.get(work_path, params={"$deltatoken": token}).status_code == 410
    moved = alice.admin(f"events/{home['id']}/move", {"user": "alice@contoso.example",
                                                      "calendarId": work["id"]}).json()
    home_after, _, _ = alice.delta_round(home_link)
    assert removed_ids(home_after) == {home["id"]}
    work_after, _, _ = alice.delta_round(work_link)
    assert set(live_ids(work_after)) == {moved["id"]}


def test_seed_builds_many_events_quickly(alice: Graph) -> None:
    started = time.monotonic()
    out = alice.admin("calendars/alice@contoso.example/seed",
                      {"count": 2000, "days": 20, "recurring_every": 100, "online_every": 10})
    assert out.status_code == 200 and out.json()["created"] == 2000
    assert time.monotonic() - started < 5
    items, _, pages = alice.delta_round(page=1000)
    assert len(items) > 2000 and pages >= 3
    assert any(i["isOnlineMeeting"] for i in items) and any(i["type"] == "occurrence" for i in items)
    assert alice.admin("calendars/nobody/seed", {"count": 1}).status_code == 404


# ------------------------------------------------------------------------------------------------
# subscriptions and notifications


def test_subscription_handshake_echoes_the_decoded_token(alice: Graph, receiver: Receiver) -> None:
    hook = receiver.hook()
    response = alice.subscribe(hook)
    assert response.status_code == 201, response.text
    sub = response.json()
    assert hook.validations and hook.validations[0].startswith("Validation: ")  # spaces: must be URL-decoded
    assert sub["notificationUrl"] == hook.url and sub["changeType"] == "created,updated,deleted"
    assert sub["clientState"] == "s3cret" and sub["expirationDateTime"].endswith("Z")
    assert alice.get(f"/subscriptions/{sub['id']}").json()["id"] == sub["id"]
    assert [s["id"] for s in alice.get("/subscriptions").json()["value"]] == [sub["id"]]


@pytest.mark.parametrize("mode", ["encoded", "json", "status500"])
def test_a_failed_handshake_creates_no_subscription(alice: Graph, receiver: Receiver, mode: str) -> None:
    response = alice.subscribe(receiver.hook(mode=mode))
    assert response.status_code == 400 and error_code(response) == "ValidationError"
    assert alice.get("/subscriptions").json()["value"] == []


def test_a_slow_handshake_times_out(alice: Graph, receiver: Receiver) -> None:
    alice.switches(validation_timeout_s=0.3)
    response = alice.subscribe(receiver.hook(mode="slow"))
    assert response.status_code == 400 and "timed out" in response.json()["error"]["message"]


def test_the_lifecycle_url_is_validated_too(alice: Graph, receiver: Receiver) -> None:
    good, bad = receiver.hook(), receiver.hook(mode="status500")
    assert alice.subscribe(good, lifecycleNotificationUrl=bad.url).status_code == 400
    assert bad.validations
    assert alice.subscribe(good, lifecycleNotificationUrl=receiver.hook().url).status_code == 201


def test_subscription_expiration_is_required_and_capped(alice: Graph, receiver: Receiver) -> None:
    hook = receiver.hook()
    too_long = alice.subscribe(hook, minutes=4231)
    assert too_long.status_code == 400 and error_code(too_long) == "ExtensionError"
    assert "4230 minutes" in too_long.json()["error"]["message"]
    assert alice.subscribe(hook, minutes=-5).status_code == 400
    assert alice.post("/subscriptions", json={"changeType": "created", "notificationUrl": hook.url,
                                              "resource": "me/events"}).status_code == 400
    assert alice.subscribe(hook, minutes=4229).status_code == 201
    alice.switches(subscription_max_minutes=10080)
    assert alice.subscribe(hook, minutes=10000).status_code == 201


def test_subscription_fields_are_checked(alice: Graph, receiver: Receiver) -> None:
    hook = receiver.hook()
    assert alice.subscribe(hook, change="created,moved").status_code == 400
    assert alice.subscribe(hook, resource="me/messages").status_code == 400
    assert alice.subscribe(hook, clientState="x" * 129).status_code == 400
    remote = alice.post("/subscriptions", json={"changeType": "created", "notificationUrl": "http://example.org/h",
                                                "resource": "me/events", "expirationDateTime": "2099-01-01T00:00:00Z"})
    assert remote.status_code == 400 and not hook.validations


def test_renew_reauthorize_and_delete(alice: Graph, receiver: Receiver) -> None:
    sub = alice.subscribe(receiver.hook(), minutes=30).json()
    later = (datetime.now(UTC) + timedelta(minutes=4000)).isoformat()
    renewed = alice.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": later})
    assert renewed.status_code == 200 and renewed.json()["expirationDateTime"] > sub["expirationDateTime"]
    too_far = (datetime.now(UTC) + timedelta(minutes=5000)).isoformat()
    assert alice.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": too_far}).status_code == 400
    assert alice.post(f"/subscriptions/{sub['id']}/reauthorize").status_code == 204
    assert Graph(alice.base, "bob").get(f"/subscriptions/{sub['id']}").status_code == 404
    assert alice.delete(f"/subscriptions/{sub['id']}").status_code == 204
    assert alice.get(f"/subscriptions/{sub['id']}").status_code == 404


def test_notifications_carry_graph_fields_and_batch_per_url(alice: Graph, receiver: Receiver) -> None:
    hook = receiver.hook()
    first = alice.subscribe(hook).json()
    second = alice.subscribe(hook, change="created").json()
    alice.switches(push_retry_base_ms=10)
    alice.admin("push-faults", {"delay_ms": 100})
    ev = alice.event()
    alice.patch(f"/me/events/{ev['id']}", json={"subject": "v2"})
    alice.delete(f"/me/events/{ev['id']}")
    alice.flush()
    items = hook.items()
    assert sorted((i["subscriptionId"], i["changeType"]) for i in items) == sorted(
        [(first["id"], "created"), (first["id"], "updated"), (first["id"], "deleted"), (second["id"], "created")])
    assert len(hook.posts) < len(items)  # delivered together
    created = next(i for i in items if i["changeType"] == "created")
    user_guid = created["resource"].split("/")[1]
    assert created["resource"] == f"Users/{user_guid}/Events/{ev['id']}"
    assert created["resourceData"]["@odata.type"] == "#Microsoft.Graph.Event"
    assert created["resourceData"]["id"] == ev["id"] and created["resourceData"]["@odata.etag"] == ev["@odata.etag"]
    assert created["clientState"] == "s3cret" and created["tenantId"] and created["subscriptionExpirationDateTime"]
    deleted = next(i for i in items if i["changeType"] == "deleted")
    assert "@odata.etag" not in deleted["resourceData"]


def test_only_committed_changes_notify(alice: Graph, receiver: Receiver) -> None:
    hook = receiver.hook()
    ev = alice.event()
    alice.subscribe(hook)
    alice.patch(f"/me/events/{ev['id']}", json={"subject": "x"}, headers={"If-Match": 'W/"old"'})
    alice.patch(f"/me/events/{ev['id']}", json={"bogus": 1})
    alice.post("/me/events", json={"subject": "no times"})
    alice.flush()
    assert hook.items() == []


def test_notifications_follow_the_subscribed_calendar(alice: Graph, receiver: Receiver) -> None:
    work = alice.post("/me/calendars", json={"name": "Work"}).json()
    mailbox, work_only, default_only = receiver.hook(), receiver.hook(), receiver.hook()
    alice.subscribe(mailbox)
    alice.subscribe(work_only, resource=f"me/calendars/{work['id']}/events")
    alice.subscribe(default_only, resource="me/calendar/events")
    alice.event(cal=work["id"])
    Graph(alice.base, "bob").event()
    alice.flush()
    assert len(mailbox.items()) == 1 and len(work_only.items()) == 1 and default_only.items() == []


def test_failed_deliveries_are_retried_with_backoff_then_given_up(alice: Graph, receiver: Receiver) -> None:
    hook = receiver.hook(plan=deque([503, 500]))
    alice.subscribe(hook)
    alice.event()
    alice.flush()
    assert len(hook.posts) == 3 and hook.posts[0] == hook.posts[2]
    outcomes = [d["outcome"] for d in httpx.get(f"{alice.base}/emulator/deliveries").json()["deliveries"]
                if d["kind"] == "change"]
    assert outcomes == ["retry", "retry", "delivered"]
    alice.switches(push_max_attempts=2)
    dead = receiver.hook(plan=deque([500, 500, 500]))
    alice.subscribe(dead)
    alice.event()
    counts = alice.flush()
    assert len(dead.posts) == 2 and counts["failed"] == 1


def test_slow_receivers_time_out_and_are_retried(alice: Graph, receiver: Receiver) -> None:
    alice.switches(delivery_timeout_s=0.2, push_max_attempts=2)
    hook = receiver.hook(slow_s=0.5)
    alice.subscribe(hook)
    alice.event()
    alice.flush()
    entries = [d for d in httpx.get(f"{alice.base}/emulator/deliveries").json()["deliveries"] if d["kind"] == "change"]
    assert [d["outcome"] for d in entries] == ["retry", "gave_up"] and entries[0]["status"] is None


def test_push_faults_drop_and_duplicate(alice: Graph, receiver: Receiver) -> None:
    hook = receiver.hook()
    alice.subscribe(hook)
    alice.admin("push-faults", {"drop_count": 1}).raise_for_status()
    alice.event(subject="lost")
    alice.event(subject="kept")
    alice.flush()
    assert len(hook.items()) == 1
    alice.admin("push-faults", {"duplicate_rate": 1.0}).raise_for_status()
    alice.event(subject="twice")
    alice.flush()
    assert len(hook.items()) == 3
    assert alice.admin("push-faults", {"bogus": 1}).status_code == 400


def test_lifecycle_notifications(alice: Graph, receiver: Receiver) -> None:
    hook, life = receiver.hook(), receiver.hook()
    sub = alice.subscribe(hook, lifecycleNotificationUrl=life.url).json()
    assert alice.admin(f"subscriptions/{sub['id']}/lifecycle", {"event": "missed"}).status_code == 202
    alice.admin(f"subscriptions/{sub['id']}/lifecycle", {"event": "reauthorizationRequired", "pause": True})
    alice.event(subject="while paused")
    alice.flush()
    assert [i["lifecycleEvent"] for i in life.items()] == ["missed", "reauthorizationRequired"]
    assert set(life.items()[0]) == {"subscriptionId", "subscriptionExpirationDateTime", "tenantId", "clientState",
                                    "lifecycleEvent"}
    assert hook.items() == []
    alice.post(f"/subscriptions/{sub['id']}/reauthorize")
    alice.event(subject="after")
    alice.admin(f"subscriptions/{sub['id']}/lifecycle", {"event": "subscriptionRemoved"})
    alice.flush()
    assert len(hook.items()) == 1 and life.items()[-1]["lifecycleEvent"] == "subscriptionRemoved"
    assert alice.get(f"/subscriptions/{sub['id']}").status_code == 404
    no_url = alice.subscribe(receiver.hook()).json()
    assert alice.admin(f"subscriptions/{no_url['id']}/lifecycle", {"event": "missed"}).status_code == 409
    assert alice.admin(f"subscriptions/{no_url['id']}/lifecycle", {"event": "nope"}).status_code == 400


def test_expired_subscriptions_stop_notifying(alice: Graph, receiver: Receiver) -> None:
    hook = receiver.hook()
    sub = alice.subscribe(hook).json()
    assert alice.admin(f"subscriptions/{sub['id']}/expire").status_code == 200
    alice.event()
    alice.flush()
    assert hook.items() == [] and alice.get(f"/subscriptions/{sub['id']}").status_code == 404


def test_immutable_id_subscriptions_send_immutable_ids(alice: Graph, receiver: Receiver) -> None:
    hook = receiver.hook()
    alice.subscribe(hook, headers={"Prefer": 'IdType="ImmutableId"'})
    ev = alice.event()
    alice.flush()
    immutable = alice.get(f"/me/events/{ev['id']}", headers={"Prefer": 'IdType="ImmutableId"'}).json()["id"]
    assert hook.items()[0]["resourceData"]["id"] == immutable


# ------------------------------------------------------------------------------------------------
# throttling and faults


def test_injected_429_carries_retry_after_and_a_graph_body(alice: Graph) -> None:
    alice.admin("faults", {"status": 429, "retry_after": 7, "count": 1}).raise_for_status()
    throttled = alice.get("/me/events")
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "7"
    assert error_code(throttled) == "ApplicationThrottled"
    assert alice.get("/me/events").status_code == 200


def test_after_commit_faults_lose_the_answer_but_keep_the_write(alice: Graph) -> None:
    alice.admin("faults", {"status": 503, "count": 1, "after_commit": True, "methods": ["POST"]})
    lost = alice.post("/me/events", json={"subject": "x", "transactionId": "t",
                                          "start": {"dateTime": "2026-11-02T09:00:00", "timeZone": "UTC"},
                                          "end": {"dateTime": "2026-11-02T10:00:00", "timeZone": "UTC"}})
    assert lost.status_code == 503 and error_code(lost) == "ServiceNotAvailable"
    again = alice.event(subject="retry", transactionId="t")
    assert again["subject"] == "x" and len(alice.get("/me/events").json()["value"]) == 1


def test_mailbox_concurrency_limit(alice: Graph) -> None:
    alice.switches(mailbox_concurrency_limit=4, throttle_retry_after_seconds=2)
    alice.admin("faults", {"latency_ms": 300, "methods": ["GET"]})
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: Graph(alice.base, "alice").get("/me/events"), range(8)))
    codes = sorted(r.status_code for r in statuses)
    assert codes.count(200) >= 4 and 429 in codes
    assert next(r for r in statuses if r.status_code == 429).headers["retry-after"] == "2"
    assert Graph(alice.base, "bob").get("/me/events").status_code == 200


def test_mailbox_request_rate_limit(alice: Graph) -> None:
    alice.switches(mailbox_requests_per_10min=3)
    assert [alice.get("/me/events").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert int(alice.get("/me/events").headers["retry-after"]) > 500


def test_requests_are_logged_and_reset_clears_everything(alice: Graph, receiver: Receiver) -> None:
    alice.event()
    alice.subscribe(receiver.hook())
    log = httpx.get(f"{alice.base}/emulator/requests").json()["requests"]
    assert [(e["method"], e["status"]) for e in log] == [("POST", 201), ("POST", 201)]
    assert len(httpx.get(f"{alice.base}/emulator/subscriptions").json()["subscriptions"]) == 1
    alice.admin("reset")
    assert alice.get("/me/events").json()["value"] == []
    assert httpx.get(f"{alice.base}/emulator/subscriptions").json()["subscriptions"] == []
    assert alice.admin("switches", {"nope": 1}).status_code == 400


def test_cli_has_a_graph_emulator_command() -> None:
    from typer.testing import CliRunner

    from calsync.cli import app

    result = CliRunner().invoke(app, ["emulator", "graph", "--help"])
    assert result.exit_code == 0 and "--port" in result.output


# ------------------------------------------------------------------------------------------------
# JSON batching ($batch)


def batch(client: Graph, *requests: dict[str, Any]) -> httpx.Response:
    return client.post("/$batch", json={"requests": list(requests)})


def by_id(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    return {item["id"]: item for item in response.json()["responses"]}


def get_item(item_id: str, url: str, **headers: str) -> dict[str, Any]:
    return {"id": item_id, "method": "GET", "url": url, **({"headers": headers} if headers else {})}


def request_log(client: Graph) -> list[dict[str, Any]]:
    return list(httpx.get(f"{client.base}/emulator/requests").json()["requests"])


def test_batch_reads_events_each_with_its_own_headers_and_logs_every_inner_request(alice: Graph) -> None:
    kept, gone = alice.event("kept"), alice.event("gone")
    assert alice.delete(f"/me/events/{gone['id']}").status_code == 204
    httpx.delete(f"{alice.base}/emulator/requests").raise_for_status()
    answer = batch(alice, get_item("1", f"/me/events/{kept['id']}", Prefer='outlook.timezone="Europe/Paris"'),
                   get_item("2", f"/me/events/{gone['id']}"), get_item("3", "me/calendars"))
    items = by_id(answer)
    assert [i["id"] for i in answer.json()["responses"]] == ["1", "2", "3"], "request order by default"
    assert all(set(i) == {"id", "status", "headers", "body"} for i in items.values())
    assert items["1"]["status"] == 200 and items["1"]["body"]["id"] == kept["id"]
    assert items["1"]["body"]["start"] == {"dateTime": "2026-11-02T10:00:00.0000000", "timeZone": "Europe/Paris"}
    assert items["1"]["headers"]["Content-Type"].startswith("application/json")
    assert items["2"]["status"] == 404 and items["2"]["body"]["error"]["code"] == "ErrorItemNotFound"
    assert items["3"]["status"] == 200 and [c["name"] for c in items["3"]["body"]["value"]] == ["Calendar"]
    log = request_log(alice)
    assert [(e["method"], e["path"].split("/")[2], e["status"], e.get("batch_item")) for e in log] == [
        ("GET", "me", 200, "1"), ("GET", "me", 404, "2"), ("GET", "me", 200, "3"), ("POST", "$batch", 200, None)]
    assert [e for e in log if "batch_item" not in e] == [log[-1]], "the outer POST is logged once, unmarked"


def test_batch_limits_and_malformed_payloads_refuse_the_whole_batch(alice: Graph) -> None:
    ev = alice.event()
    twenty = [get_item(str(n), f"/me/events/{ev['id']}") for n in range(20)]
    assert [i["status"] for i in batch(alice, *twenty).json()["responses"]] == [200] * 20
    httpx.delete(f"{alice.base}/emulator/requests").raise_for_status()
    refused = [
        batch(alice, *twenty, get_item("20", "/me/events")),  # 21 requests
        batch(alice, get_item("a", "/me/events"), get_item("A", "/me/calendars")),  # ids are case-insensitive
        alice.post("/$batch", json={"requests": []}),
        alice.post("/$batch", json={"value": []}),
        alice.post("/$batch", content=b"{not json", headers={"Content-Type": "application/json"}),
        batch(alice, {"id": "1", "method": "GET"}),  # no url
        batch(alice, {"method": "GET", "url": "/me/events"}),  # no id
        batch(alice, {"id": "1", "method": "PATCH", "url": f"/me/events/{ev['id']}", "body": {"subject": "x"}}),
        batch(alice, {"id": "1", "method": "POST", "url": f"/me/events/{ev['id']}/cancel",
                      "headers": {"Content-Type": "application/json"}}),  # a write without a body
        batch(alice, get_item("1", "/me/events") | {"dependsOn": ["2"]}, get_item("2", "/me/events")),
    ]
    for response in refused:
        assert response.status_code == 400 and error_code(response) == "BadRequest", response.text
    messages = [r.json()["error"]["message"] for r in refused]
    assert "20" in messages[0] and messages[1] == "Request Id A has to be unique in a batch."
    assert messages[7] == "Write request id : 1 does not contain Content-Type header or body."
    assert all(e["path"] == "/v1.0/$batch" for e in request_log(alice)), "nothing inside a refused batch ran"
    assert alice.get(f"/me/events/{ev['id']}").json()["subject"] == "Meeting"


def test_batch_items_answer_mixed_statuses_and_failed_dependencies_424(alice: Graph) -> None:
    ev = alice.event()
    stale = ev["@odata.etag"]
    assert alice.patch(f"/me/events/{ev['id']}", json={"subject": "v2"}).status_code == 200
    json_type = {"Content-Type": "application/json"}
    items = by_id(batch(
        alice,
        {"id": "patch", "method": "PATCH", "url": f"/me/events/{ev['id']}", "body": {"subject": "v3"},
         "headers": {**json_type, "If-Match": stale}},
        {"id": "after", "method": "GET", "url": f"/me/events/{ev['id']}", "dependsOn": ["patch"]},
        {"id": "create", "method": "POST", "url": "/me/events", "headers": json_type,
         "body": {"subject": "made in a batch", "start": {"dateTime": "2026-11-03T09:00:00", "timeZone": "UTC"},
                  "end": {"dateTime": "2026-11-03T10:00:00", "timeZone": "UTC"}}},
        {"id": "delete", "method": "DELETE", "url": f"/me/events/{ev['id']}", "dependsOn": ["create"]},
        get_item("absolute", f"{alice.base}/v1.0/me/events?$top=5"),
        get_item("bad", "/me/nonsense"),
        get_item("nested", "/$batch"),
        get_item("elsewhere", "https://example.org/v1.0/me/events"),
    ))
    assert items["patch"]["status"] == 412 and items["patch"]["body"]["error"]["code"] == "ErrorIrresolvableConflict"
    assert items["after"]["status"] == 424
    assert items["create"]["status"] == 201 and items["create"]["body"]["subject"] == "made in a batch"
    assert items["delete"]["status"] == 204 and items["delete"]["body"] is None
    assert items["absolute"]["status"] == 200 and [e["subject"] for e in items["absolute"]["body"]["value"]] == [
        "made in a batch"]
    assert {items[k]["status"] for k in ("bad", "nested", "elsewhere")} == {400}
    assert alice.get(f"/me/events/{ev['id']}").status_code == 404


def test_batch_inner_throttling_answers_429_with_retry_after_under_an_outer_200(alice: Graph) -> None:
    ev = alice.event()
    alice.admin("faults", {"status": 429, "retry_after": 7, "count": 1, "methods": ["GET"]}).raise_for_status()
    items = by_id(batch(alice, get_item("1", f"/me/events/{ev['id']}"), get_item("2", f"/me/events/{ev['id']}")))
    assert items["1"]["status"] == 429 and items["1"]["headers"]["Retry-After"] == "7"
    assert items["1"]["body"]["error"]["code"] == "ApplicationThrottled"
    assert items["2"]["status"] == 200

    alice.admin("reset")
    ev = alice.event()
    alice.switches(mailbox_requests_per_10min=4)  # the create above was the first request of the 10 minutes
    items = by_id(batch(alice, *[get_item(str(n), f"/me/events/{ev['id']}") for n in range(5)]))
    assert [items[str(n)]["status"] for n in range(5)] == [200, 200, 200, 429, 429], "each inner request counts"
    assert int(items["4"]["headers"]["Retry-After"]) > 500
    assert alice.get("/me/events").status_code == 429


def test_batch_needs_a_token_and_faults_on_the_outer_post_fail_it_whole(alice: Graph) -> None:
    ev = alice.event()
    anonymous = httpx.post(f"{alice.base}/v1.0/$batch", json={"requests": [get_item("1", "/me/events")]})
    assert anonymous.status_code == 401 and error_code(anonymous) == "InvalidAuthenticationToken"
    alice.admin("faults", {"status": 503, "count": 1, "methods": ["POST"], "path_prefix": "/v1.0/$batch"})
    down = batch(alice, get_item("1", f"/me/events/{ev['id']}"))
    assert down.status_code == 503 and error_code(down) == "ServiceNotAvailable"
    assert by_id(batch(alice, get_item("1", f"/me/events/{ev['id']}")))["1"]["status"] == 200


def test_batch_responses_may_come_in_another_order(alice: Graph) -> None:
    alice.switches(batch_reverse_responses=True)
    answer = batch(alice, get_item("1", "/me/calendars"), get_item("2", "/me/events"), get_item("3", "/me/calendar"))
    assert [i["id"] for i in answer.json()["responses"]] == ["3", "2", "1"]
