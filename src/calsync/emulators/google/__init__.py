"""A faithful in-memory emulator of the Google Calendar API v3, served over real HTTP.

It reproduces what a sync engine depends on (``../shared/reference/provider-semantics.md``
1.1-1.9 and its emulator checklist 5.1; https://developers.google.com/calendar/api/v3/reference):
sync tokens and their invalidation, paging that stays correct while the calendar changes,
deleted events in incremental results, recurring series and their exceptions, ETags and
conditional requests, conference data and Google's error bodies. Push notifications
(events.watch, channels.stop, delivery to a receiver with retries and fault switches) live in
``push``; every committed event change notifies the calendar's channels once. It imports only
the standard library, starlette, httpx, python-dateutil and the shared emulator modules, so it
can be lifted out and run alone.

One job per module, imports pointing one way (``api`` -> ``admin`` -> ``emulator`` ->
``calendars``/``events``/``sync``/``seed`` -> ``render`` -> ``state`` -> ``push``, ``fields``,
``params``, ``recurrence``, ``times``, ``errors`` -> ``..common``); the parts Graph shares are
``..store_base`` (the store's frame), ``..push_hub`` (delivery) and ``..faults`` (faults, admin routes).
"""

from __future__ import annotations

from calsync.emulators.google.api import _bearer_user as _bearer_user
from calsync.emulators.google.api import _handle_api as _handle_api
from calsync.emulators.google.api import create_app
from calsync.emulators.google.emulator import GoogleEmulator
from calsync.emulators.google.errors import ApiError, error_for_status
from calsync.emulators.google.params import Params
from calsync.emulators.google.state import API_PREFIX, DEFAULT_SWITCHES

__all__ = ["API_PREFIX", "DEFAULT_SWITCHES", "ApiError", "GoogleEmulator", "Params", "create_app", "error_for_status"]
