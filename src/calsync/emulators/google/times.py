"""Times as Google writes and reads them: RFC 3339 stamps, IANA zones and EventDateTime values."""

from __future__ import annotations

from datetime import date, datetime
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from calsync.emulators.google.errors import _invalid, _required


def _fmt_dt(dt: datetime) -> str:
    """RFC 3339 with offset and whole seconds; UTC written as Z."""
    text = dt.replace(microsecond=0).isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _parse_rfc3339(value: str) -> datetime | None:
    """Parse an RFC 3339 timestamp; None when malformed."""
    if not isinstance(value, str) or len(value) < 19 or value[10] not in "Tt":
        return None
    try:
        return datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None


def _zone(name: Any, what: str) -> ZoneInfo:
    """An IANA zone, or a 400 naming the field, as Google does for bad time zones."""
    if isinstance(name, str) and name and ".." not in name and not name.startswith("/"):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise _invalid(f"Invalid time zone definition for {what} time.")


def _midnight_ts(d: date, zone: ZoneInfo) -> float:
    return datetime.combine(d, dtime(), zone).timestamp()


def _norm_edt(value: Any, what: str, cal_zone: ZoneInfo) -> tuple[dict[str, Any], float, bool]:
    """Validate an EventDateTime; returns (normalized JSON, epoch seconds, all-day?)."""
    if not isinstance(value, dict):
        raise _invalid(f"Invalid {what} time.")
    date_s, dt_s, tz_s = value.get("date"), value.get("dateTime"), value.get("timeZone")
    zone = _zone(tz_s, what) if tz_s is not None else None
    if date_s is not None and dt_s is not None:
        raise _invalid(f"Invalid {what} time: both date and dateTime given.")
    if date_s is not None:
        try:
            d = date.fromisoformat(date_s) if isinstance(date_s, str) and len(date_s) == 10 else None
        except ValueError:
            d = None
        if d is None:
            raise _invalid(f"Invalid {what} time.")
        return {"date": d.isoformat()}, _midnight_ts(d, cal_zone), True
    if dt_s is None:
        raise _required(f"Missing {what} time.")
    dt = _parse_rfc3339(dt_s)
    if dt is None:
        raise _invalid(f"Invalid {what} time.")
    if dt.tzinfo is None:
        if zone is None:
            raise _required(f"Missing time zone definition for {what} time.")
        dt = dt.replace(tzinfo=zone)
    out: dict[str, Any] = {"dateTime": _fmt_dt(dt.astimezone(zone or cal_zone))}
    if tz_s is not None:
        out["timeZone"] = tz_s
    return out, dt.replace(microsecond=0).timestamp(), False
