"""The service: real notifications from the emulator through the webhook receiver to workers."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from calsync.engine.scheduler import Worker, WorkerSettings
from calsync.service.app import WorkerPool, create_app
from calsync.service.metrics import Metrics
from calsync.emulators.server import serve_in_thread
from calsync.model import utcnow
from calsync.store import repo, scheduling
from calsync.store.schema import channels
from tests.helpers import GoogleApi, admin, bind, local_events


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")




def start_service(engine: Engine, debounce: float = 0.2, **settings: Any) -> tuple[str, WorkerPool, Callable[[], None]]:
    """The API and webhook receiver on a free port, with one worker thread whose public URL is it."""
    metrics = Metrics()
    pool = WorkerPool(engine, WorkerSettings(), {}, metrics)
    server = serve_in_thread(create_app(engine, metrics, wake=pool.wake, debounce=debounce))
    pool.settings = WorkerSettings(public_url=server.url, idle_sleep=0.2, debounce=debounce, **settings)
    pool.start()

    def stop() -> None:
        pool.stop()
        server.stop()

    return server.url, pool, stop


@pytest.fixture()
def service(engine: Engine) -> Iterator[tuple[str, WorkerPool]]:
    url, pool, stop = start_service(engine)
    yield url, pool
    stop()


def list_requests(google_url: str, calendar: str) -> list[dict[str, Any]]:
    log = admin(google_url, "GET", "/requests").json()["requests"]
    return [r for r in log if r["method"] == "GET" and r["path"].endswith(f"/calendars/{calendar}/events")]


def live_channel(engine: Engine, binding: str) -> dict[str, Any] | None:
    with engine.begin() as conn:
        return scheduling.channel_health(conn).get(binding)


def titles(engine: Engine, binding: str) -> set[str]:
    return {r["title"] for r in local_events(engine, binding).values()}


def test_a_remote_change_arrives_through_a_real_notification(
    engine: Engine, alice: GoogleApi, google_url: str, service: tuple[str, WorkerPool]
) -> None:
    calendar = alice.primary_id()
    alice.insert(calendar, "Before")
    binding = bind(engine, google_url, "alice", calendar)
    service[1].wake.set()
    channel = wait_for(lambda: live_channel(engine, binding), what="a channel")
    wait_for(lambda: (live_channel(engine, binding) or {}).get("confirmed_at"), what="the sync message")
    assert titles(engine, binding) == {"Before"}
    admin(google_url, "DELETE", "/requests")
    started = time.monotonic()
    alice.insert(calendar, "After")
    wait_for(lambda: "After" in titles(engine, binding), timeout=5, what="the change")
    assert time.monotonic() - started < 2.0, "a notified change lands within a couple of seconds"
    assert len(list_requests(google_url, calendar)) == 1  # one incremental list, no polling
    assert channel["address"] == f"{service[0]}/webhooks/google"


def test_forged_notifications_change_nothing(
    engine: Engine, alice: GoogleApi, google_url: str, service: tuple[str, WorkerPool]
) -> None:
    calendar = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar)
    service[1].wake.set()
    channel = wait_for(lambda: live_channel(engine, binding), what="a channel")
    wait_for(lambda: (live_channel(engine, binding) or {}).get("confirmed_at"), what="the sync message")
    url = f"{service[0]}/webhooks/google"
    base = {"X-Goog-Resource-State": "exists", "X-Goog-Message-Number": "7",
            "X-Goog-Resource-ID": channel["resource_id"]}
    unknown = httpx.post(url, headers=base | {"X-Goog-Channel-ID": "nope", "X-Goog-Channel-Token": channel["token"]})
    wrong = httpx.post(url, headers=base | {"X-Goog-Channel-ID": channel["channel_id"], "X-Goog-Channel-Token": "x"})
    bare = httpx.post(url)
    assert (unknown.status_code, wrong.status_code, bare.status_code) == (404, 403, 404)
    with engine.begin() as conn:
        assert repo.get_binding(conn, binding)["dirty_at"] is None
    metrics = httpx.get(f"{service[0]}/metrics").text
    assert 'calsync_notifications_total{provider="google",result="bad-token"} 1.0' in metrics


def test_dropped_notifications_are_caught_by_the_poll_timer(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    calendar = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar)
    url, pool, stop = start_service(engine, poll_interval=1.0)
    try:
        wait_for(lambda: live_channel(engine, binding), what="a channel")
        admin(google_url, "POST", "/push-faults", json={"drop_rate": 1.0})
        alice.insert(calendar, "Nobody told us")
        wait_for(lambda: "Nobody told us" in titles(engine, binding), timeout=6, what="the poll")
        deliveries = admin(google_url, "GET", "/deliveries").json()
        assert any(d.get("outcome") == "dropped" for d in deliveries.get("deliveries", deliveries))
    finally:
        stop()


def ready_channel(engine: Engine, binding: str, pool: WorkerPool) -> dict[str, Any]:
    pool.wake.set()
    wait_for(lambda: live_channel(engine, binding), what="a channel")
    return wait_for(lambda: (c := live_channel(engine, binding)) and c["confirmed_at"] and c, what="the sync message")


def test_duplicated_and_reordered_notifications_make_one_sync(
    engine: Engine, alice: GoogleApi, google_url: str, service: tuple[str, WorkerPool]
) -> None:
    calendar = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar)
    ready_channel(engine, binding, service[1])
    admin(google_url, "POST", "/push-faults", json={"duplicate_rate": 1.0, "reorder": True})
    admin(google_url, "DELETE", "/requests")
    alice.insert(calendar, "Once")
    wait_for(lambda: "Once" in titles(engine, binding), what="the change")
    admin(google_url, "POST", "/push/flush", json={"timeout": 5})
    time.sleep(0.5)
    deliveries = admin(google_url, "GET", "/deliveries").json()["deliveries"]
    assert sum(d["outcome"] == "delivered" for d in deliveries) >= 2, "the message really came twice"
    assert len(list_requests(google_url, calendar)) == 1


def test_a_burst_of_notifications_is_one_or_two_syncs(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    """The coalescing window (debounce) is a setting; with a window longer than the burst, the burst
    is settled by the first sync, plus one more for notifications that arrive while it runs."""
    calendar = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar)
    url, pool, stop = start_service(engine, debounce=1.0)
    try:
        channel = ready_channel(engine, binding, pool)
        admin(google_url, "DELETE", "/requests")
        headers = {"X-Goog-Channel-ID": channel["channel_id"], "X-Goog-Channel-Token": channel["token"],
                   "X-Goog-Resource-ID": channel["resource_id"], "X-Goog-Resource-State": "exists"}
        with httpx.Client() as client, ThreadPoolExecutor(20) as senders:
            answers = list(senders.map(
                lambda n: client.post(f"{url}/webhooks/google",
                                      headers=headers | {"X-Goog-Message-Number": str(10 + n)}).status_code,
                range(100)))
        assert answers == [200] * 100
        wait_for(lambda: list_requests(google_url, calendar), what="a sync")
        time.sleep(1.5)
        syncs = len(list_requests(google_url, calendar))
        assert 1 <= syncs <= 2, f"{syncs} syncs for one burst of 100 notifications"
    finally:
        stop()


def test_channel_is_renewed_before_expiry_without_a_gap(
    engine: Engine, alice: GoogleApi, google_url: str
) -> None:
    calendar = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar)
    url, pool, stop = start_service(engine, poll_interval=0.5, channel_ttl=60, channel_renew_before=59.5)
    try:
        first = wait_for(lambda: live_channel(engine, binding), what="a channel")
        second = wait_for(lambda: (c := live_channel(engine, binding)) and c["id"] != first["id"] and c,
                          timeout=8, what="a renewed channel")
        with engine.begin() as conn:
            rows = {r["id"]: r for r in conn.execute(select(channels)).mappings()}
        assert rows[first["id"]]["state"] == "stopped"
        assert rows[second["id"]]["created_at"] <= rows[first["id"]]["updated_at"], "new channel before old stopped"
        emulated = {c["id"]: c for c in admin(google_url, "GET", "/channels", params={"all": "true"}).json()["channels"]}
        assert emulated[first["channel_id"]]["state"] != "active"
        alice.insert(calendar, "Via the new channel")
        wait_for(lambda: "Via the new channel" in titles(engine, binding), timeout=5, what="the change")
    finally:
        stop()


def test_status_api_reports_health(
    engine: Engine, alice: GoogleApi, google_url: str, service: tuple[str, WorkerPool]
) -> None:
    calendar = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar)
    service[1].wake.set()
    wait_for(lambda: live_channel(engine, binding), what="a channel")
    status = httpx.get(f"{service[0]}/api/v1/status").json()
    (row,) = status["bindings"]
    assert row["id"] == binding and row["has_sync_token"] and row["last_sync_status"] == "ok"
    assert row["channel"]["expiration"] and row["dirty"] is False
    assert status["accounts"][0]["state"] == "ok" and status["conference_backlog"] == 0
    metrics = httpx.get(f"{service[0]}/metrics").text
    assert "calsync_syncs_total" in metrics and "calsync_provider_requests_total" in metrics


def test_rate_limited_account_backs_off(engine: Engine, alice: GoogleApi, google_url: str) -> None:
    calendar = alice.primary_id()
    bind(engine, google_url, "alice", calendar)
    admin(google_url, "POST", "/faults", json={"status": 429, "retry_after": 30})
    worker = Worker(engine, settings=WorkerSettings(poll_interval=0))
    assert worker.run_once() is True
    with engine.begin() as conn:
        account = repo.list_accounts(conn)[0]
    assert account["backoff_until"] is not None
    assert (account["backoff_until"] - utcnow()).total_seconds() >= 25, "Retry-After is honoured"
    admin(google_url, "DELETE", "/requests")
    assert worker.run_once() is False, "the account waits out its backoff"
    assert admin(google_url, "GET", "/requests").json()["requests"] == []
    worker.close()


def test_unbinding_stops_the_channel(
    engine: Engine, alice: GoogleApi, google_url: str, service: tuple[str, WorkerPool]
) -> None:
    from calsync.engine.channels import unbind
    from calsync.engine.pool import ProviderPool

    calendar = alice.primary_id()
    binding = bind(engine, google_url, "alice", calendar)
    channel = ready_channel(engine, binding, service[1])
    pool = ProviderPool(engine)
    assert unbind(engine, pool, binding) == 1
    pool.close()
    emulated = {c["id"]: c for c in admin(google_url, "GET", "/channels", params={"all": "true"}).json()["channels"]}
    assert emulated[channel["channel_id"]]["state"] != "active"
    with engine.begin() as conn:
        assert repo.list_bindings(conn) == []
    admin(google_url, "DELETE", "/deliveries")
    alice.insert(calendar, "Nobody listens")
    admin(google_url, "POST", "/push/flush", json={"timeout": 5})
    assert admin(google_url, "GET", "/deliveries").json()["deliveries"] == []
