"""The frame of the Google and Graph emulators' stores: one lock, injected faults, switches, token
sealing, and push notifications sent once per outermost write.

Both stores are shared by HTTP handler threads, admin calls and tests, so all state sits under one
re-entrant lock; a write notifies receivers only after it committed, and nested writes only once.
Each store adds its own data, switches and error shape.
"""

from __future__ import annotations

import os
import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

from starlette.responses import Response

from calsync.emulators.common import Signer, validate_switches
from calsync.emulators.faults import FaultInjector, RequestLog
from calsync.emulators.push_hub import DeliveryHub

__all__ = ["StoreBase"]


class StoreBase(ABC):
    """All emulator state, in memory, guarded by one lock (HTTP handlers, admin calls and tests share it)."""

    api_prefix: ClassVar[str]  # where the API is served; fault rules apply below it by default
    default_switches: ClassVar[Mapping[str, Any]]
    switch_checks: ClassVar[Mapping[str, Callable[[Any], bool]]]
    push: DeliveryHub[Any, Any]

    def __init__(self, seed: int, requests: RequestLog) -> None:
        self._lock = threading.RLock()
        self._seed = seed
        self.faults = FaultInjector(self._fault_response, default_prefix=self.api_prefix + "/", seed=seed)
        # `"after_commit": true` rules: the request is carried out, then its answer is replaced (a lost answer)
        self.commit_faults = FaultInjector(self._fault_response, default_prefix=self.api_prefix + "/", seed=seed)
        self.requests = requests
        self._write_depth = 0
        self._reset_state()

    def _reset_state(self) -> None:
        """A fresh start: a new token secret (old tokens become unknown), default switches, re-seeded dice."""
        self._signer = Signer(os.urandom(32))
        self.switches: dict[str, Any] = dict(self.default_switches)
        self._rng = random.Random(self._seed)

    def reset(self) -> None:
        """Drop everything: stored data, tokens, switches, push state, faults and the request log."""
        with self._lock:
            self._reset_state()
            self.push.reset()
        self.faults.clear()
        self.commit_faults.clear()
        self.requests.clear()

    @contextmanager
    def _changes(self) -> Iterator[None]:
        """Hold the lock for a write; afterwards notify receivers of what it committed, once.

        Changes are recorded only after validation passed, so a failed write (400, 404, 412 ...)
        notifies nobody while a committed one always does.
        """
        with self._lock:
            self._write_depth += 1
            try:
                yield
            finally:
                self._write_depth -= 1
                if self._write_depth == 0:
                    self._notify_changes()

    @abstractmethod
    def _notify_changes(self) -> None:
        """Under the lock, after the outermost write: queue notifications for what it recorded."""

    def set_switches(self, values: Any) -> dict[str, Any]:
        """Flip documented-variant behaviours; unknown names or bad values raise ValueError."""
        values = validate_switches(values, self.switch_checks)
        with self._lock:
            self.switches.update(values)
            return dict(self.switches)

    @staticmethod
    @abstractmethod
    def _fault_response(status: int, reason: str | None, rule: dict[str, Any]) -> Response:
        """An injected error in the provider's own shape."""
