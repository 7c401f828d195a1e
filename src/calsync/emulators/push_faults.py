"""Delivery faults and counters shared by the Google and Graph push hubs.

Push notifications are hints that can be late, lost, duplicated or out of order, so both hubs
can be told to misbehave in those ways with seeded, repeatable dice (``PushFaults``), and both
count their outcomes the same way.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["COUNTERS", "OUTCOME_COUNTER", "PushFaults"]

COUNTERS = ("delivered", "failed", "retried", "dropped", "skipped", "queue_full")
#: Delivery-log outcome -> the flush counter it adds to (gave_up = failed after the last retry).
OUTCOME_COUNTER = {
    "delivered": "delivered",
    "failed": "failed",
    "gave_up": "failed",
    "retry": "retried",
    "dropped": "dropped",
    "skipped": "skipped",
    "queue_full": "queue_full",
}


_FAULT_KEYS = {
    "drop_rate",
    "drop_count",
    "duplicate_rate",
    "delay_ms",
    "reorder",
    "reorder_batch",
    "reorder_window_ms",
    "deliver_after_stop",
    "seed",
}


def _rate(spec: Mapping[str, Any], key: str, default: float) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{key} must be a number in [0, 1]")
    return float(value)


def _whole(spec: Mapping[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be an integer in [{low}, {high}]")
    return value


def _flag(spec: Mapping[str, Any], key: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false")  # noqa: TRY004 - the admin API answers ValueError as 400
    return value


@dataclass
class PushFaults:
    """Misbehaviour of a push service, as the field reports it (``../shared/reference/provider-semantics.md``
    1.8 for Google, 2.4 for Graph).

    drop: a message is lost with probability ``drop_rate``, at most ``drop_count`` times
    (``drop_count`` alone drops the next N). duplicate: delivered twice, same number.
    delay: every message waits ``delay_ms``. reorder: messages are held in batches of
    ``reorder_batch`` (or until ``reorder_window_ms`` passes) and released shuffled.
    deliver_after_stop: stopped channels keep receiving messages.
    """

    drop_rate: float = 0.0
    drop_remaining: int | None = None
    drop_count: int | None = None
    duplicate_rate: float = 0.0
    delay_ms: int = 0
    reorder: bool = False
    reorder_batch: int = 4
    reorder_window_ms: int = 200
    deliver_after_stop: bool = False
    seed: int | None = None

    @classmethod
    def parse(cls, spec: Any) -> PushFaults:
        """Validate a spec dict; raises ValueError (answered as 400) on anything odd."""
        if not isinstance(spec, dict):
            raise ValueError("push faults must be a JSON object")  # noqa: TRY004 - answered as 400
        unknown = set(spec) - _FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown push fault keys: {sorted(unknown)}; known: {sorted(_FAULT_KEYS)}")
        count = _whole(spec, "drop_count", None, 0, 10**9)
        return cls(
            drop_rate=_rate(spec, "drop_rate", 1.0 if count is not None else 0.0),
            drop_remaining=count,
            drop_count=count,
            duplicate_rate=_rate(spec, "duplicate_rate", 0.0),
            delay_ms=_whole(spec, "delay_ms", 0, 0, 600_000) or 0,
            reorder=_flag(spec, "reorder"),
            reorder_batch=_whole(spec, "reorder_batch", 4, 2, 1000) or 4,
            reorder_window_ms=_whole(spec, "reorder_window_ms", 200, 1, 600_000) or 200,
            deliver_after_stop=_flag(spec, "deliver_after_stop"),
            seed=_whole(spec, "seed", None, -(2**63), 2**63),
        )

    def should_drop(self, rng: random.Random) -> bool:
        """Roll the drop dice once (no roll when dropping is off, so other dice stay repeatable)."""
        if self.drop_rate <= 0.0 or self.drop_remaining == 0:
            return False
        if self.drop_rate < 1.0 and rng.random() >= self.drop_rate:
            return False
        if self.drop_remaining is not None:
            self.drop_remaining -= 1
        return True

    def copies(self, rng: random.Random) -> int:
        if self.duplicate_rate <= 0.0:
            return 1
        return 2 if self.duplicate_rate >= 1.0 or rng.random() < self.duplicate_rate else 1

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "drop_rate": self.drop_rate,
            "duplicate_rate": self.duplicate_rate,
            "delay_ms": self.delay_ms,
            "reorder": self.reorder,
            "deliver_after_stop": self.deliver_after_stop,
        }
        if self.drop_count is not None:
            out["drop_count"] = self.drop_count
            out["drop_remaining"] = self.drop_remaining
        if self.reorder:
            out["reorder_batch"] = self.reorder_batch
            out["reorder_window_ms"] = self.reorder_window_ms
        if self.seed is not None:
            out["seed"] = self.seed
        return out
