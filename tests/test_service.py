"""The service: real notifications from the emulators through the webhook receivers to workers.

Every notification test runs once per push-capable provider (Google watch channels, Graph
subscriptions); the small `RemoteSide` adapters below know each emulator's API, admin surface and
notification wire format, so the tests themselves say the same thing for both.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from calsync.emulators.server import serve_in_thread
from calsync.engine.scheduler import Worker, WorkerSettings
from calsync.model import utcnow
from calsync.service.app import WorkerPool, create_app
from calsync.service.metrics import Metrics
from calsync.store import accounts as account_store
from calsync.store import scheduling
from calsync.store.schema import channels
from tests.helpers import auth_headers, page_user
from tests.helpers import GoogleApi, admin, bind, local_events


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- one adapter per provider ------------------------------------------------------------------

Forgery = tuple[str, dict[str, Any], int]  # (URL, httpx keyword arguments, the status we must answer)


class GoogleSide:
    """Google Calendar: watch channels, X-Goog-* headers, the emulator's /channels admin view."""

    kind = "google"
    renews_in_place = False  # a new channel first, then the old one stopped

    def __init__(self, url: str) -> None:
        self.url = url
        self.api = GoogleApi(url, "alice")
        self.calendar = self.api.primary_id()

    def insert(self, title: str) -> None:
        self.api.insert(self.calendar, title)

    def bind(self, engine: Engine) -> str:
        return bind(engine, self.url, "alice", self.calendar)

    def syncs(self) -> list[dict[str, Any]]:
        """Listing requests in the emulator's log: one per sync."""
        log = admin(self.url, "GET", "/requests").json()["requests"]
        return [r for r in log if r["method"] == "GET" and r["path"].endswith(f"/calendars/{self.calendar}/events")]

    def notification(self, service_url: str, channel: dict[str, Any], n: int) -> tuple[str, dict[str, Any]]:
        headers = {"X-Goog-Channel-ID": channel["channel_id"], "X-Goog-Channel-Token": channel["token"],
                   "X-Goog-Resource-ID": channel["resource_id"], "X-Goog-Resource-State": "exists",
                   "X-Goog-Message-Number": str(10 + n)}
        return f"{service_url}/webhooks/google", {"headers": headers}

    accepted_status = 200

    def forgeries(self, service_url: str, channel: dict[str, Any]) -> list[Forgery]:
        url = f"{service_url}/webhooks/google"
        base = {"X-Goog-Resource-State": "exists", "X-Goog-Message-Number": "7",
                "X-Goog-Resource-ID": channel["resource_id"]}
        return [
            (url, {"headers": base | {"X-Goog-Channel-ID": "nope", "X-Goog-Channel-Token": channel["token"]}}, 404),
            (url, {"headers": base | {"X-Goog-Channel-ID": channel["channel_id"], "X-Goog-Channel-Token": "x"}}, 403),
            (url, {}, 404),
        ]

    def remote_live(self, channel: dict[str, Any]) -> bool:
        emulated = {c["id"]: c for c in admin(self.url, "GET", "/channels", params={"all": "true"}).json()["channels"]}
        return emulated.get(channel["channel_id"], {}).get("state") == "live"


class GraphSide:
    """Microsoft Graph: subscriptions, JSON `value[]` batches with clientState, /emulator/subscriptions."""

    kind = "graph"
    renews_in_place = True  # PATCH expirationDateTime on the same subscription
    accepted_status = 202

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=f"{url}/v1.0", headers={
            "Authorization": "Bearer adele", "Prefer": 'outlook.timezone="UTC", IdType="ImmutableId"'})
        admin(url, "POST", "/switches", json={"push_retry_base_ms": 20})
        (default,) = [c for c in self.http.get("/me/calendars").raise_for_status().json()["value"]
                      if c.get("isDefaultCalendar")]
        self.calendar = str(default["id"])

    def insert(self, title: str) -> None:
        body = {"subject": title, "start": {"dateTime": "2026-12-01T09:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2026-12-01T10:00:00", "timeZone": "UTC"}}
        self.http.post(f"/me/calendars/{self.calendar}/events", json=body).raise_for_status()

    def new_calendar(self, name: str) -> str:
        return str(self.http.post("/me/calendars", json={"name": name}).raise_for_status().json()["id"])

    def bind(self, engine: Engine, calendar: str | None = None) -> str:
        """A binding of the default calendar (or `calendar`) to a new local one; one account per mailbox."""
        with engine.begin() as conn:
            existing = [a for a in account_store.list_accounts(conn) if a["name"] == "adele"]
            account = existing[0]["id"] if existing else account_store.create_account(
                conn, "graph", "adele", self.url, {"token": "adele"})
            local = account_store.create_calendar(conn, f"adele:{calendar or 'default'}")
            return account_store.create_binding(conn, local, account, calendar or self.calendar, "two-way", "ask")

    def syncs(self) -> list[dict[str, Any]]:
        """calendarView/delta requests in the emulator's log: one per sync of a small calendar."""
        log = admin(self.url, "GET", "/requests").json()["requests"]
        return [r for r in log if r["method"] == "GET" and "/calendarView/delta" in r["path"]]

    def item(self, channel: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return {"subscriptionId": channel["resource_id"], "clientState": channel["token"], "changeType": "updated",
                "resource": "Users/x/Events/y", "tenantId": "t",
                "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": "y"}} | fields

    def notification(self, service_url: str, channel: dict[str, Any], n: int) -> tuple[str, dict[str, Any]]:
        return (f"{service_url}/webhooks/graph?channel={channel['channel_id']}",
                {"json": {"value": [self.item(channel, resource=f"Users/x/Events/{n}")]}})

    def forgeries(self, service_url: str, channel: dict[str, Any]) -> list[Forgery]:
        url = f"{service_url}/webhooks/graph"
        return [
            (f"{url}?channel=nope", {"json": {"value": [self.item(channel)]}}, 404),
            (f"{url}?channel={channel['channel_id']}", {"json": {"value": [self.item(channel, clientState="x")]}}, 403),
            (url, {}, 400),
        ]

    def remote_live(self, channel: dict[str, Any]) -> bool:
        subs = admin(self.url, "GET", "/subscriptions").json()["subscriptions"]
        return any(s["id"] == channel["resource_id"] and s["live"] for s in subs)

    def remote_channel_count(self) -> int:
        return sum(s["live"] for s in admin(self.url, "GET", "/subscriptions").json()["subscriptions"])


RemoteSide = GoogleSide | GraphSide


@pytest.fixture(params=["google", "graph"])
def side(request: pytest.FixtureRequest) -> RemoteSide:
    """The remote calendar service a test runs against, with its emulator freshly reset."""
    if request.param == "google":
        return GoogleSide(request.getfixturevalue("google_url"))
    return GraphSide(request.getfixturevalue("graph_url"))


# --- the service ---------------------------------------------------------------------------------


def start_service(engine: Engine, debounce: float = 0.2, **settings: Any) -> tuple[str, WorkerPool, Callable[[], None]]:
    """The API and webhook receivers on a free port, with one worker thread whose public URL is it."""
    metrics = Metrics()
    pool = WorkerPool(engine, WorkerSettings(), {}, metrics)
    server = serve_in_thread(create_app(engine, metrics, wake=pool.wake, debounce=debounce, open_page_user=page_user(engine)))
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


def live_channel(engine: Engine, binding: str) -> dict[str, Any] | None:
    with engine.begin() as conn:
        return scheduling.channel_health(conn).get(binding)


def titles(engine: Engine, binding: str) -> set[str]:
    return {r["title"] for r in local_events(engine, binding).values()}


def ready_channel(engine: Engine, binding: str, pool: WorkerPool) -> dict[str, Any]:
    """Wake the worker and wait for a live channel the provider has reached us on (Google's `sync`
    message, Graph's validation handshake)."""
    pool.wake.set()
    wait_for(lambda: live_channel(engine, binding), what="a channel")
    return wait_for(lambda: (c := live_channel(engine, binding)) and c["confirmed_at"] and c,  # type: ignore[return-value]
                    what="the provider's first message")


def delivered(side: RemoteSide) -> list[dict[str, Any]]:
    body = admin(side.url, "GET", "/deliveries").json()
    return list(body.get("deliveries", body))


# --- tests ---------------------------------------------------------------------------------------


def test_a_remote_change_arrives_through_a_real_notification(
    engine: Engine, side: RemoteSide, service: tuple[str, WorkerPool]
) -> None:
    side.insert("Before")
    binding = side.bind(engine)
    channel = ready_channel(engine, binding, service[1])
    assert titles(engine, binding) == {"Before"}
    admin(side.url, "DELETE", "/requests")
    started = time.monotonic()
    side.insert("After")
    wait_for(lambda: "After" in titles(engine, binding), timeout=5, what="the change")
    assert time.monotonic() - started < 2.0, "a notified change lands within a couple of seconds"
    assert len(side.syncs()) == 1  # one incremental list, no polling
    assert channel["address"] == f"{service[0]}/webhooks/{side.kind}"


def test_forged_notifications_change_nothing(
    engine: Engine, side: RemoteSide, service: tuple[str, WorkerPool]
) -> None:
    binding = side.bind(engine)
    channel = ready_channel(engine, binding, service[1])
    answers = [(httpx.post(url, **kwargs).status_code, expected)
               for url, kwargs, expected in side.forgeries(service[0], channel)]
    assert [a for a, _ in answers] == [e for _, e in answers]
    with engine.begin() as conn:
        assert account_store.get_binding(conn, binding)["dirty_at"] is None
    metrics = httpx.get(f"{service[0]}/metrics", headers=auth_headers(engine, "admin")).text
    assert f'calsync_notifications_total{{provider="{side.kind}",result="bad-token"}} 1.0' in metrics
    assert f'calsync_notifications_total{{provider="{side.kind}",result="accepted"}}' not in metrics


def test_dropped_notifications_are_caught_by_the_poll_timer(engine: Engine, side: RemoteSide) -> None:
    binding = side.bind(engine)
    _url, _pool, stop = start_service(engine, poll_interval=1.0)
    try:
        wait_for(lambda: live_channel(engine, binding), what="a channel")
        admin(side.url, "POST", "/push-faults", json={"drop_rate": 1.0})
        side.insert("Nobody told us")
        wait_for(lambda: "Nobody told us" in titles(engine, binding), timeout=6, what="the poll")
        assert any(d.get("outcome") == "dropped" for d in delivered(side))
    finally:
        stop()


def test_duplicated_and_reordered_notifications_make_one_sync(
    engine: Engine, side: RemoteSide, service: tuple[str, WorkerPool]
) -> None:
    binding = side.bind(engine)
    ready_channel(engine, binding, service[1])
    admin(side.url, "POST", "/push-faults", json={"duplicate_rate": 1.0, "reorder": True})
    admin(side.url, "DELETE", "/requests")
    admin(side.url, "DELETE", "/deliveries")
    side.insert("Once")
    wait_for(lambda: "Once" in titles(engine, binding), what="the change")
    admin(side.url, "POST", "/push/flush", json={"timeout": 5})
    time.sleep(0.5)
    copies = sum(d.get("count", 1) for d in delivered(side) if d["outcome"] == "delivered")
    assert copies >= 2, "the message really came twice"
    assert len(side.syncs()) == 1


def test_a_burst_of_notifications_is_one_or_two_syncs(engine: Engine, side: RemoteSide) -> None:
    """The coalescing window (debounce) is a setting; with a window longer than the burst, the burst
    is settled by the first sync, plus one more for notifications that arrive while it runs."""
    binding = side.bind(engine)
    url, pool, stop = start_service(engine, debounce=1.0)
    try:
        channel = ready_channel(engine, binding, pool)
        admin(side.url, "DELETE", "/requests")

        def send(client: httpx.Client, n: int) -> int:
            target, kwargs = side.notification(url, channel, n)
            return client.post(target, **kwargs).status_code

        with httpx.Client() as client, ThreadPoolExecutor(20) as senders:
            answers = list(senders.map(lambda n: send(client, n), range(100)))
        assert answers == [side.accepted_status] * 100
        wait_for(side.syncs, what="a sync")
        time.sleep(1.5)
        syncs = len(side.syncs())
        assert 1 <= syncs <= 2, f"{syncs} syncs for one burst of 100 notifications"
    finally:
        stop()


def test_channel_is_renewed_before_expiry_without_a_gap(engine: Engine, side: RemoteSide) -> None:
    binding = side.bind(engine)
    _url, _pool, stop = start_service(engine, poll_interval=0.5, channel_ttl=60, channel_renew_before=59.5)
    try:
        first = wait_for(lambda: live_channel(engine, binding), what="a channel")
        if side.renews_in_place:  # the same subscription, a later expiry, asked for with PATCH
            wait_for(lambda: any(r["method"] == "PATCH" and r["path"].endswith(f"/subscriptions/{first['resource_id']}")
                                 and r["status"] == 200
                                 for r in admin(side.url, "GET", "/requests").json()["requests"]),
                     timeout=8, what="a renewal")
            renewed = wait_for(lambda: (c := live_channel(engine, binding)) and c["expiration"] > first["expiration"]
                               and c, what="the later expiry")
            assert (renewed["id"], renewed["resource_id"]) == (first["id"], first["resource_id"])
            assert side.remote_live(first) and side.remote_channel_count() == 1
        else:  # a new channel first, then the old one stopped
            second = wait_for(lambda: (c := live_channel(engine, binding)) and c["id"] != first["id"] and c,
                              timeout=8, what="a renewed channel")

            def stored() -> dict[str, dict[str, Any]]:
                with engine.begin() as conn:
                    return {r["id"]: dict(r) for r in conn.execute(select(channels)).mappings()}

            wait_for(lambda: stored()[first["id"]]["state"] == "stopped", timeout=2, what="the old channel stopped")
            rows = stored()
            assert rows[second["id"]]["created_at"] <= rows[first["id"]]["updated_at"], "new channel before old stopped"
            assert not side.remote_live(first)
        side.insert("Via the renewed channel")
        wait_for(lambda: "Via the renewed channel" in titles(engine, binding), timeout=5, what="the change")
    finally:
        stop()


def test_status_api_reports_health(engine: Engine, side: RemoteSide, service: tuple[str, WorkerPool]) -> None:
    binding = side.bind(engine)
    service[1].wake.set()
    wait_for(lambda: live_channel(engine, binding), what="a channel")
    status = httpx.get(f"{service[0]}/api/v1/status").json()
    (row,) = status["bindings"]
    assert row["id"] == binding and row["has_sync_token"] and row["last_sync_status"] == "ok"
    assert row["channel"]["expiration"] and row["dirty"] is False
    assert status["accounts"][0]["state"] == "ok" and status["conference_backlog"] == 0
    metrics = httpx.get(f"{service[0]}/metrics", headers=auth_headers(engine, "admin")).text
    assert "calsync_syncs_total" in metrics
    assert f'calsync_provider_requests_total{{provider="{side.kind}"' in metrics


def test_rate_limited_account_backs_off(engine: Engine, side: RemoteSide) -> None:
    side.bind(engine)
    admin(side.url, "POST", "/faults", json={"status": 429, "retry_after": 30})
    worker = Worker(engine, settings=WorkerSettings(poll_interval=0))
    assert worker.run_once() is True
    with engine.begin() as conn:
        account = account_store.list_accounts(conn)[0]
    assert account["backoff_until"] is not None
    assert (account["backoff_until"] - utcnow()).total_seconds() >= 25, "Retry-After is honoured"
    admin(side.url, "DELETE", "/requests")
    assert worker.run_once() is False, "the account waits out its backoff"
    assert admin(side.url, "GET", "/requests").json()["requests"] == []
    worker.close()


def test_unbinding_stops_the_channel(engine: Engine, side: RemoteSide, service: tuple[str, WorkerPool]) -> None:
    from calsync.engine.channels import unbind
    from calsync.engine.pool import ProviderPool

    binding = side.bind(engine)
    channel = ready_channel(engine, binding, service[1])
    assert side.remote_live(channel)
    pool = ProviderPool(engine)
    assert unbind(engine, pool, binding) == 1
    pool.close()
    assert not side.remote_live(channel)
    with engine.begin() as conn:
        assert account_store.list_bindings(conn) == []
    admin(side.url, "DELETE", "/deliveries")
    side.insert("Nobody listens")
    admin(side.url, "POST", "/push/flush", json={"timeout": 5})
    assert delivered(side) == []
