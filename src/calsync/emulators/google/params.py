"""Query parameters as Google validates them, and the validated events.list / instances request."""

from __future__ import annotations

import builtins
import hashlib
import json
from dataclasses import dataclass

from calsync.emulators.google.errors import _invalid
from calsync.emulators.google.times import _parse_rfc3339

MAX_RESULTS_DEFAULT = 250
MAX_RESULTS_CAP = 2500
# Query parameters that do not change what a list returns, so page tokens ignore them.
_NON_SEMANTIC_PARAMS = frozenset(
    {
        "pageToken",
        "alt",
        "prettyPrint",
        "fields",
        "quotaUser",
        "key",
        "userIp",
        "oauth_token",
        "access_token",
        "callback",
        "$.xgafv",
        "upload_protocol",
        "uploadType",
    }
)
_SYNC_RESTRICTED = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)


class Params:
    """Read-only view of query parameters with Google-style validation errors."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.items = items
        self._map: dict[str, list[str]] = {}
        for k, v in items:
            self._map.setdefault(k, []).append(v)

    def __contains__(self, name: str) -> bool:
        return name in self._map

    def get(self, name: str) -> str | None:
        values = self._map.get(name)
        return values[0] if values else None

    def getlist(self, name: str) -> list[str]:
        return list(self._map.get(name, []))

    def bool(self, name: str, default: bool | None = None) -> bool | None:
        raw = self.get(name)
        if raw is None:
            return default
        if raw.lower() in ("true", "1"):
            return True
        if raw.lower() in ("false", "0"):
            return False
        raise _invalid(f"Invalid boolean value for: {name}", name)

    def int(self, name: str) -> int | None:
        raw = self.get(name)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise _invalid(f"Invalid value for: {name}", name) from None

    def time(self, name: str, keep_ms: builtins.bool = False) -> float | None:
        """An RFC 3339 parameter as epoch seconds; timeMin/timeMax ignore milliseconds as Google documents."""
        raw = self.get(name)
        if raw is None:
            return None
        dt = _parse_rfc3339(raw)
        if dt is None or dt.tzinfo is None:
            raise _invalid(f"Bad Request: {name} must be an RFC3339 timestamp with a time zone offset.", name)
        return (dt if keep_ms else dt.replace(microsecond=0)).timestamp()

    def semantic_hash(self, extra: str) -> str:
        """Hash of everything that shapes the result, to tie page tokens to their query."""
        kept = sorted((k, v) for k, v in self.items if k not in _NON_SEMANTIC_PARAMS)
        return hashlib.sha256(json.dumps([extra, kept]).encode()).hexdigest()[:16]


@dataclass
class _ListQuery:
    """A validated events.list / events.instances request."""

    max_results: int
    page_token: str | None
    sync_token: str | None
    single_events: bool
    show_deleted: bool
    order_by: str | None
    time_min: float | None
    time_max: float | None
    updated_min: float | None
    text: str | None
    ical_uid: str | None
    private_props: list[tuple[str, str]]
    shared_props: list[tuple[str, str]]
    qhash: str

    @property
    def has_content_filters(self) -> bool:
        return bool(self.text or self.ical_uid or self.private_props or self.shared_props)


def _max_results(params: Params) -> int:
    value = params.int("maxResults")
    if value is None:
        return MAX_RESULTS_DEFAULT
    if value < 1:
        raise _invalid(
            f"Invalid value '{value}'. Values must be within the range: [1, {MAX_RESULTS_CAP}]", "maxResults"
        )
    return min(value, MAX_RESULTS_CAP)


def _prop_filters(params: Params, name: str) -> list[tuple[str, str]]:
    out = []
    for raw in params.getlist(name):
        key, sep, value = raw.partition("=")
        if not sep or not key:
            raise _invalid(f"Invalid value for: {name}. Expected propertyName=value.", name)
        out.append((key, value))
    return out


def _conference_version(params: Params) -> int:
    value = params.int("conferenceDataVersion")
    if value is None:
        return 0
    if value not in (0, 1):
        raise _invalid(
            "Invalid value for: conferenceDataVersion. Values must be within the range: [0, 1]", "conferenceDataVersion"
        )
    return value
