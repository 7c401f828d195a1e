"""Retrying well: one retry policy, one jittered exponential backoff, one Retry-After reader.

Why one place: the provider HTTP client, the conference adapters, the outbox pushers, the conference
worker and the scheduler all back off; a fix (a cap, the jitter) must reach every one of them.
Standard library only, so any layer may use it."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one call is retried in place before the error goes up (to the outbox or scheduler,
    which retry later without holding a worker)."""

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    #: a longer Retry-After is not slept through in place: the error goes up with it
    max_retry_after: float = 10.0


def jittered_delay(
    attempt: int, base: float, ceiling: float, *, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first retry): exponential from `base`,
    capped at `ceiling`, with 'equal jitter' (a random point in the upper half, so many clients that
    failed together do not come back together), and never less than the server's Retry-After."""
    top = min(ceiling, base * 2 ** max(attempt, 0))
    return max(retry_after or 0.0, (rng or random).uniform(top / 2, top))


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """A Retry-After header as seconds from now, given as a number or as an HTTP date (RFC 9110
    10.2.3); None when absent or unreadable. Never negative."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - now())
