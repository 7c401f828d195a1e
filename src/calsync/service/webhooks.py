"""Webhook receivers. They only check and mark: the work is done by workers, never in the request."""

from __future__ import annotations

import hmac
import json
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy import Connection, Engine

from calsync.engine import channels
from calsync.model import utcnow
from calsync.service.metrics import Metrics
from calsync.store import scheduling
from calsync.store.rows import ChannelRow


def google_router(engine: Engine, metrics: Metrics, wake: threading.Event | None, debounce: float = 0.2) -> APIRouter:
    router = APIRouter()

    @router.post("/webhooks/google", include_in_schema=False)
    def google(request: Request) -> Response:
        """A Google Calendar push notification: verify the channel and its secret token, then mark
        the binding dirty. `sync` messages only confirm a new channel. A plain `def`: FastAPI runs it
        in its thread pool, so a database wait never stalls the event loop (and the other requests)."""
        channel_id = request.headers.get("x-goog-channel-id", "")
        token = request.headers.get("x-goog-channel-token", "")
        resource_id = request.headers.get("x-goog-resource-id", "")
        state = request.headers.get("x-goog-resource-state", "")
        now = utcnow()
        with engine.connect() as conn:  # reads only, unless there is something to record
            channel = scheduling.channel_by_channel_id(conn, channel_id) if channel_id else None
            confirmation = state == "sync"
            # a channel is 'pending' between our watch request and its answer: only its sync message fits
            usable = channel is not None and (
                channel["state"] == "active" or (channel["state"] == "pending" and confirmation)
            )
            if channel is None or not usable:
                metrics.notifications.labels("google", "unknown-channel").inc()
                return Response("unknown channel", status_code=404)
            resource_ok = channel["state"] == "pending" or channel["resource_id"] == resource_id
            if not hmac.compare_digest(channel["token"] or "", token) or not resource_ok:
                metrics.notifications.labels("google", "bad-token").inc()
                return Response("channel token or resource does not match", status_code=403)
            covered = not confirmation and scheduling.sync_pending(conn, channel["binding_id"], now)
        if covered:
            metrics.notifications.labels("google", "coalesced").inc()
            return Response(status_code=200)
        channels.note_message(
            engine, channel["id"], channel["binding_id"], now, confirmation=confirmation, debounce=debounce
        )
        metrics.notifications.labels("google", "sync" if confirmation else "accepted").inc()
        if wake is not None and not confirmation:
            _wake_after(wake, debounce)
        return Response(status_code=200)

    return router


MAX_GRAPH_BODY = 1 << 20  # a batch of change notifications is a few kB per item; refuse anything huge


async def _bounded_body(request: Request) -> bytes:
    """The request body, read in the event loop (the handler itself runs in the thread pool),
    refused with 413 past MAX_GRAPH_BODY instead of being buffered whole."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_GRAPH_BODY:
            raise HTTPException(413, "notification body too large")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class _GraphBatch:
    """What one Graph delivery asks for, gathered under one read so the writes are one transaction."""

    dirty: set[str] = field(default_factory=set)  # bindings to sync (changes, missed, lifecycle events)
    channels: dict[str, ChannelRow] = field(default_factory=dict)  # row id -> channel that spoke
    renew: set[str] = field(default_factory=set)  # channel rows to renew (reauthorizationRequired)
    gone: set[str] = field(default_factory=set)  # channel rows Graph removed (subscriptionRemoved)
    changes: list[str] = field(default_factory=list)  # binding of each accepted change notification
    usable: int = 0
    unknown: int = 0
    forged: int = 0


def graph_router(engine: Engine, metrics: Metrics, wake: threading.Event | None, debounce: float = 0.2) -> APIRouter:
    router = APIRouter()

    def count(result: str, n: int = 1) -> None:
        if n:
            metrics.notifications.labels("graph", result).inc(n)

    @router.post("/webhooks/graph", include_in_schema=False)
    def graph(request: Request, raw: Annotated[bytes, Depends(_bounded_body)]) -> Response:
        """Microsoft Graph change and lifecycle notifications, and the validation handshake.

        Our channel row id rides in the query string (`?channel=`, set by GraphProvider.watch), so a
        channel is found before its subscription id is known: Graph validates, and may even notify,
        while our POST /subscriptions is still waiting for its answer (the row is 'pending' then).
        Every item must carry the channel's secret clientState (compared in constant time) and, once
        the channel is active, its subscription id. Items only mark bindings dirty or channels due
        for renewal / gone; the worker does the rest. A plain `def` (thread pool), like Google's."""
        channel_ref = request.query_params.get("channel", "")
        validation = request.query_params.get("validationToken")
        if validation is not None:
            return _graph_validation(channel_ref, validation)
        try:
            payload = json.loads(raw) if raw.strip() else None
        except ValueError:
            payload = None
        items = payload.get("value") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            count("bad-request")
            return Response("expected a JSON object with a 'value' list of notifications", status_code=400)
        now = utcnow()
        batch = _GraphBatch()
        with engine.connect() as conn:  # reads only, unless there is something to record
            for item in items:
                _graph_item(conn, channel_ref, item, batch)
            # dirty and not yet claimed: the sync that will run covers these items, no write needed
            covered = {b for b in batch.dirty if scheduling.sync_pending(conn, b, now)}
        changed = sum(1 for b in batch.changes if b not in covered)
        count("accepted", changed)
        count("coalesced", len(batch.changes) - changed)
        to_mark = batch.dirty - covered
        if to_mark or batch.renew or batch.gone:
            heard = [row_id for row_id, channel in batch.channels.items() if channel["binding_id"] in to_mark]
            channels.note_batch(engine, heard, to_mark, batch.renew, batch.gone, now, debounce)
            if wake is not None and to_mark:
                _wake_after(wake, debounce)
        if batch.usable or not items:
            return Response(status_code=202)
        if batch.forged:
            return Response("clientState does not match", status_code=403)
        return Response("unknown subscription", status_code=404)

    def _graph_validation(channel_ref: str, token: str) -> Response:
        """Echo the (already URL-decoded) validation token as text/plain, for a channel we are
        making or hold; Graph creates the subscription only after this answer."""
        with engine.connect() as conn:
            channel = scheduling.channel_by_channel_id(conn, channel_ref) if channel_ref else None
        if channel is None or channel["state"] not in ("pending", "active"):
            count("unknown-channel")
            return Response("unknown channel", status_code=404)
        channels.note_validation(engine, channel["id"], utcnow())  # the provider reached us: the address works
        count("validation")
        return PlainTextResponse(token, headers={"X-Content-Type-Options": "nosniff"})

    def _graph_item(conn: Connection, channel_ref: str, item: dict[str, Any], batch: _GraphBatch) -> None:
        """Check one notification item against its channel and note what it asks for."""
        subscription = item.get("subscriptionId")
        subscription = subscription if isinstance(subscription, str) else ""
        if channel_ref:
            channel = scheduling.channel_by_channel_id(conn, channel_ref)
        else:
            channel = scheduling.channel_by_resource_id(conn, subscription) if subscription else None
        usable = channel is not None and (
            (channel["state"] == "active" and channel["resource_id"] == subscription) or channel["state"] == "pending"
        )  # subscription id not known yet: the clientState decides
        if channel is None or not usable:
            batch.unknown += 1
            count("unknown-channel")
            return
        state = item.get("clientState")
        given = state if isinstance(state, str) else ""
        if not hmac.compare_digest((channel["token"] or "").encode(), given.encode()):
            batch.forged += 1
            count("bad-token")
            return
        batch.usable += 1
        batch.channels[channel["id"]] = channel
        binding_id = channel["binding_id"]
        event = item.get("lifecycleEvent")
        if event is None:
            batch.dirty.add(binding_id)
            batch.changes.append(binding_id)  # counted once we know whether a pending sync covers it
        elif event == "missed":  # some notifications were dropped: a delta sync catches up
            batch.dirty.add(binding_id)
            count("missed")
        elif event == "reauthorizationRequired":  # renew (PATCH) soon; deliveries may pause until then
            batch.renew.add(channel["id"])
            batch.dirty.add(binding_id)
            count("reauthorization-required")
        elif event == "subscriptionRemoved":  # make a new subscription; changes may have been missed
            batch.gone.add(channel["id"])
            batch.dirty.add(binding_id)
            count("subscription-removed")
        else:
            count("ignored")

    return router


def _wake_after(wake: threading.Event, delay: float) -> None:
    """Wake the in-process workers when the debounced binding becomes due."""
    timer = threading.Timer(delay, wake.set)
    timer.daemon = True
    timer.start()
