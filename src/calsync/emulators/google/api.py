"""The HTTP surface: Calendar API v3 routes under /calendar/v3, and the app that serves them with
the admin routes. Every failure answers in Google's error shape, never a bare traceback."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from calsync.emulators.common import (
    api_app,
    bearer_token,
    json_bytes,
    object_body,
    read_json_body,
)
from calsync.emulators.faults import with_faults
from calsync.emulators.google.admin import _admin_routes
from calsync.emulators.google.emulator import GoogleEmulator
from calsync.emulators.google.errors import (
    JSON_TYPE,
    ApiError,
    _error_response,
    _not_found,
    _NotModified,
    invalid_credentials,
)
from calsync.emulators.google.params import Params
from calsync.emulators.google.partial import parse_fields, select
from calsync.emulators.google.state import API_PREFIX
from calsync.emulators.oauth.google import google_routes

log = logging.getLogger(__name__)


def _ok(obj: Any, status: int = 200, etag: str | None = None) -> Response:
    body = obj.encode() if isinstance(obj, str) else json_bytes(obj)
    headers = {"ETag": etag} if etag else None
    return Response(body, status_code=status, media_type=JSON_TYPE, headers=headers)


def _bearer_user(header: str | None) -> str | None:
    """The user a bearer token names; None (answered 401) without one."""
    token = bearer_token(header)
    return None if token is None else GoogleEmulator.user_email(token)


@dataclass
class _Call:
    """One API request, parsed: who, what, and the inputs every handler may need."""

    emu: GoogleEmulator
    user: str
    params: Params
    headers: Any
    body: Any
    args: dict[str, str]
    base_url: str = ""


_Handler = Callable[[_Call], Response]


def _h_calendar_list(c: _Call) -> Response:
    return _ok(c.emu.calendar_list(c.user, c.params))


def _h_calendar_list_get(c: _Call) -> Response:
    return _ok(c.emu.calendar_list_get(c.user, c.args["cal"]))


def _h_calendar_insert(c: _Call) -> Response:
    return _ok(c.emu.insert_calendar(c.user, _object_body(c.body)))


def _h_calendar_get(c: _Call) -> Response:
    return _ok(c.emu.get_calendar(c.user, c.args["cal"]))


def _h_calendar_patch(c: _Call) -> Response:
    return _ok(c.emu.write_calendar(c.user, c.args["cal"], _object_body(c.body), patch=True))


def _h_calendar_update(c: _Call) -> Response:
    return _ok(c.emu.write_calendar(c.user, c.args["cal"], _object_body(c.body), patch=False))


def _h_calendar_delete(c: _Call) -> Response:
    c.emu.delete_calendar(c.user, c.args["cal"])
    return Response(status_code=204)


def _h_events_list(c: _Call) -> Response:
    return _ok(c.emu.list_events(c.user, c.args["cal"], c.params))


def _h_events_insert(c: _Call) -> Response:
    ev = c.emu.insert_event(c.user, c.args["cal"], _object_body(c.body), c.params)
    return _ok(ev, etag=ev["etag"])


def _h_events_import(c: _Call) -> Response:
    ev = c.emu.insert_event(c.user, c.args["cal"], _object_body(c.body), c.params, import_=True)
    return _ok(ev, etag=ev["etag"])


def _h_events_instances(c: _Call) -> Response:
    return _ok(c.emu.list_instances(c.user, c.args["cal"], c.args["ev"], c.params))


def _h_events_get(c: _Call) -> Response:
    ev = c.emu.get_event(c.user, c.args["cal"], c.args["ev"], c.headers.get("if-none-match"))
    return _ok(ev, etag=ev["etag"])


def _h_events_update(c: _Call) -> Response:
    ev = c.emu.write_event(
        c.user, c.args["cal"], c.args["ev"], _object_body(c.body), c.params, c.headers.get("if-match"), patch=False
    )
    return _ok(ev, etag=ev["etag"])


def _h_events_patch(c: _Call) -> Response:
    ev = c.emu.write_event(
        c.user, c.args["cal"], c.args["ev"], _object_body(c.body), c.params, c.headers.get("if-match"), patch=True
    )
    return _ok(ev, etag=ev["etag"])


def _h_events_delete(c: _Call) -> Response:
    c.emu.delete_event(c.user, c.args["cal"], c.args["ev"], c.headers.get("if-match"))
    return Response(status_code=204)


def _h_events_watch(c: _Call) -> Response:
    return _ok(c.emu.watch_events(c.user, c.args["cal"], _object_body(c.body), c.base_url))


def _h_channels_stop(c: _Call) -> Response:
    c.emu.stop_channel(c.user, _object_body(c.body))
    return Response(status_code=204)


_CAL = r"(?P<cal>[^/]+)"
_EV = r"(?P<ev>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], _Handler]] = [
    (m, re.compile(p + r"/?$"), h)
    for m, p, h in [
        ("GET", r"/users/me/calendarList", _h_calendar_list),
        ("GET", rf"/users/me/calendarList/{_CAL}", _h_calendar_list_get),
        ("POST", r"/calendars", _h_calendar_insert),
        ("GET", rf"/calendars/{_CAL}", _h_calendar_get),
        ("PATCH", rf"/calendars/{_CAL}", _h_calendar_patch),
        ("PUT", rf"/calendars/{_CAL}", _h_calendar_update),
        ("DELETE", rf"/calendars/{_CAL}", _h_calendar_delete),
        ("GET", rf"/calendars/{_CAL}/events", _h_events_list),
        ("POST", rf"/calendars/{_CAL}/events", _h_events_insert),
        ("POST", rf"/calendars/{_CAL}/events/import", _h_events_import),
        ("POST", rf"/calendars/{_CAL}/events/watch", _h_events_watch),
        ("POST", r"/channels/stop", _h_channels_stop),
        ("GET", rf"/calendars/{_CAL}/events/{_EV}/instances", _h_events_instances),
        ("GET", rf"/calendars/{_CAL}/events/{_EV}", _h_events_get),
        ("PUT", rf"/calendars/{_CAL}/events/{_EV}", _h_events_update),
        ("PATCH", rf"/calendars/{_CAL}/events/{_EV}", _h_events_patch),
        ("DELETE", rf"/calendars/{_CAL}/events/{_EV}", _h_events_delete),
    ]
]


def _parse_error() -> ApiError:
    return ApiError(400, "parseError", "Parse Error")


def _object_body(body: Any) -> dict[str, Any]:
    return object_body(body, _parse_error)


def _route(method: str, subpath: str) -> tuple[_Handler, dict[str, str]] | None:
    for route_method, pattern, handler in _ROUTES:
        if route_method == method:
            match = pattern.match(subpath)
            if match:
                return handler, match.groupdict()
    return None


async def _handle_api(emu: GoogleEmulator, request: Request, user: str | None) -> Response:
    """Authenticate, route and run one API call, mapping errors to Google's JSON shape."""
    try:
        if user is None and emu.oauth_required:
            raise invalid_credentials("authorization" in request.headers)
        if user is None:
            raise ApiError(401, "authError", "Invalid Credentials", "global", "header", "Authorization")
        found = _route(request.method, request.url.path[len(API_PREFIX) :])
        if found is None:
            raise _not_found()
        handler, args = found
        body = await read_json_body(request, _parse_error) if request.method in ("POST", "PUT", "PATCH") else None
        fields = request.query_params.get("fields")
        selection = parse_fields(fields) if fields is not None else None  # (refused before the method runs)
        emu.ensure_user(user)
        call = _Call(
            emu,
            user,
            Params(list(request.query_params.multi_items())),
            request.headers,
            body,
            args,
            str(request.base_url).rstrip("/"),
        )
        response = handler(call)
        if selection is None or response.status_code >= 300 or not response.body:
            return response
        return _ok(
            select(json.loads(bytes(response.body)), selection), response.status_code, response.headers.get("etag")
        )
    except ApiError as err:
        return _error_response(err)
    except _NotModified as nm:
        return Response(status_code=304, headers={"ETag": nm.etag})
    except Exception:  # a bug must still answer like Google would, never a bare traceback
        log.exception("google emulator: unhandled error for %s %s", request.method, request.url.path)
        return _error_response(ApiError(500, "backendError", "Backend Error"))


def create_app(emulator: GoogleEmulator | None = None) -> Starlette:
    """The Starlette app: the API under /calendar/v3 plus the /emulator admin surface."""
    emu = emulator or GoogleEmulator()

    async def api(request: Request) -> Response:
        token = bearer_token(request.headers.get("authorization"))
        user = None if token is None else emu.token_user(token)
        response = await with_faults(emu.faults, emu.commit_faults, request, lambda: _handle_api(emu, request, user))
        emu.requests.add(request.method, request.url.path, request.url.query, response.status_code, user)
        return response

    async def not_found(request: Request) -> Response:
        return _error_response(_not_found())

    return api_app(emu, [*_admin_routes(emu), *google_routes(emu.oauth)], API_PREFIX, api, not_found)
