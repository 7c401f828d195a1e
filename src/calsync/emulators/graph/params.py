"""Request inputs: Prefer headers, OData query options (case-insensitive, as Graph matches them),
$expand of extended properties, and the startDateTime/endDateTime window of calendar views."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from calsync.emulators.graph.errors import GraphError
from calsync.emulators.graph.times import _parse_instant


@dataclass(frozen=True)
class _Prefer:
    timezone: str | None = None
    immutable: bool = False
    max_page_size: int | None = None
    text_body: bool = False


def _parse_prefer(values: list[str]) -> _Prefer:
    """Prefer headers (several, or comma-separated): outlook.timezone, IdType, odata.maxpagesize, body type."""
    found: dict[str, str] = {}
    for value in values:
        for part in re.findall(r'[^,"]+(?:"[^"]*"[^,"]*)*', value):
            name, sep, raw = part.strip().partition("=")
            if sep:
                found[name.strip().lower()] = raw.strip().strip('"')
    size: int | None = None
    raw_size = found.get("odata.maxpagesize")
    if raw_size is not None:
        size = int(raw_size) if raw_size.isdigit() and 0 < int(raw_size) <= 10**6 else None
    return _Prefer(
        timezone=found.get("outlook.timezone") or None,
        immutable=found.get("idtype", "").lower() == "immutableid",
        max_page_size=size,
        text_body=found.get("outlook.body-content-type", "").lower() == "text",
    )


class _Params:
    """Query parameters; OData system options are matched case-insensitively, as Graph does."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = {k.lower(): v for k, v in items}

    def get(self, name: str) -> str | None:
        return self._items.get(name.lower())

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._items

    def int(self, name: str, low: int, high: int) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        if not value.isdigit() or not low <= int(value) <= high:
            raise GraphError(400, "BadRequest", f"Invalid value '{value}' for query option '{name}'.")
        return int(value)


_EXPAND_RE = re.compile(r"^singlevalueextendedproperties(?:\(\$filter=id\s+eq\s+'([^']*)'\))?$", re.IGNORECASE)


def _expand_filter(params: _Params) -> str | None:
    """$expand=singleValueExtendedProperties($filter=id eq '...'): the id ("" for all), or None."""
    value = params.get("$expand")
    if value is None:
        return None
    match = _EXPAND_RE.match(value.strip())
    if match is None:
        raise GraphError(400, "BadRequest", f"Parsing OData Select and Expand failed: '{value}' is not supported.")
    return match.group(1) or ""


def _window(params: _Params) -> tuple[datetime, datetime]:
    """startDateTime / endDateTime, required for calendar views."""
    raw_lo, raw_hi = params.get("startDateTime"), params.get("endDateTime")
    if not raw_lo or not raw_hi:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            "This request requires a time window specified by the query "
            "string parameters StartDateTime and EndDateTime.",
        )
    lo, hi = _parse_instant(raw_lo), _parse_instant(raw_hi)
    if lo is None or hi is None:
        raise GraphError(
            400, "ErrorInvalidParameter", "The value of StartDateTime or EndDateTime is not a valid date and time."
        )
    if hi < lo:
        raise GraphError(400, "ErrorInvalidParameter", "EndDateTime must not be earlier than StartDateTime.")
    return lo, hi
