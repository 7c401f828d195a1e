"""Outbound webhooks (issue 20, item 2) against a real receiver on loopback: a threaded http.server
that records what arrives. Signatures are checked with the `standardwebhooks` package (an independent
implementation of the spec); retries, ordering per event, disabling after the retry bound (short here),
URL refusals, the routes, and `calsync sync` delivering what is due."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from standardwebhooks.webhooks import Webhook

from calsync.emulators.oauth.tls import TlsFiles, ensure_tls_files
from calsync.emulators.server import serve_in_thread
from calsync.engine import local, setup
from calsync.engine.sync import sync_once
from calsync.hooks import urls
from calsync.hooks.delivery import Deliverer, DeliverySettings, start_in_thread
from calsync.service.app import create_app
from calsync.store import hooks as hook_store
from calsync.store import users
from calsync.store.db import open_engine
from calsync.store.schema import webhook_subscriptions
from tests.helpers import GoogleApi, auth_headers, migrated_sqlite

EVENT = {"title": "Standup", "start": "2026-12-08T09:00:00Z", "end": "2026-12-08T09:15:00Z"}
ALL_KINDS = ["created", "updated", "deleted", "undeleted", "conference-changed", "conflict-opened", "conflict-resolved"]
FAST = DeliverySettings(retry_base=0.05, retry_ceiling=0.2, retry_for=30.0, timeout=2.0, connect_timeout=1.0)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: answers `status` (after `delay` seconds), records every request.
    `stop()` closes the port (connections refused) and `start()` opens the same port again."""

    status: int = 204
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    port: int = 0
    tls: TlsFiles | None = None
    server_names: list[str | None] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                with receiver._lock:
                    receiver.in_flight += 1
                try:
                    body = self.rfile.read(int(self.headers.get("content-length", "0")))
                    if receiver.delay:
                        time.sleep(receiver.delay)
                    with receiver._lock:
                        headers = {k.lower(): v for k, v in self.headers.items()}
                        receiver.received.append(Received(headers, body))
                    self.send_response(receiver.status)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:  # https, recording the name each client asked for (SNI)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.cert, self.tls.key)
            context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)  # type: ignore[assignment,misc,func-returns-value]
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture()
def loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(urls.ALLOW_LOOPBACK_ENV, "1")


def _subscribe(engine: Engine, url: str, events: list[str] | None = None, secret: str = "") -> tuple[str, str]:
    from calsync.hooks import signing

    secret = secret or signing.new_secret()
    with engine.begin() as conn:
        row = hook_store.create_subscription(conn, users.default_owner(conn), url, events or ALL_KINDS, None, secret)
    return row["id"], secret


def _until(condition: Any, timeout: float, what: str, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(step)


def test_deliveries_are_signed_the_standard_webhooks_way(tmp_path: Path, receiver: Receiver, loopback: None) -> None:
    """Subscribed through the API: the secret comes once; each change arrives with the three headers,
    and the `standardwebhooks` package verifies every signature with that secret."""
    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    calendar = setup.add_calendar(engine, "Work")
    server = serve_in_thread(create_app(engine))
    headers = auth_headers(engine)
    try:
        with httpx.Client(base_url=f"{server.url}/api/v1", headers=headers) as api:
            made = api.post("/webhooks", json={"url": receiver.url, "events": ["created", "updated", "deleted"]})
            assert made.status_code == 201, made.text
            hook = made.json()
            assert hook["secret"].startswith("whsec_") and hook["state"] == "active"
            assert made.headers["location"] == f"/api/v1/webhooks/{hook['id']}"
            listed = api.get("/webhooks").json()["webhooks"]
            assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
            assert "secret" not in api.get(f"/webhooks/{hook['id']}").json()
            with engine.begin() as conn:  # sealed at rest
                stored = conn.execute(select(webhook_subscriptions.c.secret_sealed)).scalar_one()
            assert hook["secret"] not in stored and stored.startswith("v1:")

            event = local.create_event(engine, calendar, EVENT).event_id
            local.update_event(engine, event, {"title": "Daily standup"}, None)
            local.delete_event(engine, event, None)
            deliverer = Deliverer(engine, FAST)
            try:
                deliverer.drain(10)
            finally:
                deliverer.close()

            assert len(receiver.received) == 3
            verifier = Webhook(hook["secret"])
            for got in receiver.received:
                assert got.headers["webhook-id"].startswith("msg_")
                assert got.headers["webhook-signature"].startswith("v1,")
                assert got.headers["content-type"] == "application/json"
                assert verifier.verify(got.body, got.headers) == got.json
            bodies = [r.json for r in receiver.received]
            assert [(b["type"], b["data"]["event_id"], b["data"]["version"]) for b in bodies] == [
                ("created", event, 1),
                ("updated", event, 2),
                ("deleted", event, 3),
            ]
            assert bodies[1]["data"]["fields"] == ["title"] and bodies[1]["data"]["side"] == "local"
            assert bodies[0]["data"]["calendar_id"] == calendar and bodies[0]["timestamp"].endswith("Z")
            # a tampered body or another secret does not verify
            from standardwebhooks.webhooks import WebhookVerificationError

            with pytest.raises(WebhookVerificationError):
                verifier.verify(receiver.received[0].body.replace(b"created", b"deleted"), receiver.received[0].headers)
            with pytest.raises(WebhookVerificationError):
                Webhook("whsec_" + "A" * 43 + "=").verify(receiver.received[0].body, receiver.received[0].headers)

            log = api.get(f"/webhooks/{hook['id']}/deliveries", params={"limit": 2}).json()
            assert [d["status"] for d in log["deliveries"]] == ["delivered", "delivered"]
            assert [d["kind"] for d in log["deliveries"]] == ["deleted", "updated"]  # newest first
            assert log["deliveries"][0]["last_status"] == 204 and log["deliveries"][0]["attempts"] == 1
            older = api.get(f"/webhooks/{hook['id']}/deliveries", params={"cursor": log["next_cursor"]}).json()
            assert [d["kind"] for d in older["deliveries"]] == ["created"] and older["next_cursor"] is None
            # a manual redeliver sends the same message (same webhook-id) again
            first = older["deliveries"][0]
            again = api.post(f"/webhooks/{hook['id']}/deliveries/{first['id']}/redeliver")
            assert again.status_code == 202 and again.json()["status"] == "pending"
            deliverer = Deliverer(engine, FAST)
            try:
                deliverer.drain(10)
            finally:
                deliverer.close()
            assert receiver.received[-1].headers["webhook-id"] == first["message_id"]
            assert api.delete(f"/webhooks/{hook['id']}").status_code == 204
            assert api.get(f"/webhooks/{hook['id']}").status_code == 404
            # a read key may look, not subscribe
            read = auth_headers(engine, "read")
            assert (
                api.post("/webhooks", json={"url": receiver.url, "events": ["created"]}, headers=read).status_code
                == 403
            )
            assert api.get("/webhooks", headers=read).status_code == 200
    finally:
        server.stop()
        engine.dispose()


def test_a_receiver_down_for_a_while_gets_every_delivery_afterwards_in_order_per_event(
    db_url: str, receiver: Receiver, loopback: None
) -> None:
    """The receiver's port closed while events change; two workers keep trying (their leases never let
    them send one delivery at once). When it is back, every change arrives, each event's in version order."""
    engine = open_engine(db_url)
    calendar = setup.add_calendar(engine, "Work")
    _subscribe(engine, receiver.url)
    receiver.stop()
    events = [local.create_event(engine, calendar, {**EVENT, "title": f"e{n}"}).event_id for n in range(4)]
    for round_ in range(3):
        for event in events:
            local.update_event(engine, event, {"title": f"{event[:4]} r{round_}"}, None)
    expected = {(e, v) for e in events for v in range(1, 5)}

    stop = threading.Event()
    settings = DeliverySettings(
        retry_base=0.05, retry_ceiling=0.3, retry_for=60.0, timeout=2.0, connect_timeout=1.0, idle_poll=0.02, batch=5
    )
    workers = [start_in_thread(engine, stop, settings) for _ in range(2)]
    try:
        def the_log() -> list[Any]:
            with engine.begin() as conn:
                sub = hook_store.list_subscriptions(conn)[0]
                return list(hook_store.list_deliveries(conn, sub["id"], limit=100))

        # attempts fail meanwhile (connection refused): a second one within about a second, or as long
        # as a loaded machine takes to start the workers (a fixed 1 s sleep saw none tried on CI)
        _until(lambda: max((d["attempts"] for d in the_log()), default=0) >= 2, 30, "two failed attempts")
        log = the_log()
        with engine.begin() as conn:
            sub = hook_store.list_subscriptions(conn)[0]
        assert len(log) == 16 and all(d["status"] == "pending" for d in log)
        assert max(d["attempts"] for d in log) >= 2
        # only the oldest delivery of each event was tried: the later ones wait for it
        tried = {
            d["event_id"]: d["version"]
            for d in (dict(x, version=x["payload"]["data"]["version"]) for x in log)
            if d["attempts"]
        }
        assert sorted(tried.values()) == [1, 1, 1, 1]
        receiver.start()
        _until(
            lambda: len({(r.json["data"]["event_id"], r.json["data"]["version"]) for r in receiver.received}) == 16,
            30,
            "every delivery",
        )
    finally:
        stop.set()
        for worker in workers:
            worker.join(10)
    seen = [(r.json["data"]["event_id"], r.json["data"]["version"]) for r in receiver.received]
    assert set(seen) == expected
    for event in events:
        versions = [v for e, v in seen if e == event]
        assert versions == sorted(versions), (event, versions)
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert len(ids) == len(set(ids)), "a delivery was sent twice though every answer was a success"
    with engine.begin() as conn:
        log = hook_store.list_deliveries(conn, sub["id"], limit=100)
    assert {d["status"] for d in log} == {"delivered"}
    engine.dispose()


def test_an_always_failing_receiver_disables_the_subscription_after_the_bound(
    tmp_path: Path, receiver: Receiver, loopback: None
) -> None:
    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    calendar = setup.add_calendar(engine, "Work")
    hook_id, _ = _subscribe(engine, receiver.url)
    receiver.status = 500
    bound = 1.5
    settings = DeliverySettings(retry_base=0.1, retry_ceiling=0.4, retry_for=bound, timeout=2.0, idle_poll=0.02)
    event = local.create_event(engine, calendar, EVENT).event_id
    local.update_event(engine, event, {"title": "later"}, None)
    deliverer = Deliverer(engine, settings)
    started = time.monotonic()
    try:
        while time.monotonic() - started < 10:
            deliverer.run_once()
            with engine.begin() as conn:
                if hook_store.get_subscription(conn, hook_id)["state"] == "disabled":  # type: ignore[index]
                    break
            time.sleep(0.02)
    finally:
        deliverer.close()
    took = time.monotonic() - started
    with engine.begin() as conn:
        sub = hook_store.get_subscription(conn, hook_id)
        log = hook_store.list_deliveries(conn, hook_id)
    assert sub is not None and sub["state"] == "disabled"
    assert bound <= took < bound + 5, took
    assert "HTTP 500" in (sub["disabled_reason"] or "") and "retry bound is 2 s" in (sub["disabled_reason"] or "")
    newest, oldest = log
    # at least one retry before giving up; how many fit in the bound depends on the machine's load
    assert oldest["status"] == "failed" and oldest["attempts"] >= 2 and oldest["last_status"] == 500
    assert len(receiver.received) == oldest["attempts"]
    assert newest["status"] == "pending" and newest["attempts"] == 0  # it waited behind the first, never sent
    assert all(r.json["data"]["version"] == 1 for r in receiver.received)
    # the owner sees why, turns it back on; the waiting delivery goes out once the receiver works
    server = serve_in_thread(create_app(engine))
    try:
        with httpx.Client(base_url=f"{server.url}/api/v1", headers=auth_headers(engine)) as api:
            shown = api.get(f"/webhooks/{hook_id}").json()
            assert shown["state"] == "disabled" and "HTTP 500" in shown["disabled_reason"]
            receiver.status = 200
            assert api.post(f"/webhooks/{hook_id}/enable").json()["state"] == "active"
    finally:
        server.stop()
    deliverer = Deliverer(engine, settings)
    try:
        deliverer.drain(5)
    finally:
        deliverer.close()
    assert [r.json["data"]["version"] for r in receiver.received][-1] == 2
    engine.dispose()


def test_a_failing_receiver_costs_a_few_attempts_per_backoff_step_not_one_per_delivery(
    tmp_path: Path, receiver: Receiver, loopback: None
) -> None:
    """Forty events waiting for a receiver that answers 500: after a failure the subscription pauses
    until that delivery's retry time, so the receiver sees a handful of requests a step, not forty."""
    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    calendar = setup.add_calendar(engine, "Work")
    hook_id, _ = _subscribe(engine, receiver.url)
    receiver.status = 500
    settings = DeliverySettings(retry_base=0.5, retry_ceiling=0.5, retry_for=60.0, timeout=2.0, idle_poll=0.02)
    for n in range(40):
        local.create_event(engine, calendar, {**EVENT, "title": f"e{n}"})
    deliverer = Deliverer(engine, settings)
    try:
        started = time.monotonic()
        while time.monotonic() - started < 2.0:  # about four backoff steps of 0.5 s
            deliverer.run_once()
            time.sleep(0.02)
        with engine.begin() as conn:
            sub = hook_store.get_subscription(conn, hook_id)
            log = hook_store.list_deliveries(conn, hook_id)
        assert sub is not None and sub["paused_until"] is not None
        attempts = sum(d["attempts"] for d in log)
        assert len(log) == 40 and attempts == len(receiver.received)
        assert 1 <= attempts <= 5 * (settings.concurrency + 1), attempts  # unpaused: 40 a step, 160 in all
        receiver.status = 204  # back: everything goes out once the pause is over

        def all_delivered() -> bool:
            deliverer.run_once()
            with engine.begin() as conn:
                return {d["status"] for d in hook_store.list_deliveries(conn, hook_id)} == {"delivered"}

        _until(all_delivered, 15, "every delivery after the receiver came back")
    finally:
        deliverer.close()
    with engine.begin() as conn:
        assert {d["status"] for d in hook_store.list_deliveries(conn, hook_id)} == {"delivered"}
        assert hook_store.get_subscription(conn, hook_id)["paused_until"] is None  # type: ignore[index]
    engine.dispose()


def test_a_receiver_that_hangs_never_delays_sync(tmp_path: Path, google_url: str, loopback: None) -> None:
    """Deliveries to a receiver that holds every request run on their own thread: a sync with the
    Google emulator finishes (and its changes are in the store) while a delivery is stuck in flight."""
    hanging = Receiver(status=200, delay=30).start()
    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    try:
        google = GoogleApi(google_url, "hookuser")
        remote_calendar = google.primary_id()
        account = setup.add_account(engine, "google", "hookuser", google_url, {"token": "hookuser"})
        setup.bind_calendar(engine, account, remote_calendar, setup.NewCalendar("Work"))
        _subscribe(engine, hanging.url)
        google.insert(remote_calendar, "first")
        sync_once(engine)
        stop = threading.Event()
        worker = start_in_thread(engine, stop, DeliverySettings(timeout=60, idle_poll=0.02))
        try:
            _until(lambda: hanging.in_flight > 0, 10, "a delivery in flight")
            google.insert(remote_calendar, "second")
            started = time.monotonic()
            report = sync_once(engine)
            took = time.monotonic() - started
            assert report.ok and hanging.in_flight > 0
            assert took < 5, took
            from calsync.store import events as event_store

            with engine.begin() as conn:
                titles = {e["title"] for e in event_store.list_events(conn)}
            assert {"first", "second"} <= titles
        finally:
            stop.set()
    finally:
        hanging.stop()
        engine.dispose()


PRIVATE = [
    "https://10.0.0.5/hook",
    "https://192.168.1.20/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://172.16.0.1/",
    "https://100.64.0.1/",
    "https://0.0.0.0/",
    "https://224.0.0.1/",
    "https://[::1]/hook",
    "https://[fe80::1]/hook",
    "https://[fd00::1]/hook",
    "https://[::ffff:10.0.0.1]/hook",
    "https://127.0.0.1/hook",
    "https://localhost/hook",  # a name that resolves to 127.0.0.1
]


@pytest.mark.parametrize("url", PRIVATE)
def test_a_url_to_a_private_address_is_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(urls.ALLOW_LOOPBACK_ENV, raising=False)
    with pytest.raises(urls.RefusedUrl):
        urls.check(url)


def test_url_rules_and_the_loopback_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(urls.ALLOW_LOOPBACK_ENV, raising=False)
    for url in (
        "http://127.0.0.1:8080/hook",
        "http://8.8.8.8/hook",
        "ftp://8.8.8.8/",
        "https://u:p@8.8.8.8/",
        "https:///x",
        "not a url",
        "https://" + "a" * 2100 + ".com/",
    ):
        with pytest.raises(urls.RefusedUrl):
            urls.check(url)
    public = urls.check("https://8.8.8.8:8443/hook?x=1")
    assert public.url == "https://8.8.8.8:8443/hook?x=1" and public.sni is None
    monkeypatch.setenv(urls.ALLOW_LOOPBACK_ENV, "1")
    assert urls.check("http://127.0.0.1:8080/hook").url == "http://127.0.0.1:8080/hook"
    pinned = urls.check("http://localhost:8080/hook")  # the name is kept in the Host header only
    assert pinned.host == "localhost:8080" and pinned.url.startswith(("http://127.0.0.1:8080", "http://[::1]:8080"))
    assert urls.check("http://[::1]:9/").host == "[::1]:9"
    for url in ("http://10.0.0.5/hook", "https://192.168.1.20/", "https://169.254.169.254/", "http://8.8.8.8/"):
        with pytest.raises(urls.RefusedUrl):  # the switch opens loopback, nothing else
            urls.check(url)


def test_the_api_refuses_private_urls_and_delivery_checks_again(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /webhooks answers 422 naming the url; a subscription made while loopback was allowed is
    checked again at delivery time, so nothing is sent once it is not."""
    monkeypatch.delenv(urls.ALLOW_LOOPBACK_ENV, raising=False)
    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    calendar = setup.add_calendar(engine, "Work")
    server = serve_in_thread(create_app(engine))
    try:
        with httpx.Client(base_url=f"{server.url}/api/v1", headers=auth_headers(engine)) as api:
            for url in (
                "https://10.1.2.3/x",
                "https://169.254.169.254/",
                "http://[::1]:8080/",
                receiver.url,
                "https://localhost/",
            ):
                answer = api.post("/webhooks", json={"url": url, "events": ["created"]})
                assert answer.status_code == 422, (url, answer.text)
                assert answer.json()["detail"][0]["loc"] == ["body", "url"]
            bad_kind = api.post("/webhooks", json={"url": "https://8.8.8.8/", "events": ["exploded"]})
            assert bad_kind.status_code == 422
            other = api.post(
                "/webhooks", json={"url": "https://8.8.8.8/", "events": ["created"], "calendar_id": "0" * 32}
            )
            assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["body", "calendar_id"]
            assert api.get("/webhooks").json()["webhooks"] == []
    finally:
        server.stop()
    hook_id, _ = _subscribe(engine, receiver.url)  # as if made while the switch was on
    local.create_event(engine, calendar, EVENT)
    deliverer = Deliverer(engine, FAST)
    try:
        deliverer.run_once()
    finally:
        deliverer.close()
    assert receiver.received == []
    with engine.begin() as conn:
        (delivery,) = hook_store.list_deliveries(conn, hook_id)
    assert delivery["status"] == "pending" and delivery["attempts"] == 1
    assert (delivery["last_error"] or "").startswith("refused: the URL must be https")
    engine.dispose()


def test_calsync_sync_delivers_the_webhooks_that_are_due(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "calsync.db"
    engine = open_engine(f"sqlite:///{db}")
    calendar = setup.add_calendar(engine, "Work")
    _subscribe(engine, receiver.url, ["created"])
    event = local.create_event(engine, calendar, EVENT).event_id
    engine.dispose()
    env = {**os.environ, urls.ALLOW_LOOPBACK_ENV: "1", "CALSYNC_DB": f"sqlite:///{db}"}
    done = subprocess.run(
        [sys.executable, "-m", "calsync.cli", "sync", "--local"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "webhooks: 1 delivered" in done.stderr
    assert [(r.json["type"], r.json["data"]["event_id"]) for r in receiver.received] == [("created", event)]


def test_a_service_without_workers_delivers_when_calsync_sync_asks_it(tmp_path: Path, receiver: Receiver) -> None:
    """The contract's last line: `calsync serve --no-workers` runs no delivery thread, and `calsync sync`
    on its database is handed to it (/control/sync), which delivers the webhooks due after the sync."""
    import socket

    db = tmp_path / "calsync.db"
    engine = open_engine(f"sqlite:///{db}")
    calendar = setup.add_calendar(engine, "Work")
    headers = auth_headers(engine)
    engine.dispose()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    service = subprocess.Popen(
        [sys.executable, "-m", "calsync.cli", "serve", "--no-workers", "--port", str(port), "--db", str(db)],
        env={**env, urls.ALLOW_LOOPBACK_ENV: "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _answers(f"{base}/healthz"), 30, "the service", step=0.05)
        with httpx.Client(base_url=f"{base}/api/v1", headers=headers) as api:
            made = api.post("/webhooks", json={"url": receiver.url, "events": ["created"]})
            assert made.status_code == 201, made.text
            created = api.post("/events", json={"calendar_id": calendar, **EVENT})
            assert created.status_code == 201
        time.sleep(0.5)
        assert receiver.received == []  # no worker in the service: nothing is sent until a sync asks
        done = subprocess.run(
            [sys.executable, "-m", "calsync", "sync", "--db", str(db)],  # the `calsync` command: delegates
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "synced by the calsync service" in done.stderr
        assert [(r.json["type"], r.json["data"]["event_id"]) for r in receiver.received] == [
            ("created", created.json()["id"])
        ]
        Webhook(made.json()["secret"]).verify(receiver.received[0].body, receiver.received[0].headers)
    finally:
        service.terminate()
        service.wait(20)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_key_rotation_reseals_the_signing_secret(tmp_path: Path) -> None:
    """The secret is one of the sealed columns (store/keys.py): rotation re-seals it, and it still signs."""
    from calsync.store import keys as key_store

    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    hook_id, secret = _subscribe(engine, "https://8.8.8.8/hook")
    with engine.begin() as conn:
        before = conn.execute(select(webhook_subscriptions.c.secret_sealed)).scalar_one()
        assert key_store.sealed_counts(conn)["webhook_subscriptions.secret_sealed"]
    key_store.rotate(engine, grace=0)
    with engine.begin() as conn:
        after = conn.execute(select(webhook_subscriptions.c.secret_sealed)).scalar_one()
        assert after != before and secret not in after
        assert hook_store.signing_secret(conn, hook_id) == secret
    engine.dispose()


def test_https_goes_to_the_checked_address_with_the_name_in_host_and_sni(tmp_path: Path, loopback: None) -> None:
    """A URL naming a host: the request connects to the address the check approved, and the name goes in
    the Host header and in TLS's SNI, where the certificate is checked against it."""
    tls = ensure_tls_files(tmp_path / "tls")
    receiver = Receiver(tls=tls).start()
    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    try:
        calendar = setup.add_calendar(engine, "Work")
        url = f"https://localhost:{receiver.port}/hook"
        _, secret = _subscribe(engine, url, ["created"])
        local.create_event(engine, calendar, EVENT)
        deliverer = Deliverer(engine, replace(FAST, ca_bundle=tls.ca_cert))
        try:
            assert deliverer.drain(10).delivered == 1
        finally:
            deliverer.close()
        (got,) = receiver.received
        assert got.headers["host"] == f"localhost:{receiver.port}"
        assert receiver.server_names == ["localhost"]
        Webhook(secret).verify(got.body, got.headers)
        # without the CA, the certificate is not trusted: an attempt fails, nothing is delivered
        local.create_event(engine, calendar, EVENT)
        deliverer = Deliverer(engine, FAST)
        try:
            step = deliverer.drain(10)
        finally:
            deliverer.close()
        assert step.delivered == 0 and step.retried == 1 and len(receiver.received) == 1
    finally:
        receiver.stop()
        engine.dispose()


def test_a_hanging_receiver_holds_only_its_share_of_the_request_slots(tmp_path: Path, loopback: None) -> None:
    """Two subscriptions, one receiver holding every request: the other still gets every change at once."""
    hanging, fine = Receiver(delay=20).start(), Receiver().start()
    engine = open_engine(migrated_sqlite(tmp_path / "calsync.db"))
    stop = threading.Event()
    try:
        calendar = setup.add_calendar(engine, "Work")
        _subscribe(engine, hanging.url, ["created"])
        _subscribe(engine, fine.url, ["created"])
        for n in range(6):
            local.create_event(engine, calendar, {**EVENT, "title": f"e{n}"})
        settings = replace(FAST, concurrency=4, per_subscription=2, timeout=30, idle_poll=0.02)
        start_in_thread(engine, stop, settings)
        _until(lambda: len(fine.received) == 6, 10, "every change at the working receiver")
        assert hanging.in_flight == 2 and hanging.received == []
    finally:
        stop.set()
        hanging.stop()
        fine.stop()
        engine.dispose()
