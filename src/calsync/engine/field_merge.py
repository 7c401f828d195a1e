"""Field-level three-way merge of one event: base (last agreed), local and remote (the policy `merge`).

Why: two harmless edits on two sides (the title here, the time there) should not stop the event and
ask a person. Each field is compared with the base on its own: a field changed on one side only is
taken from that side, a field changed identically on both agrees, and only a field changed
differently on both sides is a clash (engine/page_plan.py then opens a conflict naming it). Pure: a
function of three frozen values, no I/O, so the rule is tested by properties (tests/test_field_merge.py).

Which fields, and why grouped so: the time (start, end, all-day, time zone) moves together, since half
of one move and half of another is a time nobody chose; the recurrence rules merge as a whole for the
same reason. Attendees merge as a set by email: each attendee is a field of its own (added, removed or
changed in name/optional/organizer), and while both sides still have them, their response is another
field, so two people answering on two sides don't clash. Bookkeeping (`ical_uid`, `sequence`, `extra`)
and any field not listed here is not merged: it comes from local (the planner lays the remote's
`extra` over it, as taking the remote does), `sequence` is the higher of the two.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from calsync.model import Attendee, EventData

TIME_FIELDS = ("start", "end", "all_day", "time_zone")  # one field: "time"
# merged one by one (besides "time" and the attendees), each as a whole value
SCALAR_FIELDS = ("title", "description", "location", "status", "recurrence", "original_start", "conference")
_T = TypeVar("_T")

BOOKKEEPING_FIELDS = ("ical_uid", "sequence", "extra")  # not content (EventData.content_hash leaves them out)


@dataclass(frozen=True)
class Merged:
    """The merge's answer. Field names: "time", the SCALAR_FIELDS, "attendee <email>" (presence, name,
    optional, organizer) and "response <email>" (an attendee both sides still have)."""

    data: EventData
    from_local: tuple[str, ...]  # changed here only: taken from local
    from_remote: tuple[str, ...]  # changed there only: taken from remote
    agreed: tuple[str, ...]  # changed identically on both sides
    clashes: tuple[str, ...]  # changed differently on both sides (merged keeps local's value there)


def merge(base: EventData, local: EventData, remote: EventData) -> Merged:
    """Merge `local` and `remote` field by field against `base` (see the module's docstring)."""
    out = _Outcome()
    values: dict[str, Any] = {}
    time = out.field("time", *(tuple(getattr(d, f) for f in TIME_FIELDS) for d in (base, local, remote)))
    values.update(zip(TIME_FIELDS, time, strict=True))
    for name in SCALAR_FIELDS:
        values[name] = out.field(name, getattr(base, name), getattr(local, name), getattr(remote, name))
    values["attendees"] = _merge_attendees(base.attendees, local.attendees, remote.attendees, out)
    values["sequence"] = max(local.sequence, remote.sequence)
    return Merged(
        data=replace(local, **values),
        from_local=tuple(out.from_local),
        from_remote=tuple(out.from_remote),
        agreed=tuple(out.agreed),
        clashes=tuple(out.clashes),
    )


class _Outcome:
    """Where each field's value came from, collected as the merge goes."""

    def __init__(self) -> None:
        self.from_local: list[str] = []
        self.from_remote: list[str] = []
        self.agreed: list[str] = []
        self.clashes: list[str] = []

    def field(self, name: str, base: _T, local: _T, remote: _T) -> _T:
        """The three-way rule for one field."""
        if local == remote:
            if local != base:
                self.agreed.append(name)
            return local
        if local == base:
            self.from_remote.append(name)
            return remote
        if remote != base:
            self.clashes.append(name)
        else:
            self.from_local.append(name)
        return local


_Details = tuple[str | None, bool, bool]  # name, optional, organizer: what is not the response


def _details(attendee: Attendee | None) -> _Details | None:
    return None if attendee is None else (attendee.name, attendee.optional, attendee.organizer)


def _whole(attendee: Attendee | None) -> tuple[_Details, str] | None:
    if attendee is None:
        return None
    return (attendee.name, attendee.optional, attendee.organizer), attendee.response


def _by_email(people: list[Attendee]) -> Mapping[str, Attendee]:
    return {a.email.lower(): a for a in people}


def _merge_attendees(
    base: list[Attendee], local: list[Attendee], remote: list[Attendee], out: _Outcome
) -> list[Attendee]:
    """Attendees as a set by email (case-insensitive). An attendee all three have: their details and
    their response are two fields. Otherwise (added or removed on a side) the attendee is one field."""
    at_base, here, there = _by_email(base), _by_email(local), _by_email(remote)
    merged: dict[str, Attendee] = {}
    for email in sorted(at_base.keys() | here.keys() | there.keys()):
        ba, la, ra = at_base.get(email), here.get(email), there.get(email)
        if ba is not None and la is not None and ra is not None:
            details = out.field(f"attendee {email}", _details(ba), _details(la), _details(ra))
            response = out.field(f"response {email}", ba.response, la.response, ra.response)
            source = la if details == _details(la) else ra
            assert details is not None
            merged[email] = replace(
                source, name=details[0], optional=details[1], organizer=details[2], response=response
            )
        else:
            chosen = out.field(f"attendee {email}", _whole(ba), _whole(la), _whole(ra))
            kept = la if chosen == _whole(la) else ra
            if chosen is not None and kept is not None:
                merged[email] = kept
    # keep an order a person recognises: local's, then remote's newcomers (where they stand there)
    if merged.keys() == here.keys() and all(merged[e] == here[e] for e in here):
        return list(local)
    if merged.keys() == there.keys() and all(merged[e] == there[e] for e in there):
        return list(remote)
    order = [a.email.lower() for a in local] + [a.email.lower() for a in remote]
    return [merged[e] for e in dict.fromkeys(order) if e in merged]


def unmerged_fields() -> tuple[str, ...]:
    """EventData fields this module does not merge and does not know as bookkeeping (kept from
    local): empty today; a test keeps it so, so that a new field is placed deliberately."""
    known = {*TIME_FIELDS, *SCALAR_FIELDS, "attendees", *BOOKKEEPING_FIELDS}
    return tuple(f.name for f in fields(EventData) if f.name not in known)
