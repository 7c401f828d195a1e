"""A faithful in-memory emulator of Microsoft Graph (Outlook calendars), served over real HTTP.

It reproduces what a sync engine depends on (``../shared/reference/provider-semantics.md``
2.1-2.5 and its emulator checklist 5.2; https://learn.microsoft.com/graph/api/resources/event):
calendarView delta with opaque skip/delta tokens that fix the window, ``@removed`` for deletions
and for changes outside the window, ``Prefer: odata.maxpagesize`` / ``outlook.timezone`` /
``IdType="ImmutableId"``, recurring series expanded into occurrences and exceptions, changeKey /
``@odata.etag`` with ``If-Match`` -> 412 ``ErrorIrresolvableConflict``, ``transactionId``
de-duplication, subscriptions with the validation handshake, change and lifecycle notifications
(delivered by ``push``), JSON batching (``POST /v1.0/$batch``, in ``batch``: each inner request
served, throttled, faulted and logged as a request of its own, under an outer 200), Graph's
error JSON, and throttling answers. It imports only the standard library, starlette, httpx,
python-dateutil and the shared emulator modules.

One job per module, imports pointing one way (``api`` -> ``admin`` -> ``emulator`` ->
``calendars``/``events``/``delta``/``subscriptions``/``seed`` -> ``render`` -> ``state`` ->
``push``, ``throttle``, ``fields``, ``params``, ``recurrence``, ``ids``, ``times``, ``errors``
-> ``..common``); ``api`` also uses ``batch``. The parts Google shares are ``..store_base`` (the store's
frame), ``..push_hub`` (delivery) and ``..faults`` (faults, admin routes).
"""

from __future__ import annotations

from calsync.emulators.graph.api import _bearer_user as _bearer_user
from calsync.emulators.graph.api import _handle_api as _handle_api
from calsync.emulators.graph.api import create_app
from calsync.emulators.graph.emulator import GraphEmulator
from calsync.emulators.graph.errors import GraphError, error_for_status
from calsync.emulators.graph.recurrence import _check_recurrence as _check_recurrence
from calsync.emulators.graph.recurrence import _Series as _Series
from calsync.emulators.graph.state import (
    API_PREFIX,
    DEFAULT_SWITCHES,
    TENANT_ID,
    USER_DOMAIN,
)
from calsync.emulators.graph.subscriptions import LIFECYCLE_EVENTS
from calsync.emulators.graph.times import _When as _When

__all__ = [
    "API_PREFIX",
    "DEFAULT_SWITCHES",
    "LIFECYCLE_EVENTS",
    "TENANT_ID",
    "USER_DOMAIN",
    "GraphEmulator",
    "GraphError",
    "create_app",
    "error_for_status",
]
