"""Event bodies as Graph accepts them (unknown properties refused, read-only ones ignored), and the
body, preview, location and iCalUId shapes Outlook renders."""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import Any

from calsync.emulators.graph.errors import GraphError, _bad, _body_read
from calsync.emulators.graph.times import _When

_ENUMS: dict[str, tuple[str, ...]] = {
    "importance": ("low", "normal", "high"),
    "sensitivity": ("normal", "personal", "private", "confidential"),
    "showAs": ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown"),
    "onlineMeetingProvider": ("unknown", "teamsForBusiness", "skypeForBusiness", "skypeForConsumer"),
}
_BOOLS = ("isAllDay", "isReminderOn", "responseRequested", "allowNewTimeProposals", "hideAttendees", "isOnlineMeeting")
_READ_ONLY = frozenset(
    {
        "id",
        "changeKey",
        "createdDateTime",
        "lastModifiedDateTime",
        "iCalUId",
        "uid",
        "type",
        "seriesMasterId",
        "originalStart",
        "onlineMeeting",
        "onlineMeetingUrl",
        "webLink",
        "isOrganizer",
        "responseStatus",
        "bodyPreview",
        "hasAttachments",
        "isCancelled",
        "isDraft",
        "organizer",
        "originalStartTimeZone",
        "originalEndTimeZone",
        "occurrenceId",
        "calendar",
        "instances",
        "attachments",
        "extensions",
        "multiValueExtendedProperties",
        "cancelledOccurrences",
        "exceptionOccurrences",
    }
)
_WRITABLE = frozenset(
    {
        "subject",
        "body",
        "start",
        "end",
        "location",
        "locations",
        "attendees",
        "categories",
        "reminderMinutesBeforeStart",
        "recurrence",
        "transactionId",
        "singleValueExtendedProperties",
        *_BOOLS,
        *_ENUMS,
    }
)
_ATTENDEE_TYPES = ("required", "optional", "resource")
_NO_RESPONSE = {"response": "none", "time": "0001-01-01T00:00:00Z"}


def _expect(value: Any, kind: type | tuple[type, ...], name: str, edm: str) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise _body_read(f"Cannot convert the literal '{value}' to the expected type '{edm}' (property '{name}').")
    return value


def _check_body(value: Any) -> dict[str, str]:
    _expect(value, dict, "body", "microsoft.graph.itemBody")
    kind = str(value.get("contentType") or "text").lower()
    if kind not in ("text", "html"):
        raise _body_read(f"Requested value '{value.get('contentType')}' was not found.")
    return {"contentType": kind, "content": _expect(value.get("content") or "", str, "body.content", "Edm.String")}


def _check_location(value: Any) -> dict[str, Any]:
    _expect(value, dict, "location", "microsoft.graph.location")
    out = dict(value)
    out["displayName"] = _expect(value.get("displayName") or "", str, "location.displayName", "Edm.String")
    return out


def _check_attendees(value: Any) -> list[dict[str, Any]]:
    _expect(value, list, "attendees", "Collection(microsoft.graph.attendee)")
    out = []
    for item in value:
        email = item.get("emailAddress") if isinstance(item, dict) else None
        address = email.get("address") if isinstance(email, dict) else None
        if not isinstance(email, dict) or not isinstance(address, str) or "@" not in address:
            raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
        kind = item.get("type") or "required"
        if kind not in _ATTENDEE_TYPES:
            raise _body_read(f"Requested value '{kind}' was not found.")
        name = email.get("name") if isinstance(email.get("name"), str) and email.get("name") else address
        out.append({"type": kind, "status": dict(_NO_RESPONSE), "emailAddress": {"name": name, "address": address}})
    return out


def _check_ext_props(value: Any) -> list[dict[str, str]]:
    _expect(
        value, list, "singleValueExtendedProperties", "Collection(microsoft.graph.singleValueLegacyExtendedProperty)"
    )
    out = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not isinstance(item.get("value"), str):
            raise _body_read("A singleValueExtendedProperty needs string 'id' and 'value'.")
        out.append({"id": item["id"], "value": item["value"]})
    return out


def _check_field(name: str, value: Any) -> Any:
    """One writable property, validated and normalised (times and recurrence are checked later)."""
    if name in _BOOLS:
        return _expect(value, bool, name, "Edm.Boolean")
    if name in _ENUMS:
        if value not in _ENUMS[name]:
            raise _body_read(f"Requested value '{value}' was not found.")
        return value
    if name == "subject":
        return _expect(value if value is not None else "", str, name, "Edm.String")
    if name == "body":
        return _check_body(value)
    if name == "location":
        return _check_location(value)
    if name == "locations":
        return [_check_location(v) for v in _expect(value, list, name, "Collection(microsoft.graph.location)")]
    if name == "attendees":
        return _check_attendees(value)
    if name == "categories":
        items = _expect(value, list, name, "Collection(Edm.String)")
        return [_expect(v, str, name, "Edm.String") for v in items]
    if name == "reminderMinutesBeforeStart":
        return _expect(value, int, name, "Edm.Int32")
    if name == "transactionId":
        return _expect(value, str, name, "Edm.String")
    if name == "singleValueExtendedProperties":
        return _check_ext_props(value)
    return value  # start, end, recurrence: checked with the event as a whole


def _checked_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The writable properties of a POST/PATCH body; unknown names are refused, read-only ones ignored."""
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@odata.") or name in _READ_ONLY:
            continue
        if name not in _WRITABLE:
            raise _body_read(
                f"The property '{name}' does not exist on type 'microsoft.graph.event'. Make sure to "
                "only use property names that are defined by the type or mark the type as open type."
            )
        out[name] = _check_field(name, value)
    return out


def _check_times(start: _When, end: _When, all_day: bool) -> None:
    if end.instant < start.instant:
        raise GraphError(
            400, "ErrorCalendarEndDateIsEarlierThanStartDate", "The end date occurs before the start date."
        )
    if all_day:
        midnight = start.local.time() == datetime.min.time() and end.local.time() == datetime.min.time()
        if not midnight or start.tz_name.lower() != end.tz_name.lower() or end.local <= start.local:
            raise _bad(
                "Your request can't be completed. If isAllDay is true, start and end must be at midnight, "
                "in the same time zone, and at least one day apart.",
                "ErrorPropertyValidationFailure",
            )


def _html_of_text(text: str) -> str:
    body = html.escape(text).replace("\r\n", "\n").replace("\n", "<br>\r\n")
    return (
        '<html>\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\r\n</head>\r\n'
        f"<body>\r\n{body}\r\n</body>\r\n</html>\r\n"
    )


_TAG_RE = re.compile(r"<[^>]+>")


def _text_of_html(markup: str) -> str:
    text = re.sub(r"(?is)<(head|style|script)[^>]*>.*?</\1>", "", markup)
    return " ".join(html.unescape(_TAG_RE.sub(" ", text)).split())


def _body_view(body: dict[str, str] | None, want_text: bool) -> dict[str, str]:
    """Outlook stores bodies as HTML: text comes back wrapped unless Prefer asks for text."""
    if not body or not body.get("content"):
        return {"contentType": "text" if want_text else "html", "content": ""}
    if want_text:
        content = body["content"] if body["contentType"] == "text" else _text_of_html(body["content"])
        return {"contentType": "text", "content": content}
    content = body["content"] if body["contentType"] == "html" else _html_of_text(body["content"])
    return {"contentType": "html", "content": content}


def _preview(body: dict[str, str] | None) -> str:
    if not body:
        return ""
    text = body["content"] if body["contentType"] == "text" else _text_of_html(body["content"])
    return " ".join(text.split())[:255]


def _location_json(loc: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "displayName": "",
        "locationType": "default",
        "uniqueIdType": "unknown",
        "address": {},
        "coordinates": {},
    }
    if loc:
        out.update(loc)
    return out


def _ical_uid(key: bytes, occ_start: datetime | None = None) -> str:
    """Outlook's global object id shape; occurrences embed their date, so each differs."""
    stamp = "00000000" if occ_start is None else f"{occ_start.year:04X}{occ_start.month:02X}{occ_start.day:02X}"
    return "040000008200E00074C5B7101A82E008" + stamp + "0000000000000000100000" + key.hex().upper()
