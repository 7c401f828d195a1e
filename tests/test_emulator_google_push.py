"""Push notifications of the Google emulator over real HTTP, to a real receiver (provider-semantics 1.8, 5.1).

A small Starlette receiver runs on a loopback port for the whole module; each test gets its
own path on it, so a stray in-flight message from an earlier test can never be counted.
``POST /emulator/push/flush`` waits until the delivery queue is empty, so tests never sleep
to "let deliveries happen".
"""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from calsync.emulators.google.push import PushHub, parse_watch
from calsync.emulators.server import RunningServer, serve_in_thread

# ------------------------------------------------------------------------------------------------
# the receiver


@dataclass
class Hit:
    """One notification as the receiver saw it."""

    method: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def state(self) -> str:
        return self.headers["x-goog-resource-state"]

    @property
    def number(self) -> int:
        return int(self.headers["x-goog-message-number"])


class Hook:
    """One test's receiving URL: records every POST and answers from a plan of statuses (then 200)."""

    def __init__(self, base_url: str) -> None:
        self.name = uuid.uuid4().hex
        self.url = f"{base_url}/hook/{self.name}"
        self.plan: deque[int] = deque()
        self._hits: list[Hit] = []
        self._lock = threading.Lock()

    def record(self, hit: Hit) -> int:
        with self._lock:
            self._hits.append(hit)
            return self.plan.popleft() if self.plan else 200

    @property
    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()

    def states(self) -> list[str]:
        return [h.state for h in self.hits]

    def numbers(self) -> list[int]:
        return [h.number for h in self.hits]


class Receiver:
    """A Starlette app routing /hook/{name} to the Hook registered under that name."""

    def __init__(self) -> None:
        self.hooks: dict[str, Hook] = {}
        self.app = Starlette(routes=[Route("/hook/{name}", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        hook = self.hooks.get(request.path_params["name"])
        if hook is None:
            return Response(status_code=200)  # a leftover from an earlier test
        status = hook.record(Hit(request.method, dict(request.headers), body, time.monotonic()))
        return Response(status_code=status)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, RunningServer]]:
    rec = Receiver()
    server = serve_in_thread(rec.app)
    yield rec, server
    server.stop()


@pytest.fixture()
def hook(receiver: tuple[Receiver, RunningServer]) -> Hook:
    rec, server = receiver
    new = Hook(server.url)
    rec.hooks[new.name] = new
    return new


# ------------------------------------------------------------------------------------------------
# API clients and helpers


def _client(base: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base + "/calendar/v3", headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture()
def api(google_url: str) -> Iterator[httpx.Client]:
    with _client(google_url, "alice") as client:
        yield client


@pytest.fixture()
def bob(google_url: str) -> Iterator[httpx.Client]:
    with _client(google_url, "bob") as client:
        yield client


@pytest.fixture()
def admin(google_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=google_url, timeout=60) as client:
        yield client


def watch(api: httpx.Client, address: str, cal: str = "primary", channel_id: str | None = None,
          **extra: Any) -> httpx.Response:
    body = {"id": channel_id or f"ch-{uuid.uuid4()}", "type": "web_hook", "address": address, **extra}
    return api.post(f"/calendars/{cal}/events/watch", json=body)


def flush(admin: httpx.Client, timeout: float = 15) -> dict[str, Any]:
    result = admin.post("/emulator/push/flush", json={"timeout": timeout}).json()
    assert result["idle"], result
    return result


def open_channel(api: httpx.Client, admin: httpx.Client, hook: Hook, cal: str = "primary",
                 **extra: Any) -> dict[str, Any]:
    """Watch, wait for the sync message, and forget it, so a test sees only what follows."""
    r = watch(api, hook.url, cal, **extra)
    assert r.status_code == 200, r.text
    flush(admin)
    assert hook.states() == ["sync"]
    hook.clear()
    return r.json()


def insert(api: httpx.Client, summary: str = "Meeting", cal: str = "primary", hour: int = 10,
           **extra: Any) -> dict[str, Any]:
    body = {"summary": summary, "start": {"dateTime": f"2026-11-02T{hour:02d}:00:00Z"},
            "end": {"dateTime": f"2026-11-02T{hour:02d}:30:00Z"}, **extra}
    r = api.post(f"/calendars/{cal}/events", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def reason_of(r: httpx.Response) -> str:
    body = r.json()["error"]
    assert body["code"] == r.status_code
    return body["errors"][0]["reason"]


def deliveries(admin: httpx.Client) -> list[dict[str, Any]]:
    return admin.get("/emulator/deliveries").json()["deliveries"]


def set_push_faults(admin: httpx.Client, **spec: Any) -> None:
    admin.post("/emulator/push-faults", json=spec).raise_for_status()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------------
# watch


def test_watch_answers_a_channel_and_sends_sync_number_one_first(api: httpx.Client, admin: httpx.Client,
                                                                 hook: Hook) -> None:
    before = time.time()
    r = watch(api, hook.url, channel_id="chan-1", token="target=calsync")
    assert r.status_code == 200, r.text
    channel = r.json()
    assert list(channel) == ["kind", "id", "resourceId", "resourceUri", "token", "expiration"]
    assert channel["kind"] == "api#channel" and channel["id"] == "chan-1" and channel["token"] == "target=calsync"
    assert channel["resourceUri"].endswith("/calendar/v3/calendars/primary/events?alt=json")
    assert isinstance(channel["expiration"], str) and channel["expiration"].isdigit()
    assert abs(int(channel["expiration"]) / 1000 - (before + 604800)) < 5  # default ttl: 7 days
    flush(admin)
    [sync] = hook.hits
    assert sync.method == "POST" and sync.body == b"" and sync.headers["content-length"] == "0"
    assert sync.state == "sync" and sync.number == 1
    h = sync.headers
    assert h["x-goog-channel-id"] == "chan-1" and h["x-goog-channel-token"] == "target=calsync"
    assert h["x-goog-resource-id"] == channel["resourceId"] and h["x-goog-resource-uri"] == channel["resourceUri"]
    expires = parsedate_to_datetime(h["x-goog-channel-expiration"])
    assert h["x-goog-channel-expiration"].endswith(" GMT")
    assert abs(expires.timestamp() - int(channel["expiration"]) / 1000) < 1


def test_token_header_only_when_a_token_was_given(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    channel = watch(api, hook.url).json()
    assert "token" not in channel
    flush(admin)
    assert "x-goog-channel-token" not in hook.hits[0].headers


def test_resource_id_is_stable_per_calendar_and_user(api: httpx.Client, bob: httpx.Client, hook: Hook) -> None:
    by_alias = watch(api, hook.url).json()
    by_id = watch(api, hook.url, cal="alice@example.com").json()
    assert by_alias["resourceId"] == by_id["resourceId"] and by_alias["id"] != by_id["id"]
    assert by_id["resourceUri"].endswith("/calendars/alice@example.com/events?alt=json")
    secondary = api.post("/calendars", json={"summary": "Team"}).json()["id"]
    assert watch(api, hook.url, cal=secondary).json()["resourceId"] != by_alias["resourceId"]
    assert watch(bob, hook.url).json()["resourceId"] != by_alias["resourceId"]


def test_webhook_type_and_https_address_are_accepted(api: httpx.Client, hook: Hook) -> None:
    assert watch(api, hook.url, type="webhook").status_code == 200
    assert watch(api, hook.url, type="WEB_HOOK").status_code == 200
    assert watch(api, "https://calendar-hooks.example/notify").status_code == 200
    assert watch(api, f"http://localhost:{closed_port()}/x").status_code == 200
    assert watch(api, f"http://[::1]:{closed_port()}/x").status_code == 200


@pytest.mark.parametrize(("change", "status", "reason"), [
    ({"id": None}, 400, "required"),
    ({"id": ""}, 400, "required"),
    ({"id": "x" * 65}, 400, "invalid"),
    ({"id": "has space"}, 400, "invalid"),
    ({"id": 42}, 400, "invalid"),
    ({"type": None}, 400, "required"),
    ({"type": "email"}, 400, "push.channelTypeNotSupported"),
    ({"address": None}, 400, "required"),
    ({"address": "http://calendar-hooks.example/notify"}, 400, "push.webhookUrlNotHttps"),
    ({"address": "ftp://127.0.0.1/notify"}, 400, "push.webhookUrlNotHttps"),
    ({"address": "not a url"}, 400, "push.webhookUrlNoHostOrAddress"),
    ({"address": "https://127.0.0.1:99999/x"}, 400, "push.webhookUrlNoHostOrAddress"),
    ({"token": "t" * 257}, 400, "invalid"),
    ({"token": 7}, 400, "invalid"),
    ({"params": {"ttl": "soon"}}, 400, "invalid"),
    ({"params": {"ttl": "0"}}, 400, "invalid"),
    ({"params": "ttl=5"}, 400, "invalid"),
    ({"expiration": "yesterday"}, 400, "invalid"),
    ({"expiration": 1000}, 400, "invalid"),
])
def test_watch_validation_errors_are_google_shaped(api: httpx.Client, hook: Hook, change: dict[str, Any],
                                                   status: int, reason: str) -> None:
    body = {"id": "valid-id_+/=", "type": "web_hook", "address": hook.url, **change}
    body = {k: v for k, v in body.items() if v is not None}
    r = api.post("/calendars/primary/events/watch", json=body)
    assert r.status_code == status, r.text
    assert reason_of(r) == reason


def test_limits_accept_exactly_64_char_ids_and_256_char_tokens(api: httpx.Client, hook: Hook) -> None:
    r = watch(api, hook.url, channel_id="a" * 64, token="t" * 256)
    assert r.status_code == 200 and r.json()["token"] == "t" * 256


def test_watch_rejects_bodies_that_are_not_objects(api: httpx.Client) -> None:
    r = api.post("/calendars/primary/events/watch", content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and reason_of(r) == "parseError"
    r = api.post("/calendars/primary/events/watch", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and reason_of(r) == "parseError"


def test_duplicate_channel_id_is_refused_while_the_channel_lives(api: httpx.Client, bob: httpx.Client,
                                                                 admin: httpx.Client, hook: Hook) -> None:
    first = watch(api, hook.url, channel_id="same-id").json()
    again = watch(api, hook.url, channel_id="same-id")
    assert again.status_code == 400 and reason_of(again) == "channelIdNotUnique"
    other_user = watch(bob, hook.url, channel_id="same-id")  # ids are unique per project, not per user
    assert other_user.status_code == 400 and reason_of(other_user) == "channelIdNotUnique"
    assert api.post("/channels/stop", json={"id": "same-id", "resourceId": first["resourceId"]}).status_code == 204
    assert watch(api, hook.url, channel_id="same-id").status_code == 200


def test_plain_http_is_refused_when_the_loopback_switch_is_off(api: httpx.Client, admin: httpx.Client,
                                                               hook: Hook) -> None:
    admin.post("/emulator/switches", json={"push_allow_http": False}).raise_for_status()
    r = watch(api, hook.url)
    assert r.status_code == 400 and reason_of(r) == "push.webhookUrlNotHttps"
    assert "WebHook callback must be HTTPS" in r.json()["error"]["message"]


def test_ttl_is_applied_and_capped(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    def lifetime(**extra: Any) -> float:
        now = time.time()
        r = watch(api, hook.url, **extra)
        assert r.status_code == 200, r.text
        return int(r.json()["expiration"]) / 1000 - now

    assert abs(lifetime(params={"ttl": "60"}) - 60) < 2
    assert abs(lifetime(params={"ttl": 120}) - 120) < 2
    assert abs(lifetime(params={"ttl": "99999999"}) - 604800) < 2
    admin.post("/emulator/switches", json={"push_max_ttl_seconds": 3600}).raise_for_status()
    assert abs(lifetime() - 3600) < 2
    soon = int((time.time() + 30) * 1000)
    assert abs(lifetime(params={"ttl": "600"}, expiration=str(soon)) - 30) < 2  # the earlier one wins
    assert admin.post("/emulator/switches", json={"push_max_ttl_seconds": 0}).status_code == 400


def test_watching_a_calendar_the_user_cannot_see_is_not_found(api: httpx.Client, bob: httpx.Client,
                                                              admin: httpx.Client, hook: Hook) -> None:
    api.get("/calendars/primary").raise_for_status()
    r = watch(bob, hook.url, cal="alice@example.com")
    assert r.status_code == 404 and reason_of(r) == "notFound"
    r = watch(api, hook.url, cal="nope@group.calendar.google.com")
    assert r.status_code == 404 and reason_of(r) == "notFound"
    flush(admin)
    assert hook.hits == [] and admin.get("/emulator/channels").json()["channels"] == []


def test_watch_needs_credentials(google_url: str, hook: Hook) -> None:
    r = httpx.post(f"{google_url}/calendar/v3/calendars/primary/events/watch",
                   json={"id": "x", "type": "web_hook", "address": hook.url})
    assert r.status_code == 401 and reason_of(r) == "authError"


# ------------------------------------------------------------------------------------------------
# what triggers a message


def test_exists_after_insert_patch_and_delete(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    channel = open_channel(api, admin, hook, token="secret-1")
    ev = insert(api)
    flush(admin)
    assert hook.states() == ["exists"]
    api.patch(f"/calendars/primary/events/{ev['id']}", json={"summary": "Moved"}).raise_for_status()
    flush(admin)
    api.delete(f"/calendars/primary/events/{ev['id']}").raise_for_status()
    flush(admin)
    api.put(f"/calendars/primary/events/{ev['id']}", json={**ev, "status": "confirmed"}).raise_for_status()
    flush(admin)
    hits = hook.hits
    assert [h.state for h in hits] == ["exists"] * 4
    for h in hits:
        assert h.body == b"" and h.method == "POST"
        assert h.headers["x-goog-channel-id"] == channel["id"]
        assert h.headers["x-goog-channel-token"] == "secret-1"
        assert h.headers["x-goog-resource-id"] == channel["resourceId"]
        assert h.headers["x-goog-resource-uri"] == channel["resourceUri"]
        assert h.headers["x-goog-channel-expiration"].endswith(" GMT")
    numbers = [h.number for h in hits]
    assert numbers == sorted(set(numbers)) and numbers[0] > 1


def test_message_numbers_increase_but_are_not_sequential(api: httpx.Client, admin: httpx.Client,
                                                         hook: Hook) -> None:
    open_channel(api, admin, hook)
    for hour in range(8, 16):
        insert(api, hour=hour)
    flush(admin)
    numbers = [1] + hook.numbers()
    assert all(a < b for a, b in zip(numbers, numbers[1:]))
    assert numbers != list(range(1, len(numbers) + 1))


def test_failed_writes_reads_and_admin_actions_send_nothing(api: httpx.Client, admin: httpx.Client,
                                                            hook: Hook) -> None:
    open_channel(api, admin, hook)
    ev = insert(api)
    flush(admin)
    hook.clear()
    stale = api.patch(f"/calendars/primary/events/{ev['id']}", json={"summary": "x"},
                      headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert api.patch("/calendars/primary/events/nothere1", json={"summary": "x"}).status_code == 404
    assert api.post("/calendars/primary/events", json={"summary": "no times"}).status_code == 400
    assert api.delete("/calendars/primary/events/nothere1").status_code == 404
    api.get("/calendars/primary/events").raise_for_status()
    api.get(f"/calendars/primary/events/{ev['id']}").raise_for_status()
    admin.post("/emulator/calendars/alice@example.com/invalidate-tokens").raise_for_status()
    admin.post("/emulator/faults", json={"status": 503, "count": 1}).raise_for_status()
    assert api.post("/calendars/primary/events", json={"summary": "x"}).status_code == 503
    api.delete(f"/calendars/primary/events/{ev['id']}").raise_for_status()
    assert api.delete(f"/calendars/primary/events/{ev['id']}").status_code == 410
    flush(admin)
    assert hook.states() == ["exists"]  # only the one committed delete


def test_changes_elsewhere_do_not_reach_the_channel(api: httpx.Client, bob: httpx.Client, admin: httpx.Client,
                                                    hook: Hook) -> None:
    open_channel(api, admin, hook)
    secondary = api.post("/calendars", json={"summary": "Team"}).json()["id"]
    insert(api, cal=secondary)
    insert(bob)
    flush(admin)
    assert hook.hits == []


def test_seed_import_and_series_changes_each_notify_once(api: httpx.Client, admin: httpx.Client,
                                                         hook: Hook) -> None:
    open_channel(api, admin, hook)
    admin.post("/emulator/calendars/alice@example.com/seed", json={"count": 50}).raise_for_status()
    flush(admin)
    assert hook.states() == ["exists"]
    body = {"summary": "Imported", "iCalUID": "abc@example.org", "start": {"dateTime": "2026-11-03T10:00:00Z"},
            "end": {"dateTime": "2026-11-03T11:00:00Z"}}
    api.post("/calendars/primary/events/import", json=body).raise_for_status()
    series = api.post("/calendars/primary/events", json={
        "summary": "Weekly", "start": {"dateTime": "2026-11-02T10:00:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2026-11-02T11:00:00", "timeZone": "Europe/Berlin"},
        "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"]}).json()
    flush(admin)
    assert hook.states() == ["exists"] * 3
    instance = f"{series['id']}_20261109T090000Z"
    api.patch(f"/calendars/primary/events/{instance}", json={"summary": "Just this one"}).raise_for_status()
    flush(admin)
    api.delete(f"/calendars/primary/events/{series['id']}").raise_for_status()  # cancels the exception too
    flush(admin)
    assert hook.states() == ["exists"] * 5


def test_deleting_a_watched_calendar_sends_not_exists(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    secondary = api.post("/calendars", json={"summary": "Team"}).json()["id"]
    open_channel(api, admin, hook, cal=secondary)
    api.delete(f"/calendars/{secondary}").raise_for_status()
    flush(admin)
    assert hook.states() == ["not_exists"]


def test_every_live_channel_on_the_calendar_gets_the_message(api: httpx.Client, admin: httpx.Client,
                                                             hook: Hook) -> None:
    first = open_channel(api, admin, hook)
    second = open_channel(api, admin, hook)
    insert(api)
    flush(admin)
    assert sorted(h.headers["x-goog-channel-id"] for h in hook.hits) == sorted([first["id"], second["id"]])


# ------------------------------------------------------------------------------------------------
# stop and expiry


def test_stop_ends_delivery_and_only_the_creator_may_stop(api: httpx.Client, bob: httpx.Client,
                                                          admin: httpx.Client, hook: Hook) -> None:
    channel = open_channel(api, admin, hook)
    ids = {"id": channel["id"], "resourceId": channel["resourceId"]}
    r = bob.post("/channels/stop", json=ids)
    assert r.status_code == 404 and reason_of(r) == "notFound"
    r = api.post("/channels/stop", json={**ids, "resourceId": "someOtherResource"})
    assert r.status_code == 404 and reason_of(r) == "notFound"
    r = api.post("/channels/stop", json={"id": channel["id"]})
    assert r.status_code == 400 and reason_of(r) == "required"
    r = api.post("/channels/stop", json={"resourceId": channel["resourceId"]})
    assert r.status_code == 400 and reason_of(r) == "required"
    insert(api)
    flush(admin)
    assert hook.states() == ["exists"]  # bob's attempt stopped nothing
    r = api.post("/channels/stop", json=ids)
    assert r.status_code == 204 and r.content == b""
    insert(api, hour=12)
    flush(admin)
    assert hook.states() == ["exists"]
    assert api.post("/channels/stop", json=ids).status_code == 404  # already stopped
    assert api.post("/channels/stop", json={"id": "never-made", "resourceId": "x"}).status_code == 404
    assert admin.get("/emulator/channels").json()["channels"] == []
    [dead] = admin.get("/emulator/channels", params={"all": "true"}).json()["channels"]
    assert dead["state"] == "stopped"


def test_stop_drops_messages_still_queued(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    channel = open_channel(api, admin, hook)
    set_push_faults(admin, reorder=True, reorder_batch=10, reorder_window_ms=60_000)  # hold it until flush
    insert(api)
    api.post("/channels/stop", json={"id": channel["id"], "resourceId": channel["resourceId"]}).raise_for_status()
    flush(admin)
    assert hook.hits == []
    assert [(d["state"], d["outcome"], d["error"]) for d in deliveries(admin)][-1] == \
        ("exists", "skipped", "channel stopped")


def test_admin_expire_ends_delivery(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    channel = open_channel(api, admin, hook)
    r = admin.post(f"/emulator/channels/{channel['id']}/expire")
    assert r.status_code == 200 and r.json()["state"] == "expired"
    insert(api)
    flush(admin)
    assert hook.hits == []
    assert admin.post("/emulator/channels/unknown/expire").status_code == 404
    r = api.post("/channels/stop", json={"id": channel["id"], "resourceId": channel["resourceId"]})
    assert r.status_code == 404  # an expired channel is gone
    assert watch(api, hook.url, channel_id=channel["id"]).status_code == 200  # and its id is free again


def test_channel_ids_with_slashes_can_be_expired(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    open_channel(api, admin, hook, channel_id="team/alice+1=")
    assert admin.post("/emulator/channels/team/alice+1=/expire").status_code == 200


def test_short_ttl_expires_on_its_own(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    channel = open_channel(api, admin, hook, params={"ttl": "1"})
    assert int(channel["expiration"]) - time.time() * 1000 <= 1000
    time.sleep(max(0.0, int(channel["expiration"]) / 1000 - time.time()) + 0.05)
    insert(api)
    flush(admin)
    assert hook.hits == []
    assert admin.get("/emulator/channels").json()["channels"] == []


def test_a_message_queued_before_expiry_is_not_delivered_after_it(api: httpx.Client, admin: httpx.Client,
                                                                  hook: Hook) -> None:
    channel = open_channel(api, admin, hook)
    set_push_faults(admin, reorder=True, reorder_batch=10, reorder_window_ms=60_000)  # hold it until flush
    insert(api)
    admin.post(f"/emulator/channels/{channel['id']}/expire").raise_for_status()
    flush(admin)
    assert hook.hits == []
    assert deliveries(admin)[-1]["error"] == "channel expired"


# ------------------------------------------------------------------------------------------------
# delivery: success, retry, failure


def test_retries_503_with_backoff_then_succeeds(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    open_channel(api, admin, hook)
    hook.plan.extend([503, 500])
    insert(api)
    result = flush(admin)
    hits = hook.hits
    assert len(hits) == 3 and len({h.number for h in hits}) == 1
    assert hits[1].at - hits[0].at >= 0.18 and hits[2].at - hits[1].at >= 0.38  # 0.2 s, then 0.4 s
    log = [d for d in deliveries(admin) if d["state"] == "exists"]
    assert [(d["attempt"], d["outcome"], d["status"]) for d in log] == [
        (1, "retry", 503), (2, "retry", 500), (3, "delivered", 200)]
    assert result["retried"] == 2


def test_other_error_statuses_are_not_retried(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    channel = open_channel(api, admin, hook)
    hook.plan.extend([400, 429, 301])
    for hour in (9, 10, 11):
        insert(api, hour=hour)
    flush(admin)
    assert len(hook.hits) == 3
    log = [d for d in deliveries(admin) if d["state"] == "exists"]
    assert [(d["outcome"], d["status"]) for d in log] == [("failed", 400), ("failed", 429), ("failed", 301)]
    [listed] = admin.get("/emulator/channels").json()["channels"]
    assert listed["id"] == channel["id"] and listed["failed"] == 3 and listed["delivered"] == 1


def test_retries_are_bounded_when_the_receiver_keeps_failing(api: httpx.Client, admin: httpx.Client,
                                                             hook: Hook) -> None:
    open_channel(api, admin, hook)
    admin.post("/emulator/switches", json={"push_retry_base_ms": 10, "push_max_attempts": 3}).raise_for_status()
    hook.plan.extend([503] * 10)
    insert(api)
    flush(admin)
    assert len(hook.hits) == 3
    assert [d["outcome"] for d in deliveries(admin) if d["state"] == "exists"] == ["retry", "retry", "gave_up"]


def test_a_receiver_that_is_down_does_not_keep_the_emulator_busy(api: httpx.Client, admin: httpx.Client) -> None:
    admin.post("/emulator/switches", json={"push_retry_base_ms": 10}).raise_for_status()
    t0 = time.monotonic()
    r = watch(api, f"http://127.0.0.1:{closed_port()}/down")
    assert r.status_code == 200
    insert(api)
    result = flush(admin, timeout=10)
    assert time.monotonic() - t0 < 5
    log = deliveries(admin)
    assert [(d["state"], d["attempt"]) for d in log if d["outcome"] == "gave_up"] == [("sync", 5), ("exists", 5)]
    assert all(d["status"] is None and "ConnectError" in d["error"] for d in log)
    assert result["failed"] == 2 and result["delivered"] == 0


def test_remote_receivers_are_skipped_unless_switched_on(api: httpx.Client, admin: httpx.Client) -> None:
    assert watch(api, "https://calendar-hooks.example/notify").status_code == 200
    flush(admin)
    [entry] = deliveries(admin)
    assert entry["outcome"] == "skipped" and "push_deliver_remote" in entry["error"]


def test_the_api_does_not_wait_for_a_slow_delivery(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    open_channel(api, admin, hook)
    set_push_faults(admin, delay_ms=1500)
    t0 = time.monotonic()
    insert(api)
    assert time.monotonic() - t0 < 1.0
    flush(admin)
    assert hook.states() == ["exists"]


def test_queue_is_bounded() -> None:
    hub = PushHub(lambda: {"push_max_attempts": 1}, max_queue=3)
    try:
        hub.set_faults({"delay_ms": 60_000})
        request = parse_watch({"id": "c", "type": "web_hook", "address": f"http://127.0.0.1:{closed_port()}/"},
                              int(time.time() * 1000), allow_http=True, max_ttl_seconds=3600)
        hub.open_channel(request, "cal@example.com", "u@example.com", "http://emulator/uri")
        assert hub.notify("cal@example.com") == 1
        for _ in range(4):
            hub.notify("cal@example.com")
        outcomes = [d["outcome"] for d in hub.deliveries()]
        assert outcomes == ["queue_full"] * 3
        assert hub.flush(0)["pending"] == 3
        hub.reset()
        assert hub.flush(1)["idle"] and hub.channels() == []
    finally:
        hub.close()


# ------------------------------------------------------------------------------------------------
# push fault switches


def test_drop_count_loses_the_next_messages(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    channel = open_channel(api, admin, hook)
    set_push_faults(admin, drop_count=1)
    insert(api)
    insert(api, hour=11)
    result = flush(admin)
    [hit] = hook.hits
    dropped = [d for d in deliveries(admin) if d["outcome"] == "dropped"]
    assert len(dropped) == 1 and dropped[0]["messageNumber"] < hit.number
    assert result["dropped"] == 1
    assert admin.get("/emulator/push-faults").json()["drop_remaining"] == 0
    [listed] = admin.get("/emulator/channels").json()["channels"]
    assert listed["id"] == channel["id"] and listed["dropped"] == 1 and listed["messagesSent"] == 3


def test_drop_rate_is_seeded_and_repeatable(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    def run() -> list[int]:
        open_channel(api, admin, hook)
        set_push_faults(admin, drop_rate=0.5)
        for hour in range(8, 18):
            insert(api, hour=hour)
        flush(admin)
        numbers = hook.numbers()
        admin.post("/emulator/reset").raise_for_status()
        hook.clear()
        return numbers

    first, second = run(), run()
    assert first == second and 0 < len(first) < 10


def test_duplicates_share_a_message_number(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    open_channel(api, admin, hook)
    set_push_faults(admin, duplicate_rate=1.0)
    insert(api)
    insert(api, hour=11)
    flush(admin)
    numbers = hook.numbers()
    assert len(numbers) == 4 and numbers[0] == numbers[1] and numbers[2] == numbers[3] and numbers[1] < numbers[2]


def test_delay_holds_every_message(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    open_channel(api, admin, hook)
    set_push_faults(admin, delay_ms=300)
    t0 = time.monotonic()
    insert(api)
    flush(admin)
    [hit] = hook.hits
    assert hit.at - t0 >= 0.29


def test_reorder_shuffles_batches_repeatably(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    def run() -> list[int]:
        open_channel(api, admin, hook)
        set_push_faults(admin, reorder=True, reorder_batch=4, reorder_window_ms=30_000)
        for hour in range(8, 16):
            insert(api, hour=hour)
        flush(admin)
        numbers = hook.numbers()
        admin.post("/emulator/reset").raise_for_status()
        hook.clear()
        return numbers

    first = run()
    assert len(first) == 8 and first != sorted(first)
    assert sorted(first[:4]) == sorted(first)[:4]  # shuffled within batches of four
    assert run() == first


def test_reorder_flush_releases_a_partial_batch(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    open_channel(api, admin, hook)
    set_push_faults(admin, reorder=True, reorder_batch=10, reorder_window_ms=60_000)
    insert(api)
    insert(api, hour=11)
    flush(admin)
    assert len(hook.hits) == 2


def test_deliver_after_stop(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    channel = open_channel(api, admin, hook)
    set_push_faults(admin, deliver_after_stop=True)
    api.post("/channels/stop", json={"id": channel["id"], "resourceId": channel["resourceId"]}).raise_for_status()
    insert(api)
    flush(admin)
    assert hook.states() == ["exists"]
    assert admin.delete("/emulator/push-faults").status_code == 204
    insert(api, hour=12)
    flush(admin)
    assert hook.states() == ["exists"]


@pytest.mark.parametrize("spec", [
    {"drop_rate": 2}, {"drop_rate": "half"}, {"drop_count": -1}, {"duplicate_rate": True}, {"delay_ms": -5},
    {"reorder": "yes"}, {"reorder_batch": 1}, {"bogus": 1}, [1], "drop",
])
def test_bad_push_fault_specs_are_rejected(admin: httpx.Client, spec: Any) -> None:
    assert admin.post("/emulator/push-faults", content=json.dumps(spec)).status_code == 400
    assert admin.get("/emulator/push-faults").json()["drop_rate"] == 0.0


def test_flush_validates_its_timeout(admin: httpx.Client) -> None:
    assert admin.post("/emulator/push/flush", json={"timeout": -1}).status_code == 400
    assert admin.post("/emulator/push/flush", json={"timeout": "soon"}).status_code == 400
    assert admin.post("/emulator/push/flush").json()["idle"] is True


# ------------------------------------------------------------------------------------------------
# admin surface and reset


def test_admin_lists_channels_and_deliveries(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    channel = open_channel(api, admin, hook, token="tok")
    insert(api)
    flush(admin)
    [listed] = admin.get("/emulator/channels").json()["channels"]
    assert {k: listed[k] for k in ("kind", "id", "resourceId", "resourceUri", "token", "expiration")} == channel
    assert listed["calendarId"] == "alice@example.com" and listed["user"] == "alice@example.com"
    assert listed["address"] == hook.url and listed["state"] == "live"
    assert listed["messagesSent"] == 2 and listed["delivered"] == 2
    log = deliveries(admin)
    assert [(d["channelId"], d["state"], d["outcome"], d["status"]) for d in log] == [
        (channel["id"], "sync", "delivered", 200), (channel["id"], "exists", "delivered", 200)]
    assert log[0]["messageNumber"] == 1 and log[0]["time"].endswith("Z")
    assert admin.delete("/emulator/deliveries").status_code == 204
    assert deliveries(admin) == []


def test_reset_clears_channels_faults_and_the_queue(api: httpx.Client, admin: httpx.Client, hook: Hook) -> None:
    open_channel(api, admin, hook)
    set_push_faults(admin, delay_ms=5000, duplicate_rate=1.0)
    insert(api)
    admin.post("/emulator/reset").raise_for_status()
    assert admin.get("/emulator/channels", params={"all": "1"}).json()["channels"] == []
    assert admin.get("/emulator/push-faults").json() == {"drop_rate": 0.0, "duplicate_rate": 0.0, "delay_ms": 0,
                                                          "reorder": False, "deliver_after_stop": False}
    result = flush(admin)
    assert result["waitedMs"] < 1000 and result["delivered"] == 0
    assert deliveries(admin) == []
    time.sleep(0.1)
    assert hook.hits == []


# ------------------------------------------------------------------------------------------------
# the official client


def test_official_client_watches_and_stops(google_url: str, admin: httpx.Client, hook: Hook) -> None:
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build
    from googleapiclient.errors import HttpError

    svc = build("calendar", "v3", credentials=Credentials(token="alice"), static_discovery=True,
                client_options={"api_endpoint": google_url + "/calendar/v3/"}, cache_discovery=False)
    try:
        body = {"id": "official-1", "type": "web_hook", "address": hook.url, "token": "t",
                "params": {"ttl": "3600"}}
        channel = svc.events().watch(calendarId="primary", body=body).execute()
        schema = svc._resourceDesc["schemas"]["Channel"]["properties"]
        assert set(channel) <= set(schema) and channel["kind"] == "api#channel"
        with pytest.raises(HttpError) as exc:
            svc.events().watch(calendarId="primary", body=body).execute()
        assert exc.value.resp.status == 400 and "channelIdNotUnique" in exc.value.content.decode()
        flush(admin)
        assert hook.states() == ["sync"]
        assert svc.channels().stop(body={"id": channel["id"], "resourceId": channel["resourceId"]}).execute() == ""
    finally:
        svc.close()
