"""Behaviour of the Google Calendar emulator over real HTTP (see provider-semantics 1.1-1.9, checklist 5.1)."""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calsync.emulators.faults import FaultInjector, RequestLog, parse_rule
from calsync.emulators.google import GoogleEmulator

BASE32HEX_26 = re.compile(r"^[0-9a-v]{26}$")
FULL_SYNC_REQUIRED = {"domain": "calendar", "reason": "fullSyncRequired",
                      "message": "Sync token is no longer valid, a full sync is required.",
                      "locationType": "parameter", "location": "syncToken"}


# ------------------------------------------------------------------------------------------------
# fixtures and helpers


def _client(base: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.Client(base_url=base + "/calendar/v3", headers=headers, timeout=30)


@pytest.fixture()
def api(google_url: str) -> Iterator[httpx.Client]:
    """Alice's API client."""
    with _client(google_url, "alice") as client:
        yield client


@pytest.fixture()
def bob(google_url: str) -> Iterator[httpx.Client]:
    with _client(google_url, "bob@corp.example") as client:
        yield client


@pytest.fixture()
def admin(google_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=google_url, timeout=60) as client:
        yield client


def when(iso: str, tz: str | None = None) -> dict[str, str]:
    return {"dateTime": iso, **({"timeZone": tz} if tz else {})}


def new_event(api: httpx.Client, summary: str = "Meeting", start: str = "2026-11-02T10:00:00Z",
              end: str = "2026-11-02T11:00:00Z", cal: str = "primary", params: dict[str, Any] | None = None,
              **extra: Any) -> dict[str, Any]:
    body = {"summary": summary, "start": when(start), "end": when(end), **extra}
    r = api.post(f"/calendars/{cal}/events", json=body, params=params or {})
    assert r.status_code == 200, r.text
    return r.json()


def weekly(api: httpx.Client, count: int = 4, summary: str = "Weekly", extra_rules: list[str] | None = None,
           **extra: Any) -> dict[str, Any]:
    body = {"summary": summary, "start": when("2026-11-02T10:00:00", "Europe/Berlin"),
            "end": when("2026-11-02T11:00:00", "Europe/Berlin"),
            "recurrence": [f"RRULE:FREQ=WEEKLY;COUNT={count}"] + (extra_rules or []), **extra}
    r = api.post("/calendars/primary/events", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def error_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()["error"]
    assert body["code"] == r.status_code
    assert body["message"] == body["errors"][0]["message"]
    return body["errors"][0]


def list_all(api: httpx.Client, params: dict[str, Any] | None = None, cal: str = "primary",
             max_pages: int = 1000) -> tuple[list[dict[str, Any]], str | None, int]:
    """Follow nextPageToken to the end; returns items, nextSyncToken and the number of pages."""
    items: list[dict[str, Any]] = []
    params = dict(params or {})
    for pages in range(1, max_pages + 1):
        r = api.get(f"/calendars/{cal}/events", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert not ("nextPageToken" in body and "nextSyncToken" in body)
        items.extend(body["items"])
        if "nextPageToken" not in body:
            return items, body.get("nextSyncToken"), pages
        params["pageToken"] = body["nextPageToken"]
    raise AssertionError("too many pages")


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in items]


def seed(admin: httpx.Client, count: int, cal: str = "alice@example.com", **spec: Any) -> None:
    r = admin.post(f"/emulator/calendars/{cal}/seed", json={"count": count, **spec})
    assert r.status_code == 200, r.text
    assert r.json() == {"created": count}


# ------------------------------------------------------------------------------------------------
# auth, users, calendars


def test_missing_or_empty_bearer_token_is_401_auth_error(google_url: str) -> None:
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}):
        r = httpx.get(google_url + "/calendar/v3/users/me/calendarList", headers=headers)
        assert r.status_code == 401
        err = error_of(r)
        assert err["reason"] == "authError" and err["domain"] == "global"


def test_token_names_user_and_primary_resolves_to_email(api: httpx.Client, bob: httpx.Client) -> None:
    entries = api.get("/users/me/calendarList").json()["items"]
    assert [(e["id"], e.get("primary")) for e in entries] == [("alice@example.com", True)]
    assert api.get("/calendars/primary").json()["id"] == "alice@example.com"
    assert bob.get("/calendars/primary").json()["id"] == "bob@corp.example"
    created = new_event(api)
    assert api.get(f"/calendars/alice@example.com/events/{created['id']}").status_code == 200
    assert created["organizer"] == {"email": "alice@example.com", "self": True}


def test_users_cannot_see_each_others_calendars(api: httpx.Client, bob: httpx.Client) -> None:
    ev = new_event(api)
    for path in ("/calendars/alice@example.com", "/calendars/alice@example.com/events",
                 f"/calendars/alice@example.com/events/{ev['id']}", "/users/me/calendarList/alice@example.com"):
        r = bob.get(path)
        assert r.status_code == 404, path
        assert error_of(r)["reason"] == "notFound"
    assert bob.get("/calendars/primary/events").json()["items"] == []


def test_secondary_calendar_lifecycle(api: httpx.Client) -> None:
    r = api.post("/calendars", json={"summary": "Team", "timeZone": "Europe/Berlin"})
    assert r.status_code == 200
    cal = r.json()
    assert cal["kind"] == "calendar#calendar" and cal["timeZone"] == "Europe/Berlin"
    assert re.fullmatch(r"[0-9a-v]+@group\.calendar\.google\.com", cal["id"])
    listed = api.get("/users/me/calendarList").json()["items"]
    assert [e["id"] for e in listed] == ["alice@example.com", cal["id"]]
    entry = api.get(f"/users/me/calendarList/{cal['id']}").json()
    assert entry["accessRole"] == "owner" and "primary" not in entry
    patched = api.patch(f"/calendars/{cal['id']}", json={"description": "d"}).json()
    assert patched["summary"] == "Team" and patched["description"] == "d" and patched["etag"] != cal["etag"]
    put = api.put(f"/calendars/{cal['id']}", json={"summary": "Team 2"}).json()
    assert put["summary"] == "Team 2" and "description" not in put
    assert api.post("/calendars", json={}).status_code == 400
    assert api.post("/calendars", json={"summary": "x", "timeZone": "Mars/Base"}).status_code == 400
    new_event(api, cal=cal["id"])
    assert api.delete(f"/calendars/{cal['id']}").status_code == 204
    assert api.get(f"/calendars/{cal['id']}").status_code == 404
    assert api.get(f"/calendars/{cal['id']}/events").status_code == 404
    assert api.delete("/calendars/primary").status_code == 400


def test_unknown_route_and_bad_json_answer_google_errors(api: httpx.Client) -> None:
    r = api.get("/nope")
    assert r.status_code == 404 and error_of(r)["reason"] == "notFound"
    r = api.post("/calendars/primary/events", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error_of(r)["reason"] == "parseError"
    r = api.post("/calendars/primary/events", json=[1, 2])
    assert r.status_code == 400


# ------------------------------------------------------------------------------------------------
# event writes


def test_insert_generates_base32hex_id_and_resource_fields(api: httpx.Client) -> None:
    ev = new_event(api, description="d", location="Room 1",
                   attendees=[{"email": "x@example.org"}], extendedProperties={"private": {"k": "v"}})
    assert BASE32HEX_26.match(ev["id"])
    assert ev["kind"] == "calendar#event" and ev["status"] == "confirmed"
    assert re.fullmatch(r'"\d+"', ev["etag"])
    assert ev["created"] == ev["updated"] and ev["sequence"] == 0
    assert ev["iCalUID"] == ev["id"] + "@google.com"
    assert ev["htmlLink"].startswith("https://www.google.com/calendar/event?eid=")
    assert ev["attendees"] == [{"email": "x@example.org", "responseStatus": "needsAction"}]
    assert ev["start"] == {"dateTime": "2026-11-02T10:00:00Z"}
    assert api.get(f"/calendars/primary/events/{ev['id']}").json() == ev


def test_start_in_named_zone_is_kept_and_offset_needed_without_zone(api: httpx.Client) -> None:
    r = api.post("/calendars/primary/events", json={"start": when("2026-11-02T10:00:00", "Europe/Berlin"),
                                                     "end": when("2026-11-02T11:00:00", "Europe/Berlin")})
    assert r.json()["start"] == {"dateTime": "2026-11-02T10:00:00+01:00", "timeZone": "Europe/Berlin"}
    r = api.post("/calendars/primary/events", json={"start": when("2026-11-02T10:00:00"),
                                                     "end": when("2026-11-02T11:00:00")})
    assert r.status_code == 400 and error_of(r)["reason"] == "required"


def test_client_ids_validated_and_duplicates_conflict_even_after_delete(api: httpx.Client) -> None:
    for bad in ("abc", "UPPERCASE1", "has-dash-123", "wxyz0123", "x" * 5, "a" * 1025):
        r = api.post("/calendars/primary/events", json={"id": bad, "start": when("2026-11-02T10:00:00Z"),
                                                         "end": when("2026-11-02T11:00:00Z")})
        assert r.status_code == 400, bad
        assert error_of(r)["reason"] == "invalid"
    ev = new_event(api, id="abcde01234")
    assert ev["id"] == "abcde01234"
    assert new_event(api, id="v" * 1024)["id"] == "v" * 1024
    body = {"id": "abcde01234", "start": when("2026-11-02T10:00:00Z"), "end": when("2026-11-02T11:00:00Z")}
    r = api.post("/calendars/primary/events", json=body)
    assert r.status_code == 409 and error_of(r)["reason"] == "duplicate"
    assert api.delete("/calendars/primary/events/abcde01234").status_code == 204
    r = api.post("/calendars/primary/events", json=body)
    assert r.status_code == 409 and error_of(r)["reason"] == "duplicate"


def test_insert_requires_start_end_and_a_non_negative_range(api: httpx.Client) -> None:
    r = api.post("/calendars/primary/events", json={"summary": "x", "end": when("2026-11-02T11:00:00Z")})
    assert r.status_code == 400 and error_of(r)["reason"] == "required"
    r = api.post("/calendars/primary/events", json={"summary": "x", "start": when("2026-11-02T11:00:00Z")})
    assert r.status_code == 400 and error_of(r)["reason"] == "required"
    r = api.post("/calendars/primary/events", json={"start": when("2026-11-02T11:00:00Z"),
                                                     "end": when("2026-11-02T10:00:00Z")})
    assert r.status_code == 400 and error_of(r)["reason"] == "timeRangeEmpty"
    r = api.post("/calendars/primary/events", json={"start": {"date": "2026-11-02"}, "end": {"date": "2026-11-02"}})
    assert r.status_code == 400
    r = api.post("/calendars/primary/events", json={"start": {"date": "2026-11-02"},
                                                     "end": when("2026-11-03T10:00:00Z")})
    assert r.status_code == 400
    assert api.get("/calendars/primary/events").json()["items"] == []


def test_every_change_bumps_etag_and_updated_and_sequence_only_for_schedule(api: httpx.Client) -> None:
    ev = new_event(api)
    path = f"/calendars/primary/events/{ev['id']}"
    time.sleep(0.002)
    renamed = api.patch(path, json={"summary": "Renamed"}).json()
    assert renamed["etag"] != ev["etag"] and renamed["updated"] > ev["updated"]
    assert renamed["created"] == ev["created"] and renamed["sequence"] == 0
    moved = api.patch(path, json={"start": when("2026-11-02T12:00:00Z"), "end": when("2026-11-02T13:00:00Z")}).json()
    assert moved["sequence"] == 1 and moved["etag"] != renamed["etag"]
    relocated = api.patch(path, json={"location": "Elsewhere"}).json()
    assert relocated["sequence"] == 2
    same = api.patch(path, json={"description": "notes"}).json()
    assert same["sequence"] == 2
    series = weekly(api, count=3)
    redone = api.patch(f"/calendars/primary/events/{series['id']}",
                       json={"recurrence": ["RRULE:FREQ=WEEKLY;COUNT=5"]}).json()
    assert redone["sequence"] == series["sequence"] + 1
    assert len({ev["etag"], renamed["etag"], moved["etag"], relocated["etag"], same["etag"]}) == 5


def test_if_match_with_stale_etag_gives_412_on_update_patch_delete(api: httpx.Client) -> None:
    ev = new_event(api)
    path = f"/calendars/primary/events/{ev['id']}"
    current = api.patch(path, json={"summary": "v2"}).json()
    full = {"summary": "v3", "start": ev["start"], "end": ev["end"]}
    for r in (api.put(path, json=full, headers={"If-Match": ev["etag"]}),
              api.patch(path, json={"summary": "v3"}, headers={"If-Match": ev["etag"]}),
              api.delete(path, headers={"If-Match": ev["etag"]})):
        assert r.status_code == 412
        assert error_of(r) == {"domain": "global", "reason": "conditionNotMet", "message": "Precondition Failed",
                               "locationType": "header", "location": "If-Match"}
    assert api.get(path).json()["summary"] == "v2"
    r = api.patch(path, json={"summary": "v3"}, headers={"If-Match": current["etag"]})
    assert r.status_code == 200 and r.json()["summary"] == "v3"
    assert api.delete(path, headers={"If-Match": r.json()["etag"]}).status_code == 204


def test_if_none_match_with_current_etag_gives_304(api: httpx.Client) -> None:
    ev = new_event(api)
    path = f"/calendars/primary/events/{ev['id']}"
    r = api.get(path, headers={"If-None-Match": ev["etag"]})
    assert r.status_code == 304 and r.content == b""
    api.patch(path, json={"summary": "changed"})
    r = api.get(path, headers={"If-None-Match": ev["etag"]})
    assert r.status_code == 200 and r.json()["summary"] == "changed"


def test_delete_leaves_cancelled_event_and_second_delete_is_410(api: httpx.Client) -> None:
    ev = new_event(api)
    path = f"/calendars/primary/events/{ev['id']}"
    assert api.delete(path).status_code == 204
    got = api.get(path).json()
    assert got["status"] == "cancelled" and got["summary"] == "Meeting"
    r = api.delete(path)
    assert r.status_code == 410
    assert error_of(r) == {"domain": "global", "reason": "deleted", "message": "Resource has been deleted"}
    assert api.delete("/calendars/primary/events/doesnotexist1").status_code == 404


def test_patch_replaces_given_fields_and_merges_extended_property_keys(api: httpx.Client) -> None:
    ev = new_event(api, description="keep me", attendees=[{"email": "a@x.org"}, {"email": "b@x.org"}],
                   extendedProperties={"private": {"a": "1", "b": "2"}, "shared": {"s": "1"}})
    path = f"/calendars/primary/events/{ev['id']}"
    out = api.patch(path, json={"attendees": [{"email": "c@x.org"}],
                                "extendedProperties": {"private": {"b": "20", "c": "3"}}}).json()
    assert out["description"] == "keep me"
    assert [a["email"] for a in out["attendees"]] == ["c@x.org"]
    assert out["extendedProperties"] == {"private": {"a": "1", "b": "20", "c": "3"}, "shared": {"s": "1"}}
    out = api.patch(path, json={"description": None}).json()
    assert "description" not in out
    put = api.put(path, json={"summary": "Only", "start": ev["start"], "end": ev["end"],
                              "extendedProperties": {"private": {"z": "9"}}}).json()
    assert put["extendedProperties"] == {"private": {"z": "9"}}
    assert "attendees" not in put and put["summary"] == "Only"


def test_conference_data_ignored_without_version_1(api: httpx.Client) -> None:
    conf = {"createRequest": {"requestId": "r1", "conferenceSolutionKey": {"type": "hangoutsMeet"}}}
    ev = new_event(api, conferenceData=conf)
    assert "conferenceData" not in ev
    ev = new_event(api, conferenceData=conf, params={"conferenceDataVersion": 0})
    assert "conferenceData" not in ev
    r = api.post("/calendars/primary/events", params={"conferenceDataVersion": 2},
                 json={"start": when("2026-11-02T10:00:00Z"), "end": when("2026-11-02T11:00:00Z")})
    assert r.status_code == 400 and error_of(r)["location"] == "conferenceDataVersion"


def test_non_meet_create_request_fails_and_failure_switch(api: httpx.Client, admin: httpx.Client) -> None:
    addon = {"createRequest": {"requestId": "r1", "conferenceSolutionKey": {"type": "addOn"}}}
    ev = new_event(api, conferenceData=addon, params={"conferenceDataVersion": 1})
    assert ev["conferenceData"] == {"createRequest": {**addon["createRequest"], "status": {"statusCode": "failure"}}}
    admin.post("/emulator/switches", json={"conference_create_status": "failure"}).raise_for_status()
    meet = {"createRequest": {"requestId": "r2", "conferenceSolutionKey": {"type": "hangoutsMeet"}}}
    ev = new_event(api, conferenceData=meet, params={"conferenceDataVersion": 1})
    assert ev["conferenceData"]["createRequest"]["status"] == {"statusCode": "failure"}
    assert "entryPoints" not in ev["conferenceData"] and "signature" not in ev["conferenceData"]


def test_signed_meet_data_can_be_copied_to_another_event(api: httpx.Client) -> None:
    conf = {"createRequest": {"requestId": "r1", "conferenceSolutionKey": {"type": "hangoutsMeet"}}}
    source = new_event(api, conferenceData=conf, params={"conferenceDataVersion": 1})["conferenceData"]
    copy = {k: v for k, v in source.items() if k != "createRequest"}
    target = new_event(api, conferenceData=copy, params={"conferenceDataVersion": 1})
    assert target["conferenceData"]["conferenceId"] == source["conferenceId"]
    assert target["hangoutLink"] == source["entryPoints"][0]["uri"]


def test_meet_create_request_succeeds_and_repeated_request_id_is_ignored(api: httpx.Client) -> None:
    conf = {"createRequest": {"requestId": "req-1", "conferenceSolutionKey": {"type": "hangoutsMeet"}}}
    ev = new_event(api, conferenceData=conf, params={"conferenceDataVersion": 1})
    data = ev["conferenceData"]
    assert data["createRequest"]["status"]["statusCode"] == "success"
    assert re.fullmatch(r"[a-z]{3}-[a-z]{4}-[a-z]{3}", data["conferenceId"])
    assert data["entryPoints"][0] == {"entryPointType": "video", "uri": f"https://meet.google.com/{data['conferenceId']}",
                                      "label": f"meet.google.com/{data['conferenceId']}"}
    assert data["conferenceSolution"]["key"]["type"] == "hangoutsMeet" and data["signature"]
    assert ev["hangoutLink"] == data["entryPoints"][0]["uri"]
    path = f"/calendars/primary/events/{ev['id']}"
    again = api.patch(path, json={"conferenceData": conf}, params={"conferenceDataVersion": 1}).json()
    assert again["conferenceData"]["conferenceId"] == data["conferenceId"]
    fresh = {"createRequest": {"requestId": "req-2", "conferenceSolutionKey": {"type": "hangoutsMeet"}}}
    renewed = api.patch(path, json={"conferenceData": fresh}, params={"conferenceDataVersion": 1}).json()
    assert renewed["conferenceData"]["conferenceId"] != data["conferenceId"]


def test_update_with_version_0_keeps_conference_and_version_1_without_it_removes(api: httpx.Client) -> None:
    conf = {"createRequest": {"requestId": "req-1", "conferenceSolutionKey": {"type": "hangoutsMeet"}}}
    ev = new_event(api, conferenceData=conf, params={"conferenceDataVersion": 1})
    path = f"/calendars/primary/events/{ev['id']}"
    body = {"summary": "renamed", "start": ev["start"], "end": ev["end"]}
    kept = api.put(path, json=body).json()
    assert kept["conferenceData"] == ev["conferenceData"]
    gone = api.put(path, json=body, params={"conferenceDataVersion": 1}).json()
    assert "conferenceData" not in gone and "hangoutLink" not in gone


def test_third_party_conference_round_trips_and_unsigned_meet_is_not_copied(api: httpx.Client) -> None:
    zoom = {"conferenceId": "123456789",
            "conferenceSolution": {"key": {"type": "addOn"}, "name": "Zoom", "iconUri": "https://zoom.example/i.png"},
            "entryPoints": [{"entryPointType": "video", "uri": "https://zoom.example/j/123456789",
                             "label": "zoom.example/j/123456789"}],
            "parameters": {"addOnParameters": {"parameters": {"meetingUuid": "u1"}}}}
    ev = new_event(api, conferenceData=zoom, params={"conferenceDataVersion": 1})
    assert ev["conferenceData"] == zoom
    assert api.get(f"/calendars/primary/events/{ev['id']}").json()["conferenceData"] == zoom
    odd = {**zoom, "conferenceSolution": {"key": {"type": "someNewType"}, "name": "X"}}
    assert new_event(api, conferenceData=odd, params={"conferenceDataVersion": 1})["conferenceData"] == odd
    forged = {**zoom, "conferenceSolution": {"key": {"type": "hangoutsMeet"}, "name": "Google Meet"},
              "conferenceId": "abc-defg-hij", "signature": "forged"}
    assert "conferenceData" not in new_event(api, conferenceData=forged, params={"conferenceDataVersion": 1})
    r = api.post("/calendars/primary/events", params={"conferenceDataVersion": 1},
                 json={"start": when("2026-11-02T10:00:00Z"), "end": when("2026-11-02T11:00:00Z"),
                       "conferenceData": {"conferenceSolution": {"key": {"type": "addOn"}}}})
    assert r.status_code == 400


def test_import_requires_ical_uid_sets_sequence_and_updates_same_uid(api: httpx.Client) -> None:
    body = {"summary": "Imported", "start": when("2026-11-02T10:00:00Z"), "end": when("2026-11-02T11:00:00Z"),
            "organizer": {"email": "boss@elsewhere.example"}, "sequence": 4}
    r = api.post("/calendars/primary/events/import", json=body)
    assert r.status_code == 400 and error_of(r)["reason"] == "required"
    first = api.post("/calendars/primary/events/import", json={**body, "iCalUID": "uid-1@x"}).json()
    assert first["iCalUID"] == "uid-1@x" and first["sequence"] == 4
    assert first["organizer"] == {"email": "boss@elsewhere.example"}
    second = api.post("/calendars/primary/events/import",
                      json={**body, "iCalUID": "uid-1@x", "summary": "Imported v2", "sequence": 5}).json()
    assert second["id"] == first["id"] and second["summary"] == "Imported v2" and second["sequence"] == 5
    r = api.post("/calendars/primary/events", json={**body, "iCalUID": "uid-1@x"})
    assert r.status_code == 409


# ------------------------------------------------------------------------------------------------
# events.list: paging and parameters


def test_max_results_default_cap_and_lower_bound(api: httpx.Client, admin: httpx.Client) -> None:
    seed(admin, 2600)
    body = api.get("/calendars/primary/events").json()
    assert len(body["items"]) == 250 and "nextPageToken" in body and "nextSyncToken" not in body
    body = api.get("/calendars/primary/events", params={"maxResults": 100000}).json()
    assert len(body["items"]) == 2500 and "nextPageToken" in body
    for bad in (0, -1, "x"):
        r = api.get("/calendars/primary/events", params={"maxResults": bad})
        assert r.status_code == 400 and error_of(r)["location"] == "maxResults"


def test_paging_sync_token_only_on_last_page(api: httpx.Client, admin: httpx.Client) -> None:
    seed(admin, 23)
    items, sync, pages = list_all(api, {"maxResults": 5})
    assert pages == 5 and len(set(ids(items))) == 23 and sync
    body = api.get("/calendars/primary/events", params={"maxResults": 23}).json()
    assert "nextSyncToken" in body and "nextPageToken" not in body
    assert {k: body[k] for k in ("kind", "summary", "timeZone", "accessRole", "defaultReminders")} == {
        "kind": "calendar#events", "summary": "alice@example.com", "timeZone": "UTC", "accessRole": "owner",
        "defaultReminders": []}
    assert re.fullmatch(r'"\d+"', body["etag"]) and body["updated"].endswith("Z")


def test_page_token_is_tied_to_its_query(api: httpx.Client, admin: httpx.Client) -> None:
    seed(admin, 10)
    token = api.get("/calendars/primary/events", params={"maxResults": 3}).json()["nextPageToken"]
    ok = api.get("/calendars/primary/events", params={"maxResults": 3, "pageToken": token})
    assert ok.status_code == 200
    for changed in ({"maxResults": 4}, {"maxResults": 3, "showDeleted": "true"}, {"maxResults": 3, "q": "x"}):
        r = api.get("/calendars/primary/events", params={**changed, "pageToken": token})
        assert r.status_code == 400, changed
        assert error_of(r)["location"] == "pageToken"
    r = api.get("/calendars/primary/events", params={"maxResults": 3, "pageToken": token[:-2] + "xx"})
    assert r.status_code == 400


def test_short_or_empty_pages_with_page_token_when_switched(api: httpx.Client, admin: httpx.Client) -> None:
    seed(admin, 10)
    for i in range(3):
        new_event(api, summary=f"needle {i}")
    admin.post("/emulator/switches", json={"page_scan_limit": 4}).raise_for_status()
    items, sync, pages = list_all(api, {"maxResults": 2, "q": "needle"})
    assert sorted(i["summary"] for i in items) == ["needle 0", "needle 1", "needle 2"]
    assert pages >= 4 and sync


def test_full_list_hides_cancelled_unless_show_deleted(api: httpx.Client) -> None:
    keep, gone = new_event(api, summary="keep"), new_event(api, summary="gone")
    api.delete(f"/calendars/primary/events/{gone['id']}")
    assert ids(list_all(api)[0]) == [keep["id"]]
    shown = list_all(api, {"showDeleted": "true"})[0]
    assert ids(shown) == [keep["id"], gone["id"]]
    assert shown[1]["status"] == "cancelled" and shown[1]["summary"] == "gone"


def test_time_window_is_exclusive_on_end_and_start(api: httpx.Client) -> None:
    a = new_event(api, summary="a", start="2026-11-02T08:00:00Z", end="2026-11-02T09:00:00Z")
    b = new_event(api, summary="b", start="2026-11-02T09:00:00Z", end="2026-11-02T10:00:00Z")
    c = new_event(api, summary="c", start="2026-11-02T10:00:00Z", end="2026-11-02T11:00:00Z")
    window = {"timeMin": "2026-11-02T09:00:00Z", "timeMax": "2026-11-02T10:00:00Z"}
    assert ids(list_all(api, window)[0]) == [b["id"]]
    assert ids(list_all(api, {"timeMin": "2026-11-02T08:59:59Z"})[0]) == [a["id"], b["id"], c["id"]]
    assert ids(list_all(api, {"timeMax": "2026-11-02T09:00:01Z"})[0]) == [a["id"], b["id"]]
    assert ids(list_all(api, {"timeMin": "2026-11-02T10:59:59+01:00"})[0]) == [b["id"], c["id"]]
    for bad in ({"timeMin": "2026-11-02T10:00:00Z", "timeMax": "2026-11-02T10:00:00Z"},
                {"timeMin": "2026-11-02T11:00:00Z", "timeMax": "2026-11-02T10:00:00Z"}):
        r = api.get("/calendars/primary/events", params=bad)
        assert r.status_code == 400 and error_of(r)["reason"] == "timeRangeEmpty"
    r = api.get("/calendars/primary/events", params={"timeMin": "2026-11-02T10:00:00"})
    assert r.status_code == 400


def test_updated_min_includes_deleted(api: httpx.Client) -> None:
    old = new_event(api, summary="old")
    time.sleep(0.02)
    mark = api.get(f"/calendars/primary/events/{old['id']}").json()["updated"]
    time.sleep(0.02)
    fresh = new_event(api, summary="fresh")
    gone = new_event(api, summary="gone")
    api.delete(f"/calendars/primary/events/{gone['id']}")
    items = list_all(api, {"updatedMin": _later(mark)})[0]
    assert ids(items) == [fresh["id"], gone["id"]]
    assert items[1] == {"kind": "calendar#event", "etag": items[1]["etag"], "id": gone["id"], "status": "cancelled"}


def _later(stamp: str) -> str:
    """A timestamp 10 ms after an RFC 3339 'updated' value."""
    from datetime import datetime, timedelta
    dt = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(milliseconds=10)
    return dt.isoformat().replace("+00:00", "Z")


def test_order_by_start_time_needs_single_events_and_order_by_updated(api: httpx.Client) -> None:
    late = new_event(api, summary="late", start="2026-11-05T10:00:00Z", end="2026-11-05T11:00:00Z")
    early = new_event(api, summary="early", start="2026-11-01T10:00:00Z", end="2026-11-01T11:00:00Z")
    r = api.get("/calendars/primary/events", params={"orderBy": "startTime"})
    assert r.status_code == 400
    assert error_of(r) == {"domain": "global", "reason": "invalid", "locationType": "parameter",
                           "location": "orderBy",
                           "message": "The requested ordering is not available for the particular query."}
    by_start = list_all(api, {"orderBy": "startTime", "singleEvents": "true", "maxResults": 1})[0]
    assert ids(by_start) == [early["id"], late["id"]]
    api.patch(f"/calendars/primary/events/{late['id']}", json={"summary": "late!"})
    api.patch(f"/calendars/primary/events/{early['id']}", json={"summary": "early!"})
    assert ids(list_all(api, {"orderBy": "updated"})[0]) == [late["id"], early["id"]]


def test_q_and_extended_property_filters(api: httpx.Client) -> None:
    a = new_event(api, summary="Budget review", extendedProperties={"private": {"calsync": "1", "x": "a"}})
    b = new_event(api, summary="Lunch", description="talk about BUDGET",
                  extendedProperties={"private": {"calsync": "1"}, "shared": {"team": "red"}})
    new_event(api, summary="Other", extendedProperties={"private": {"calsync": "2"}})
    assert ids(list_all(api, {"q": "budget"})[0]) == [a["id"], b["id"]]
    assert ids(list_all(api, {"privateExtendedProperty": "calsync=1"})[0]) == [a["id"], b["id"]]
    assert ids(list_all(api, {"privateExtendedProperty": ["calsync=1", "x=a"]})[0]) == [a["id"]]
    assert ids(list_all(api, {"sharedExtendedProperty": "team=red"})[0]) == [b["id"]]
    assert ids(list_all(api, {"iCalUID": a["iCalUID"]})[0]) == [a["id"]]
    assert api.get("/calendars/primary/events", params={"privateExtendedProperty": "novalue"}).status_code == 400


# ------------------------------------------------------------------------------------------------
# sync tokens


def test_sync_token_with_restricted_parameters_is_400(api: httpx.Client, admin: httpx.Client) -> None:
    token = list_all(api)[1]
    restricted = {"iCalUID": "x", "orderBy": "updated", "privateExtendedProperty": "a=b", "q": "x",
                  "sharedExtendedProperty": "a=b", "timeMin": "2026-01-01T00:00:00Z",
                  "timeMax": "2027-01-01T00:00:00Z", "updatedMin": "2026-01-01T00:00:00Z", "showDeleted": "false"}
    for key, value in restricted.items():
        r = api.get("/calendars/primary/events", params={"syncToken": token, key: value})
        assert r.status_code == 400, key
        assert error_of(r)["reason"] == "invalid"
        assert error_of(r)["message"] == "Sync token cannot be used with other request restrictions."
    for ok in ({"showDeleted": "true"}, {"singleEvents": "true"}, {"maxResults": 5}):
        assert api.get("/calendars/primary/events", params={"syncToken": token, **ok}).status_code == 200
    admin.post("/emulator/switches", json={"sync_token_restriction_reason": "syncTokenWithRequestRestrictions"})
    r = api.get("/calendars/primary/events", params={"syncToken": token, "q": "x"})
    assert error_of(r)["reason"] == "syncTokenWithRequestRestrictions"


def test_incremental_sync_reports_updates_and_minimal_deletions(api: httpx.Client) -> None:
    keep, change, remove = (new_event(api, summary=s) for s in ("keep", "change", "remove"))
    token = list_all(api)[1]
    api.patch(f"/calendars/primary/events/{change['id']}", json={"summary": "changed"})
    api.delete(f"/calendars/primary/events/{remove['id']}")
    born = new_event(api, summary="born and died")
    api.delete(f"/calendars/primary/events/{born['id']}")
    added = new_event(api, summary="added")
    items, token2, _ = list_all(api, {"syncToken": token})
    by_id = {i["id"]: i for i in items}
    assert set(by_id) == {change["id"], remove["id"], born["id"], added["id"]}
    assert by_id[change["id"]]["summary"] == "changed"
    assert by_id[remove["id"]] == {"kind": "calendar#event", "etag": by_id[remove["id"]]["etag"],
                                   "id": remove["id"], "status": "cancelled"}
    assert by_id[born["id"]]["status"] == "cancelled"
    assert token2 and token2 != token
    detailed = {i["id"]: i for i in list_all(api, {"syncToken": token, "showDeleted": "true"})[0]}
    assert detailed[remove["id"]]["summary"] == "remove"


def test_incremental_with_no_changes_returns_a_token_and_old_tokens_keep_working(api: httpx.Client) -> None:
    ev = new_event(api)
    token = list_all(api)[1]
    items, again, _ = list_all(api, {"syncToken": token})
    assert items == [] and again == token
    api.patch(f"/calendars/primary/events/{ev['id']}", json={"summary": "x"})
    items, newer, _ = list_all(api, {"syncToken": token})
    assert ids(items) == [ev["id"]] and newer != token
    assert ids(list_all(api, {"syncToken": token})[0]) == [ev["id"]]
    assert list_all(api, {"syncToken": newer})[0] == []


def test_bad_forged_foreign_or_invalidated_tokens_are_410(api: httpx.Client, admin: httpx.Client) -> None:
    new_event(api)
    token = list_all(api)[1]
    other = api.post("/calendars", json={"summary": "Other"}).json()["id"]
    other_token = list_all(api, cal=other)[1]
    for bad in ("garbage", "x" + token, token[:-1] + ("A" if token[-1] != "A" else "B"), other_token):
        r = api.get("/calendars/primary/events", params={"syncToken": bad})
        assert r.status_code == 410
        assert r.json() == {"error": {"code": 410, "message": FULL_SYNC_REQUIRED["message"],
                                      "errors": [FULL_SYNC_REQUIRED]}}
    assert api.get("/calendars/primary/events", params={"syncToken": token}).status_code == 200
    assert admin.post("/emulator/calendars/alice@example.com/invalidate-tokens").status_code == 200
    assert api.get("/calendars/primary/events", params={"syncToken": token}).status_code == 410
    fresh = list_all(api)[1]
    assert api.get("/calendars/primary/events", params={"syncToken": fresh}).status_code == 200
    assert admin.post("/emulator/calendars/nobody@group.calendar.google.com/invalidate-tokens").status_code == 404


def test_sync_token_ttl_switch_expires_tokens(api: httpx.Client, admin: httpx.Client) -> None:
    token = list_all(api)[1]
    admin.post("/emulator/switches", json={"sync_token_ttl_seconds": 0}).raise_for_status()
    time.sleep(0.01)
    assert api.get("/calendars/primary/events", params={"syncToken": token}).status_code == 410


def test_incremental_paging_walks_the_change_log(api: httpx.Client, admin: httpx.Client) -> None:
    seed(admin, 30)
    all_items, token, _ = list_all(api, {"maxResults": 2500})
    changed = ids(all_items)[::3]
    for eid in changed:
        api.patch(f"/calendars/primary/events/{eid}", json={"summary": "edited"})
    api.patch(f"/calendars/primary/events/{changed[0]}", json={"summary": "edited twice"})
    items, token2, pages = list_all(api, {"syncToken": token, "maxResults": 3})
    assert pages == 4 and sorted(ids(items)) == sorted(changed)
    assert {i["id"]: i["summary"] for i in items}[changed[0]] == "edited twice"
    assert list_all(api, {"syncToken": token2})[0] == []


def test_full_paging_under_concurrent_change_skips_nothing_and_token_catches_up(api: httpx.Client) -> None:
    originals = [new_event(api, summary=f"e{i}") for i in range(20)]
    stable = {e["id"] for e in originals[1::2]}
    victims = [e["id"] for e in originals[0::2]]
    params: dict[str, Any] = {"maxResults": 3}
    seen: list[dict[str, Any]] = []
    extra: list[str] = []
    edited: list[str] = []
    step = 0
    while True:
        body = api.get("/calendars/primary/events", params=params).json()
        seen.extend(body["items"])
        if step < len(victims):  # churn between pages: delete, create, edit
            api.delete(f"/calendars/primary/events/{victims[step]}")
            extra.append(new_event(api, summary=f"new{step}")["id"])
            target = originals[(2 * step + 1) % 20]["id"]
            api.patch(f"/calendars/primary/events/{target}", json={"description": f"edit {step}"})
            edited.append(target)
        step += 1
        if "nextPageToken" not in body:
            token = body["nextSyncToken"]
            break
        params["pageToken"] = body["nextPageToken"]
    assert stable <= set(ids(seen))
    changes = {i["id"]: i for i in list_all(api, {"syncToken": token})[0]}
    assert set(victims[:step]) <= set(changes) and set(extra) <= set(changes) and set(edited) <= set(changes)


def test_seeded_full_listing_is_complete_and_unique(api: httpx.Client, admin: httpx.Client) -> None:
    seed(admin, 5000, conference_every=7, recurring_every=50)
    items, token, pages = list_all(api, {"maxResults": 2500})
    assert pages == 2 and len(items) == len(set(ids(items))) == 5000 and token
    zoom = [i for i in items if "conferenceData" in i]
    assert len(zoom) == 5000 // 7
    assert zoom[0]["conferenceData"]["conferenceSolution"] == {
        "key": {"type": "addOn"}, "name": "Zoom", "iconUri": "https://zoom.example/icon.png"}
    assert re.fullmatch(r"https://zoom\.example/j/\d+", zoom[0]["conferenceData"]["entryPoints"][0]["uri"])
    series = [i for i in items if "recurrence" in i]
    assert len(series) == 100 and series[0]["recurrence"][0].startswith("RRULE:FREQ=WEEKLY")
    sample = items[0]
    assert sample["summary"] and sample["description"] and 1 <= len(sample["attendees"]) <= 2
    start, end = (sample[k]["dateTime"] for k in ("start", "end"))
    assert "2026-11-01" <= start[:10] < "2027-01-01" and 9 <= int(start[11:13]) < 17 and end > start


# ------------------------------------------------------------------------------------------------
# recurring events


def test_single_events_expands_series_with_exdate(api: httpx.Client) -> None:
    series = weekly(api, count=4, extra_rules=["EXDATE;TZID=Europe/Berlin:20261109T100000"])
    single = new_event(api, summary="single")
    items = list_all(api, {"singleEvents": "true"})[0]
    instances = [i for i in items if i.get("recurringEventId") == series["id"]]
    assert [i["id"] for i in instances] == [f"{series['id']}_{d}T090000Z" for d in ("20261102", "20261116", "20261123")]
    assert series["id"] not in ids(items) and single["id"] in ids(items)
    first = instances[0]
    assert first["originalStartTime"] == {"dateTime": "2026-11-02T10:00:00+01:00", "timeZone": "Europe/Berlin"}
    assert first["start"] == first["originalStartTime"] and "recurrence" not in first
    assert {i["iCalUID"] for i in instances} == {series["iCalUID"]}
    assert ids(list_all(api)[0]) == [series["id"], single["id"]]


def test_rdate_adds_occurrences(api: httpx.Client) -> None:
    series = weekly(api, count=2, extra_rules=["RDATE;TZID=Europe/Berlin:20261104T100000,20261105T100000"])
    instances = api.get(f"/calendars/primary/events/{series['id']}/instances").json()["items"]
    assert [i["id"][-16:] for i in instances] == ["20261102T090000Z", "20261104T090000Z", "20261105T090000Z",
                                                  "20261109T090000Z"]


def test_deleted_series_shows_cancelled_instances_only_with_show_deleted(api: httpx.Client) -> None:
    series = weekly(api, count=2)
    api.delete(f"/calendars/primary/events/{series['id']}")
    assert list_all(api, {"singleEvents": "true"})[0] == []
    shown = list_all(api, {"singleEvents": "true", "showDeleted": "true"})[0]
    assert [(i["recurringEventId"], i["status"]) for i in shown] == [(series["id"], "cancelled")] * 2
    assert ids(list_all(api, {"showDeleted": "true"})[0]) == [series["id"]]


def test_all_day_series_instance_ids_and_dst_wall_clock(api: httpx.Client) -> None:
    r = api.post("/calendars/primary/events", json={"summary": "day", "start": {"date": "2026-11-02"},
                                                     "end": {"date": "2026-11-03"},
                                                     "recurrence": ["RRULE:FREQ=DAILY;COUNT=2"]})
    sid = r.json()["id"]
    items = list_all(api, {"singleEvents": "true"})[0]
    assert ids(items) == [f"{sid}_20261102", f"{sid}_20261103"]
    assert items[1]["start"] == {"date": "2026-11-03"} and items[1]["end"] == {"date": "2026-11-04"}
    r = api.post("/calendars/primary/events", json={
        "summary": "dst", "start": when("2026-10-19T09:00:00", "Europe/Berlin"),
        "end": when("2026-10-19T10:00:00", "Europe/Berlin"), "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=2"]})
    inst = api.get(f"/calendars/primary/events/{r.json()['id']}/instances").json()["items"]
    assert [i["start"]["dateTime"] for i in inst] == ["2026-10-19T09:00:00+02:00", "2026-10-26T09:00:00+01:00"]
    assert inst[1]["id"].endswith("_20261026T080000Z")


def test_recurring_event_needs_time_zone_and_valid_rule(api: httpx.Client) -> None:
    base = {"start": when("2026-11-02T10:00:00Z"), "end": when("2026-11-02T11:00:00Z")}
    r = api.post("/calendars/primary/events", json={**base, "recurrence": ["RRULE:FREQ=WEEKLY"]})
    assert r.status_code == 400
    zoned = {"start": when("2026-11-02T10:00:00", "UTC"), "end": when("2026-11-02T11:00:00", "UTC")}
    for rule in (["RRULE:FREQ=SOMETIMES"], ["DTSTART:20261102T100000Z"], ["nonsense"], [5]):
        assert api.post("/calendars/primary/events", json={**zoned, "recurrence": rule}).status_code == 400, rule
    assert api.post("/calendars/primary/events", json={**zoned, "recurrence": ["RRULE:FREQ=WEEKLY;UNTIL=20261201"]}).status_code == 200


def test_instances_endpoint_matches_single_events_and_filters(api: httpx.Client) -> None:
    series = weekly(api, count=5)
    body = api.get(f"/calendars/primary/events/{series['id']}/instances").json()
    assert body["kind"] == "calendar#events" and len(body["items"]) == 5
    expanded = [i for i in list_all(api, {"singleEvents": "true"})[0]]
    assert body["items"] == expanded
    page = api.get(f"/calendars/primary/events/{series['id']}/instances", params={"maxResults": 2}).json()
    assert len(page["items"]) == 2 and "nextPageToken" in page
    rest = api.get(f"/calendars/primary/events/{series['id']}/instances",
                   params={"maxResults": 2, "pageToken": page["nextPageToken"]}).json()
    assert ids(rest["items"]) == ids(body["items"])[2:4]
    windowed = api.get(f"/calendars/primary/events/{series['id']}/instances",
                       params={"timeMin": "2026-11-09T09:30:00Z", "timeMax": "2026-11-16T09:00:01Z"}).json()
    assert ids(windowed["items"]) == ids(body["items"])[1:3]
    one = api.get(f"/calendars/primary/events/{series['id']}/instances",
                  params={"originalStart": "2026-11-16T10:00:00+01:00"}).json()
    assert ids(one["items"]) == [ids(body["items"])[2]]


def test_writing_an_instance_creates_an_exception_merged_into_expansion(api: httpx.Client) -> None:
    series = weekly(api, count=3)
    iid = f"{series['id']}_20261109T090000Z"
    got = api.get(f"/calendars/primary/events/{iid}").json()
    assert got["recurringEventId"] == series["id"] and got["etag"] == series["etag"]
    moved = api.patch(f"/calendars/primary/events/{iid}", json={
        "summary": "moved", "start": when("2026-11-10T15:00:00Z"), "end": when("2026-11-10T16:00:00Z")}).json()
    assert moved["id"] == iid and moved["originalStartTime"]["dateTime"] == "2026-11-09T10:00:00+01:00"
    assert moved["sequence"] == series["sequence"] + 1
    items = list_all(api, {"singleEvents": "true"})[0]
    assert [i["summary"] for i in items] == ["Weekly", "moved", "Weekly"]
    assert items[1]["start"]["dateTime"] == "2026-11-10T15:00:00Z"
    plain = list_all(api)[0]
    assert ids(plain) == [series["id"], iid]
    assert api.get(f"/calendars/primary/events/{series['id']}_20261110T090000Z").status_code == 404
    other = f"{series['id']}_20261116T090000Z"
    put = api.put(f"/calendars/primary/events/{other}", json={"summary": "replaced", "start": when("2026-11-16T09:00:00Z"),
                                                              "end": when("2026-11-16T09:30:00Z")}).json()
    assert put["recurringEventId"] == series["id"] and "recurrence" not in put


def test_deleting_an_instance_cancels_it_with_show_deleted_rules(api: httpx.Client) -> None:
    series = weekly(api, count=3)
    token = list_all(api)[1]
    iid = f"{series['id']}_20261109T090000Z"
    assert api.delete(f"/calendars/primary/events/{iid}").status_code == 204
    assert api.delete(f"/calendars/primary/events/{iid}").status_code == 410
    assert api.get(f"/calendars/primary/events/{iid}").json()["status"] == "cancelled"
    single = list_all(api, {"singleEvents": "true"})[0]
    assert iid not in ids(single) and len(single) == 2
    assert iid in ids(list_all(api, {"singleEvents": "true", "showDeleted": "true"})[0])
    default = list_all(api)[0]  # showDeleted and singleEvents both false: cancelled instance still listed
    assert ids(default) == [series["id"], iid]
    assert default[1] == {"kind": "calendar#event", "etag": default[1]["etag"], "id": iid, "status": "cancelled",
                          "recurringEventId": series["id"], "originalStartTime": {
                              "dateTime": "2026-11-09T10:00:00+01:00", "timeZone": "Europe/Berlin"}}
    changes = list_all(api, {"syncToken": token})[0]
    assert changes == [default[1]]


def test_deleting_a_series_cancels_its_exceptions(api: httpx.Client) -> None:
    series = weekly(api, count=3)
    iid = f"{series['id']}_20261109T090000Z"
    api.patch(f"/calendars/primary/events/{iid}", json={"summary": "special"})
    token = list_all(api)[1]
    assert api.delete(f"/calendars/primary/events/{series['id']}").status_code == 204
    changes = {i["id"]: i for i in list_all(api, {"syncToken": token})[0]}
    assert set(changes) == {series["id"], iid}
    assert changes[series["id"]]["status"] == "cancelled" and changes[iid]["status"] == "cancelled"
    assert changes[iid]["recurringEventId"] == series["id"]
    assert list_all(api)[0] == [] and list_all(api, {"singleEvents": "true"})[0] == []
    assert api.get(f"/calendars/primary/events/{series['id']}_20261116T090000Z").status_code == 404


def test_incremental_single_events_expands_changed_series(api: httpx.Client) -> None:
    token = list_all(api, {"singleEvents": "true"})[1]
    series = weekly(api, count=2)
    items = list_all(api, {"syncToken": token, "singleEvents": "true"})[0]
    assert [i["recurringEventId"] for i in items] == [series["id"]] * 2


# ------------------------------------------------------------------------------------------------
# faults, request log, admin surface


def test_fault_status_count_and_retry_after(api: httpx.Client, admin: httpx.Client) -> None:
    r = admin.post("/emulator/faults", json={"status": 429, "count": 2, "retry_after": 3})
    assert r.status_code == 201 and r.json()["status"] == 429
    for _ in range(2):
        r = api.get("/calendars/primary/events")
        assert r.status_code == 429 and r.headers["Retry-After"] == "3"
        assert error_of(r) == {"domain": "usageLimits", "reason": "rateLimitExceeded", "message": "Rate Limit Exceeded"}
    assert api.get("/calendars/primary/events").status_code == 200


def test_fault_reasons_by_status_and_override(api: httpx.Client, admin: httpx.Client) -> None:
    expected = {403: "rateLimitExceeded", 500: "backendError", 503: "backendError", 401: "authError"}
    for status, reason in expected.items():
        admin.post("/emulator/faults", json={"status": status, "count": 1})
        r = api.get("/calendars/primary/events")
        assert r.status_code == status and error_of(r)["reason"] == reason
    admin.post("/emulator/faults", json={"status": 403, "count": 1, "reason": "quotaExceeded"})
    r = api.get("/calendars/primary/events")
    assert error_of(r)["reason"] == "quotaExceeded"


def test_fault_filters_by_method_and_path_and_rate(api: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/emulator/faults", json={"status": 503, "methods": ["POST"]})
    admin.post("/emulator/faults", json={"status": 500, "path_prefix": "/calendar/v3/users/"})
    assert api.get("/calendars/primary/events").status_code == 200
    assert api.post("/calendars/primary/events", json={}).status_code == 503
    assert api.get("/users/me/calendarList").status_code == 500
    assert admin.delete("/emulator/faults").status_code == 204
    assert api.get("/users/me/calendarList").status_code == 200
    admin.post("/emulator/faults", json={"status": 503, "rate": 0.0})
    assert all(api.get("/calendars/primary/events").status_code == 200 for _ in range(5))
    assert admin.post("/emulator/reset").status_code == 200
    admin.post("/emulator/faults", json={"status": 503, "rate": 0.5})
    first = [api.get("/calendars/primary/events").status_code for _ in range(20)]
    admin.post("/emulator/reset")
    admin.post("/emulator/faults", json={"status": 503, "rate": 0.5})
    second = [api.get("/calendars/primary/events").status_code for _ in range(20)]
    assert first == second and 503 in first and 200 in first


def test_fault_latency_only_delays(api: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/emulator/faults", json={"latency_ms": 150, "count": 1})
    t0 = time.monotonic()
    assert api.get("/calendars/primary/events").status_code == 200
    assert time.monotonic() - t0 >= 0.14
    t0 = time.monotonic()
    api.get("/calendars/primary/events")
    assert time.monotonic() - t0 < 0.14


def test_bad_fault_specs_are_rejected(admin: httpx.Client) -> None:
    for spec in ({}, {"status": 99}, {"status": 503, "rate": 2}, {"status": 503, "bogus": 1},
                 {"status": 503, "methods": "GET"}, [1]):
        assert admin.post("/emulator/faults", json=spec).status_code == 400, spec


def test_request_log_records_api_calls_with_final_status(api: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/emulator/faults", json={"status": 503, "count": 1})
    api.get("/calendars/primary/events", params={"maxResults": 5})
    api.get("/calendars/primary/events", params={"maxResults": 5})
    api.get("/calendars/primary/events/nothere1")
    admin.get("/emulator/requests")
    log = admin.get("/emulator/requests").json()["requests"]
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("GET", "/calendar/v3/calendars/primary/events", 503),
        ("GET", "/calendar/v3/calendars/primary/events", 200),
        ("GET", "/calendar/v3/calendars/primary/events/nothere1", 404)]
    assert log[0]["query"] == "maxResults=5" and log[0]["user"] == "alice@example.com" and log[0]["time"]
    assert admin.delete("/emulator/requests").status_code == 204
    assert admin.get("/emulator/requests").json()["requests"] == []


def test_reset_drops_state_and_restores_switches(api: httpx.Client, admin: httpx.Client) -> None:
    ev = new_event(api)
    token = list_all(api)[1]
    admin.post("/emulator/switches", json={"sync_token_restriction_reason": "syncTokenWithRequestRestrictions"})
    admin.post("/emulator/faults", json={"status": 503, "path_prefix": "/calendar/v3/users/"})
    admin.post("/emulator/reset")
    assert admin.get("/emulator/requests").json()["requests"] == []
    assert admin.get("/emulator/switches").json()["sync_token_restriction_reason"] == "invalid"
    assert api.get("/users/me/calendarList").status_code == 200
    assert api.get(f"/calendars/primary/events/{ev['id']}").status_code == 404
    assert api.get("/calendars/primary/events", params={"syncToken": token}).status_code == 410


def test_switches_validate_names_and_values(admin: httpx.Client) -> None:
    assert admin.post("/emulator/switches", json={"nope": 1}).status_code == 400
    assert admin.post("/emulator/switches", json={"sync_token_restriction_reason": "other"}).status_code == 400
    assert admin.post("/emulator/switches", json={"page_scan_limit": 0}).status_code == 400


def test_seed_requires_an_existing_calendar(admin: httpx.Client, api: httpx.Client) -> None:
    assert admin.post("/emulator/calendars/primary/seed", json={"count": 1}).status_code == 404
    assert admin.post("/emulator/calendars/nope@group.calendar.google.com/seed", json={"count": 1}).status_code == 404
    assert admin.post("/emulator/calendars/alice@example.com/seed", json={"count": -1}).status_code == 400
    cal = api.post("/calendars", json={"summary": "Team"}).json()["id"]
    seed(admin, 3, cal=cal, recurring_every=1)
    assert len(list_all(api, cal=cal)[0]) == 3
    assert len(list_all(api, {"singleEvents": "true"}, cal=cal)[0]) >= 12


def test_no_sync_token_quirk_switch(api: httpx.Client, admin: httpx.Client) -> None:
    new_event(api)
    admin.post("/emulator/switches", json={"no_sync_token_with_order_or_q": True})
    assert "nextSyncToken" not in api.get("/calendars/primary/events", params={"q": "Meeting"}).json()
    assert "nextSyncToken" in api.get("/calendars/primary/events").json()


def test_updated_min_horizon_switch_gives_410(api: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/emulator/switches", json={"updated_min_horizon_seconds": 3600})
    r = api.get("/calendars/primary/events", params={"updatedMin": "2000-01-01T00:00:00Z"})
    assert r.status_code == 410 and error_of(r)["reason"] == "updatedMinTooLongAgo"


# ------------------------------------------------------------------------------------------------
# in-process helpers (no HTTP): thread safety and the generic fault pieces


def test_emulator_helpers_are_thread_safe() -> None:
    emu = GoogleEmulator()
    emu.ensure_user("t@example.com")

    def work(n: int) -> None:
        emu.seed("t@example.com", {"count": 200, "seed": n})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    from calsync.emulators.google import Params
    body = emu.list_events("t@example.com", "primary", Params([("maxResults", "2500")]))
    assert body.count('"kind":"calendar#event"') == 800


def test_fault_injector_and_request_log_units() -> None:
    from starlette.responses import Response
    injector = FaultInjector(lambda status, reason, rule: Response(reason or "", status_code=status), "/api/")
    rule = injector.add({"status": 503, "count": 1, "reason": "x"})
    assert rule["remaining"] == 1 and rule["path_prefix"] == "/api/"
    import asyncio
    assert asyncio.run(injector.maybe_fail("GET", "/other")) is None
    assert asyncio.run(injector.maybe_fail("GET", "/api/a")).status_code == 503
    assert asyncio.run(injector.maybe_fail("GET", "/api/a")) is None
    with pytest.raises(ValueError):
        parse_rule({"status": 503, "count": -1}, 1, "/")
    log = RequestLog(maxlen=2)
    for i in range(3):
        log.add("GET", f"/{i}", "", 200, None)
    assert [e["path"] for e in log.entries()] == ["/1", "/2"]


# ------------------------------------------------------------------------------------------------
# bad input never produces a 500

_JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(
    ["", "x", "2026-11-02", "2026-11-02T10:00:00Z", "Europe/Berlin", "RRULE:FREQ=DAILY;COUNT=2", "hangoutsMeet",
     "addOn", "video", "a@b.c", "cancelled"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["dateTime", "date", "timeZone", "email", "private", "shared", "createRequest", "requestId",
         "conferenceSolution", "key", "type", "entryPoints", "entryPointType", "uri", "useDefault", "overrides",
         "method", "minutes", "parameters", "addOnParameters", "x"]), inner, max_size=4),
    max_leaves=10)
_FIELDS = ["summary", "start", "end", "recurrence", "attendees", "reminders", "extendedProperties",
           "conferenceData", "status", "id", "iCalUID", "sequence", "source", "organizer", "transparency",
           "visibility", "colorId", "endTimeUnspecified"]
_VALID = {"start": when("2026-11-02T10:00:00", "Europe/Berlin"), "end": when("2026-11-02T11:00:00", "Europe/Berlin")}


@pytest.fixture(scope="module")
def fuzz_api(google_server: Any) -> Iterator[httpx.Client]:
    """One keep-alive client for all fuzz examples (a new client per example costs ~20 ms)."""
    with _client(google_server.url, "fuzz") as client:
        yield client


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=5), keep_valid_times=st.booleans())
def test_arbitrary_event_bodies_never_cause_a_server_error(google_url: str, fuzz_api: httpx.Client,
                                                           body: dict[str, Any], keep_valid_times: bool) -> None:
    # google_url resets the emulator once before the examples (no faults or switches left over)
    payload = {**_VALID, **body} if keep_valid_times else body
    base = fuzz_api.post("/calendars/primary/events", json=_VALID).json()
    path = f"/calendars/primary/events/{base['id']}"
    for method, url in (("POST", "/calendars/primary/events"), ("POST", "/calendars/primary/events/import"),
                        ("PATCH", path), ("PUT", path)):
        r = fuzz_api.request(method, url, json=payload, params={"conferenceDataVersion": 1})
        assert r.status_code < 500, (method, url, payload, r.text)
        if r.status_code == 200:
            listing = fuzz_api.get("/calendars/primary/events", params={"singleEvents": "true", "maxResults": 5})
            assert listing.status_code == 200


# ------------------------------------------------------------------------------------------------
# partial responses (the `fields` parameter)


def test_fields_selects_what_it_names_in_a_listing_and_in_one_event(api: httpx.Client) -> None:
    made = new_event(api, "Partial", location="Room 1", attendees=[{"email": "b@example.org"}])
    r = api.get("/calendars/primary/events", params={"fields": "items(id,start/dateTime,attendees(email)),nextSyncToken"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"items", "nextSyncToken"}
    assert body["items"] == [{"id": made["id"], "start": {"dateTime": made["start"]["dateTime"]},
                              "attendees": [{"email": "b@example.org"}]}]
    one = api.get(f"/calendars/primary/events/{made['id']}", params={"fields": "summary,location,etag"})
    assert one.json() == {"summary": "Partial", "location": "Room 1", "etag": made["etag"]}
    assert one.headers.get("etag") == api.get(f"/calendars/primary/events/{made['id']}").headers.get("etag")
    everything = api.get(f"/calendars/primary/events/{made['id']}", params={"fields": "*"}).json()
    assert everything == api.get(f"/calendars/primary/events/{made['id']}").json()


def test_a_malformed_field_selection_is_a_400_before_the_method_runs(api: httpx.Client) -> None:
    for bad in ("items(id", "items)", "a,,b", "a//b", "()"):
        r = api.post("/calendars/primary/events", params={"fields": bad},
                     json={"summary": "never", "start": when("2026-11-02T10:00:00Z"), "end": when("2026-11-02T11:00:00Z")})
        assert r.status_code == 400, (bad, r.text)
        assert error_of(r)["reason"] == "invalidParameter" and error_of(r)["location"] == "fields"
    items, _, _ = list_all(api)
    assert [i for i in items if i.get("summary") == "never"] == []
