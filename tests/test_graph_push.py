"""Graph subscriptions end to end: the Graph emulator over real HTTP, the service's /webhooks/graph
receiver, a real worker and a real SQLite store.

What is Graph's own (and so not covered by the provider-neutral tests in test_service.py): the
validation handshake, clientState in the body, lifecycle notifications, renewal in place with PATCH,
the subscription lifetime limit, DELETE on unbind.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from calsync.emulators.server import serve_in_thread
from calsync.engine.channels import ensure_channel, unbind
from calsync.engine.pool import ProviderPool
from calsync.model import utcnow
from calsync.providers.base import ProviderError
from calsync.providers.graph import GraphProvider
from calsync.service.app import WorkerPool
from calsync.store import accounts as account_store
from calsync.store import scheduling
from calsync.store.schema import channels
from tests.helpers import admin, auth_headers
from tests.test_service import (
    GraphSide,
    live_channel,
    ready_channel,
    start_service,
    titles,
    wait_for,
)

GRAPH_MAX_MINUTES = 4230  # the emulator's default limit for Outlook event subscriptions (stored docs)


@pytest.fixture()
def graph(graph_url: str) -> GraphSide:
    return GraphSide(graph_url)


@pytest.fixture()
def service(engine: Engine) -> Iterator[tuple[str, WorkerPool]]:
    url, pool, stop = start_service(engine)
    yield url, pool
    stop()


def requests(graph: GraphSide, method: str, path_end: str = "") -> list[dict[str, Any]]:
    log = admin(graph.url, "GET", "/requests").json()["requests"]
    return [r for r in log if r["method"] == method and r["path"].endswith(path_end)]


def subscriptions(graph: GraphSide) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in admin(graph.url, "GET", "/subscriptions").json()["subscriptions"]}


def lifecycle(graph: GraphSide, subscription_id: str, event: str, **options: Any) -> None:
    admin(graph.url, "POST", f"/subscriptions/{subscription_id}/lifecycle", json={"event": event, **options})


def dirty_at(engine: Engine, binding: str) -> Any:
    with engine.begin() as conn:
        return account_store.get_binding(conn, binding)["dirty_at"]


def metric(engine: Engine, service_url: str, result: str) -> float:
    prefix = f'calsync_notifications_total{{provider="graph",result="{result}"}} '
    answer = httpx.get(f"{service_url}/metrics", headers=auth_headers(engine, "admin")).raise_for_status()
    for line in answer.text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return 0.0


def unnoticed_insert(graph: GraphSide, title: str) -> None:
    """A remote change whose notification Graph drops (so only a sync can find it)."""
    admin(graph.url, "POST", "/push-faults", json={"drop_rate": 1.0})
    graph.insert(title)
    admin(graph.url, "POST", "/push/flush", json={"timeout": 5})
    admin(graph.url, "DELETE", "/push-faults")


# --- the validation handshake ------------------------------------------------------------------


def test_validation_handshake_echoes_the_decoded_token_as_text(
    engine: Engine, graph: GraphSide, service: tuple[str, WorkerPool]
) -> None:
    binding = graph.bind(engine)
    channel = ready_channel(engine, binding, service[1])
    handshakes = [d for d in admin(graph.url, "GET", "/deliveries").json()["deliveries"] if d["kind"] == "validation"]
    assert [d["outcome"] for d in handshakes] == ["validated", "validated"]  # notification + lifecycle URLs
    assert {d["url"] for d in handshakes} == {f"{service[0]}/webhooks/graph?channel={channel['channel_id']}"}

    token = "Validation: Testing client application reachability <b>&</b> Request-Id: 42+1"
    url = f"{service[0]}/webhooks/graph?channel={channel['channel_id']}&validationToken={quote(token, safe='')}"
    answer = httpx.post(url, headers={"Content-Type": "text/plain; charset=utf-8"})
    assert answer.status_code == 200 and answer.text == token
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.headers["x-content-type-options"] == "nosniff"
    stranger = httpx.post(f"{service[0]}/webhooks/graph?channel=nope&validationToken=x")
    assert stranger.status_code == 404, "no echo for a channel we are not making"


def test_a_subscription_that_fails_validation_is_not_active(engine: Engine, graph: GraphSide) -> None:
    """A receiver that echoes the token still URL-encoded (a classic mistake) fails the handshake:
    Graph answers 400, no subscription exists, and the channel row is 'failed', not active."""

    async def echo_encoded(request: Request) -> PlainTextResponse:
        return PlainTextResponse(quote(request.query_params.get("validationToken", ""), safe=""))

    wrong = serve_in_thread(Starlette(routes=[Route("/webhooks/graph", echo_encoded, methods=["POST"])]))
    pool = ProviderPool(engine)
    try:
        binding = graph.bind(engine)
        run = ensure_channel(engine, pool, binding, wrong.url)
        assert (run.created, run.failed) == (0, 1)
        with engine.begin() as conn:
            rows = conn.execute(select(channels.c.state)).scalars().all()
        assert rows == ["failed"] and live_channel(engine, binding) is None
        assert subscriptions(graph) == {}
        assert [r["status"] for r in requests(graph, "POST", "/subscriptions")] == [400]
    finally:
        pool.close()
        wrong.stop()


def test_our_receiver_refuses_a_handshake_for_a_channel_it_did_not_ask_for(
    engine: Engine, graph: GraphSide, service: tuple[str, WorkerPool]
) -> None:
    """Someone making a subscription to our URL (here: a watch call with no channel row) gets no echo,
    so Graph refuses to create it."""
    provider = GraphProvider("adele", graph.url)
    try:
        with pytest.raises(ProviderError) as failure:
            provider.watch(graph.calendar, uuid.uuid4().hex, f"{service[0]}/webhooks/graph", "secret")
    finally:
        provider.close()
    assert failure.value.status == 400
    assert subscriptions(graph) == {}


# --- change notifications --------------------------------------------------------------------------


def test_a_bad_client_state_is_rejected_and_marks_nothing(
    engine: Engine, graph: GraphSide, service: tuple[str, WorkerPool]
) -> None:
    binding = graph.bind(engine)
    channel = ready_channel(engine, binding, service[1])
    url = f"{service[0]}/webhooks/graph?channel={channel['channel_id']}"
    forged = httpx.post(url, json={"value": [graph.item(channel, clientState=channel["token"][:-1] + "x")]})
    missing = httpx.post(url, json={"value": [graph.item(channel, clientState=None)]})
    stale = httpx.post(url, json={"value": [graph.item(channel, subscriptionId=str(uuid.uuid4()))]})
    assert (forged.status_code, missing.status_code, stale.status_code) == (403, 403, 404)
    assert dirty_at(engine, binding) is None
    assert metric(engine, service[0], "bad-token") == 2 and metric(engine, service[0], "unknown-channel") == 1
    assert metric(engine, service[0], "accepted") == 0
    # one good item in a batch is enough to act on it; the forged one is still counted and ignored
    mixed = httpx.post(url, json={"value": [graph.item(channel, clientState="x"), graph.item(channel)]})
    assert mixed.status_code == 202 and metric(engine, service[0], "bad-token") == 3
    assert dirty_at(engine, binding) is not None


def test_a_notification_while_the_channel_is_pending_is_checked_by_client_state(engine: Engine, graph: GraphSide) -> None:
    """Between our POST /subscriptions and its answer the row is 'pending' and the subscription id
    unknown: the secret clientState alone decides."""
    url, pool, stop = start_service(engine)
    pool.stop()  # no worker: the row stays as we make it
    try:
        binding = graph.bind(engine)
        with engine.begin() as conn:
            scheduling.add_channel(conn, "pendingrow", binding, {
                "state": "pending", "channel_id": "pendingrow", "token": "s3cret", "address": url})
        target = f"{url}/webhooks/graph?channel=pendingrow"
        item = {"subscriptionId": str(uuid.uuid4()), "changeType": "created", "resource": "Users/x/Events/y"}
        assert httpx.post(target, json={"value": [item | {"clientState": "nope"}]}).status_code == 403
        assert dirty_at(engine, binding) is None
        assert httpx.post(target, json={"value": [item | {"clientState": "s3cret"}]}).status_code == 202
        assert dirty_at(engine, binding) is not None
    finally:
        stop()


def test_one_post_may_batch_several_subscriptions(engine: Engine, graph: GraphSide) -> None:
    """Without our channel id in the URL, each item is matched by its subscription id."""
    url, pool, stop = start_service(engine)
    pool.stop()
    try:
        first, second = graph.bind(engine), graph.bind(engine, graph.new_calendar("Second"))
        with engine.begin() as conn:
            for n, binding in enumerate((first, second)):
                scheduling.add_channel(conn, f"row{n}", binding, {
                    "state": "pending", "channel_id": f"row{n}", "token": f"token{n}", "address": url})
                scheduling.activate_channel(conn, f"row{n}", f"sub{n}", utcnow() + timedelta(hours=1))
        batch = [{"subscriptionId": f"sub{n}", "clientState": f"token{n}", "changeType": "updated"} for n in (0, 1)]
        assert httpx.post(f"{url}/webhooks/graph", json={"value": batch}).status_code == 202
        assert dirty_at(engine, first) is not None and dirty_at(engine, second) is not None
        swapped = [{"subscriptionId": "sub0", "clientState": "token1"}]
        assert httpx.post(f"{url}/webhooks/graph", json={"value": swapped}).status_code == 403
        assert httpx.post(f"{url}/webhooks/graph", content=b"{not json").status_code == 400
    finally:
        stop()


# --- lifecycle notifications --------------------------------------------------------------------------


def test_reauthorization_required_renews_the_subscription(
    engine: Engine, graph: GraphSide, service: tuple[str, WorkerPool]
) -> None:
    binding = graph.bind(engine)
    channel = ready_channel(engine, binding, service[1])
    admin(graph.url, "DELETE", "/requests")
    lifecycle(graph, channel["resource_id"], "reauthorizationRequired", pause=True)  # deliveries stop until renewed
    path = f"/subscriptions/{channel['resource_id']}"
    wait_for(lambda: [r for r in requests(graph, "PATCH", path) if r["status"] == 200], what="the PATCH renewal")
    renewed = wait_for(lambda: (c := live_channel(engine, binding)) and c["expiration"] > utcnow() + timedelta(hours=1)
                       and c, what="the renewed expiry")
    assert (renewed["id"], renewed["resource_id"]) == (channel["id"], channel["resource_id"]), "renewed in place"
    sub = subscriptions(graph)[channel["resource_id"]]
    assert sub["live"] and not sub["paused"]
    assert requests(graph, "POST", "/subscriptions") == [], "no second subscription"
    assert metric(engine, service[0], "reauthorization-required") == 1
    graph.insert("After the renewal")
    wait_for(lambda: "After the renewal" in titles(engine, binding), timeout=5, what="a notified change")


def test_subscription_removed_makes_a_new_one_and_syncs(
    engine: Engine, graph: GraphSide, service: tuple[str, WorkerPool]
) -> None:
    binding = graph.bind(engine)
    channel = ready_channel(engine, binding, service[1])
    unnoticed_insert(graph, "Missed while removed")
    assert "Missed while removed" not in titles(engine, binding)
    lifecycle(graph, channel["resource_id"], "subscriptionRemoved")
    wait_for(lambda: "Missed while removed" in titles(engine, binding), what="the catch-up sync")
    fresh = wait_for(lambda: (c := live_channel(engine, binding)) and c["id"] != channel["id"] and c,
                     what="a new subscription")
    with engine.begin() as conn:
        old_state = conn.execute(select(channels.c.state).where(channels.c.id == channel["id"])).scalar_one()
    assert old_state == "gone"
    assert set(subscriptions(graph)) == {fresh["resource_id"]} != {channel["resource_id"]}
    assert requests(graph, "DELETE", f"/subscriptions/{channel['resource_id']}") == [], "nothing left to delete"
    graph.insert("Through the new subscription")
    wait_for(lambda: "Through the new subscription" in titles(engine, binding), timeout=5, what="a notified change")


def test_missed_notifications_trigger_a_sync(engine: Engine, graph: GraphSide, service: tuple[str, WorkerPool]) -> None:
    binding = graph.bind(engine)
    channel = ready_channel(engine, binding, service[1])
    unnoticed_insert(graph, "Dropped on the way")
    time.sleep(0.5)
    assert "Dropped on the way" not in titles(engine, binding), "the poll timer (300 s) did not run meanwhile"
    admin(graph.url, "DELETE", "/requests")
    lifecycle(graph, channel["resource_id"], "missed")
    wait_for(lambda: "Dropped on the way" in titles(engine, binding), timeout=5, what="the catch-up sync")
    assert len(graph.syncs()) == 1
    assert live_channel(engine, binding)["id"] == channel["id"], "the subscription itself is fine"  # type: ignore[index]
    assert metric(engine, service[0], "missed") == 1


# --- lifetime and stopping ---------------------------------------------------------------------------


def test_expiry_never_exceeds_graphs_maximum(engine: Engine, graph: GraphSide) -> None:
    """Asking for a week (or for nothing in particular) gets the longest Graph allows: any more and
    Graph would refuse the subscription with 400."""
    url, pool, stop = start_service(engine)
    pool.stop()
    providers = ProviderPool(engine)
    try:
        for ttl in (7 * 24 * 3600, None):
            binding = graph.bind(engine, graph.new_calendar(f"ttl {ttl}"))
            before = utcnow()
            run = ensure_channel(engine, providers, binding, url, ttl_seconds=ttl)
            assert run.created == 1, f"ttl={ttl}: the subscription was refused"
            expiration = live_channel(engine, binding)["expiration"]  # type: ignore[index]
            longest = timedelta(minutes=GRAPH_MAX_MINUTES)
            assert before + longest - timedelta(minutes=5) < expiration <= utcnow() + longest
        short = graph.bind(engine, graph.new_calendar("short"))
        ensure_channel(engine, providers, short, url, ttl_seconds=3600)
        expiration = live_channel(engine, short)["expiration"]  # type: ignore[index]
        assert abs((expiration - utcnow() - timedelta(hours=1)).total_seconds()) < 30, "a shorter ask is kept"
        assert all(r["status"] == 201 for r in requests(graph, "POST", "/subscriptions"))
    finally:
        providers.close()
        stop()


def test_unbinding_deletes_the_subscription(engine: Engine, graph: GraphSide, service: tuple[str, WorkerPool]) -> None:
    binding = graph.bind(engine)
    channel = ready_channel(engine, binding, service[1])
    gone = graph.bind(engine, graph.new_calendar("Second"))
    gone_channel = ready_channel(engine, gone, service[1])
    admin(graph.url, "POST", f"/subscriptions/{gone_channel['resource_id']}/expire")  # Graph dropped it already
    admin(graph.url, "DELETE", "/requests")
    providers = ProviderPool(engine)
    try:
        assert unbind(engine, providers, binding) == 1
        assert unbind(engine, providers, gone) == 1, "a subscription already gone (404) counts as stopped"
    finally:
        providers.close()
    deletes = {r["path"].rsplit("/", 1)[-1]: r["status"] for r in requests(graph, "DELETE")}
    assert deletes == {channel["resource_id"]: 204, gone_channel["resource_id"]: 404}
    assert channel["resource_id"] not in subscriptions(graph)
    admin(graph.url, "DELETE", "/deliveries")
    graph.insert("Nobody listens")
    admin(graph.url, "POST", "/push/flush", json={"timeout": 5})
    assert [d for d in admin(graph.url, "GET", "/deliveries").json()["deliveries"] if d["outcome"] == "delivered"] == []
