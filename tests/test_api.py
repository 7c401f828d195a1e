"""The REST API over real HTTP: events with ETags and preconditions, paging, validation, conflicts."""
from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from calsync.emulators.server import serve_in_thread
from calsync.engine import local
from calsync.engine.sync import sync_once
from calsync.service.app import create_app
from calsync.store import accounts as account_store
from calsync.store import events as event_store
from calsync.store.db import open_engine
from calsync.store.schema import events, outbox
from tests.helpers import GoogleApi, auth_headers, bind, local_events, migrated_sqlite

SLOT = {"start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z"}


@pytest.fixture()
def engine(tmp_path: Path) -> Engine:
    return open_engine(migrated_sqlite(tmp_path / "calsync.db"))


@pytest.fixture()
def service_url(engine: Engine) -> Iterator[str]:
    """The service's FastAPI app on a free loopback port."""
    server = serve_in_thread(create_app(engine))
    yield server.url
    server.stop()


@pytest.fixture()
def api(service_url: str, engine: Engine) -> Iterator[httpx.Client]:
    """A client for /api/v1."""

    def after_server_error(response: httpx.Response) -> None:
        """Wait until the server thread has printed a 500's traceback (one more request is served after
        it): CPython 3.11 before 3.11.8 can raise SystemError ("AST constructor recursion depth
        mismatch", gh-106905) when two threads format tracebacks at once, aborting the pytest run."""
        if response.status_code >= 500:
            httpx.get(f"{service_url}/healthz", timeout=30)

    with httpx.Client(base_url=f"{service_url}/api/v1", timeout=30, headers=auth_headers(engine),
                      event_hooks={"response": [after_server_error]}) as client:
        yield client


@pytest.fixture()
def calendar(engine: Engine) -> str:
    """A local calendar without bindings."""
    with engine.begin() as conn:
        return account_store.create_calendar(conn, "Team")


@pytest.fixture()
def alice(google_url: str) -> GoogleApi:
    return GoogleApi(google_url, "alice")


def calendar_of(engine: Engine, binding_id: str) -> str:
    with engine.begin() as conn:
        return str(account_store.get_binding(conn, binding_id)["calendar_id"])


def create(api: httpx.Client, calendar_id: str, title: Any = "Standup", **fields: Any) -> httpx.Response:
    return api.post("/events", json={"calendar_id": calendar_id, "title": title, **SLOT, **fields})


def created(api: httpx.Client, calendar_id: str, title: str = "Standup", **fields: Any) -> dict[str, Any]:
    response = create(api, calendar_id, title, **fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def error_fields(response: httpx.Response) -> list[str]:
    """The field each 422 error names (the last element of its loc)."""
    assert response.status_code == 422, response.text
    return [str(error["loc"][-1]) for error in response.json()["detail"]]


def row_count(engine: Engine, table: Any) -> int:
    with engine.begin() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# --- events: create, read, list ----------------------------------------------------------------


def test_create_answers_201_with_etag_location_and_pending_sync(
    engine: Engine, api: httpx.Client, google_url: str, alice: GoogleApi
) -> None:
    binding = bind(engine, google_url, "alice", alice.primary_id())
    response = create(api, calendar_of(engine, binding), "Planning", description="Q1",
                      attendees=["ada@example.com", {"email": "bob@example.com", "name": "Bob", "optional": True}],
                      time_zone="Europe/Paris")
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["ETag"] == body["etag"] == f'"1-{body["id"][:8]}"'
    assert response.headers["Location"] == f"/api/v1/events/{body['id']}"
    assert body["version"] == 1 and body["title"] == "Planning" and body["time_zone"] == "Europe/Paris"
    assert [a["email"] for a in body["attendees"]] == ["ada@example.com", "bob@example.com"]
    assert body["attendees"][1]["optional"] is True and body["attendees"][1]["name"] == "Bob"
    assert body["sync"] == [{"binding_id": binding, "state": "pending"}]

    fetched = api.get(response.headers["Location"].removeprefix("/api/v1"))
    assert fetched.status_code == 200
    assert fetched.json() == body and fetched.headers["ETag"] == body["etag"]
    assert api.get(f"/events/{body['id']}", headers={"If-None-Match": body["etag"]}).status_code == 304


def test_get_unknown_event_is_404(api: httpx.Client) -> None:
    assert api.get(f"/events/{'0' * 32}").status_code == 404
    assert api.get("/events/not-an-id").status_code == 404


def test_list_window_and_cursor_paging(engine: Engine, api: httpx.Client, calendar: str) -> None:
    """More events than `limit` in the window come back in start order over several pages, each once."""
    base = datetime(2026, 12, 1, 8, tzinfo=UTC)
    expected = []
    for n in range(11):  # two per start time, so the id half of the keyset matters too
        at = base + timedelta(hours=n // 2)
        change = local.create_event(engine, calendar, {
            "title": f"e{n}", "start": at.isoformat(), "end": (at + timedelta(minutes=30)).isoformat()})
        expected.append((at, change.event_id))
    local.create_event(engine, calendar, {"title": "before", "start": "2026-11-30T08:00:00Z",
                                          "end": "2026-11-30T09:00:00Z"})
    local.create_event(engine, calendar, {"title": "after", "start": "2026-12-03T08:00:00Z",
                                          "end": "2026-12-03T09:00:00Z"})
    expected_ids = [event_id for _, event_id in sorted(expected)]

    seen: list[str] = []
    params: dict[str, Any] = {"calendar_id": calendar, "start": "2026-12-01", "end": "2026-12-02T00:00:00+00:00",
                              "limit": 4}
    pages = 0
    while True:
        response = api.get("/events", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["events"]) <= 4
        seen.extend(e["id"] for e in body["events"])
        pages += 1
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert pages == 3 and seen == expected_ids
    assert all(e["etag"] and e["sync"] == [] for e in api.get("/events", params={"limit": 2500}).json()["events"])
    assert len(api.get("/events").json()["events"]) == 13


def test_list_rejects_forged_cursor_and_bad_parameters(api: httpx.Client, calendar: str) -> None:
    forged = base64.urlsafe_b64encode(json.dumps(["yesterday", "x"]).encode()).decode()
    assert error_fields(api.get("/events", params={"cursor": forged})) == ["cursor"]
    assert error_fields(api.get("/events", params={"cursor": "%%%not base64"})) == ["cursor"]
    assert error_fields(api.get("/events", params={"limit": 2501})) == ["limit"]
    assert error_fields(api.get("/events", params={"limit": 0})) == ["limit"]
    assert error_fields(api.get("/events", params={"start": "tomorrow"})) == ["start"]
    assert error_fields(api.get("/events", params={"end": "2026-12-01T09:00:00"})) == ["end"]
    assert error_fields(api.get("/events", params={"start": "2026-12-02", "end": "2026-12-01"})) == ["end"]
    assert error_fields(api.get("/events", params={"calendar_id": "f" * 32})) == ["calendar_id"]


def test_calendars_list_bindings_and_counts(
    engine: Engine, api: httpx.Client, calendar: str, google_url: str, alice: GoogleApi
) -> None:
    binding = bind(engine, google_url, "alice", alice.primary_id())
    created(api, calendar)
    created(api, calendar, "Second")
    body = api.get("/calendars").json()["calendars"]
    by_id = {c["id"]: c for c in body}
    assert by_id[calendar]["event_count"] == 2 and by_id[calendar]["bindings"] == []
    bound = by_id[calendar_of(engine, binding)]
    assert bound["event_count"] == 0
    (shown,) = bound["bindings"]
    assert shown["id"] == binding and shown["direction"] == "two-way"
    assert shown["remote_calendar_id"] == alice.primary_id() and shown["account_id"]


# --- events: preconditions ----------------------------------------------------------------------


def test_patch_with_current_etag_bumps_version_and_etag(api: httpx.Client, calendar: str) -> None:
    event = created(api, calendar)
    response = api.patch(f"/events/{event['id']}", json={"title": "Standup (moved)", "location": "Room 2"},
                         headers={"If-Match": event["etag"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 2 and body["title"] == "Standup (moved)" and body["location"] == "Room 2"
    assert body["start"] == event["start"], "fields left out are unchanged"
    assert response.headers["ETag"] == body["etag"] == f'"2-{event["id"][:8]}"' != event["etag"]
    # a weak tag inside a list is accepted too
    again = api.patch(f"/events/{event['id']}", json={"description": "daily"},
                      headers={"If-Match": f'"9-deadbeef", W/{body["etag"]}'})
    assert again.status_code == 200 and again.json()["version"] == 3


def test_write_without_if_match_is_428(engine: Engine, api: httpx.Client, calendar: str) -> None:
    event = created(api, calendar)
    for response in (api.patch(f"/events/{event['id']}", json={"title": "x"}),
                     api.put(f"/events/{event['id']}", json={"title": "x", **SLOT}),
                     api.delete(f"/events/{event['id']}")):
        assert response.status_code == 428 and "If-Match" in response.json()["detail"]
    assert api.get(f"/events/{event['id']}").json()["version"] == 1


def test_stale_etag_is_412_with_current_etag_and_writes_nothing(
    engine: Engine, api: httpx.Client, calendar: str
) -> None:
    event = created(api, calendar)
    current = api.patch(f"/events/{event['id']}", json={"title": "v2"}, headers={"If-Match": event["etag"]}).json()
    queued = row_count(engine, outbox)
    for response in (api.patch(f"/events/{event['id']}", json={"title": "lost"}, headers={"If-Match": event["etag"]}),
                     api.put(f"/events/{event['id']}", json={"title": "lost", **SLOT},
                             headers={"If-Match": event["etag"]}),
                     api.delete(f"/events/{event['id']}", headers={"If-Match": event["etag"]}),
                     api.patch(f"/events/{event['id']}", json={"title": "lost"}, headers={"If-Match": "garbage"})):
        assert response.status_code == 412, response.text
        assert response.headers["ETag"] == current["etag"]
        assert response.json()["detail"]["etag"] == current["etag"]
    after = api.get(f"/events/{event['id']}").json()
    assert after["title"] == "v2" and after["version"] == 2
    assert row_count(engine, outbox) == queued


def at_once(requests: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """The requests released together, each on its own thread and connection."""
    barrier = threading.Barrier(len(requests))

    def send(request: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return request()

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def test_concurrent_writes_with_one_etag_let_exactly_one_win(
    service_url: str, api: httpx.Client, calendar: str
) -> None:
    """If-Match must hold under concurrency: of writers sending the same ETag, one wins, the rest get 412.

    Engine bug: engine/local.py update_event checks the version (`_live_row`) and then writes
    `version + 1` without a guarded UPDATE or row lock (pysqlite begins the transaction only at the
    UPDATE; PostgreSQL READ COMMITTED has the same gap), so several writers all 'succeed' at the same
    version and all but the last edit are lost."""
    for _ in range(10):
        event = created(api, calendar)
        url = f"{service_url}/api/v1/events/{event['id']}"
        answers = at_once([partial(httpx.patch, url, json={"title": f"writer {n}"},
                                   headers={**api.headers, "If-Match": event["etag"]}, timeout=30) for n in range(8)])
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] + [412] * 7, codes
        (winner,) = [r.json() for r in answers if r.status_code == 200]
        assert api.get(f"/events/{event['id']}").json()["title"] == winner["title"]


def test_put_replaces_and_clears_optional_fields(api: httpx.Client, calendar: str) -> None:
    event = created(api, calendar, description="agenda", location="Room 1", attendees=["ada@example.com"],
                    time_zone="Europe/Paris")
    response = api.put(f"/events/{event['id']}", json={"title": "Retro", "start": "2026-12-02",
                                                       "end": "2026-12-03", "all_day": True},
                       headers={"If-Match": event["etag"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["title"], body["start"], body["end"], body["all_day"]) == ("Retro", "2026-12-02", "2026-12-03", True)
    assert body["description"] is None and body["location"] is None and body["attendees"] == []
    assert body["time_zone"] is None and body["version"] == 2


def test_delete_is_204_then_404(api: httpx.Client, calendar: str) -> None:
    event = created(api, calendar)
    response = api.delete(f"/events/{event['id']}", headers={"If-Match": event["etag"]})
    assert response.status_code == 204 and response.content == b""
    assert api.get(f"/events/{event['id']}").status_code == 404
    assert api.delete(f"/events/{event['id']}", headers={"If-Match": "*"}).status_code == 404
    assert api.get("/events").json()["events"] == []


# --- validation ---------------------------------------------------------------------------------


def test_validation_errors_name_the_field(engine: Engine, api: httpx.Client, calendar: str) -> None:
    assert error_fields(create(api, calendar, start="2026-12-01T10:00:00Z", end="2026-12-01T09:00:00Z")) == ["end"]
    assert error_fields(create(api, calendar, time_zone="Mars/Olympus_Mons")) == ["time_zone"]
    assert error_fields(create(api, "f" * 32)) == ["calendar_id"]
    assert error_fields(api.post("/events", json={"calendar_id": calendar, **SLOT})) == ["title"]
    assert error_fields(create(api, calendar, title="")) == ["title"]
    assert error_fields(create(api, calendar, start="2026-12-01T09:00:00")) == ["start"]
    assert error_fields(create(api, calendar, all_day="yes")) == ["all_day"]
    assert error_fields(create(api, calendar, title=42)) == ["title"]
    assert error_fields(create(api, calendar, colour="red")) == ["colour"]
    assert "title" in error_fields(create(api, calendar, title="x" * 5000))
    assert "description" in error_fields(create(api, calendar, description="x" * 100_000))
    assert "email" in error_fields(create(api, calendar, attendees=[{"name": "nobody"}]))
    assert "attendees" in error_fields(create(api, calendar, attendees=["not-an-address"]))
    assert error_fields(create(api, calendar, title="nul\x00byte")) == ["title"]
    event = created(api, calendar)
    patch = api.patch(f"/events/{event['id']}", json={"title": None}, headers={"If-Match": event["etag"]})
    assert error_fields(patch) == ["title"]
    patch = api.patch(f"/events/{event['id']}", json={"end": "2026-12-01T08:00:00Z"},
                      headers={"If-Match": event["etag"]})
    assert error_fields(patch) == ["end"]
    assert row_count(engine, events) == 1, "no partial writes"


def test_malformed_bodies_are_422(api: httpx.Client, calendar: str) -> None:
    json_header = {"Content-Type": "application/json"}
    for raw in (b"{not json", b"", b"[]", b"null", b'"text"', b'{"title": "unterminated',
                b'{"calendar_id": "x", "title": "lone \\ud800 surrogate", "start": "a", "end": "b"}',
                b'{"title": NaN, "start": Infinity, "end": -Infinity, "all_day": 1e999}',
                b'{"\\udc00": [NaN]}'):
        response = api.post("/events", content=raw, headers=json_header)
        assert response.status_code == 422, (raw, response.status_code, response.text)
    lone = (b'{"calendar_id": "%s", "title": "lone \\udc00", "start": "2026-12-01T09:00:00Z", '
            b'"end": "2026-12-01T10:00:00Z"}' % calendar.encode())
    assert error_fields(api.post("/events", content=lone, headers=json_header)) == ["title"]


def test_time_zone_naming_a_folder_is_a_422(api: httpx.Client, calendar: str) -> None:
    """Engine bug: engine/local.py `_zone` lets ZoneInfo's IsADirectoryError ('America', 'Etc') escape."""
    assert error_fields(create(api, calendar, time_zone="America")) == ["time_zone"]


def test_instant_outside_the_utc_range_is_a_422(api: httpx.Client, calendar: str) -> None:
    """Engine bug: engine/local.py `_time` lets OverflowError escape when converting to UTC."""
    response = create(api, calendar, start="0001-01-01T00:00:00+05:00", end="0001-01-01T01:00:00+05:00")
    assert error_fields(response) == ["start"]


def test_years_before_1000_are_stored_or_rejected(api: httpx.Client, calendar: str) -> None:
    """Engine bug: model.canonical_instant formats with strftime("%Y"), which glibc does not pad to four
    digits, so engine/local.py `_time` returns "999-12-31T09:00:00Z" and event_store.event_columns fails to
    parse it again (ValueError, a 500); unpadded years would also sort wrongly as range keys."""
    response = create(api, calendar, start="0999-12-31T09:00:00Z", end="0999-12-31T10:00:00Z")
    assert response.status_code in (201, 422), response.text
    if response.status_code == 201:
        assert response.json()["start"] == "0999-12-31T09:00:00Z"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["calendar_id", "title", "start", "end", "all_day", "time_zone", "description", "location", "attendees",
          "status"]
TIMES = st.one_of(
    st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
    st.dates().map(str),
    st.sampled_from(["2026-12-01T09:00:00Z", "2026-12-01T10:00:00Z", "2026-12-01"]),
)


def bodies(calendar_id: str) -> st.SearchStrategy[dict[str, Any]]:
    """Random JSON objects: a valid event with up to three fields replaced by plausible or arbitrary
    values (so the engine's own validation is reached, and some bodies are created), or anything at all."""
    plausible: dict[str, st.SearchStrategy[Any]] = {
        "calendar_id": st.just(calendar_id) | st.text(max_size=40),
        "title": st.text(max_size=50),
        "start": TIMES,
        "end": TIMES,
        "all_day": st.booleans(),
        "time_zone": st.sampled_from(["UTC", "Europe/Paris", "Nowhere/Special"]) | st.text(max_size=70),
        "attendees": st.lists(st.emails() | st.from_type(dict) | JSON_VALUES, max_size=3),
        "description": st.text(),
        "location": st.text(max_size=30),
        "status": st.sampled_from(["confirmed", "tentative", "cancelled"]),
        "colour": JSON_VALUES,
    }
    valid = {"calendar_id": calendar_id, "title": "Fuzz", **SLOT}
    replaced = st.lists(st.sampled_from(sorted(plausible)), unique=True, max_size=3).flatmap(
        lambda names: st.fixed_dictionaries({name: plausible[name] | JSON_VALUES for name in names}))
    anything = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=12), JSON_VALUES, max_size=8)
    near_valid = replaced.map(lambda fields: {**valid, **fields})
    return st.one_of(near_valid, near_valid, near_valid, anything)


def test_random_bodies_never_get_a_5xx(api: httpx.Client, calendar: str) -> None:
    @settings(max_examples=50, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=bodies(calendar))
    def post(body: dict[str, Any]) -> None:
        raw = json.dumps(body)  # Python's encoder, so NaN and Infinity are sent as Python would
        response = api.post("/events", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code < 500, (body, response.status_code, response.text)
        assert response.status_code in (201, 422), (body, response.status_code, response.text)

    post()


def test_openapi_lists_the_routes(service_url: str) -> None:
    spec = httpx.get(f"{service_url}/openapi.json").raise_for_status().json()
    paths = spec["paths"]
    expected = {
        "/api/v1/status": {"get"},
        "/api/v1/calendars": {"get"},
        "/api/v1/events": {"get", "post"},
        "/api/v1/events/{event_id}": {"get", "patch", "put", "delete"},
        "/api/v1/conflicts": {"get"},
        "/api/v1/conflicts/{conflict_id}/resolve": {"post"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    assert "EventCreate" in spec["components"]["schemas"] and "EventOut" in spec["components"]["schemas"]
    patch_params = {p["name"] for p in paths["/api/v1/events/{event_id}"]["patch"]["parameters"]}
    assert "if-match" in patch_params


# --- conflicts ----------------------------------------------------------------------------------


def make_conflicts(engine: Engine, alice: GoogleApi, google_url: str, titles: list[str]) -> dict[str, str]:
    """Each title an event edited locally (engine write path) and remotely, then one sync: title -> event id."""
    calendar = alice.primary_id()
    remote = {title: alice.insert(calendar, title)["id"] for title in titles}
    binding = bind(engine, google_url, "alice", calendar)
    sync_once(engine)
    linked = local_events(engine, binding)
    ids = {title: linked[remote_id]["id"] for title, remote_id in remote.items()}
    for title, event_id in ids.items():
        local.update_event(engine, event_id, {"title": f"{title} (local)"}, None)
        alice.patch(calendar, remote[title], summary=f"{title} (remote)")
    sync_once(engine)
    return ids


def conflict_for(api: httpx.Client, event_id: str, status: str = "open") -> dict[str, Any]:
    response = api.get("/conflicts", params={"status": status})
    assert response.status_code == 200, response.text
    conflicts: list[dict[str, Any]] = [c for c in response.json()["conflicts"] if c["event_id"] == event_id]
    assert len(conflicts) == 1, conflicts
    return conflicts[0]


def test_conflicts_are_listed_side_by_side(
    engine: Engine, api: httpx.Client, alice: GoogleApi, google_url: str
) -> None:
    ids = make_conflicts(engine, alice, google_url, ["Budget"])
    conflict = conflict_for(api, ids["Budget"])
    assert conflict["status"] == "open" and conflict["kind"] == "edit-edit"
    assert conflict["base"]["title"] == "Budget"
    assert conflict["local"]["title"] == "Budget (local)" and conflict["remote"]["title"] == "Budget (remote)"
    assert conflict["differing_fields"] == ["title"] and conflict["clashing_fields"] == ["title"]
    event = api.get(f"/events/{ids['Budget']}").json()
    assert [s["state"] for s in event["sync"]] == ["conflict"]
    assert api.get("/conflicts", params={"status": "resolved"}).json()["conflicts"] == []
    assert error_fields(api.get("/conflicts", params={"status": "maybe"})) == ["status"]


def test_resolve_keep_local_and_keep_remote(
    engine: Engine, api: httpx.Client, alice: GoogleApi, google_url: str
) -> None:
    ids = make_conflicts(engine, alice, google_url, ["Budget", "Offsite"])
    keep_local = conflict_for(api, ids["Budget"])
    keep_remote = conflict_for(api, ids["Offsite"])

    response = api.post(f"/conflicts/{keep_local['id']}/resolve", json={"keep": "local"})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == keep_local["id"] and response.json()["status"] != "open"
    event = api.get(f"/events/{ids['Budget']}").json()
    assert event["title"] == "Budget (local)"
    assert all(s["state"] != "conflict" for s in event["sync"])

    response = api.post(f"/conflicts/{keep_remote['id']}/resolve", json={"keep": "remote"})
    assert response.status_code == 200, response.text
    event = api.get(f"/events/{ids['Offsite']}").json()
    assert event["title"] == "Offsite (remote)"
    assert all(s["state"] != "conflict" for s in event["sync"])

    assert api.get("/conflicts").json()["conflicts"] == []
    assert conflict_for(api, ids["Budget"], status="all")["status"] != "open"
    again = api.post(f"/conflicts/{keep_local['id']}/resolve", json={"keep": "remote"})
    assert again.status_code == 409, again.text
    assert api.get(f"/events/{ids['Budget']}").json()["title"] == "Budget (local)", "a 409 changes nothing"


def test_a_resolution_decided_on_an_older_remote_side_is_refused_and_offered_again(
    engine: Engine, api: httpx.Client, alice: GoogleApi, google_url: str
) -> None:
    ids = make_conflicts(engine, alice, google_url, ["Budget"])
    seen = conflict_for(api, ids["Budget"])
    assert seen["remote_etag"]
    remote_id = next(link["remote_id"] for link in local_events_of(engine, ids["Budget"]))
    alice.patch(alice.primary_id(), remote_id, summary="Budget (remote, later)")
    sync_once(engine)  # the later remote edit reaches the open conflict
    refused = api.post(f"/conflicts/{seen['id']}/resolve", json={"keep": "remote", "remote_etag": seen["remote_etag"]})
    assert refused.status_code == 409, refused.text
    offered = refused.json()["detail"]["conflict"]
    assert offered["status"] == "open" and offered["remote"]["title"] == "Budget (remote, later)"
    assert api.get(f"/events/{ids['Budget']}").json()["title"] == "Budget (local)", "nothing applied"
    response = api.post(f"/conflicts/{seen['id']}/resolve",
                        json={"keep": "remote", "remote_etag": offered["remote_etag"]})
    assert response.status_code == 200, response.text
    assert api.get(f"/events/{ids['Budget']}").json()["title"] == "Budget (remote, later)"


def local_events_of(engine: Engine, event_id: str) -> list[dict[str, Any]]:
    with engine.begin() as conn:
        (row,) = event_store.get_events(conn, [event_id])
    return list(row["links"])


def test_resolve_with_merged_event_and_bad_requests(
    engine: Engine, api: httpx.Client, alice: GoogleApi, google_url: str
) -> None:
    ids = make_conflicts(engine, alice, google_url, ["Review"])
    conflict = conflict_for(api, ids["Review"])
    resolve = f"/conflicts/{conflict['id']}/resolve"
    assert api.post(resolve, json={}).status_code == 422
    assert api.post(resolve, json={"keep": "local", "merged": {"title": "x"}}).status_code == 422
    assert error_fields(api.post(resolve, json={"keep": "both"})) == ["keep"]
    assert api.post(f"/conflicts/{'0' * 32}/resolve", json={"keep": "local"}).status_code == 404
    bad = api.post(resolve, json={"merged": {"title": "Review (merged)", "end": "1999-01-01T00:00:00Z"}})
    assert error_fields(bad) == ["end"]
    assert conflict_for(api, ids["Review"])["status"] == "open", "a bad merge leaves the conflict open"

    response = api.post(resolve, json={"merged": {"title": "Review (merged)"}})
    assert response.status_code == 200, response.text
    assert api.get(f"/events/{ids['Review']}").json()["title"] == "Review (merged)"


def test_concurrent_resolves_settle_a_conflict_once(
    engine: Engine, service_url: str, api: httpx.Client, alice: GoogleApi, google_url: str
) -> None:
    """Two people deciding at once: one decision is applied, the other is told 409."""
    ids = make_conflicts(engine, alice, google_url, [f"Race {n}" for n in range(10)])
    for title, event_id in ids.items():
        url = f"{service_url}/api/v1/conflicts/{conflict_for(api, event_id)['id']}/resolve"
        answers = at_once([partial(httpx.post, url, json={"keep": keep}, headers=api.headers, timeout=30)
                           for keep in ("local", "remote") * 2])
        codes = sorted(r.status_code for r in answers)
        assert codes == [200, 409, 409, 409], (title, codes, [r.text for r in answers])
