"""Per-mailbox throttling (documented limits, switched off by default) and the request log, which
also records each inner request of a JSON batch (https://learn.microsoft.com/graph/throttling-limits)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from calsync.emulators.faults import RequestLog
from calsync.emulators.graph.errors import GraphError

THROTTLE_WINDOW_S = 600.0


class _Throttle:
    """In-flight and per-10-minute request counts per mailbox; answers 429 ApplicationThrottled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[str, int] = {}
        self._recent: dict[str, deque[float]] = {}

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()

    def enter(self, user: str, switches: dict[str, Any]) -> GraphError | None:
        """Count the request in, or refuse it; a refused request is not counted in flight."""
        now = time.monotonic()
        with self._lock:
            limit = switches.get("mailbox_concurrency_limit")
            if limit is not None and self._inflight.get(user, 0) >= limit:
                return self._throttled(
                    "Application is over its MailboxConcurrency limit.",
                    int(switches.get("throttle_retry_after_seconds", 1)),
                )
            rate = switches.get("mailbox_requests_per_10min")
            recent = self._recent.setdefault(user, deque())
            while recent and recent[0] <= now - THROTTLE_WINDOW_S:
                recent.popleft()
            if rate is not None and len(recent) >= rate:
                wait = max(1, int(recent[0] + THROTTLE_WINDOW_S - now + 0.999))
                return self._throttled("Application is over its MailboxRequests limit.", wait)
            recent.append(now)
            self._inflight[user] = self._inflight.get(user, 0) + 1
            return None

    def leave(self, user: str) -> None:
        with self._lock:
            self._inflight[user] = max(0, self._inflight.get(user, 0) - 1)

    @staticmethod
    def _throttled(message: str, retry_after: int) -> GraphError:
        return GraphError(429, "ApplicationThrottled", message, {"Retry-After": str(retry_after)})


class _GraphRequestLog(RequestLog):
    """The request log; an inner request of a JSON batch is logged too, with ``"batch_item"``: its
    id in the batch (the outer ``POST /v1.0/$batch`` is logged once, after its inner requests)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._marking = threading.Lock()

    def add(
        self, method: str, path: str, query: str, status: int, user: str | None, batch_item: str | None = None
    ) -> None:
        with self._marking:  # every add passes here: the entry marked is the one just added
            super().add(method, path, query, status, user)
            if batch_item is not None:
                with self._lock:
                    self._entries[-1]["batch_item"] = batch_item
