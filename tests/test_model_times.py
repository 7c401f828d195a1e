"""Canonical event times: the short way for an already canonical time gives what the long way gives."""
from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from calsync.model import canonical_instant, canonical_time, parse_instant


def _long_way(text: str) -> str:
    try:
        return canonical_instant(parse_instant(text))
    except ValueError:
        return "invalid"


def _short_way(text: str) -> str:
    try:
        return canonical_time(text, False)
    except ValueError:
        return "invalid"


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet="0123456789-:TZ .+", min_size=18, max_size=22))
def test_any_text_is_read_as_the_long_way_reads_it(text: str) -> None:
    assert _short_way(text) == _long_way(text)


@settings(max_examples=500, deadline=None)
@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)),
       st.sampled_from(["Z", "+00:00", ".5Z", "+01:30"]))
def test_real_times_in_every_spelling(moment: datetime, suffix: str) -> None:
    text = moment.replace(tzinfo=None, microsecond=0).isoformat() + suffix
    assert _short_way(text) == _long_way(text)
