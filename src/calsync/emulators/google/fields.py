"""Event bodies as Google accepts them: each writable field validated and normalised, PATCH merged,
conference data checked, start/end/recurrence turned into the times the store indexes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from calsync.emulators.google.errors import ApiError, _invalid, _required
from calsync.emulators.google.recurrence import _Series
from calsync.emulators.google.times import _norm_edt

_STR_FIELDS = ("summary", "description", "location", "colorId")
_BOOL_FIELDS = (
    "endTimeUnspecified",
    "anyoneCanAddSelf",
    "guestsCanInviteOthers",
    "guestsCanModify",
    "guestsCanSeeOtherGuests",
    "privateCopy",
)
_ENUMS = {
    "status": ("confirmed", "tentative", "cancelled"),
    "transparency": ("opaque", "transparent"),
    "visibility": ("default", "public", "private", "confidential"),
    "eventType": ("default",),
}
_WRITABLE = frozenset(
    _STR_FIELDS
    + _BOOL_FIELDS
    + tuple(_ENUMS)
    + ("start", "end", "recurrence", "attendees", "reminders", "extendedProperties", "source")
)
_SCHEDULE_FIELDS = ("start", "end", "recurrence", "location")
_ATTENDEE_STR = ("email", "displayName", "comment", "id")
_ATTENDEE_BOOL = ("optional", "resource", "organizer", "self")
_RESPONSE_STATUSES = ("needsAction", "declined", "tentative", "accepted")


def _check_attendees(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _invalid("Invalid attendees value.")
    out = []
    for item in value:
        if not isinstance(item, dict):
            raise _invalid("Invalid attendee.")
        if not isinstance(item.get("email"), str) or not item["email"]:
            raise _required("Missing attendee email.")
        att: dict[str, Any] = {}
        for key in _ATTENDEE_STR:
            if item.get(key) is not None:
                if not isinstance(item[key], str):
                    raise _invalid(f"Invalid attendee {key}.")
                att[key] = item[key]
        for key in _ATTENDEE_BOOL:
            if item.get(key) is not None:
                att[key] = bool(item[key])
        if item.get("additionalGuests") is not None:
            if not isinstance(item["additionalGuests"], int) or isinstance(item["additionalGuests"], bool):
                raise _invalid("Invalid attendee additionalGuests.")
            att["additionalGuests"] = item["additionalGuests"]
        status = item.get("responseStatus") or "needsAction"
        if status not in _RESPONSE_STATUSES:
            raise _invalid("Invalid attendee responseStatus.")
        att["responseStatus"] = status
        out.append(att)
    return out


def _check_reminders(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid("Invalid reminders value.")
    out: dict[str, Any] = {"useDefault": bool(value.get("useDefault", False))}
    overrides = value.get("overrides")
    if overrides is not None:
        if not isinstance(overrides, list) or len(overrides) > 5:
            raise _invalid("Invalid reminder overrides: at most 5 are allowed.")
        checked = []
        for item in overrides:
            minutes = item.get("minutes") if isinstance(item, dict) else None
            method = item.get("method") if isinstance(item, dict) else None
            if method not in ("email", "popup") or not isinstance(minutes, int) or not 0 <= minutes <= 40320:
                raise _invalid("Invalid reminder override.")
            checked.append({"method": method, "minutes": minutes})
        if checked and out["useDefault"]:
            raise _invalid("Cannot specify both default reminders and overrides at the same time.")
        out["overrides"] = checked
    return out


def _check_string_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _invalid(f"Invalid extendedProperties.{what}: values must be strings.")
    return dict(value)


def _check_ext_props(value: Any) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict) or set(value) - {"private", "shared"}:
        raise _invalid("Invalid extendedProperties value.")
    return {k: _check_string_map(v, k) for k, v in value.items() if v is not None}


def _check_field(name: str, value: Any) -> Any:
    """Validate one writable field's value (already known not to be None)."""
    if name in _STR_FIELDS:
        if not isinstance(value, str):
            raise _invalid(f"Invalid value for {name}.")
        return value
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise _invalid(f"Invalid value for {name}.")
        return value
    if name in _ENUMS:
        if value not in _ENUMS[name]:
            raise _invalid(f"Invalid {name} value.")
        return value
    if name in ("start", "end"):
        return value  # checked with the calendar's zone in _check_times
    if name == "recurrence":
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise _invalid("Invalid recurrence rule.")
        return list(value)
    if name == "attendees":
        return _check_attendees(value)
    if name == "reminders":
        return _check_reminders(value)
    if name == "extendedProperties":
        return _check_ext_props(value)
    if name == "source":
        if not isinstance(value, dict) or not all(isinstance(value.get(k, ""), str) for k in ("title", "url")):
            raise _invalid("Invalid source value.")
        return {k: value[k] for k in ("title", "url") if k in value}
    raise AssertionError(name)


def _fresh_data(body: dict[str, Any]) -> dict[str, Any]:
    """Writable fields of a full body (insert, import, update): absent or null fields are unset."""
    return {k: _check_field(k, v) for k, v in body.items() if k in _WRITABLE and v is not None}


def _patched_data(old: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """PATCH: each given field replaces the stored one (null clears it); extended properties merge by key."""
    data = dict(old)
    for key, value in body.items():
        if key not in _WRITABLE:
            continue
        if value is None:
            data.pop(key, None)
        elif key == "extendedProperties":
            data[key] = _merge_ext_props(old.get(key, {}), value)
        else:
            data[key] = _check_field(key, value)
    return data


def _merge_ext_props(old: dict[str, dict[str, str]], patch: Any) -> dict[str, dict[str, str]]:
    if not isinstance(patch, dict) or set(patch) - {"private", "shared"}:
        raise _invalid("Invalid extendedProperties value.")
    merged = {k: dict(v) for k, v in old.items()}
    for scope, values in patch.items():
        if values is None:
            merged.pop(scope, None)
            continue
        if not isinstance(values, dict):
            raise _invalid(f"Invalid extendedProperties.{scope}.")
        target = merged.setdefault(scope, {})
        for key, value in values.items():
            if value is None:
                target.pop(key, None)
            elif isinstance(value, str):
                target[key] = value
            else:
                raise _invalid(f"Invalid extendedProperties.{scope}: values must be strings.")
    return merged


_ENTRY_POINT_STR = (
    "entryPointType",
    "uri",
    "label",
    "pin",
    "accessCode",
    "meetingCode",
    "passcode",
    "password",
    "regionCode",
)


def _check_entry_point(value: Any) -> dict[str, Any]:
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("entryPointType"), str)
        or not isinstance(value.get("uri"), str)
    ):
        raise _invalid("Invalid conference entry point: entryPointType and uri are required.")
    out: dict[str, Any] = {}
    for key in _ENTRY_POINT_STR:
        if value.get(key) is not None:
            if not isinstance(value[key], str):
                raise _invalid(f"Invalid conference entry point {key}.")
            out[key] = value[key]
    features = value.get("entryPointFeatures")
    if features is not None:
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise _invalid("Invalid conference entry point features.")
        out["entryPointFeatures"] = list(features)
    return out


def _check_conference(value: dict[str, Any]) -> dict[str, Any]:
    """A copied ConferenceData (no createRequest): conferenceSolution and at least one entry point."""
    solution = value.get("conferenceSolution")
    solution = solution if isinstance(solution, dict) else {}
    entry_points = value.get("entryPoints")
    key = solution.get("key")
    if (
        not isinstance(key, dict)
        or not isinstance(key.get("type"), str)
        or not isinstance(entry_points, list)
        or not entry_points
    ):
        raise _invalid("Invalid conference data: conferenceSolution and entryPoints are required.")
    out: dict[str, Any] = {}
    for name in ("conferenceId", "notes", "signature"):
        if value.get(name) is not None:
            if not isinstance(value[name], str):
                raise _invalid(f"Invalid conference data {name}.")
            out[name] = value[name]
    clean_solution: dict[str, Any] = {"key": {"type": key["type"]}}
    for name in ("name", "iconUri"):
        if solution.get(name) is not None:
            if not isinstance(solution[name], str):
                raise _invalid(f"Invalid conference solution {name}.")
            clean_solution[name] = solution[name]
    out["conferenceSolution"] = clean_solution
    out["entryPoints"] = [_check_entry_point(e) for e in entry_points]
    params = value.get("parameters")
    if params is not None:
        add_on = params.get("addOnParameters") if isinstance(params, dict) else None
        inner = add_on.get("parameters", {}) if isinstance(add_on, dict) else None
        if not isinstance(inner, dict) or not all(isinstance(v, str) for v in inner.values()):
            raise _invalid("Invalid conference parameters: addOnParameters.parameters must map strings to strings.")
        out["parameters"] = {"addOnParameters": {"parameters": dict(inner)}}
    return out


@dataclass
class _Times:
    start_ts: float
    end_ts: float
    span_end_ts: float
    compiled: _Series | None


def _check_times(data: dict[str, Any], cal_zone: ZoneInfo) -> _Times:
    """Normalize start/end in place and check the range and recurrence; returns the derived times."""
    if "start" not in data:
        raise _required("Missing start time.")
    if "end" not in data:
        raise _required("Missing end time.")
    data["start"], start_ts, start_all_day = _norm_edt(data["start"], "start", cal_zone)
    data["end"], end_ts, end_all_day = _norm_edt(data["end"], "end", cal_zone)
    if start_all_day != end_all_day:
        raise _invalid("Start and end times must either both be date or both be dateTime.")
    if end_ts < start_ts or (start_all_day and end_ts == start_ts):
        raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.", "calendar")
    compiled: _Series | None = None
    span_end = end_ts
    if data.get("recurrence"):
        if not start_all_day and "timeZone" not in data["start"]:
            raise _required("Missing time zone definition for start time.")
        try:
            compiled = _Series(data, cal_zone)
            span_end = compiled.span_end()
        except (ValueError, TypeError, OverflowError, ZoneInfoNotFoundError, KeyError):
            raise _invalid("Invalid recurrence rule.") from None
    return _Times(start_ts, end_ts, span_end, compiled)
