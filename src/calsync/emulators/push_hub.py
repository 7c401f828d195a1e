"""The delivery machinery the Google and Graph push hubs share, and its admin routes.

Both providers' notifications are hints POSTed to a receiver that may be slow, down or wrong,
so both hubs queue them on a heap of (due time, sequence), deliver from one background thread
with its own httpx client (an API write never waits for a receiver), retry with exponential
backoff up to a bounded number of attempts, apply the seeded ``PushFaults`` and keep a bounded
delivery log with its counters. A hub subclass says only what is its provider's own: what a
queued item is, which items travel in one POST, what that POST looks like and what is retried.

This module imports only the standard library, starlette, httpx and the shared emulator modules.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.emulators.common import is_int, is_loopback, rfc3339_ms
from calsync.emulators.faults import admin_error, admin_json, log_route
from calsync.emulators.push_faults import COUNTERS, OUTCOME_COUNTER, PushFaults

__all__ = ["FLUSH_TIMEOUT_MAX_S", "HUB_SWITCH_CHECKS", "MAX_LOG", "MAX_QUEUE", "DeliveryHub", "delivery_admin_routes"]

MAX_QUEUE = 10_000  # items waiting or in flight; more are refused and logged as queue_full
MAX_LOG = 10_000
FLUSH_TIMEOUT_MAX_S = 120.0
REMOTE_OFF = "not a loopback address (switch push_deliver_remote is off)"

#: The emulator switches a hub reads, and their valid values (each emulator's switch table includes them).
HUB_SWITCH_CHECKS: dict[str, Callable[[Any], bool]] = {
    "push_retry_base_ms": lambda v: is_int(v, 0, 60_000),
    "push_max_attempts": lambda v: is_int(v, 1, 20),
    "push_deliver_remote": lambda v: isinstance(v, bool),
}


class Queued(Protocol):
    """What the shared queue needs of an item: when it is due, its reset generation, its attempt."""

    due: float
    generation: int
    attempt: int


ItemT = TypeVar("ItemT", bound=Queued)
UnitT = TypeVar("UnitT")  # what one POST carries: an item (Google) or a batch of them (Graph)


class DeliveryHub(ABC, Generic[ItemT, UnitT]):
    """Queue, worker, faults and delivery log; one condition lock guards everything here.

    ``settings`` returns the emulator's switch dict, read at use so switch changes apply at once:
    push_retry_base_ms, push_max_attempts and push_deliver_remote are used here.
    """

    name: ClassVar[str]  # "google" or "graph": the worker thread's name and the log messages
    logger: ClassVar[logging.Logger]
    close_wait_s: ClassVar[float]  # how long close() waits for the worker
    client_timeout_s: ClassVar[float] = 5.0  # httpx's own default; a hub may time each POST itself
    flush_poll_s: ClassVar[float | None] = None  # flush() re-checks at least this often when set

    def __init__(
        self,
        settings: Callable[[], Mapping[str, Any]],
        seed: int = 0,
        max_queue: int = MAX_QUEUE,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._seed = seed
        self._max_queue = max_queue
        self._transport = transport
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._generation = 0
        self._in_flight = 0
        self._closed = False
        self._worker: threading.Thread | None = None
        self._clear()

    def _clear(self) -> None:
        """Forget queue, faults and log; in-flight results of the old generation are ignored."""
        self._generation += 1
        self._heap: list[tuple[float, int, ItemT]] = []
        self._faults = PushFaults()
        self._fault_rng = random.Random(self._seed)
        self._log: deque[dict[str, Any]] = deque(maxlen=MAX_LOG)
        self._counts = dict.fromkeys(COUNTERS, 0)

    def reset(self) -> None:
        """Drop everything queued, the faults and the log (POST /emulator/reset)."""
        with self._cond:
            self._clear()
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the worker thread (the emulator's server normally just lets the daemon die)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(self.close_wait_s)

    def _setting(self, name: str, default: Any) -> Any:
        value = self._settings().get(name, default)
        return default if value is None else value

    def _remote_allowed(self, url: str) -> bool:
        """Loopback receivers always; others only when switched on, so tests never reach the internet."""
        return bool(self._setting("push_deliver_remote", False)) or is_loopback(urlsplit(url).hostname or "")

    # -- queueing -------------------------------------------------------------------------------

    def _pending(self) -> int:
        return len(self._heap) + self._in_flight

    def _push(self, item: ItemT) -> None:
        heapq.heappush(self._heap, (item.due, next(self._seq), item))

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name=f"{self.name}-push-delivery", daemon=True)
            self._worker.start()

    # -- the worker -----------------------------------------------------------------------------

    def _run(self) -> None:
        """Deliver due units one POST at a time until closed; a crash in one delivery never kills it."""
        with httpx.Client(
            timeout=self.client_timeout_s, trust_env=False, follow_redirects=False, transport=self._transport
        ) as client:
            while True:
                with self._cond:
                    unit = self._take()
                    if unit is None:
                        return
                status, error = self._post(client, unit)
                with self._cond:
                    self._in_flight -= self._size(unit)
                    self._settle(unit, status, error)
                    self._cond.notify_all()

    def _take(self) -> UnitT | None:
        """Under the lock: wait for the next due item that may still be delivered, and claim its unit."""
        while not self._closed:
            now = time.monotonic()
            self._before_take(now)
            if self._heap and self._heap[0][0] <= now:
                first = heapq.heappop(self._heap)[2]
                if self._deliverable(first):
                    unit = self._claim(first, now)
                    self._in_flight += self._size(unit)
                    return unit
                self._cond.notify_all()  # a flush may be waiting for the queue to drain
                continue
            self._cond.wait(self._wait_seconds(now))
        return None

    def _before_take(self, now: float) -> None:
        """Under the lock, before each look at the queue (Google releases a held reorder batch)."""

    def _wait_seconds(self, now: float) -> float | None:
        return max(self._heap[0][0] - now, 0.001) if self._heap else None

    def _deliverable(self, item: ItemT) -> bool:
        """Under the lock: skip items of an earlier reset, items the provider would not send, remote ones when off."""
        if item.generation != self._generation:
            return False
        reason = self._skip_reason(item)
        if reason is None and not self._remote_allowed(self._address(item)):
            reason = REMOTE_OFF
        if reason is None:
            return True
        self._log_skipped(item, reason)
        return False

    def _send(self, client: httpx.Client, url: str, **request: Any) -> tuple[int | None, str | None]:
        """One POST, outside the lock: (status, None) or (None, transport error)."""
        try:
            response = client.post(url, **request)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bad URL or a library bug must not kill the worker
            self.logger.exception("%s push: delivery to %s failed", self.name, url)
            return None, f"{type(exc).__name__}: {exc}"
        else:
            return response.status_code, None

    def _may_retry(self, attempt: int) -> bool:
        return attempt < int(self._setting("push_max_attempts", 5))

    def _retry_due(self, attempt: int) -> float:
        """When attempt ``attempt + 1`` is due: the base delay, doubled per attempt made."""
        base = float(self._setting("push_retry_base_ms", 200)) / 1000.0
        return time.monotonic() + base * 2 ** (attempt - 1)

    def _count(self, outcome: str, entry: dict[str, Any]) -> None:
        """Under the lock: one delivery-log entry and the counter its outcome adds to."""
        self._counts[OUTCOME_COUNTER[outcome]] += 1
        self._append(entry)

    def _append(self, entry: dict[str, Any]) -> None:
        """Under the lock: a delivery-log entry, stamped with the time."""
        now = time.time()
        entry["time"] = rfc3339_ms(now)
        entry["epoch"] = now
        self._log.append(entry)

    # -- the provider's own ---------------------------------------------------------------------

    @abstractmethod
    def _skip_reason(self, item: ItemT) -> str | None:
        """Why the provider would not send this item now (expired, stopped ...), or None."""

    @abstractmethod
    def _address(self, item: ItemT) -> str:
        """The receiver URL of an item."""

    @abstractmethod
    def _log_skipped(self, item: ItemT, reason: str) -> None:
        """Under the lock: log an item that will not be delivered."""

    @abstractmethod
    def _claim(self, first: ItemT, now: float) -> UnitT:
        """Under the lock: the unit one POST carries, starting from a due, deliverable item."""

    @abstractmethod
    def _size(self, unit: UnitT) -> int:
        """How many queued items a unit holds."""

    @abstractmethod
    def _post(self, client: httpx.Client, unit: UnitT) -> tuple[int | None, str | None]:
        """One attempt, outside the lock (see ``_send``)."""

    @abstractmethod
    def _settle(self, unit: UnitT, status: int | None, error: str | None) -> None:
        """Under the lock: log the attempt; queue a retry when the provider would."""

    # -- test support ---------------------------------------------------------------------------

    def flush(self, timeout: float) -> dict[str, Any]:
        """Block until nothing is queued, held or in flight (or the timeout passes); returns counts."""
        deadline = time.monotonic() + max(0.0, min(timeout, FLUSH_TIMEOUT_MAX_S))
        started = time.monotonic()
        with self._cond:
            while True:
                self._before_flush_check()
                remaining = deadline - time.monotonic()
                if self._pending() == 0 or remaining <= 0:
                    break
                self._cond.wait(remaining if self.flush_poll_s is None else min(remaining, self.flush_poll_s))
            return {
                "idle": self._pending() == 0,
                "pending": self._pending(),
                "waitedMs": int((time.monotonic() - started) * 1000),
                **self._counts,
            }

    def _before_flush_check(self) -> None:
        """Under the lock, before flush looks at the queue (Google releases what it holds)."""

    def deliveries(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._log)

    def clear_deliveries(self) -> None:
        with self._cond:
            self._log.clear()

    def set_faults(self, spec: Any) -> dict[str, Any]:
        """Replace the push faults; the dice are re-seeded so a run repeats exactly."""
        faults = PushFaults.parse(spec)
        with self._cond:
            self._faults_changing(faults)
            self._faults = faults
            self._fault_rng = random.Random(self._seed if faults.seed is None else faults.seed)
            self._cond.notify_all()
            return faults.as_dict()

    def _faults_changing(self, faults: PushFaults) -> None:
        """Under the lock, before new faults apply (Google releases a held batch when reordering stops)."""

    def clear_faults(self) -> None:
        self.set_faults({})

    def faults(self) -> dict[str, Any]:
        with self._cond:
            return self._faults.as_dict()


def delivery_admin_routes(hub: DeliveryHub[Any, Any]) -> list[Route]:
    """/emulator endpoints for the delivery log, push faults and waiting for an empty queue."""

    async def push_faults(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(hub.faults())
        if request.method == "DELETE":
            hub.clear_faults()
            return Response(status_code=204)
        try:
            return JSONResponse(hub.set_faults(await admin_json(request)))
        except ValueError as exc:
            return admin_error(400, str(exc))

    async def flush(request: Request) -> Response:
        try:
            body = await admin_json(request)
            timeout = body.get("timeout", 10) if isinstance(body, dict) else None
            if (
                isinstance(timeout, bool)
                or not isinstance(timeout, (int, float))
                or not 0 <= timeout <= FLUSH_TIMEOUT_MAX_S
            ):
                raise ValueError(f"timeout must be a number of seconds in [0, {FLUSH_TIMEOUT_MAX_S:g}]")
        except ValueError as exc:
            return admin_error(400, str(exc))
        return JSONResponse(await run_in_threadpool(hub.flush, float(timeout)))

    return [
        log_route("/emulator/deliveries", "deliveries", hub.deliveries, hub.clear_deliveries),
        Route("/emulator/push-faults", push_faults, methods=["GET", "POST", "DELETE"]),
        Route("/emulator/push/flush", flush, methods=["POST"]),
    ]
