"""Which VEVENT is which: recurrence keys, the remote ids made of them, component ETags. No parsing here.

An override of a series has the remote id `<resource id>#<recurrence key>`; a resource holding several
VEVENTs gives each a component ETag (`calsync-c:...`) instead of the resource's ETag (see the package's
docstring).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from calsync.model import EventData

COMPONENT_ETAG_PREFIX = "calsync-c:"


def recurrence_key(vevent: Mapping[str, Any]) -> str | None:
    """The instance a VEVENT overrides, spelt for a remote id: YYYYMMDD, or UTC YYYYMMDDTHHMMSSZ.
    (An icalendar Event, or the fast reader's _Comp.)"""
    prop = vevent.get("RECURRENCE-ID")
    if prop is None:
        return None
    return _key_of(prop.dt)


def _key_of(value: date | datetime) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # floating
            return value.strftime("%Y%m%dT%H%M%S")
        return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return value.strftime("%Y%m%d")


def split_remote_id(remote_id: str) -> tuple[str, str | None]:
    """`name#key` -> (name, key); a master's id -> (id, None)."""
    base, sep, key = remote_id.partition("#")
    return base, (key if sep else None)


def _data_etag(data: EventData, digest: str | None = None) -> str:
    body = f"{digest or data.content_hash()}|{data.sequence}|{data.ical_uid or ''}"
    return COMPONENT_ETAG_PREFIX + hashlib.sha256(body.encode()).hexdigest()[:40]


def is_component_etag(etag: str | None) -> bool:
    return bool(etag) and str(etag).startswith(COMPONENT_ETAG_PREFIX)
