"""iCalendar (RFC 5545) <-> EventData, for the CalDAV provider. No I/O here.

Reading: one calendar object resource holds one event, or a recurring series (the VEVENT without
RECURRENCE-ID, "the master") with its overridden instances (VEVENTs with RECURRENCE-ID, same UID).
Each VEVENT becomes one RemoteEvent: the master under the resource's id, an override under
`<resource id>#<recurrence key>` with `series_remote_id` = the resource's id.

Writing never rebuilds a resource from scratch when there is one: the original text (kept in
`EventData.extra["caldav"]["ics"]`, or fetched again) is parsed, and only the properties calsync
models are changed in the one VEVENT being written, and only those whose modelled value differs.
Alarms, categories, X- properties, attachments, ORGANIZER, other VEVENTs of the series... stay as
they were (property order and line folding may change; meaning does not).

ETags: a resource holding one VEVENT gives that VEVENT the resource's ETag. A resource holding a
series with overrides gives each VEVENT a *component ETag* (`calsync-c:<digest of what calsync
reads from that VEVENT>`: its modelled content, SEQUENCE and UID), so
an edit to one override does not look like a change of every other instance (which would raise
false conflicts and echo writes to the other bindings). Writes with a component ETag re-read the
resource, compare the component, and write with If-Match on the resource's real ETag.

The package, one job a module (imports go one way: keys <- read <- write, read <- fast):
- keys.py: recurrence keys, remote ids, component ETags;
- read.py: VEVENT -> EventData with icalendar (and a resource's VEVENTs as RemoteEvents);
- fast.py: the same reading for the common shapes, without icalendar's object model;
- write.py: EventData -> VEVENT (patching, new resources, RECURRENCE-ID and EXDATE helpers).
`remote_events` below picks the reader.
"""

from __future__ import annotations

from calsync.model import RemoteEvent
from calsync.providers.ical.fast import (
    _ESCAPE,
    _Fallback,
    _fast_recurrence,
    _fast_remote_events,
    _unescape,
    _unescaped,
)
from calsync.providers.ical.keys import (
    COMPONENT_ETAG_PREFIX,
    is_component_etag,
    recurrence_key,
    split_remote_id,
)
from calsync.providers.ical.read import (
    OPTIONAL_ROLES,
    PARTSTAT_TO_RESPONSE,
    RECURRENCE_PROPERTIES,
    STRUCTURE,
    VIDEO_HOSTS,
    X_ID,
    X_PROVIDER,
    X_TYPE,
    InvalidCalendarData,
    _remote_events_icalendar,
    calendar_for,
    component_etag,
    conference_summary,
    event_data,
    event_data_of,
    find_vevent,
    parse_calendar,
    recurrence_lines,
    vevents,
    zone_name,
)
from calsync.providers.ical.write import (
    PRODID,
    RESPONSE_TO_PARTSTAT,
    add_exdate,
    apply_event_data,
    drop_excluded_overrides,
    exclude_instance,
    include_instance,
    new_calendar,
    new_resource,
    new_vevent,
    render,
    set_recurrence_id,
)

__all__ = [
    "COMPONENT_ETAG_PREFIX",
    "OPTIONAL_ROLES",
    "PARTSTAT_TO_RESPONSE",
    "PRODID",
    "RECURRENCE_PROPERTIES",
    "RESPONSE_TO_PARTSTAT",
    "STRUCTURE",
    "VIDEO_HOSTS",
    "X_ID",
    "X_PROVIDER",
    "X_TYPE",
    "_ESCAPE",
    "InvalidCalendarData",
    "_Fallback",
    "_fast_recurrence",
    "_fast_remote_events",
    "_remote_events_icalendar",
    "_unescape",
    "_unescaped",
    "add_exdate",
    "apply_event_data",
    "calendar_for",
    "component_etag",
    "conference_summary",
    "drop_excluded_overrides",
    "event_data",
    "event_data_of",
    "exclude_instance",
    "find_vevent",
    "include_instance",
    "is_component_etag",
    "new_calendar",
    "new_resource",
    "new_vevent",
    "parse_calendar",
    "recurrence_key",
    "recurrence_lines",
    "remote_events",
    "render",
    "set_recurrence_id",
    "split_remote_id",
    "vevents",
    "zone_name",
]


def remote_events(base_id: str, etag: str, text: str) -> list[RemoteEvent]:
    """The VEVENTs of one calendar object resource as RemoteEvents (master first).

    The fast reader (fast.py) handles the common shapes about 20x faster than icalendar (an initial
    sync of a large calendar is mostly this); anything it is not sure about is read by icalendar,
    with the same result (tests/test_caldav.py checks the two agree)."""
    try:
        return _fast_remote_events(base_id, etag, text)
    except _Fallback:
        return _remote_events_icalendar(base_id, etag, text)
