"""Prometheus metrics of one service process (its own registry, so tests can run several)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from calsync.engine.inbound import SyncResult
from calsync.providers.http import observe_responses


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.syncs = Counter(
            "calsync_syncs_total", "Binding syncs run, by outcome.", ["status", "kind"], registry=self.registry
        )
        self.requests = Counter(
            "calsync_provider_requests_total",
            "Provider HTTP responses, by provider and status.",
            ["provider", "status"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "calsync_notifications_total",
            "Push notifications received, by outcome.",
            ["provider", "result"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "calsync_notification_to_sync_seconds",
            "From a change notification's arrival to its sync's commit.",
            buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 2, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.conference_backlog = Gauge(
            "calsync_conference_outbox_depth", "Conference work waiting.", registry=self.registry
        )
        self.dirty = Gauge(
            "calsync_dirty_bindings", "Bindings marked dirty and not yet synced.", registry=self.registry
        )
        self.outbox = Gauge(
            "calsync_outbox_depth", "Local changes waiting to be pushed (pending or held).", registry=self.registry
        )
        self.accounts = Gauge(
            "calsync_accounts",
            "Accounts by state (reauth-required: the user must connect it again; auth-failed: its credentials "
            "or calsync's client were refused).",
            ["provider", "state"],
            registry=self.registry,
        )
        observe_responses(self._response)

    def _response(self, provider: str, status: int) -> None:
        self.requests.labels(provider, str(status)).inc()

    def sync_done(self, result: SyncResult, dirty_at: datetime | None, finished: datetime) -> None:
        self.syncs.labels(result.status, "full" if result.full else "incremental").inc()
        if dirty_at is not None and result.status == "ok":
            self.latency.observe(max(0.0, (finished - dirty_at).total_seconds()))

    def render(
        self, backlog: int, dirty: int, outbox: int, accounts: Mapping[tuple[str, str], int] | None = None
    ) -> bytes:
        """The registry as Prometheus text; `accounts`: how many accounts per (provider, state)."""
        self.accounts.clear()
        for (provider, state), count in (accounts or {}).items():
            self.accounts.labels(provider, state).set(count)
        self.conference_backlog.set(backlog)
        self.dirty.set(dirty)
        self.outbox.set(outbox)
        return generate_latest(self.registry)
