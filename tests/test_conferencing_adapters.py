"""Conference adapters against real peers over loopback HTTP: Zoom emulator, confhook receiver, Jitsi."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from calsync.conferencing import ADAPTERS, configured_adapters
from calsync.conferencing.base import ConferenceError, MeetingSpec
from calsync.conferencing.jitsi import JitsiAdapter, room_name
from calsync.conferencing.webhook import (
    ReplayGuard,
    RetryPolicy,
    WebhookAdapter,
    sign,
    verify,
)
from calsync.conferencing.zoom import ZoomAdapter, marker, patch_body
from calsync.emulators.confhook import ConfhookEmulator
from calsync.emulators.confhook import create_app as confhook_app
from calsync.emulators.server import RunningServer, serve_in_thread
from calsync.emulators.zoom import ZoomEmulator
from calsync.emulators.zoom import create_app as zoom_app

ACCOUNT, CLIENT, SECRET = "acct-9", "client-9", "secret-9"
HOOK_SECRET = "hook-secret"
FAST = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2, max_retry_after=5)
SPEC = MeetingSpec(title="Design review", start="2026-12-01T09:00:00Z", end="2026-12-01T10:15:00Z",
                   time_zone="Europe/Berlin", description="Walk through the sync engine.",
                   attendees=("ann@example.org", "bob@example.org"))


# ------------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def zoom_emulator_server() -> Iterator[RunningServer]:
    server = serve_in_thread(zoom_app(ZoomEmulator(ACCOUNT, CLIENT, SECRET)))
    yield server
    server.stop()


@pytest.fixture()
def zoom_base(zoom_emulator_server: RunningServer) -> str:
    httpx.post(f"{zoom_emulator_server.url}/emulator/reset").raise_for_status()
    return zoom_emulator_server.url


def make_zoom(url: str, **kwargs: Any) -> ZoomAdapter:
    options: dict[str, Any] = {"base_url": f"{url}/v2", "oauth_url": f"{url}/oauth/token", "policy": FAST,
                               "timeout": 2.0, **kwargs}
    secret = options.pop("secret", SECRET)
    return ZoomAdapter(ACCOUNT, CLIENT, secret, **options)


@pytest.fixture()
def zoom(zoom_base: str) -> Iterator[ZoomAdapter]:
    adapter = make_zoom(zoom_base)
    yield adapter
    adapter.close()


def fault(base: str, **spec: Any) -> None:
    httpx.post(f"{base}/emulator/faults", json=spec).raise_for_status()


def requests_log(base: str) -> list[dict[str, Any]]:
    return httpx.get(f"{base}/emulator/requests").json()["requests"]


def calls(base: str, method: str, path_start: str) -> int:
    return sum(1 for e in requests_log(base) if e["method"] == method and e["path"].startswith(path_start))


def zoom_direct(base: str) -> httpx.Client:
    """Another Zoom API client, to look at (and change) the emulator's state independently."""
    token = httpx.post(f"{base}/oauth/token", params={"grant_type": "account_credentials", "account_id": ACCOUNT},
                       auth=(CLIENT, SECRET)).raise_for_status().json()["access_token"]
    return httpx.Client(base_url=f"{base}/v2", headers={"Authorization": f"Bearer {token}"})


def zoom_meetings(base: str) -> list[dict[str, Any]]:
    with zoom_direct(base) as api:
        return api.get("/users/me/meetings", params={"page_size": 300}).json()["meetings"]


def zoom_meeting(base: str, meeting_id: str) -> httpx.Response:
    with zoom_direct(base) as api:
        return api.get(f"/meetings/{meeting_id}")


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ------------------------------------------------------------------------------------------------
# Zoom: OAuth


def test_zoom_wrong_secret_is_a_permanent_error(zoom_base: str) -> None:
    adapter = make_zoom(zoom_base, secret="wrong")
    with pytest.raises(ConferenceError) as info:
        adapter.create(SPEC, idempotency_key="k1")
    assert info.value.status == 401 and info.value.retryable is False
    assert adapter.request_count == 1 and calls(zoom_base, "POST", "/oauth") == 1


def test_zoom_token_is_cached_across_calls(zoom: ZoomAdapter, zoom_base: str) -> None:
    made = zoom.create(SPEC, idempotency_key="k1")
    zoom.get(made.conference_id)
    zoom.update(made.conference_id, MeetingSpec(**{**SPEC.__dict__, "title": "Renamed"}), ["title"])
    zoom.delete(made.conference_id)
    log = requests_log(zoom_base)
    assert sum(1 for e in log if e["path"] == "/oauth/token") == 1
    assert zoom.request_count == len(log)


def test_zoom_refetches_token_once_after_401(zoom: ZoomAdapter, zoom_base: str) -> None:
    made = zoom.create(SPEC, idempotency_key="k1")
    httpx.post(f"{zoom_base}/emulator/expire-tokens").raise_for_status()
    assert zoom.get(made.conference_id) is not None
    log = requests_log(zoom_base)
    assert sum(1 for e in log if e["path"] == "/oauth/token") == 2
    assert [e["status"] for e in log[-3:]] == [401, 200, 200]  # GET 401, token, GET again


def test_zoom_token_renewed_shortly_before_expiry_without_a_401(zoom_base: str) -> None:
    now = [1000.0]
    adapter = make_zoom(zoom_base, clock=lambda: now[0])
    made = adapter.create(SPEC, idempotency_key="k1")
    now[0] += 3600 - 30  # inside the last minute of the hour-long token
    adapter.get(made.conference_id)
    log = requests_log(zoom_base)
    assert sum(1 for e in log if e["path"] == "/oauth/token") == 2
    assert all(e["status"] != 401 for e in log)


# ------------------------------------------------------------------------------------------------
# Zoom: lifecycle and mapping


def test_zoom_lifecycle(zoom: ZoomAdapter, zoom_base: str) -> None:
    made = zoom.create(SPEC, idempotency_key="event-1")
    assert made.provider == "zoom" and made.join_url.startswith(f"https://zoom.example/j/{made.conference_id}")
    assert made.details["passcode"] and made.details["host_url"]
    m = zoom_meeting(zoom_base, made.conference_id).json()
    assert (m["topic"], m["start_time"], m["duration"], m["timezone"]) == (
        "Design review", "2026-12-01T09:00:00Z", 75, "Europe/Berlin")
    assert m["agenda"] == "Walk through the sync engine.\n[calsync:event-1]"
    assert m["settings"]["meeting_invitees"] == [{"email": "ann@example.org"}, {"email": "bob@example.org"}]
    assert zoom.get(made.conference_id) == made

    moved = MeetingSpec(title="Design review II", start="2026-12-02T14:00:00Z", end="2026-12-02T14:30:00Z",
                        time_zone="America/New_York", description="New agenda.", attendees=("cy@example.org",))
    assert zoom.update(made.conference_id, moved, moved.changed_fields(SPEC)) is None  # join details unchanged
    m = zoom_meeting(zoom_base, made.conference_id).json()
    assert (m["topic"], m["start_time"], m["duration"], m["timezone"], m["agenda"]) == (
        "Design review II", "2026-12-02T14:00:00Z", 30, "America/New_York", "New agenda.\n[calsync:event-1]")
    assert m["settings"]["meeting_invitees"] == [{"email": "cy@example.org"}]

    zoom.delete(made.conference_id)
    gone = zoom_meeting(zoom_base, made.conference_id)
    assert gone.status_code == 404 and gone.json()["code"] == 3001
    zoom.delete(made.conference_id)  # already gone: success
    assert zoom.get(made.conference_id) is None
    with pytest.raises(ConferenceError) as info:
        zoom.update(made.conference_id, moved, ["title"])
    assert info.value.status == 404 and info.value.retryable is False


def test_zoom_update_sends_only_mapped_fields(zoom: ZoomAdapter, zoom_base: str) -> None:
    made = zoom.create(SPEC, idempotency_key="k1")
    with zoom_direct(zoom_base) as api:  # someone edits the agenda and duration in Zoom
        api.patch(f"/meetings/{made.conference_id}", json={"agenda": "edited in Zoom", "duration": 5})
    zoom.update(made.conference_id, MeetingSpec(**{**SPEC.__dict__, "title": "Only the title"}), ["title"])
    m = zoom_meeting(zoom_base, made.conference_id).json()
    assert (m["topic"], m["agenda"], m["duration"]) == ("Only the title", "edited in Zoom", 5)
    assert patch_body(SPEC, ["title"], None) == {"topic": "Design review"}
    assert patch_body(SPEC, ["end"], None) == {"duration": 75}
    assert set(patch_body(SPEC, ["start", "attendees"], None)) == {"start_time", "duration", "settings"}
    assert patch_body(SPEC, [], None) == {}


def test_zoom_all_day_meeting_starts_at_local_midnight(zoom: ZoomAdapter, zoom_base: str) -> None:
    spec = MeetingSpec(title="Offsite", start="2026-12-24", end="2026-12-26", time_zone="Europe/Berlin")
    made = zoom.create(spec, idempotency_key="allday")
    m = zoom_meeting(zoom_base, made.conference_id).json()
    assert (m["start_time"], m["duration"], m["timezone"], m["agenda"]) == (
        "2026-12-23T23:00:00Z", 2880, "Europe/Berlin", "[calsync:allday]")
    utc = zoom.create(MeetingSpec(title="UTC day", start="2026-12-24", end="2026-12-25"), idempotency_key="d2")
    m = zoom_meeting(zoom_base, utc.conference_id).json()
    assert (m["start_time"], m["duration"], m["timezone"]) == ("2026-12-24T00:00:00Z", 1440, "UTC")


def test_zoom_bad_input_is_a_permanent_error(zoom: ZoomAdapter, zoom_base: str) -> None:
    with pytest.raises(ConferenceError) as info:
        zoom.create(MeetingSpec(title="x", start="2026-12-01T09:00:00Z", end="2026-12-01T10:00:00Z",
                                time_zone="Not/AZone"), idempotency_key="k1")
    assert info.value.status == 400 and info.value.retryable is False and "timezone" in str(info.value)
    with pytest.raises(ConferenceError) as info:
        zoom.create(MeetingSpec(title="x", start="2026-12-01", end="2026-12-01T10:00:00Z"), idempotency_key="k2")
    assert info.value.retryable is False


def test_zoom_marker_is_one_token_for_any_key() -> None:
    assert marker("evt_123:conf") == "[calsync:evt_123:conf]"
    odd = marker("a key with ] and\nnewline")
    assert odd.startswith("[calsync:h-") and " " not in odd and odd.count("]") == 1


# ------------------------------------------------------------------------------------------------
# Zoom: retries and idempotent create


def test_zoom_503_burst_is_retried(zoom: ZoomAdapter, zoom_base: str) -> None:
    fault(zoom_base, status=503, count=2, methods=["POST"], path_prefix="/v2/users")
    made = zoom.create(SPEC, idempotency_key="k1")
    assert [m["id"] for m in zoom_meetings(zoom_base)] == [int(made.conference_id)]
    assert calls(zoom_base, "POST", "/v2/users") == 3


def test_zoom_429_retry_after_is_honoured(zoom: ZoomAdapter, zoom_base: str) -> None:
    made = zoom.create(SPEC, idempotency_key="k1")
    fault(zoom_base, status=429, retry_after=1, count=1, methods=["GET"])
    started = time.monotonic()
    assert zoom.get(made.conference_id) is not None
    assert time.monotonic() - started >= 1.0


def test_zoom_permanent_400_is_not_retried(zoom: ZoomAdapter, zoom_base: str) -> None:
    made = zoom.create(SPEC, idempotency_key="k1")
    fault(zoom_base, status=400, count=3, methods=["PATCH"], reason="Invalid field.")
    with pytest.raises(ConferenceError) as info:
        zoom.update(made.conference_id, SPEC, ["title"])
    assert info.value.status == 400 and info.value.retryable is False
    assert calls(zoom_base, "PATCH", "/v2/meetings") == 1


def test_zoom_gives_up_with_a_retryable_error(zoom: ZoomAdapter, zoom_base: str) -> None:
    made = zoom.create(SPEC, idempotency_key="k1")
    fault(zoom_base, status=502, methods=["GET"])
    with pytest.raises(ConferenceError) as info:
        zoom.get(made.conference_id)
    assert info.value.retryable is True and info.value.status == 502
    assert calls(zoom_base, "GET", "/v2/meetings") == FAST.attempts


def test_zoom_long_retry_after_goes_back_to_the_outbox(zoom: ZoomAdapter, zoom_base: str) -> None:
    made = zoom.create(SPEC, idempotency_key="k1")
    fault(zoom_base, status=429, retry_after=120, methods=["GET"])
    started = time.monotonic()
    with pytest.raises(ConferenceError) as info:
        zoom.get(made.conference_id)
    assert info.value.retryable is True and info.value.retry_after == 120
    assert time.monotonic() - started < 1.0 and calls(zoom_base, "GET", "/v2/meetings") == 1


def test_zoom_unreachable_is_retryable() -> None:
    base = closed_port_url()
    adapter = ZoomAdapter(ACCOUNT, CLIENT, SECRET, base_url=f"{base}/v2", oauth_url=f"{base}/oauth/token",
                          policy=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02))
    with pytest.raises(ConferenceError) as info:
        adapter.get("12345678901")
    assert info.value.retryable is True and adapter.request_count == 2


@pytest.mark.parametrize("lookup_before_create", [False, True])
def test_zoom_create_with_lost_answer_makes_one_meeting(zoom_base: str, lookup_before_create: bool) -> None:
    adapter = make_zoom(zoom_base, lookup_before_create=lookup_before_create)
    fault(zoom_base, status=503, count=1, after_commit=True, methods=["POST"], path_prefix="/v2/users")
    made = adapter.create(SPEC, idempotency_key="lost-1")
    assert [m["id"] for m in zoom_meetings(zoom_base)] == [int(made.conference_id)]
    assert calls(zoom_base, "POST", "/v2/users") == 1  # adopted, never posted again


def test_zoom_create_timing_out_after_commit_makes_one_meeting(zoom_base: str) -> None:
    adapter = make_zoom(zoom_base, timeout=0.5, lookup_before_create=False)
    fault(zoom_base, latency_ms=1200, count=1, after_commit=True, methods=["POST"], path_prefix="/v2/users")
    made = adapter.create(SPEC, idempotency_key="slow-1")
    assert [m["id"] for m in zoom_meetings(zoom_base)] == [int(made.conference_id)]
    deadline = time.monotonic() + 5  # the slow answer is logged when it is finally sent; wait for it
    while calls(zoom_base, "POST", "/v2/users") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calls(zoom_base, "POST", "/v2/users") == 1  # adopted, never posted again


def test_zoom_create_retried_after_a_crash_adopts_the_meeting(zoom: ZoomAdapter, zoom_base: str) -> None:
    first = zoom.create(SPEC, idempotency_key="crash-1")
    restarted = make_zoom(zoom_base)  # a new process: it never saw the first answer
    again = restarted.create(SPEC, idempotency_key="crash-1")
    assert again.conference_id == first.conference_id
    changed = restarted.create(MeetingSpec(**{**SPEC.__dict__, "title": "Changed meanwhile"}),
                               idempotency_key="crash-1")
    assert changed.conference_id == first.conference_id
    assert zoom_meeting(zoom_base, first.conference_id).json()["topic"] == "Changed meanwhile"
    other = restarted.create(SPEC, idempotency_key="crash-2")
    assert other.conference_id != first.conference_id and len(zoom_meetings(zoom_base)) == 2


def test_zoom_adoption_pages_through_many_meetings(zoom: ZoomAdapter, zoom_base: str) -> None:
    with zoom_direct(zoom_base) as api:
        for i in range(305):
            api.post("/users/me/meetings", json={"topic": f"filler {i}"}).raise_for_status()
    made = zoom.create(SPEC, idempotency_key="late")
    again = make_zoom(zoom_base).create(SPEC, idempotency_key="late")
    assert again.conference_id == made.conference_id


# ------------------------------------------------------------------------------------------------
# Webhook: signing


def test_sign_and_verify() -> None:
    body = b'{"action":"get"}'
    sig = sign("s", 1_700_000_000, body)  # the documented construction, recomputed independently:
    assert sig == "v1=" + hmac.new(b"s", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert verify("s", "1700000000", sig, body, now=1_700_000_100)
    assert verify("s", "1700000000", f"v1=deadbeef, {sig}", body, now=1_700_000_000)  # rotation list
    assert not verify("other", "1700000000", sig, body, now=1_700_000_000)
    assert not verify("s", "1700000000", sig, body + b" ", now=1_700_000_000)
    assert not verify("s", "1700000000", sig, body, now=1_700_000_301)
    assert not verify("s", "1700000000", sig, body, now=1_699_999_000)
    assert not verify("s", "17e8", sig, body, now=1_700_000_000)
    assert not verify("s", None, sig, body, now=1_700_000_000)


def test_replay_guard_forgets_after_the_window() -> None:
    guard = ReplayGuard(window=300)
    assert guard.first_time("1000", "v1=a", now=1000)
    assert not guard.first_time("1000", "v1=a", now=1100)
    assert guard.first_time("1000", "v1=b", now=1100)
    assert guard.first_time("1000", "v1=a", now=1400)  # outside the window verify() rejects it anyway


# ------------------------------------------------------------------------------------------------
# Webhook: the receiver


@pytest.fixture(scope="module")
def hook_server() -> Iterator[RunningServer]:
    server = serve_in_thread(confhook_app(ConfhookEmulator(HOOK_SECRET)))
    yield server
    server.stop()


@pytest.fixture()
def hook_base(hook_server: RunningServer) -> str:
    httpx.post(f"{hook_server.url}/emulator/reset").raise_for_status()
    return hook_server.url


@pytest.fixture()
def hook(hook_base: str) -> Iterator[WebhookAdapter]:
    adapter = WebhookAdapter(f"{hook_base}/hook", HOOK_SECRET, policy=FAST, timeout=2.0)
    yield adapter
    adapter.close()


def hook_meetings(base: str) -> list[dict[str, Any]]:
    return httpx.get(f"{base}/emulator/meetings").json()["meetings"]


def signed(payload: Any, secret: str = HOOK_SECRET, ts: int | None = None) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    stamp = str(int(time.time()) if ts is None else ts)
    return body, {"X-Calsync-Timestamp": stamp, "X-Calsync-Signature": sign(secret, stamp, body),
                  "Content-Type": "application/json"}


MEETING: dict[str, Any] = {"title": "T", "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T10:00:00Z",
           "time_zone": None, "description": None, "attendees": []}


def test_receiver_rejects_bad_signature_stale_and_replayed_requests(hook_base: str) -> None:
    url = f"{hook_base}/hook"
    body, headers = signed({"action": "create", "idempotency_key": "r1", "meeting": MEETING})
    assert httpx.post(url, content=body, headers=headers).status_code == 200
    replay = httpx.post(url, content=body, headers=headers)
    assert replay.status_code == 401 and replay.json()["error"] == "replayed request"

    body, headers = signed({"action": "get", "conference_id": "x"}, secret="not-the-secret")
    assert httpx.post(url, content=body, headers=headers).status_code == 401
    body, headers = signed({"action": "get", "conference_id": "x"}, ts=int(time.time()) - 301)
    stale = httpx.post(url, content=body, headers=headers)
    assert stale.status_code == 401 and "window" in stale.json()["error"]
    body, headers = signed({"action": "get", "conference_id": "x"})
    tampered = httpx.post(url, content=body.replace(b'"x"', b'"y"'), headers=headers)
    assert tampered.status_code == 401
    assert httpx.post(url, json={"action": "get", "conference_id": "x"}).status_code == 401
    assert len(hook_meetings(hook_base)) == 1


@pytest.mark.parametrize("payload", [
    b"{not json", [1], {"action": "explode"}, {"action": "create"},
    {"action": "create", "meeting": {**MEETING, "attendees": "ann"}},
    {"action": "update", "conference_id": "cf_x", "fields": ["colour"], "meeting": MEETING},
    {"action": "get"},
])
def test_receiver_answers_bad_bodies_with_400(hook_base: str, payload: Any) -> None:
    body, headers = signed(payload)
    r = httpx.post(f"{hook_base}/hook", content=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"]


def test_receiver_only_accepts_post(hook_base: str) -> None:
    assert httpx.get(f"{hook_base}/hook").status_code == 405


# ------------------------------------------------------------------------------------------------
# Webhook: the adapter


def test_webhook_lifecycle(hook: WebhookAdapter, hook_base: str) -> None:
    made = hook.create(SPEC, idempotency_key="event-1")
    assert made.provider == "webhook" and made.join_url.endswith(made.conference_id)
    assert made.details["passcode"]
    [stored] = hook_meetings(hook_base)
    assert stored["meeting"] == {"title": SPEC.title, "start": SPEC.start, "end": SPEC.end,
                                 "time_zone": SPEC.time_zone, "description": SPEC.description,
                                 "attendees": list(SPEC.attendees)}
    assert hook.get(made.conference_id) == made

    renamed = MeetingSpec(**{**SPEC.__dict__, "title": "Renamed", "description": "not sent"})
    assert hook.update(made.conference_id, renamed, ["title"]).conference_id == made.conference_id
    [stored] = hook_meetings(hook_base)
    assert stored["meeting"]["title"] == "Renamed" and stored["meeting"]["description"] == SPEC.description

    hook.delete(made.conference_id)
    assert hook_meetings(hook_base)[0]["deleted"] is True
    hook.delete(made.conference_id)  # 404 from the receiver: success
    assert hook.get(made.conference_id) is None
    with pytest.raises(ConferenceError) as info:
        hook.update(made.conference_id, SPEC, ["title"])
    assert info.value.status == 404 and info.value.retryable is False
    assert hook.request_count == 7


def test_webhook_create_is_idempotent(hook: WebhookAdapter, hook_base: str) -> None:
    first = hook.create(SPEC, idempotency_key="same")
    assert hook.create(SPEC, idempotency_key="same") == first
    other = hook.create(SPEC, idempotency_key="different")
    assert other.conference_id != first.conference_id
    assert len(hook_meetings(hook_base)) == 2


def test_webhook_same_request_twice_in_one_second_is_not_a_replay(hook: WebhookAdapter) -> None:
    made = hook.create(SPEC, idempotency_key="k")
    for _ in range(5):
        assert hook.get(made.conference_id) == made


def test_webhook_wrong_secret_is_permanent(hook_base: str) -> None:
    adapter = WebhookAdapter(f"{hook_base}/hook", "wrong", policy=FAST)
    with pytest.raises(ConferenceError) as info:
        adapter.create(SPEC, idempotency_key="k")
    assert info.value.status == 401 and info.value.retryable is False and adapter.request_count == 1


def test_webhook_retries_a_503_burst(hook: WebhookAdapter, hook_base: str) -> None:
    fault(hook_base, status=503, count=2)
    hook.create(SPEC, idempotency_key="k")
    assert len(hook_meetings(hook_base)) == 1 and hook.request_count == 3


def test_webhook_create_with_lost_answer_makes_one_meeting(hook: WebhookAdapter, hook_base: str) -> None:
    fault(hook_base, status=503, count=1, after_commit=True)
    made = hook.create(SPEC, idempotency_key="lost")
    [stored] = hook_meetings(hook_base)
    assert stored["conference_id"] == made.conference_id and hook.request_count == 2


def test_webhook_429_retry_after_is_honoured(hook: WebhookAdapter, hook_base: str) -> None:
    fault(hook_base, status=429, retry_after=1, count=1)
    started = time.monotonic()
    hook.create(SPEC, idempotency_key="k")
    assert time.monotonic() - started >= 1.0


def test_webhook_permanent_400_is_not_retried(hook: WebhookAdapter, hook_base: str) -> None:
    fault(hook_base, status=400, count=3, reason="nope")
    with pytest.raises(ConferenceError) as info:
        hook.create(SPEC, idempotency_key="k")
    assert info.value.status == 400 and info.value.retryable is False and "nope" in str(info.value)
    assert hook.request_count == 1


# ------------------------------------------------------------------------------------------------
# Jitsi


def test_jitsi_rooms_are_deterministic_and_keyed() -> None:
    adapter = JitsiAdapter("jitsi-secret", base_url="https://meet.example.org/")
    one = adapter.create(SPEC, idempotency_key="event-1")
    assert adapter.create(SPEC, idempotency_key="event-1") == one
    assert adapter.create(SPEC, idempotency_key="event-2").join_url != one.join_url
    assert JitsiAdapter("other-secret").create(SPEC, idempotency_key="event-1").conference_id != one.conference_id
    room = one.conference_id
    assert room.startswith("calsync-") and len(room) == len("calsync-") + 26
    assert one.join_url == f"https://meet.example.org/{room}"
    assert adapter.get(room) == one and adapter.update(room, SPEC, ["title"]) == one
    adapter.delete(room)
    assert adapter.get("not-one-of-ours") is None and adapter.request_count == 0


def test_jitsi_room_is_not_derivable_without_the_secret() -> None:
    room = room_name("jitsi-secret", "event-1").removeprefix("calsync-")
    assert "event" not in room
    for guess_key in (b"", b"event-1"):  # unkeyed hashes / empty secret give other names
        plain = base64.b32encode(hashlib.sha256(guess_key + b"event-1").digest()).decode().lower()[:26]
        assert plain != room
    assert room_name("", "event-1") != room_name("jitsi-secret", "event-1")
    with pytest.raises(ValueError):
        JitsiAdapter("")


# ------------------------------------------------------------------------------------------------
# configuration


def test_from_settings_and_configured_adapters(zoom_base: str) -> None:
    assert configured_adapters({}) == {}
    zoom_keys = {"CALSYNC_ZOOM_ACCOUNT_ID": ACCOUNT, "CALSYNC_ZOOM_CLIENT_ID": CLIENT,
                 "CALSYNC_ZOOM_CLIENT_SECRET": SECRET}
    assert ZoomAdapter.from_settings({k: v for k, v in zoom_keys.items() if "SECRET" not in k}) is None
    default = ZoomAdapter.from_settings(zoom_keys)
    assert default is not None and default.base_url == "https://api.zoom.us/v2"
    assert default.oauth_url == "https://zoom.us/oauth/token" and default.solution_name == "Zoom"
    settings = {**zoom_keys, "CALSYNC_ZOOM_BASE_URL": f"{zoom_base}/v2",
                "CALSYNC_ZOOM_OAUTH_URL": f"{zoom_base}/oauth/token", "CALSYNC_ZOOM_SOLUTION_NAME": "Zoom (ours)",
                "CALSYNC_CONFHOOK_URL": "http://127.0.0.1:1/hook", "CALSYNC_CONFHOOK_SECRET": "s",
                "CALSYNC_JITSI_SECRET": "j", "CALSYNC_JITSI_BASE_URL": "https://jitsi.example"}
    adapters = configured_adapters(settings)
    assert tuple(adapters) == ADAPTERS
    assert [a.name for a in adapters.values()] == list(ADAPTERS)
    assert (adapters["zoom"].solution_name, adapters["webhook"].solution_name, adapters["jitsi"].solution_name) == (
        "Zoom (ours)", "Conference", "Jitsi Meet")
    assert adapters["jitsi"].create(SPEC, idempotency_key="k").join_url.startswith("https://jitsi.example/calsync-")
    assert adapters["zoom"].create(SPEC, idempotency_key="k").provider == "zoom"  # really talks to the emulator
    assert set(configured_adapters({"CALSYNC_JITSI_SECRET": "j", "CALSYNC_CONFHOOK_URL": "http://x"})) == {"jitsi"}
    for adapter in adapters.values():
        adapter.close()
