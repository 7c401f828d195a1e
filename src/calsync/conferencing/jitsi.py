"""Jitsi Meet rooms: no remote API, the room exists as soon as someone opens its URL.

So the room name is all there is, and it must be deterministic (a retried create gives the same
room) and unguessable (anyone who can derive it can join): it is an HMAC-SHA256 of the
idempotency key under a secret, in lower-case base32, 26 characters (130 bits).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping

from calsync.conferencing.base import Conference, MeetingSpec

__all__ = ["DEFAULT_BASE_URL", "ROOM_PREFIX", "JitsiAdapter", "from_settings", "room_name"]

DEFAULT_BASE_URL = "https://meet.jit.si"
ROOM_PREFIX = "calsync-"
ROOM_CHARS = 26
_ROOM_RE = re.compile(rf"^{re.escape(ROOM_PREFIX)}[a-z2-7]{{{ROOM_CHARS}}}$")


def room_name(secret: str, idempotency_key: str) -> str:
    """``calsync-`` + 26 base32 characters of HMAC-SHA256(secret, key); unguessable without the secret."""
    mac = hmac.new(secret.encode(), b"calsync-jitsi-room\x00" + idempotency_key.encode(), hashlib.sha256)
    return ROOM_PREFIX + base64.b32encode(mac.digest()).decode().lower()[:ROOM_CHARS]


class JitsiAdapter:
    """Rooms on a Jitsi Meet deployment; every operation is local (``request_count`` stays 0)."""

    name = "jitsi"
    request_count = 0

    def __init__(self, secret: str, *, base_url: str = DEFAULT_BASE_URL, solution_name: str = "Jitsi Meet") -> None:
        if not secret:
            raise ValueError("a Jitsi adapter needs a secret to derive unguessable room names")
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.solution_name = solution_name

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> JitsiAdapter | None:
        """From CALSYNC_JITSI_SECRET (required) / _BASE_URL / _SOLUTION_NAME; None without a secret."""
        secret = settings.get("CALSYNC_JITSI_SECRET") or ""
        if not secret:
            return None
        base = (settings.get("CALSYNC_JITSI_BASE_URL") or "").strip() or DEFAULT_BASE_URL
        name = (settings.get("CALSYNC_JITSI_SOLUTION_NAME") or "").strip() or "Jitsi Meet"
        return cls(secret, base_url=base, solution_name=name)

    def _room(self, room: str) -> Conference:
        return Conference(self.name, room, f"{self.base_url}/{room}", {"room": room})

    def create(self, spec: MeetingSpec, *, idempotency_key: str, maybe_exists: bool = True) -> Conference:
        return self._room(room_name(self._secret, idempotency_key))

    def get(self, conference_id: str) -> Conference | None:
        """The room rebuilt from its name; None for a name this adapter could not have made."""
        return self._room(conference_id) if _ROOM_RE.match(conference_id) else None

    def update(self, conference_id: str, spec: MeetingSpec, fields: list[str]) -> Conference | None:
        """A room has no title or time to change: the same room."""
        return self._room(conference_id)

    def delete(self, conference_id: str) -> None:
        """Nothing to delete: a room nobody opens does not exist."""

    def close(self) -> None:
        """No resources held."""


def from_settings(settings: Mapping[str, str]) -> JitsiAdapter | None:
    """Module-level alias of ``JitsiAdapter.from_settings``."""
    return JitsiAdapter.from_settings(settings)
