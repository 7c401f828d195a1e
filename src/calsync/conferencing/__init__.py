"""Conference systems calsync keeps in step with calendar events (see conferencing/base.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from calsync.conferencing.base import Conference, ConferenceAdapter, ConferenceError, MeetingSpec
from calsync.conferencing.jitsi import JitsiAdapter
from calsync.conferencing.webhook import WebhookAdapter
from calsync.conferencing.zoom import ZoomAdapter

__all__ = [
    "ADAPTERS",
    "Conference",
    "ConferenceAdapter",
    "ConferenceError",
    "JitsiAdapter",
    "MeetingSpec",
    "WebhookAdapter",
    "ZoomAdapter",
    "configured_adapters",
]

ADAPTERS = ("zoom", "webhook", "jitsi")

_FACTORIES: dict[str, Callable[[Mapping[str, str]], ConferenceAdapter | None]] = {
    "zoom": ZoomAdapter.from_settings,
    "webhook": WebhookAdapter.from_settings,
    "jitsi": JitsiAdapter.from_settings,
}


def configured_adapters(settings: Mapping[str, str]) -> dict[str, ConferenceAdapter]:
    """name -> adapter for every conference system the CALSYNC_* settings configure, in ADAPTERS order."""
    out: dict[str, ConferenceAdapter] = {}
    for name in ADAPTERS:
        adapter = _FACTORIES[name](settings)
        if adapter is not None:
            out[name] = adapter
    return out
