"""Webhook receivers. They only check and mark: the work is done by workers, never in the request."""
from __future__ import annotations

import hmac
import threading

from fastapi import APIRouter, Request, Response
from sqlalchemy import Engine

from calsync.model import utcnow
from calsync.service.metrics import Metrics
from calsync.store import scheduling


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
                channel["state"] == "active" or (channel["state"] == "pending" and confirmation))
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
        with engine.begin() as conn:
            scheduling.record_channel_message(conn, channel["id"], now, confirmation=confirmation)
            if not confirmation:
                scheduling.mark_dirty(conn, channel["binding_id"], now, debounce)
        metrics.notifications.labels("google", "sync" if confirmation else "accepted").inc()
        if wake is not None and not confirmation:
            _wake_after(wake, debounce)
        return Response(status_code=200)

    return router


def _wake_after(wake: threading.Event, delay: float) -> None:
    """Wake the in-process workers when the debounced binding becomes due."""
    timer = threading.Timer(delay, wake.set)
    timer.daemon = True
    timer.start()
