"""Users see only their own rows, on every route of the OpenAPI document (so a new route is covered
the day it is added): two users, each with a Google account on the emulator, a calendar, events and
a conflict. With A's key, every operation on B's objects answers as for objects that do not exist;
lists never show B's; without a key everything but the health probe is 401; a read key cannot write."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from calsync.emulators.server import serve_in_thread
from calsync.engine import local, setup
from calsync.engine.sync import sync_once
from calsync.service.app import create_app
from calsync.hooks import signing
from calsync.store import hooks as hook_store
from calsync.store import journal, users
from calsync.store.db import open_engine
from tests.helpers import GoogleApi, local_events, migrated_sqlite

PUBLIC = {("get", "/api/v1/health")}
READS = {"get", "head", "options"}
SLOT = {"start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z"}


@dataclass
class Tenant:
    user_id: str
    key: str
    read_key: str
    calendar_id: str
    event_id: str
    conflict_id: str
    title: str
    account_id: str
    webhook_id: str
    delivery_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def _tenant(engine: Engine, google_url: str, name: str) -> Tenant:
    """A user with a Google account (the emulator's user `name`), its primary calendar bound, two
    events, one of them in conflict (edited here and there before a sync)."""
    with engine.begin() as conn:
        user_id = users.create_user(conn, name)
        key = users.create_api_key(conn, user_id, "write")[1]
        read_key = users.create_api_key(conn, user_id, "read")[1]
    google = GoogleApi(google_url, name)
    remote_calendar = google.primary_id()
    title = f"{name}'s secret meeting"
    remote = google.insert(remote_calendar, title)["id"]
    google.insert(remote_calendar, f"{name}'s other meeting")
    with engine.begin() as conn:  # made in the store: the API would refuse this loopback URL
        webhook_id = hook_store.create_subscription(
            conn, user_id, f"https://127.0.0.1/{name}-secret-hook", ["created"], None, signing.new_secret()
        )["id"]
    account = setup.add_account(engine, "google", name, google_url, {"token": name}, owner=user_id)
    bound = setup.bind_calendar(engine, account, remote_calendar, setup.NewCalendar(name), owner=user_id)
    sync_once(engine)
    event_id = local_events(engine, bound.binding_id)[remote]["id"]
    local.update_event(engine, event_id, {"title": f"{title} (local)"}, None)
    google.patch(remote_calendar, remote, summary=f"{title} (remote)")
    sync_once(engine)
    with engine.begin() as conn:
        from calsync.store import conflicts as conflict_store

        (conflict,) = conflict_store.list_conflicts(conn, user_id=user_id)
    with engine.begin() as conn:
        journal.sequence(conn)
    with engine.begin() as conn:
        hook_store.fan_out(conn, webhook_id)
        delivery_id = str(hook_store.list_deliveries(conn, webhook_id)[0]["id"])
    return Tenant(
        user_id, key, read_key, bound.calendar_id, event_id, conflict["id"], title, account, webhook_id, delivery_id
    )


ADMIN_KEY: dict[str, str] = {}


@pytest.fixture()
def world(tmp_path: Path, google_url: str) -> Iterator[tuple[str, dict[str, Any], Tenant, Tenant]]:
    """The service, its OpenAPI document, and the users A and B (and an admin, whose key is ADMIN_KEY["key"])."""
    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    with engine.begin() as conn:
        ADMIN_KEY["key"] = users.create_api_key(conn, users.create_user(conn, "ops", is_admin=True), "admin")[1]
    a, b = _tenant(engine, google_url, "alice"), _tenant(engine, google_url, "bob")
    app = create_app(engine, adapters={"zoom": _NoMeetings()})
    server = serve_in_thread(app)
    yield server.url, app.openapi(), a, b
    server.stop()
    engine.dispose()


class _NoMeetings:
    """A conference adapter that must never be reached (every request here is refused before it)."""

    solution_name = "zoom"

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the conference adapter was called ({name}) for another user's event")


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete", "head", "options"}
    ]


def _request(
    base: str, method: str, path: str, victim: Tenant, headers: dict[str, str], body: dict[str, Any] | None = None
) -> httpx.Response:
    url = base + _path(path, victim)
    headers = {**headers, "If-Match": "*"}  # a precondition is no reason to answer anything but 404
    return httpx.request(method.upper(), url, headers=headers, json=body, timeout=30)


class Ghost:
    """Ids of nothing at all, in a path's every place."""

    def __init__(self, missing_id: str) -> None:
        self.event_id = self.conflict_id = self.account_id = self.webhook_id = self.delivery_id = missing_id


def _path(path: str, ids: Tenant | Ghost) -> str:
    return path.format(
        event_id=ids.event_id,
        conflict_id=ids.conflict_id,
        account_id=ids.account_id,
        webhook_id=ids.webhook_id,
        delivery_id=ids.delivery_id,
    )


# What each operation is sent, with A's key, naming B's objects; and what it must answer. Lists must
# answer 200 without anything of B's in them. A new operation fails the test until it has a case here.
EVENT_BODY = {"title": "taken over", **SLOT}
CASES: dict[tuple[str, str], tuple[dict[str, Any] | None, int]] = {
    ("get", "/api/v1/status"): (None, 200),
    ("get", "/api/v1/calendars"): (None, 200),
    ("get", "/api/v1/events"): (None, 200),
    ("get", "/api/v1/conflicts"): (None, 200),
    ("get", "/api/v1/conference-providers"): (None, 200),
    ("get", "/api/v1/oauth/providers"): (None, 200),
    ("get", "/api/v1/session"): (None, 200),  # the caller itself, never another user
    ("get", "/api/v1/changes"): (None, 200),  # the change feed: the caller's own changes only
    ("get", "/api/v1/changes/head"): (None, 200),  # a position, nothing of anyone's
    ("get", "/api/v1/events/{event_id}"): (None, 404),
    ("patch", "/api/v1/events/{event_id}"): ({"title": "taken over"}, 404),
    ("put", "/api/v1/events/{event_id}"): (EVENT_BODY, 404),
    ("delete", "/api/v1/events/{event_id}"): (None, 404),
    ("post", "/api/v1/events/{event_id}/conference"): ({"provider": "zoom"}, 404),
    ("delete", "/api/v1/events/{event_id}/conference"): (None, 404),
    ("post", "/api/v1/conflicts/{conflict_id}/resolve"): ({"keep": "local"}, 404),
    ("get", "/api/v1/events/{event_id}/history"): (None, 404),
    ("post", "/api/v1/events/{event_id}/restore"): ({"version": 1}, 404),
    ("post", "/api/v1/accounts/{account_id}/bindings"): ({"all": True}, 404),
    ("get", "/api/v1/webhooks"): (None, 200),
    # subscribing to B's calendar: refused like a calendar that does not exist (422 on the field)
    ("post", "/api/v1/webhooks"): ({"url": "https://8.8.8.8/hook", "events": ["created"]}, 422),
    ("get", "/api/v1/webhooks/{webhook_id}"): (None, 404),
    ("delete", "/api/v1/webhooks/{webhook_id}"): (None, 404),
    ("post", "/api/v1/webhooks/{webhook_id}/enable"): (None, 404),
    ("get", "/api/v1/webhooks/{webhook_id}/deliveries"): (None, 404),
    ("post", "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): (None, 404),
    # creating an event in B's calendar: refused exactly like a calendar that does not exist (422 on the field)
    ("post", "/api/v1/events"): (None, 422),
}


def test_every_operation_keeps_to_the_callers_rows(world: tuple[str, dict[str, Any], Tenant, Tenant]) -> None:
    base, spec, a, b = world
    operations = [(m, p) for m, p, _ in _operations(spec) if (m, p) not in PUBLIC]
    assert operations, "the OpenAPI document lists no operation"
    missing = sorted(set(operations) - set(CASES))
    assert not missing, f"operations without an isolation case: {missing}"
    for method, path in operations:
        body, expected = CASES[(method, path)]
        if (method, path) == ("post", "/api/v1/events"):
            body = {"calendar_id": b.calendar_id, **EVENT_BODY}
        if (method, path) == ("post", "/api/v1/webhooks"):
            body = {**(body or {}), "calendar_id": b.calendar_id}
        response = _request(base, method, path, b, a.headers, body)
        assert response.status_code == expected, (method, path, response.status_code, response.text)
        text = response.text
        for secret in (
            b.event_id,
            b.conflict_id,
            b.calendar_id,
            b.account_id,
            b.title,
            "bob",
            b.webhook_id,
            "bob-secret-hook",
        ):
            if expected == 404 or expected == 422:
                # the refusal may echo the id that was asked for, but nothing more of B's
                if secret in (b.event_id, b.conflict_id, b.calendar_id, b.account_id, b.webhook_id):
                    continue
            assert secret not in text, (method, path, secret, text[:500])
        if expected == 404:  # exactly like a row that does not exist
            missing_id = "0" * 32
            ghost = httpx.request(
                method.upper(),
                base + _path(path, Ghost(missing_id)),
                headers={**a.headers, "If-Match": "*"},
                json=body,
                timeout=30,
            )
            assert ghost.status_code == 404
            assert ghost.json() == response.json() | {"detail": ghost.json()["detail"]}
            asked = (
                b.event_id
                if "event" in path
                else b.account_id
                if "account" in path
                else b.webhook_id
                if "webhook" in path
                else b.conflict_id
            )
            assert ghost.json()["detail"].replace(missing_id, "X") == response.json()["detail"].replace(asked, "X")
    # A still sees A's own (the filters are not simply empty)
    events = httpx.get(f"{base}/api/v1/events", headers=a.headers).json()["events"]
    assert a.event_id in {e["id"] for e in events} and b.event_id not in {e["id"] for e in events}
    conflicts = httpx.get(f"{base}/api/v1/conflicts", headers=a.headers).json()["conflicts"]
    assert [c["id"] for c in conflicts] == [a.conflict_id]
    assert httpx.get(f"{base}/api/v1/status", headers=a.headers).json()["open_conflicts"] == 1
    # and B's rows came through A's attempts untouched
    own = httpx.get(f"{base}/api/v1/events/{b.event_id}", headers=b.headers)
    assert own.status_code == 200 and own.json()["title"] == f"{b.title} (local)" and own.json()["version"] == 2
    assert [c["id"] for c in httpx.get(f"{base}/api/v1/conflicts", headers=b.headers).json()["conflicts"]] == [
        b.conflict_id
    ]


def test_without_a_key_every_operation_but_the_health_probe_is_401(
    world: tuple[str, dict[str, Any], Tenant, Tenant],
) -> None:
    base, spec, a, b = world
    for method, path, _ in _operations(spec):
        for headers in ({}, {"Authorization": "Bearer cs_" + "0" * 32 + "_nope"}, {"Authorization": "Basic eDp5"}):
            response = _request(base, method, path, b, headers, CASES.get((method, path), (None, 0))[0])
            if (method, path) in PUBLIC:
                assert response.status_code == 200 and response.json() == {"status": "ok"}
                continue
            assert response.status_code == 401, (method, path, headers, response.text)
            challenge = response.headers["WWW-Authenticate"]
            assert challenge.startswith('Bearer realm="calsync"')
            assert ('error="invalid_token"' in challenge) == bool(headers), challenge
    with httpx.Client(base_url=base) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=a.headers).status_code == 403  # a write key is not an admin key


def test_a_read_key_cannot_write_on_any_operation(world: tuple[str, dict[str, Any], Tenant, Tenant]) -> None:
    base, spec, a, _b = world
    writes = [(m, p) for m, p, _ in _operations(spec) if m not in READS]
    assert writes
    headers = {"Authorization": f"Bearer {a.read_key}"}
    for method, path in writes:
        body = CASES[(method, path)][0]
        if (method, path) == ("post", "/api/v1/events"):
            body = {"calendar_id": a.calendar_id, **EVENT_BODY}
        response = _request(base, method, path, a, headers, body)  # A's own objects: only the scope refuses
        assert response.status_code == 403, (method, path, response.text)
    assert httpx.get(f"{base}/api/v1/events/{a.event_id}", headers=headers).json()["version"] == 2
    assert httpx.get(f"{base}/api/v1/events", headers=headers).status_code == 200


def test_an_admin_key_acts_for_the_user_it_names(world: tuple[str, dict[str, Any], Tenant, Tenant]) -> None:
    base, _spec, a, b = world
    admin = {"Authorization": f"Bearer {ADMIN_KEY['key']}"}
    with httpx.Client(base_url=f"{base}/api/v1") as client:
        for name_or_id, tenant in (("alice", a), (b.user_id, b)):
            seen = client.get("/events", headers={**admin, "X-Calsync-User": name_or_id}).json()["events"]
            assert tenant.event_id in {e["id"] for e in seen} and len(seen) == 2
            got = client.get(f"/events/{tenant.event_id}", headers={**admin, "X-Calsync-User": name_or_id})
            assert got.status_code == 200
        # acting as alice, bob's event is as missing as for alice herself
        as_alice = {**admin, "X-Calsync-User": "alice"}
        assert client.get(f"/events/{b.event_id}", headers=as_alice).status_code == 404
        # the admin itself owns nothing; an unknown user is bad input (422), not an empty answer
        assert client.get("/events", headers=admin).json()["events"] == []
        unknown = client.get("/events", headers={**admin, "X-Calsync-User": "nobody"})
        assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["header", "x-calsync-user"]
        assert httpx.get(f"{base}/metrics", headers=admin).status_code == 200
        # B's write key may name B (itself), not A
        assert client.get("/calendars", headers={**b.headers, "X-Calsync-User": "bob"}).status_code == 200
        assert client.get("/calendars", headers={**b.headers, "X-Calsync-User": "alice"}).status_code == 403
