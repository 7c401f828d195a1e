"""The field-level three-way merge (engine/field_merge.py): properties over random base/local/remote
edits, and a few cases a person would recognise."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from calsync.engine.field_merge import SCALAR_FIELDS, TIME_FIELDS, merge, unmerged_fields
from calsync.model import Attendee, EventData

BASE = EventData(title="Planning", start="2026-12-01T09:00:00Z", end="2026-12-01T10:00:00Z")

# small pools, so both sides often make the same edit (which must agree, not clash)
TIMES = st.sampled_from(
    [
        ("2026-12-01T09:00:00Z", "2026-12-01T10:00:00Z", False, None),
        ("2026-12-01T11:00:00Z", "2026-12-01T12:00:00Z", False, "Europe/Berlin"),
        ("2026-12-02", "2026-12-03", True, None),
    ]
)
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "title": st.sampled_from(["Planning", "Review", "Retro"]),
    "description": st.sampled_from([None, "agenda", "notes"]),
    "location": st.sampled_from([None, "Room 1", "Room 2"]),
    "status": st.sampled_from(["confirmed", "tentative", "cancelled"]),
    "recurrence": st.sampled_from([None, ["RRULE:FREQ=WEEKLY"], ["RRULE:FREQ=DAILY;COUNT=3"]]),
    "original_start": st.sampled_from([None, "2026-12-01T09:00:00Z"]),
    "conference": st.sampled_from([None, {"url": "https://meet/a"}, {"url": "https://meet/b"}]),
}
EMAILS = ["ann@x.org", "bob@x.org", "cy@x.org", "di@x.org"]
ATTENDEE = st.builds(
    Attendee,
    email=st.sampled_from(EMAILS),
    name=st.sampled_from([None, "N"]),
    response=st.sampled_from(["needsAction", "accepted", "declined"]),
    optional=st.booleans(),
)
ATTENDEES = st.lists(ATTENDEE, max_size=4, unique_by=lambda a: a.email)


@st.composite
def event(draw: st.DrawFn) -> EventData:
    start, end, all_day, zone = draw(TIMES)
    values = {name: draw(strategy) for name, strategy in SCALARS.items()}
    return EventData(start=start, end=end, all_day=all_day, time_zone=zone, attendees=draw(ATTENDEES), **values)


@st.composite
def edit(draw: st.DrawFn, base: EventData) -> EventData:
    """Some of base's fields changed (each maybe to its old value); attendees added, removed, answered."""
    data = base
    if draw(st.booleans()):
        data = replace(data, **dict(zip(TIME_FIELDS, draw(TIMES), strict=True)))
    for name, strategy in SCALARS.items():
        if draw(st.booleans()):
            data = replace(data, **{name: draw(strategy)})
    people = {a.email: a for a in base.attendees}
    for email in EMAILS:
        what = draw(st.sampled_from(["keep", "keep", "remove", "answer", "new"]))
        if what == "remove":
            people.pop(email, None)
        elif what == "answer" and email in people:
            people[email] = replace(people[email], response=draw(st.sampled_from(["accepted", "declined"])))
        elif what == "new":
            people[email] = replace(draw(ATTENDEE), email=email)
    return replace(data, attendees=list(people.values()))


@st.composite
def three(draw: st.DrawFn) -> tuple[EventData, EventData, EventData]:
    base = draw(event())
    return base, draw(edit(base)), draw(edit(base))


def fields_of(data: EventData) -> dict[str, Any]:
    """The merge's fields of an event: "time", the scalars, and per attendee its details and response."""
    out: dict[str, Any] = {"time": tuple(getattr(data, f) for f in TIME_FIELDS)}
    out.update({name: getattr(data, name) for name in SCALAR_FIELDS})
    for a in data.attendees:
        out[f"attendee {a.email}"] = (a.name, a.optional, a.organizer)
        out[f"response {a.email}"] = a.response
    return out


@settings(max_examples=400)
@given(three())
def test_one_sided_changes_are_kept_and_nothing_is_invented(sides: tuple[EventData, EventData, EventData]) -> None:
    base, local, remote = sides
    result = merge(base, local, remote)
    got, b, lo, r = (fields_of(d) for d in (result.data, base, local, remote))
    for name in got.keys() | b.keys() | lo.keys() | r.keys():
        if name in result.clashes or f"attendee {name.removeprefix('response ')}" in result.clashes:
            continue  # a clash (or the response of an attendee whose presence clashes): the person decides
        value = got.get(name)
        assert value in (b.get(name), lo.get(name), r.get(name)), name  # never invented
        if lo.get(name) != b.get(name) and r.get(name) == b.get(name):
            assert value == lo.get(name), name  # a change here only is kept
        if r.get(name) != b.get(name) and lo.get(name) == b.get(name):
            assert value == r.get(name), name  # a change there only is kept
    # attendees come only from the three lists
    assert {a.email for a in result.data.attendees} <= {a.email for a in [*local.attendees, *remote.attendees]}


@settings(max_examples=400)
@given(three())
def test_the_merge_is_symmetric_in_the_two_sides(sides: tuple[EventData, EventData, EventData]) -> None:
    base, local, remote = sides
    one, other = merge(base, local, remote), merge(base, remote, local)
    assert set(one.clashes) == set(other.clashes)
    if not one.clashes:  # (where they clash each keeps its own side, for the conflict to show)
        assert fields_of(one.data) == fields_of(other.data)
        assert set(one.from_local) == set(other.from_remote) and set(one.from_remote) == set(other.from_local)


@settings(max_examples=400)
@given(three())
def test_a_clash_exactly_where_a_field_changed_differently_on_both_sides(
    sides: tuple[EventData, EventData, EventData],
) -> None:
    base, local, remote = sides
    b, lo, r = (fields_of(d) for d in sides)
    expected = set()
    for name in b.keys() | lo.keys() | r.keys():
        if name.startswith("response "):
            email = name.split(" ", 1)[1]
            if not all(f"attendee {email}" in d for d in (b, lo, r)):
                continue  # presence changed: the attendee is one field ("attendee <email>")
        bv, lv, rv = b.get(name), lo.get(name), r.get(name)
        if name.startswith("attendee ") and not all(name in d for d in (b, lo, r)):
            email = name.split(" ", 1)[1]
            bv, lv, rv = ((d.get(name), d.get(f"response {email}")) if name in d else None for d in (b, lo, r))
        if lv != bv and rv != bv and lv != rv:
            expected.add(name)
    assert set(merge(base, local, remote).clashes) == expected


def test_every_event_field_is_placed() -> None:
    assert unmerged_fields() == ()


def test_title_here_and_time_there_are_both_kept() -> None:
    local = replace(BASE, title="Planning (moved room)")
    remote = replace(BASE, start="2026-12-01T11:00:00Z", end="2026-12-01T12:00:00Z")
    result = merge(BASE, local, remote)
    assert result.clashes == ()
    assert result.data.title == "Planning (moved room)" and result.data.start == "2026-12-01T11:00:00Z"
    assert result.from_local == ("title",) and result.from_remote == ("time",)


def test_an_attendee_added_on_each_side_are_both_there() -> None:
    base = replace(BASE, attendees=[Attendee("ann@x.org")])
    local = replace(base, attendees=[Attendee("ann@x.org"), Attendee("bob@x.org")])
    remote = replace(base, attendees=[Attendee("ann@x.org"), Attendee("cy@x.org")])
    result = merge(base, local, remote)
    assert result.clashes == ()
    assert [a.email for a in result.data.attendees] == ["ann@x.org", "bob@x.org", "cy@x.org"]


def test_an_attendee_removed_here_and_another_answering_there() -> None:
    base = replace(BASE, attendees=[Attendee("ann@x.org"), Attendee("bob@x.org")])
    local = replace(base, attendees=[Attendee("ann@x.org")])
    remote = replace(base, attendees=[Attendee("ann@x.org", response="accepted"), Attendee("bob@x.org")])
    result = merge(base, local, remote)
    assert result.clashes == ()
    assert result.data.attendees == [Attendee("ann@x.org", response="accepted")]


def test_the_same_attendee_answering_differently_on_both_sides_clashes_by_name() -> None:
    base = replace(BASE, attendees=[Attendee("ann@x.org")])
    local = replace(base, title="Review", attendees=[Attendee("ann@x.org", response="accepted")])
    remote = replace(base, attendees=[Attendee("ann@x.org", response="declined")])
    result = merge(base, local, remote)
    assert result.clashes == ("response ann@x.org",)
    assert result.from_local == ("title",)


def test_the_same_edit_on_both_sides_agrees() -> None:
    edited = replace(BASE, title="Review", location="Room 2")
    result = merge(BASE, edited, replace(edited))
    assert result.clashes == () and set(result.agreed) == {"title", "location"} and result.data == edited
