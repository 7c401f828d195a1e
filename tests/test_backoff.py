"""The one backoff formula and Retry-After reader every retrying part of calsync uses."""
from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from calsync.backoff import jittered_delay, retry_after_seconds


@given(attempt=st.integers(0, 60), base=st.floats(0.01, 10), ceiling=st.floats(0.01, 1000),
       retry_after=st.none() | st.floats(0, 5000))
def test_the_delay_lies_in_the_upper_half_of_its_capped_step_and_honours_retry_after(
        attempt: int, base: float, ceiling: float, retry_after: float | None) -> None:
    delay = jittered_delay(attempt, base, ceiling, retry_after=retry_after, rng=random.Random(attempt))
    top = min(ceiling, base * 2 ** attempt)
    assert delay >= (retry_after or 0.0)
    if retry_after is None or retry_after <= top / 2:
        assert top / 2 <= delay <= top


def test_the_steps_double_until_the_ceiling() -> None:
    rng = random.Random(1)
    tops = [max(jittered_delay(n, 1.0, 30.0, rng=rng) for _ in range(200)) for n in range(7)]
    assert [round(t) for t in tops] == [1, 2, 4, 8, 16, 30, 30]


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    assert retry_after_seconds("120", lambda: now) == 120.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:15:20 GMT", lambda: now) == 120.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:00:00 GMT", lambda: now) == 0.0, "a date gone by: now"
    assert retry_after_seconds("-5", lambda: now) == 0.0
    assert retry_after_seconds(None) is None and retry_after_seconds("") is None
    assert retry_after_seconds("soon") is None
