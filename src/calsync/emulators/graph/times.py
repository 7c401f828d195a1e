"""Times as Graph writes and reads them: Windows or IANA zones, seven-digit local stamps, dateTimeTimeZone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from calsync.emulators.graph.errors import GraphError, _body_read

#: Common Windows zone ids (what Outlook stores and returns) and their IANA equivalents.
WINDOWS_ZONES: dict[str, str] = {
    "UTC": "UTC",
    "Coordinated Universal Time": "UTC",
    "tzone://Microsoft/Utc": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest",
    "Romance Standard Time": "Europe/Paris",
    "Central European Standard Time": "Europe/Warsaw",
    "E. Europe Standard Time": "Europe/Chisinau",
    "FLE Standard Time": "Europe/Kiev",
    "GTB Standard Time": "Europe/Bucharest",
    "Russian Standard Time": "Europe/Moscow",
    "Turkey Standard Time": "Europe/Istanbul",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Africa Standard Time": "Africa/Johannesburg",
    "Egypt Standard Time": "Africa/Cairo",
    "Morocco Standard Time": "Africa/Casablanca",
    "W. Central Africa Standard Time": "Africa/Lagos",
    "E. Africa Standard Time": "Africa/Nairobi",
    "Arabian Standard Time": "Asia/Dubai",
    "Arab Standard Time": "Asia/Riyadh",
    "Iran Standard Time": "Asia/Tehran",
    "Pakistan Standard Time": "Asia/Karachi",
    "India Standard Time": "Asia/Kolkata",
    "Nepal Standard Time": "Asia/Kathmandu",
    "Bangladesh Standard Time": "Asia/Dhaka",
    "SE Asia Standard Time": "Asia/Bangkok",
    "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore",
    "Taipei Standard Time": "Asia/Taipei",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Korea Standard Time": "Asia/Seoul",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "E. Australia Standard Time": "Australia/Brisbane",
    "Cen. Australia Standard Time": "Australia/Adelaide",
    "W. Australia Standard Time": "Australia/Perth",
    "New Zealand Standard Time": "Pacific/Auckland",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Alaskan Standard Time": "America/Anchorage",
    "Pacific Standard Time": "America/Los_Angeles",
    "US Mountain Standard Time": "America/Phoenix",
    "Mountain Standard Time": "America/Denver",
    "Central Standard Time": "America/Chicago",
    "Eastern Standard Time": "America/New_York",
    "Atlantic Standard Time": "America/Halifax",
    "Newfoundland Standard Time": "America/St_Johns",
    "SA Pacific Standard Time": "America/Bogota",
    "Pacific SA Standard Time": "America/Santiago",
    "E. South America Standard Time": "America/Sao_Paulo",
    "Argentina Standard Time": "America/Buenos_Aires",
    "Central Standard Time (Mexico)": "America/Mexico_City",
    "Canada Central Standard Time": "America/Regina",
    "Dateline Standard Time": "Etc/GMT+12",
    "UTC-11": "Etc/GMT+11",
    "UTC+12": "Etc/GMT-12",
}
_WINDOWS_LOWER = {k.lower(): v for k, v in WINDOWS_ZONES.items()}


def _zone(name: Any) -> ZoneInfo:
    """A zone from a Windows or IANA name, or Graph's 400 for an unsupported one."""
    if isinstance(name, str) and name.strip():
        iana = _WINDOWS_LOWER.get(name.strip().lower(), name.strip())
        if ".." not in iana and not iana.startswith("/"):
            try:
                return ZoneInfo(iana)
            except (ZoneInfoNotFoundError, ValueError):
                pass
    raise GraphError(
        400,
        "TimeZoneNotSupportedException",
        f"A valid TimeZone value must be specified. The following TimeZone value is not supported: '{name}'.",
    )


def _fmt_local(dt: datetime) -> str:
    """Graph's dateTime: no offset, seven fractional digits."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0"


def _fmt_ts(ts: float) -> str:
    """createdDateTime / lastModifiedDateTime: UTC, seven fractional digits, Z."""
    dt = datetime.fromtimestamp(ts, UTC)
    return _fmt_local(dt.replace(tzinfo=None)) + "Z"


def _fmt_instant(dt: datetime) -> str:
    """originalStart-style timestamps: UTC with Z and whole seconds."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: Any) -> datetime | None:
    """ISO 8601 date or date-time (offset optional, any fraction); None when malformed."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time())
        return datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None


def _parse_instant(value: Any) -> datetime | None:
    """A query-string instant: no offset means UTC (as documented for calendarView delta)."""
    dt = _parse_iso(value)
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass(frozen=True)
class _When:
    """A dateTimeTimeZone as stored: the wall time in the zone the client named, and that name."""

    local: datetime  # naive
    tz_name: str
    zone: ZoneInfo

    @property
    def instant(self) -> datetime:
        return self.local.replace(tzinfo=self.zone).astimezone(UTC)

    def json(self) -> dict[str, str]:
        return {"dateTime": _fmt_local(self.local), "timeZone": self.tz_name}


def _check_when(value: Any, what: str) -> _When:
    if not isinstance(value, dict):
        raise _body_read(f"Cannot read the value of property '{what}': expected a dateTimeTimeZone object.")
    zone_name = value.get("timeZone")
    zone = _zone(zone_name)
    dt = _parse_iso(value.get("dateTime"))
    if dt is None:
        raise _body_read(f"Cannot convert the literal '{value.get('dateTime')}' to the expected type 'Edm.DateTime'.")
    if dt.tzinfo is not None:
        dt = dt.astimezone(zone).replace(tzinfo=None)
    return _When(dt, str(zone_name).strip(), zone)
