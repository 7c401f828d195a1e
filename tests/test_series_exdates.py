"""A series read through a window (Graph) keeps the agreed EXDATEs outside it: pure functions."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from calsync.model import EventData, RemoteEvent
from calsync.series_exdates import (
    completed_outside_window,
    excluded_starts,
    exdate_line,
)

WINDOW = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 11, 1, tzinfo=UTC))
RULE = "RRULE:FREQ=WEEKLY;COUNT=200"


def series(exdates: list[str], *, known: bool = True) -> RemoteEvent:
    lines = [RULE, exdate_line(exdates)] if exdates else [RULE]
    data = EventData(title="Weekly", start="2026-01-05T09:00:00Z", end="2026-01-05T10:00:00Z", recurrence=lines)
    return RemoteEvent("master", "etag", data, exdates_known=WINDOW if known else None)


def test_excluded_starts_reads_utc_zoned_and_date_values() -> None:
    lines = ["RRULE:FREQ=DAILY", "EXDATE:20261201T090000Z,20261202T090000Z",
             "EXDATE;TZID=Europe/Berlin:20261203T100000", "exdate;value=date:20261204", "EXDATE:garbage"]
    assert excluded_starts(lines, None) == {"2026-12-01T09:00:00Z", "2026-12-02T09:00:00Z",
                                            "2026-12-03T09:00:00Z", "2026-12-04"}


def test_agreed_exdates_outside_the_window_are_kept_and_the_lines_are_the_agreed_ones() -> None:
    agreed = series(["2026-03-02T09:00:00Z", "2026-11-30T09:00:00Z"]).data.snapshot()
    seen = series(["2026-11-30T09:00:00Z"])  # the window shows only the second
    completed = completed_outside_window(seen, agreed)
    assert completed.data.recurrence == agreed["recurrence"]
    assert completed.content_hash == EventData.from_json({**agreed, "extra": {}}).content_hash()


def test_a_new_exdate_inside_the_window_is_a_change_and_old_ones_outside_stay() -> None:
    agreed = series(["2026-03-02T09:00:00Z"]).data.snapshot()
    seen = series(["2026-12-07T09:00:00Z"])
    assert excluded_starts(completed_outside_window(seen, agreed).data.recurrence, None) == {
        "2026-03-02T09:00:00Z", "2026-12-07T09:00:00Z"}


def test_an_exdate_gone_inside_the_window_is_gone() -> None:
    agreed = series(["2026-12-07T09:00:00Z"]).data.snapshot()
    assert completed_outside_window(series([]), agreed).data.recurrence == [RULE]


def test_a_provider_that_sees_every_exdate_is_taken_as_it_reads() -> None:
    agreed = series(["2026-03-02T09:00:00Z"]).data.snapshot()
    seen = series([], known=False)
    assert completed_outside_window(seen, agreed) is seen


weeks = st.lists(st.integers(min_value=0, max_value=199), unique=True, max_size=12)


@given(agreed_weeks=weeks, inside_weeks=weeks)
def test_the_completed_set_is_the_agreed_outside_plus_what_the_window_shows(
        agreed_weeks: list[int], inside_weeks: list[int]) -> None:
    def start(week: int) -> str:
        return (datetime(2026, 1, 5, 9, tzinfo=UTC) + timedelta(weeks=week)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def inside(value: str) -> bool:
        return WINDOW[0] <= datetime.fromisoformat(value.replace("Z", "+00:00")) < WINDOW[1]

    agreed = {start(w) for w in agreed_weeks}
    shown = {start(w) for w in inside_weeks if inside(start(w))}
    completed = completed_outside_window(series(sorted(shown)), series(sorted(agreed)).data.snapshot())
    assert excluded_starts(completed.data.recurrence, None) == shown | {s for s in agreed if not inside(s)}
