"""Behaviour of the Zoom emulator over real HTTP: OAuth, meetings CRUD, paging, errors, faults."""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from calsync.emulators.server import RunningServer, serve_in_thread
from calsync.emulators.zoom import ZoomEmulator, create_app

ACCOUNT, CLIENT, SECRET = "acct-1", "client-1", "secret-1"


@pytest.fixture(scope="module")
def zoom_emulator_server() -> Iterator[RunningServer]:
    server = serve_in_thread(create_app(ZoomEmulator(ACCOUNT, CLIENT, SECRET)))
    yield server
    server.stop()


@pytest.fixture()
def zoom_base(zoom_emulator_server: RunningServer) -> str:
    httpx.post(f"{zoom_emulator_server.url}/emulator/reset").raise_for_status()
    return zoom_emulator_server.url


def get_token(base: str, client: str = CLIENT, secret: str = SECRET, account: str = ACCOUNT,
              grant: str = "account_credentials") -> httpx.Response:
    return httpx.post(f"{base}/oauth/token", params={"grant_type": grant, "account_id": account},
                      auth=(client, secret))


@pytest.fixture()
def api(zoom_base: str) -> Iterator[httpx.Client]:
    token = get_token(zoom_base).raise_for_status().json()["access_token"]
    with httpx.Client(base_url=f"{zoom_base}/v2", headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture()
def admin(zoom_base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{zoom_base}/emulator") as client:
        yield client


def new_meeting(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"topic": "Planning", "type": 2, "start_time": "2026-12-01T09:00:00Z", "duration": 45,
            "timezone": "Europe/Berlin", "agenda": "Quarterly plan", **fields}
    r = api.post("/users/me/meetings", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def zoom_error(r: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and isinstance(body["message"], str) and body["message"]
    return body


# ------------------------------------------------------------------------------------------------
# OAuth


def test_token_shape(zoom_base: str) -> None:
    r = get_token(zoom_base)
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert body["access_token"] and "meeting:write:meeting:admin" in body["scope"]


@pytest.mark.parametrize(("kwargs", "status", "error"), [
    ({"secret": "wrong"}, 401, "invalid_client"),
    ({"client": "someone-else"}, 401, "invalid_client"),
    ({"grant": "client_credentials"}, 400, "unsupported_grant_type"),
    ({"grant": ""}, 400, "invalid_request"),
    ({"account": "other-account"}, 400, "invalid_request"),
])
def test_token_rejections_in_zoom_shape(zoom_base: str, kwargs: dict[str, str], status: int, error: str) -> None:
    r = get_token(zoom_base, **kwargs)
    assert r.status_code == status
    body = r.json()
    assert body["error"] == error and body["reason"]


def test_token_without_basic_auth_is_rejected(zoom_base: str) -> None:
    r = httpx.post(f"{zoom_base}/oauth/token", params={"grant_type": "account_credentials", "account_id": ACCOUNT})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = httpx.post(f"{zoom_base}/oauth/token", params={"grant_type": "account_credentials", "account_id": ACCOUNT},
                   headers={"Authorization": "Basic !!!not-base64"})
    assert r.status_code == 401
    assert httpx.get(f"{zoom_base}/oauth/token").status_code == 405


def test_token_accepts_form_body(zoom_base: str) -> None:
    r = httpx.post(f"{zoom_base}/oauth/token", data={"grant_type": "account_credentials", "account_id": ACCOUNT},
                   auth=(CLIENT, SECRET))
    assert r.status_code == 200, r.text


def test_unconfigured_emulator_accepts_any_non_empty_credentials() -> None:
    server = serve_in_thread(create_app(ZoomEmulator()))
    try:
        assert get_token(server.url, "anyone", "anything", "any-account").status_code == 200
        assert get_token(server.url, "anyone", "", "any-account").status_code == 401
    finally:
        server.stop()


def test_api_requires_a_valid_token(zoom_base: str) -> None:
    zoom_error(httpx.get(f"{zoom_base}/v2/users/me/meetings"), 401, 124)
    zoom_error(httpx.get(f"{zoom_base}/v2/users/me/meetings", headers={"Authorization": "Bearer nope"}), 401, 124)


def test_expire_tokens_makes_api_answer_124(api: httpx.Client, admin: httpx.Client, zoom_base: str) -> None:
    assert api.get("/users/me/meetings").status_code == 200
    assert admin.post("/expire-tokens").json()["expired"] == 1
    zoom_error(api.get("/users/me/meetings"), 401, 124)
    fresh = get_token(zoom_base).json()["access_token"]
    assert api.get("/users/me/meetings", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200


def test_tokens_expire_after_their_lifetime(zoom_base: str, admin: httpx.Client) -> None:
    assert admin.post("/config", json={"token_lifetime": 1}).json() == {"token_lifetime": 1}
    body = get_token(zoom_base).json()
    assert body["expires_in"] == 1
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert httpx.get(f"{zoom_base}/v2/users/me/meetings", headers=headers).status_code == 200
    time.sleep(1.1)
    zoom_error(httpx.get(f"{zoom_base}/v2/users/me/meetings", headers=headers), 401, 124)
    assert admin.post("/config", json={"token_lifetime": 0}).status_code == 400
    assert admin.post("/config", json={"other": 1}).status_code == 400


# ------------------------------------------------------------------------------------------------
# meetings


def test_create_returns_the_meeting(api: httpx.Client) -> None:
    m = new_meeting(api, settings={"meeting_invitees": [{"email": "ann@example.org"}]})
    assert isinstance(m["id"], int) and 10**10 <= m["id"] < 10**11
    assert re.fullmatch(rf"https://zoom\.example/j/{m['id']}\?pwd=\w+", m["join_url"])
    assert m["start_url"].startswith(f"https://zoom.example/s/{m['id']}")
    assert (m["topic"], m["type"], m["start_time"], m["duration"], m["timezone"], m["agenda"]) == (
        "Planning", 2, "2026-12-01T09:00:00Z", 45, "Europe/Berlin", "Quarterly plan")
    assert m["uuid"] and m["host_id"] and m["password"] and m["created_at"].endswith("Z")
    assert m["settings"]["meeting_invitees"] == [{"email": "ann@example.org"}]
    assert api.get(f"/meetings/{m['id']}").json() == m


def test_local_start_time_is_read_in_the_meeting_time_zone(api: httpx.Client) -> None:
    m = new_meeting(api, start_time="2026-07-01T09:00:00", timezone="America/New_York")
    assert m["start_time"] == "2026-07-01T13:00:00Z"
    m = new_meeting(api, start_time="2026-07-01T09:00:00+02:00")
    assert m["start_time"] == "2026-07-01T07:00:00Z"


def test_patch_updates_only_given_fields_and_answers_204(api: httpx.Client) -> None:
    m = new_meeting(api, settings={"waiting_room": False})
    r = api.patch(f"/meetings/{m['id']}", json={
        "topic": "Planning (moved)", "start_time": "2026-12-02T10:30:00Z", "duration": 90,
        "timezone": "Asia/Tokyo", "agenda": "New agenda", "settings": {"meeting_invitees": [{"email": "b@x.org"}]}})
    assert r.status_code == 204 and r.content == b""
    got = api.get(f"/meetings/{m['id']}").json()
    assert (got["topic"], got["start_time"], got["duration"], got["timezone"], got["agenda"]) == (
        "Planning (moved)", "2026-12-02T10:30:00Z", 90, "Asia/Tokyo", "New agenda")
    assert got["settings"]["waiting_room"] is False  # settings merge key by key
    assert got["settings"]["meeting_invitees"] == [{"email": "b@x.org"}]
    assert (got["join_url"], got["password"], got["created_at"]) == (m["join_url"], m["password"], m["created_at"])
    assert api.patch(f"/meetings/{m['id']}", json={"topic": "Only topic"}).status_code == 204
    again = api.get(f"/meetings/{m['id']}").json()
    assert again["topic"] == "Only topic" and again["agenda"] == "New agenda"


def test_delete_then_everything_answers_3001(api: httpx.Client) -> None:
    m = new_meeting(api)
    assert api.delete(f"/meetings/{m['id']}").status_code == 204
    body = zoom_error(api.get(f"/meetings/{m['id']}"), 404, 3001)
    assert body["message"] == f"Meeting does not exist: {m['id']}."
    zoom_error(api.patch(f"/meetings/{m['id']}", json={"topic": "x"}), 404, 3001)
    zoom_error(api.delete(f"/meetings/{m['id']}"), 404, 3001)
    zoom_error(api.get("/meetings/12345678901"), 404, 3001)
    zoom_error(api.get("/meetings/not-a-number"), 404, 3001)
    zoom_error(api.get("/meetings/²"), 404, 3001)


@pytest.mark.parametrize(("body", "field"), [
    ({"duration": -5}, "duration"),
    ({"duration": "60"}, "duration"),
    ({"duration": True}, "duration"),
    ({"start_time": "tomorrow at nine"}, "start_time"),
    ({"start_time": "2026-13-45T09:00:00Z"}, "start_time"),
    ({"start_time": "0001-01-01T00:00:00", "timezone": "Pacific/Kiritimati"}, "start_time"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"topic": "x" * 201}, "topic"),
    ({"topic": 7}, "topic"),
    ({"agenda": "x" * 2001}, "agenda"),
    ({"type": 3}, "type"),
    ({"password": "far-too-long-password"}, "password"),
    ({"settings": []}, "settings"),
    ({"settings": {"meeting_invitees": [{"email": "not-an-address"}]}}, "settings.meeting_invitees"),
])
def test_validation_errors_are_400_code_300(api: httpx.Client, body: dict[str, Any], field: str) -> None:
    base = {"topic": "T", "type": 2, "start_time": "2026-12-01T09:00:00Z", "duration": 30}
    err = zoom_error(api.post("/users/me/meetings", json={**base, **body}), 400, 300)
    assert err["errors"][0]["field"] == field
    m = new_meeting(api)
    zoom_error(api.patch(f"/meetings/{m['id']}", json=body), 400, 300)
    assert api.get(f"/meetings/{m['id']}").json() == m  # a rejected patch changes nothing


def test_malformed_bodies_are_400_not_500(api: httpx.Client) -> None:
    zoom_error(api.post("/users/me/meetings", content=b"{not json", headers={"Content-Type": "application/json"}),
               400, 300)
    zoom_error(api.post("/users/me/meetings", json=[1, 2]), 400, 300)
    m = new_meeting(api)
    zoom_error(api.patch(f"/meetings/{m['id']}", content=b"\xff\xfe", headers={"Content-Type": "application/json"}),
               400, 300)
    zoom_error(api.post("/users/nobody/meetings", json={}), 404, 1001)
    zoom_error(api.put(f"/meetings/{m['id']}", json={}), 405, 405)
    zoom_error(api.get("/no/such/endpoint"), 404, 404)


def test_create_defaults(api: httpx.Client) -> None:
    r = api.post("/users/me/meetings", json={})
    assert r.status_code == 201
    m = r.json()
    assert (m["topic"], m["type"], m["duration"], m["timezone"], m["agenda"]) == ("Zoom Meeting", 2, 60, "UTC", "")


def test_list_pages_with_tokens(api: httpx.Client) -> None:
    made = [new_meeting(api, topic=f"M{i}")["id"] for i in range(7)]
    seen: list[int] = []
    params: dict[str, Any] = {"page_size": 3}
    pages = 0
    while True:
        body = api.get("/users/me/meetings", params=params).json()
        pages += 1
        assert body["page_size"] == 3 and body["total_records"] == (7 if pages == 1 else 6)
        assert all(set(m) >= {"id", "topic", "start_time", "duration", "timezone", "agenda", "join_url"}
                   for m in body["meetings"])
        seen += [m["id"] for m in body["meetings"]]
        if pages == 1:
            api.delete(f"/meetings/{made[0]}")  # deleting an already-listed meeting skips nothing
        if not body["next_page_token"]:
            break
        params["next_page_token"] = body["next_page_token"]
    assert pages == 3 and seen == made


def test_list_page_size_default_cap_and_errors(api: httpx.Client) -> None:
    assert api.get("/users/me/meetings").json()["page_size"] == 30
    assert api.get("/users/me/meetings", params={"page_size": 1000}).json()["page_size"] == 300
    zoom_error(api.get("/users/me/meetings", params={"page_size": "ten"}), 400, 300)
    zoom_error(api.get("/users/me/meetings", params={"page_size": 0}), 400, 300)
    zoom_error(api.get("/users/me/meetings", params={"next_page_token": "garbage!"}), 400, 300)
    zoom_error(api.get("/users/me/meetings", params={"type": "weird"}), 400, 300)


def test_list_filters_upcoming_and_previous(api: httpx.Client) -> None:
    new_meeting(api, start_time="2020-01-01T09:00:00Z")
    future = new_meeting(api, start_time="2030-01-01T09:00:00Z")
    upcoming = api.get("/users/me/meetings", params={"type": "upcoming"}).json()
    assert [m["id"] for m in upcoming["meetings"]] == [future["id"]]
    assert api.get("/users/me/meetings", params={"type": "previous_meetings"}).json()["total_records"] == 1
    assert api.get("/users/me/meetings", params={"type": "scheduled"}).json()["total_records"] == 2


def test_concurrent_creates_get_distinct_ids(api: httpx.Client, zoom_base: str) -> None:
    token = api.headers["Authorization"]
    ids: list[int] = []

    def worker() -> None:
        with httpx.Client(base_url=f"{zoom_base}/v2", headers={"Authorization": token}) as client:
            for _ in range(5):
                ids.append(client.post("/users/me/meetings", json={"topic": "c"}).json()["id"])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 20
    assert api.get("/users/me/meetings").json()["total_records"] == 20


# ------------------------------------------------------------------------------------------------
# faults, request log, admin


def test_fault_burst_then_success(api: httpx.Client, admin: httpx.Client) -> None:
    assert admin.post("/faults", json={"status": 503, "count": 2}).status_code == 201
    zoom_error(api.get("/users/me/meetings"), 503, 503)
    zoom_error(api.get("/users/me/meetings"), 503, 503)
    assert api.get("/users/me/meetings").status_code == 200


def test_fault_429_has_retry_after_and_zoom_body(api: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/faults", json={"status": 429, "retry_after": 7, "count": 1}).raise_for_status()
    r = api.get("/users/me/meetings")
    zoom_error(r, 429, 429)
    assert r.headers["Retry-After"] == "7"


def test_fault_on_token_endpoint_uses_oauth_shape(zoom_base: str, admin: httpx.Client) -> None:
    admin.post("/faults", json={"status": 503, "count": 1, "path_prefix": "/oauth"}).raise_for_status()
    r = get_token(zoom_base)
    assert r.status_code == 503 and set(r.json()) == {"reason", "error"}
    assert get_token(zoom_base).status_code == 200


def test_after_commit_fault_performs_the_operation(api: httpx.Client, admin: httpx.Client) -> None:
    rule = admin.post("/faults", json={"status": 503, "count": 1, "after_commit": True, "methods": ["POST"]}).json()
    assert rule["after_commit"] is True
    zoom_error(api.post("/users/me/meetings", json={"topic": "lost answer"}), 503, 503)
    listed = api.get("/users/me/meetings").json()["meetings"]
    assert [m["topic"] for m in listed] == ["lost answer"]
    assert any(f.get("after_commit") for f in admin.get("/faults").json()["faults"])
    assert admin.delete("/faults").status_code == 204
    assert admin.get("/faults").json()["faults"] == []


@pytest.mark.parametrize("spec", [
    {"status": "boom"}, {"after_commit": "yes", "status": 503}, {"nonsense": 1}, {}, [1],
])
def test_bad_fault_specs_are_400(admin: httpx.Client, spec: Any) -> None:
    r = admin.post("/faults", json=spec)
    assert r.status_code == 400 and r.json()["error"]


def test_request_log_records_api_calls_not_admin(api: httpx.Client, admin: httpx.Client, zoom_base: str) -> None:
    m = new_meeting(api)
    api.get(f"/meetings/{m['id']}")
    admin.get("/faults")
    entries = admin.get("/requests").json()["requests"]
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("POST", "/oauth/token", 200), ("POST", "/v2/users/me/meetings", 201),
        ("GET", f"/v2/meetings/{m['id']}", 200)]
    assert entries[1]["user"] == CLIENT
    assert admin.delete("/requests").status_code == 204
    assert admin.get("/requests").json()["requests"] == []


def test_reset_forgets_meetings_and_tokens(api: httpx.Client, admin: httpx.Client) -> None:
    new_meeting(api)
    admin.post("/reset").raise_for_status()
    zoom_error(api.get("/users/me/meetings"), 401, 124)
