"""Request budgets per provider account: a token bucket per account, kept in the database as one
number so that every worker process shares it (store/scheduling.py reads and spends it).

The bucket is the generic cell rate algorithm (GCRA): an account's `budget_spent_until` is the epoch
second by which every request taken so far is paid for at `rate`. Taking n requests at `now` is
allowed while `spent_until <= now + (burst - n) / rate`, and moves it to `max(spent_until, now) + n /
rate`: a full bucket holds `burst` requests, refilled at `rate` a second. One guarded UPDATE spends it.

Defaults come from the providers' documented per-user limits, kept under with room to spare:
Google Calendar allows 600 requests per minute per user per project (a sliding window); 9/s with a
burst of 60 is at most 600 in any minute. Microsoft Graph allows 10,000 requests per 10 minutes per
app and mailbox (and 4 concurrent requests): 16.5/s with a burst of 100 is at most 10,000 in any ten
minutes. CalDAV servers document none; 10/s with a burst of 50 keeps a small server comfortable.
Set `CALSYNC_REQUEST_BUDGET_<KIND>` (e.g. `CALSYNC_REQUEST_BUDGET_GOOGLE=9/60`: requests a second,
then the burst) to change one; `0` turns the budget off for that kind. Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestBudget:
    rate: float  # requests a second, sustained; 0: no budget
    burst: int = 1  # requests one account may make at once after a pause

    @property
    def limited(self) -> bool:
        return self.rate > 0

    @property
    def interval(self) -> float:
        """Seconds one request costs."""
        return 1.0 / self.rate if self.rate > 0 else 0.0

    def slack(self, n: int = 1) -> float:
        """How far ahead of now `spent_until` may be for n more requests to go now."""
        return (self.burst - n) * self.interval if self.limited else math.inf

    def affordable(self, spent_until: float, now: float) -> int:
        """How many requests the account may make now."""
        if not self.limited:
            return 1 << 30
        ahead = max(0.0, spent_until - now)
        return max(0, math.floor(self.burst - ahead / self.interval + 1e-9))

    def wait(self, spent_until: float, now: float, n: int = 1) -> float:
        """Seconds until n requests may go (0: now)."""
        if not self.limited:
            return 0.0
        return max(0.0, spent_until - (now + self.slack(n)))


DEFAULT_BUDGETS: dict[str, RequestBudget] = {
    "google": RequestBudget(9.0, 60),
    "graph": RequestBudget(16.5, 100),
    "caldav": RequestBudget(10.0, 50),
}

PREFIX = "CALSYNC_REQUEST_BUDGET_"


class BudgetSettingError(ValueError):
    """A CALSYNC_REQUEST_BUDGET_* value that is not `RATE` or `RATE/BURST`."""


def parse_budget(key: str, value: str) -> RequestBudget:
    rate_text, _, burst_text = value.strip().partition("/")
    try:
        rate = float(rate_text)
        burst = int(burst_text) if burst_text else max(1, math.ceil(rate))
    except ValueError:
        raise BudgetSettingError(
            f"{key} must be RATE or RATE/BURST (requests a second, burst), not {value!r}"
        ) from None
    if not (math.isfinite(rate) and rate >= 0) or burst < 1:
        raise BudgetSettingError(f"{key}: the rate must be 0 or more and the burst at least 1, not {value!r}")
    return RequestBudget(rate, burst)


def budgets_from_settings(settings: Mapping[str, str]) -> dict[str, RequestBudget]:
    """The defaults, with any CALSYNC_REQUEST_BUDGET_<KIND> setting in their place."""
    budgets = dict(DEFAULT_BUDGETS)
    for key, value in settings.items():
        if key.startswith(PREFIX) and value is not None:
            budgets[key[len(PREFIX) :].lower()] = parse_budget(key, str(value))
    return budgets
