"""Fidelity of the Google emulator, proven with the official google-api-python-client.

The client is built from the discovery document bundled with googleapiclient (static
discovery), so URLs, parameters and bodies are exactly what real integrations send. Every
response is validated against that document's schemas, converted to JSON Schema with
``additionalProperties: false`` so an unknown or misspelled field fails the test.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any

import googleapiclient
import httpx
import jsonschema
import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

DISCOVERY_PATH = os.path.join(os.path.dirname(googleapiclient.__file__),
                              "discovery_cache", "documents", "calendar.v3.json")

# Google's error envelope is not described by the discovery document; this is its documented shape.
ERROR_ENVELOPE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "additionalProperties": False,
        "required": ["code", "message", "errors"],
        "properties": {
            "code": {"type": "integer"},
            "message": {"type": "string"},
            "errors": {"type": "array", "minItems": 1, "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["domain", "reason", "message"],
                "properties": {k: {"type": "string"} for k in ("domain", "reason", "message", "locationType", "location")},
            }},
        },
    }},
}


# ------------------------------------------------------------------------------------------------
# discovery schema -> JSON Schema


def _convert(node: dict[str, Any], defs: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """One discovery schema node as JSON Schema; $ref goes to $defs so recursive schemas work."""
    if "$ref" in node:
        name = node["$ref"]
        if name not in defs:
            defs[name] = {}  # placeholder breaks cycles
            defs[name] = _convert(schemas[name], defs, schemas)
        return {"$ref": f"#/$defs/{name}"}
    kind = node.get("type")
    if kind == "object":
        out: dict[str, Any] = {"type": "object"}
        if "properties" in node:
            out["properties"] = {k: _convert(v, defs, schemas) for k, v in node["properties"].items()}
            out["additionalProperties"] = False
        if "additionalProperties" in node:
            out["additionalProperties"] = _convert(node["additionalProperties"], defs, schemas)
        return out
    if kind == "array":
        return {"type": "array", "items": _convert(node.get("items", {}), defs, schemas)}
    if kind == "string":
        out = {"type": "string"}
        if node.get("format") in ("date-time", "date"):
            out["format"] = node["format"]
        return out
    if kind in ("integer", "number", "boolean"):
        return {"type": kind}
    return {}  # "any" or untyped


def json_schema_for(doc: dict[str, Any], name: str) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    root = _convert({"$ref": name}, defs, doc["schemas"])
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": defs, **root}


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", value):
            raise ValueError(value)
        datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True

    @checker.checks("date", raises=ValueError)
    def _date(value: object) -> bool:
        if isinstance(value, str):
            date.fromisoformat(value)
            if len(value) != 10:
                raise ValueError(value)
        return True

    return checker


@pytest.fixture(scope="module")
def discovery() -> dict[str, Any]:
    with open(DISCOVERY_PATH, encoding="utf-8") as fh:
        return json.load(fh)


Validate = Callable[[str, Any], None]


@pytest.fixture(scope="module")
def validate(discovery: dict[str, Any]) -> Validate:
    """validate(schema_name, instance): raises jsonschema.ValidationError on any mismatch."""
    checker = _format_checker()
    cache: dict[str, jsonschema.Draft202012Validator] = {}

    def run(name: str, instance: Any) -> None:
        if name not in cache:
            schema = ERROR_ENVELOPE if name == "error" else json_schema_for(discovery, name)
            cache[name] = jsonschema.Draft202012Validator(schema, format_checker=checker)
        cache[name].validate(instance)

    return run


def service_for(google_url: str, token: str = "alice") -> Any:
    """A calendar service built exactly as production code does, pointed at the emulator.

    ``api_endpoint`` replaces rootUrl + servicePath entirely, so it must include ``/calendar/v3/``.
    """
    return build("calendar", "v3", credentials=Credentials(token=token), static_discovery=True,
                 client_options={"api_endpoint": google_url + "/calendar/v3/"}, cache_discovery=False)


@pytest.fixture()
def svc(google_url: str) -> Iterator[Any]:
    service = service_for(google_url)
    yield service
    service.close()


def event_body(summary: str = "Meeting", hour: int = 10, **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "start": {"dateTime": f"2026-11-02T{hour:02d}:00:00Z"},
            "end": {"dateTime": f"2026-11-02T{hour:02d}:30:00Z"}, **extra}


def http_error(exc: HttpError) -> dict[str, Any]:
    return json.loads(exc.content)


# ------------------------------------------------------------------------------------------------
# the converter itself


def test_schema_converter_rejects_unknown_and_mistyped_fields(validate: Validate) -> None:
    good = {"kind": "calendar#event", "id": "abc", "start": {"dateTime": "2026-11-02T10:00:00Z"},
            "extendedProperties": {"private": {"a": "b"}}, "sequence": 1}
    validate("Event", good)
    for bad in ({**good, "summery": "typo"}, {**good, "start": {"dateTime": "2026-11-02 10:00"}},
                {**good, "sequence": "1"}, {**good, "extendedProperties": {"private": {"a": 1}}},
                {**good, "start": {"date": "2026-11-02", "tz": "UTC"}}):
        with pytest.raises(jsonschema.ValidationError):
            validate("Event", bad)


# ------------------------------------------------------------------------------------------------
# official client against the emulator


def test_calendar_list_and_calendars_match_schemas(svc: Any, validate: Validate) -> None:
    listing = svc.calendarList().list().execute()
    validate("CalendarList", listing)
    assert listing["items"][0]["id"] == "alice@example.com" and listing["items"][0]["primary"] is True
    created = svc.calendars().insert(body={"summary": "Team", "timeZone": "Europe/Berlin"}).execute()
    validate("Calendar", created)
    validate("Calendar", svc.calendars().get(calendarId="primary").execute())
    validate("CalendarListEntry", svc.calendarList().get(calendarId=created["id"]).execute())
    validate("Calendar", svc.calendars().patch(calendarId=created["id"], body={"description": "d"}).execute())
    svc.calendars().delete(calendarId=created["id"]).execute()
    with pytest.raises(HttpError) as err:
        svc.calendars().get(calendarId=created["id"]).execute()
    assert err.value.resp.status == 404
    validate("error", http_error(err.value))


def test_insert_get_and_import_match_event_schema(svc: Any, validate: Validate) -> None:
    body = event_body(description="d", location="L", attendees=[{"email": "x@example.org", "optional": True}],
                      extendedProperties={"private": {"k": "v"}, "shared": {"s": "t"}},
                      reminders={"useDefault": False, "overrides": [{"method": "popup", "minutes": 10}]},
                      transparency="transparent", visibility="private", colorId="3",
                      source={"title": "t", "url": "https://example.org"})
    ev = svc.events().insert(calendarId="primary", body=body, sendUpdates="none").execute()
    validate("Event", ev)
    assert svc.events().get(calendarId="primary", eventId=ev["id"]).execute() == ev
    imported = svc.events().import_(calendarId="primary", body={**event_body("Imported"), "iCalUID": "u@x",
                                                                 "sequence": 2}).execute()
    validate("Event", imported)
    assert imported["iCalUID"] == "u@x" and imported["sequence"] == 2


def test_list_pages_with_list_next_and_sync_token_only_at_end(svc: Any, validate: Validate) -> None:
    created = {svc.events().insert(calendarId="primary", body=event_body(f"e{i}", hour=8 + i)).execute()["id"]
               for i in range(8)}
    request = svc.events().list(calendarId="primary", maxResults=3)
    seen: list[str] = []
    pages: list[dict[str, Any]] = []
    while request is not None:
        page = request.execute()
        validate("Events", page)
        pages.append(page)
        seen.extend(i["id"] for i in page["items"])
        request = svc.events().list_next(request, page)
    assert len(pages) == 3 and set(seen) == created and len(seen) == 8
    assert all("nextSyncToken" not in p and "nextPageToken" in p for p in pages[:-1])
    assert "nextSyncToken" in pages[-1] and "nextPageToken" not in pages[-1]
    assert pages[0]["kind"] == "calendar#events" and pages[0]["accessRole"] == "owner"


def test_incremental_sync_with_client(svc: Any, validate: Validate) -> None:
    a = svc.events().insert(calendarId="primary", body=event_body("a")).execute()
    b = svc.events().insert(calendarId="primary", body=event_body("b")).execute()
    token = svc.events().list(calendarId="primary").execute()["nextSyncToken"]
    svc.events().patch(calendarId="primary", eventId=a["id"], body={"summary": "a2"}).execute()
    svc.events().delete(calendarId="primary", eventId=b["id"]).execute()
    changes = svc.events().list(calendarId="primary", syncToken=token, maxResults=1).execute()
    validate("Events", changes)
    items = list(changes["items"])
    while "nextPageToken" in changes:
        changes = svc.events().list(calendarId="primary", syncToken=token, maxResults=1,
                                    pageToken=changes["nextPageToken"]).execute()
        validate("Events", changes)
        items.extend(changes["items"])
    assert [(i["id"], i["status"]) for i in items] == [(a["id"], "confirmed"), (b["id"], "cancelled")]
    assert changes["nextSyncToken"]
    again = svc.events().list(calendarId="primary", syncToken=changes["nextSyncToken"]).execute()
    assert again["items"] == []


def test_stale_if_match_gives_412(svc: Any, validate: Validate) -> None:
    ev = svc.events().insert(calendarId="primary", body=event_body()).execute()
    svc.events().patch(calendarId="primary", eventId=ev["id"], body={"summary": "other writer"}).execute()
    request = svc.events().patch(calendarId="primary", eventId=ev["id"], body={"summary": "mine"})
    request.headers["If-Match"] = ev["etag"]
    with pytest.raises(HttpError) as err:
        request.execute()
    assert err.value.resp.status == 412
    body = http_error(err.value)
    validate("error", body)
    assert body["error"]["errors"][0]["reason"] == "conditionNotMet"
    current = svc.events().get(calendarId="primary", eventId=ev["id"]).execute()
    request = svc.events().patch(calendarId="primary", eventId=ev["id"], body={"summary": "mine"})
    request.headers["If-Match"] = current["etag"]
    assert request.execute()["summary"] == "mine"


def test_invalid_sync_token_gives_410_full_sync_required(svc: Any, validate: Validate) -> None:
    with pytest.raises(HttpError) as err:
        svc.events().list(calendarId="primary", syncToken="not-a-token").execute()
    assert err.value.resp.status == 410
    body = http_error(err.value)
    validate("error", body)
    assert body["error"]["errors"] == [{
        "domain": "calendar", "reason": "fullSyncRequired",
        "message": "Sync token is no longer valid, a full sync is required.",
        "locationType": "parameter", "location": "syncToken"}]
    assert err.value.error_details[0]["reason"] == "fullSyncRequired"


def test_if_none_match_gives_304(svc: Any) -> None:
    ev = svc.events().insert(calendarId="primary", body=event_body()).execute()
    request = svc.events().get(calendarId="primary", eventId=ev["id"])
    request.headers["If-None-Match"] = ev["etag"]
    with pytest.raises(HttpError) as err:
        request.execute()
    assert err.value.resp.status == 304


def test_duplicate_client_id_gives_409(svc: Any, validate: Validate) -> None:
    svc.events().insert(calendarId="primary", body=event_body(id="ca1c5e0c0001")).execute()
    with pytest.raises(HttpError) as err:
        svc.events().insert(calendarId="primary", body=event_body(id="ca1c5e0c0001")).execute()
    assert err.value.resp.status == 409
    body = http_error(err.value)
    validate("error", body)
    assert body["error"]["errors"][0]["reason"] == "duplicate"


def test_recurring_instances_and_conference_data_match_schema(svc: Any, validate: Validate) -> None:
    series = svc.events().insert(calendarId="primary", conferenceDataVersion=1, body={
        "summary": "Weekly", "start": {"dateTime": "2026-11-02T10:00:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-11-02T11:00:00", "timeZone": "Europe/Berlin"},
        "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"],
        "conferenceData": {"createRequest": {"requestId": "r-1", "conferenceSolutionKey": {"type": "hangoutsMeet"}}},
    }).execute()
    validate("Event", series)
    assert series["conferenceData"]["createRequest"]["status"]["statusCode"] == "success"
    instances = svc.events().instances(calendarId="primary", eventId=series["id"]).execute()
    validate("Events", instances)
    assert len(instances["items"]) == 3
    first = instances["items"][0]["id"]
    svc.events().delete(calendarId="primary", eventId=first).execute()
    validate("Events", svc.events().list(calendarId="primary").execute())
    validate("Events", svc.events().list(calendarId="primary", singleEvents=True, showDeleted=True).execute())
    exception = svc.events().patch(calendarId="primary", eventId=instances["items"][1]["id"],
                                   body={"summary": "special"}).execute()
    validate("Event", exception)


def test_seeded_data_matches_event_schema(google_url: str, svc: Any, validate: Validate) -> None:
    r = httpx.post(f"{google_url}/emulator/calendars/alice@example.com/seed",
                   json={"count": 300, "conference_every": 5, "recurring_every": 7})
    assert r.status_code == 200
    for params in ({}, {"singleEvents": True}, {"singleEvents": True, "orderBy": "startTime"}):
        page = svc.events().list(calendarId="primary", maxResults=2500, **params).execute()
        validate("Events", page)
        assert page["items"]


def test_other_errors_match_error_envelope(google_url: str, svc: Any, validate: Validate) -> None:
    bob = service_for(google_url, "bob")
    with pytest.raises(HttpError) as err:
        bob.events().list(calendarId="alice@example.com").execute()
    assert err.value.resp.status == 404
    validate("error", http_error(err.value))
    for call in (lambda: svc.events().list(calendarId="primary", orderBy="startTime").execute(),
                 lambda: svc.events().list(calendarId="primary", timeMin="2026-11-02T10:00:00Z",
                                           timeMax="2026-11-01T10:00:00Z").execute(),
                 lambda: svc.events().insert(calendarId="primary", body={"summary": "no times"}).execute()):
        with pytest.raises(HttpError) as err:
            call()
        assert err.value.resp.status == 400
        validate("error", http_error(err.value))
    httpx.post(f"{google_url}/emulator/faults", json={"status": 429, "count": 1, "retry_after": 1})
    with pytest.raises(HttpError) as err:
        svc.calendarList().list().execute()
    assert err.value.resp.status == 429
    validate("error", http_error(err.value))
    bob.close()
