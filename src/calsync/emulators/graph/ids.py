"""Ids as Outlook shapes them: event ids (regular, which change when an event moves, or immutable),
occurrence ids, calendar ids, all bound to their mailbox. Graph documents them as opaque
(https://learn.microsoft.com/graph/outlook-immutable-id); the shapes here are only plausible."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from calsync.emulators.common import b64url_decode as _unb64
from calsync.emulators.graph.errors import _malformed_id, _not_found

_EVENT_KIND = b"E"
_CAL_KIND = b"C"
_PREFIX_REGULAR = "AAMkA"
_PREFIX_IMMUTABLE = "AAkAL"
_PREFIX_CAL = "AQMkA"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _mailbox_header(email: str) -> bytes:
    digest = hashlib.sha256(email.lower().encode()).digest()
    return digest + digest[:16]


@dataclass(frozen=True)
class _IdParts:
    key: bytes
    gen: int
    immutable: bool
    occ: int | None  # occurrence original start (epoch seconds) for instances of a series


def _encode_event_id(header: bytes, key: bytes, gen: int, immutable: bool, occ: int | None = None) -> str:
    raw = header + _EVENT_KIND + key + (0 if immutable else gen).to_bytes(2, "big")
    if occ is not None:
        raw += occ.to_bytes(8, "big", signed=True)
    return (_PREFIX_IMMUTABLE if immutable else _PREFIX_REGULAR) + _b64(raw)


def _decode_event_id(header: bytes, text: str) -> _IdParts:
    """Parse an event id of either form; 400 when malformed, 404 when it names another mailbox."""
    if not isinstance(text, str) or len(text) < 10 or len(text) > 400:
        raise _malformed_id()
    prefix, body = text[:5], text[5:]
    if prefix not in (_PREFIX_REGULAR, _PREFIX_IMMUTABLE):
        raise _malformed_id()
    raw = _unb64(body)
    if raw is None or len(raw) not in (67, 75) or raw[48:49] != _EVENT_KIND:
        raise _malformed_id()
    if raw[:48] != header:
        raise _not_found()
    occ = int.from_bytes(raw[67:75], "big", signed=True) if len(raw) == 75 else None
    return _IdParts(raw[49:65], int.from_bytes(raw[65:67], "big"), prefix == _PREFIX_IMMUTABLE, occ)


def _encode_calendar_id(header: bytes, key: bytes) -> str:
    return _PREFIX_CAL + _b64(header + _CAL_KIND + key)


def _decode_calendar_id(header: bytes, text: str) -> bytes:
    raw = _unb64(text[5:]) if isinstance(text, str) and text.startswith(_PREFIX_CAL) else None
    if raw is None or len(raw) != 65 or raw[48:49] != _CAL_KIND:
        raise _malformed_id()
    if raw[:48] != header:
        raise _not_found()
    return raw[49:]
