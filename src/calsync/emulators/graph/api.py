"""The HTTP surface: Graph routes under /v1.0 (``/users/{me}/...`` is ``/me/...``), JSON batching,
mailbox throttling and injected faults, and the app that serves them with the admin routes.
Every failure answers in Graph's error shape, never a bare traceback."""

from __future__ import annotations

import inspect
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

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
from calsync.emulators.graph.admin import _admin_routes
from calsync.emulators.graph.batch import (
    BatchItem,
    BatchPayloadError,
    parse_batch,
    run_batch,
)
from calsync.emulators.graph.emulator import GraphEmulator
from calsync.emulators.graph.errors import (
    JSON_TYPE,
    GraphError,
    _body_read,
    _error_response,
)
from calsync.emulators.graph.params import (
    _expand_filter,
    _Params,
    _parse_prefer,
    _Prefer,
)
from calsync.emulators.graph.state import API_PREFIX, _View
from calsync.emulators.graph.times import _zone
from calsync.emulators.oauth.microsoft import microsoft_routes

log = logging.getLogger(__name__)


def _ok(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(obj), status_code=status, media_type=JSON_TYPE, headers=headers)


def _bearer_user(header: str | None) -> str | None:
    """The mailbox a bearer token names; None (answered 401) without one."""
    token = bearer_token(header)
    return None if token is None else GraphEmulator.user_email(token)


@dataclass(frozen=True)
class _Caller:
    """Who a request's bearer token speaks for: a mailbox (delegated), an application with its roles
    (app-only: the mailbox comes from ``/users/{id}``), or nobody (``error`` says why)."""

    email: str | None = None
    app_roles: tuple[str, ...] | None = None
    error: GraphError | None = None


def _caller(emu: GraphEmulator, header: str | None) -> _Caller:
    """Tokens the identity platform issued name their user or app while valid, and answer Graph's 401
    once expired; any other string is the mailbox itself, unless OAuth is required."""
    token = bearer_token(header)
    if token is None:
        return _Caller()
    issued, state = emu.oauth.check(token)
    if issued is not None and state == "valid":
        return _Caller(app_roles=issued.roles) if issued.user is None else _Caller(email=issued.user.lower())
    if issued is not None:
        return _Caller(
            error=GraphError(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        )
    if emu.oauth_required:
        message = (
            "Access token validation failure."
            if token.count(".") == 2
            else ("CompactToken parsing failed with error code: 80049217")
        )
        return _Caller(error=GraphError(401, "InvalidAuthenticationToken", message))
    return _Caller(email=GraphEmulator.user_email(token))


_APP_READ = ("Calendars.Read", "Calendars.ReadWrite")


def _mailbox_for(emu: GraphEmulator, caller: _Caller, method: str, path: str) -> str | None:
    """The mailbox a request acts on (None: no token, answered 401 further on). App-only tokens act on
    ``/users/{id or address}/...`` with their Calendars role and are refused on ``/me``, as Graph does."""
    if caller.error is not None:
        raise caller.error
    if caller.app_roles is None:
        return caller.email
    lowered = path.lower()
    if lowered == "/me" or lowered.startswith(("/me/", "/me(")):
        raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
    match = _USERS_RE.match(path)
    roles = caller.app_roles
    allowed = "Calendars.ReadWrite" in roles if method not in ("GET", "HEAD") else any(r in roles for r in _APP_READ)
    if match is None or not allowed:
        raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    email = emu.mailbox(match.group(1))
    if email is None:
        raise GraphError(404, "ErrorInvalidUser", f"The requested user '{match.group(1)}' is invalid.")
    return email


@dataclass
class _Call:
    """One API request, parsed: who, what, and the inputs handlers need."""

    emu: GraphEmulator
    email: str
    params: _Params
    headers: Any
    body: Any
    args: dict[str, str]
    base: str
    path: str
    prefer: _Prefer

    def view(self) -> _View:
        tz = self.prefer.timezone
        zone = _zone(tz) if tz else ZoneInfo("UTC")
        return _View(
            self.emu._user(self.email),
            zone,
            tz or "UTC",
            self.prefer.immutable,
            self.prefer.text_body,
            self.base,
            _expand_filter(self.params),
        )

    def obj(self) -> dict[str, Any]:
        return object_body(self.body, lambda: _body_read("The request body must be a JSON object."))


_Handler = Callable[[_Call], "Response | Awaitable[Response]"]


def _applied(c: _Call, extra: str | None = None) -> dict[str, str]:
    """Preference-Applied, as Graph echoes the honoured Prefer options."""
    parts = []
    if c.prefer.timezone:
        parts.append(f'outlook.timezone="{c.prefer.timezone}"')
    if c.prefer.immutable:
        parts.append('IdType="ImmutableId"')
    if extra:
        parts.append(extra)
    return {"Preference-Applied": ", ".join(parts)} if parts else {}


def _cal_arg(c: _Call) -> str | None:
    return c.args.get("cal")


def _h_calendars(c: _Call) -> Response:
    return _ok(c.emu.list_calendars(c.email, c.base))


def _h_calendar_create(c: _Call) -> Response:
    return _ok(c.emu.create_calendar(c.email, c.obj()), 201)


def _h_calendar_get(c: _Call) -> Response:
    return _ok(c.emu.get_calendar(c.email, _cal_arg(c)))


def _h_calendar_patch(c: _Call) -> Response:
    return _ok(c.emu.update_calendar(c.email, _cal_arg(c), c.obj()))


def _h_calendar_delete(c: _Call) -> Response:
    ref = _cal_arg(c)
    if ref is None:
        raise GraphError(400, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted.")
    c.emu.delete_calendar(c.email, ref)
    return Response(status_code=204)


def _h_events_list(c: _Call) -> Response:
    return _ok(c.emu.list_events(c.view(), _cal_arg(c), c.params, c.path), headers=_applied(c))


def _h_event_create(c: _Call) -> Response:
    return _ok(c.emu.create_event(c.view(), _cal_arg(c), c.obj()), 201, _applied(c))


def _h_event_get(c: _Call) -> Response:
    return _ok(c.emu.get_event(c.view(), c.args["ev"], _cal_arg(c), "scoped" in c.args), headers=_applied(c))


def _h_event_patch(c: _Call) -> Response:
    out = c.emu.update_event(
        c.view(), c.args["ev"], _cal_arg(c), "scoped" in c.args, c.obj(), c.headers.get("if-match")
    )
    return _ok(out, headers=_applied(c))


def _h_event_delete(c: _Call) -> Response:
    c.emu.delete_event(c.email, c.args["ev"], _cal_arg(c), "scoped" in c.args, c.headers.get("if-match"))
    return Response(status_code=204)


def _h_event_cancel(c: _Call) -> Response:
    c.emu.cancel_event(c.email, c.args["ev"])
    return Response(status_code=202)


def _h_instances(c: _Call) -> Response:
    return _ok(c.emu.list_instances(c.view(), c.args["ev"], c.params, c.path), headers=_applied(c))


def _h_calendar_view(c: _Call) -> Response:
    return _ok(c.emu.calendar_view(c.view(), _cal_arg(c), c.params, c.path), headers=_applied(c))


def _h_delta(c: _Call) -> Response:
    size = c.prefer.max_page_size
    out = c.emu.delta(c.view(), _cal_arg(c), c.params, c.path, size)
    return _ok(out, headers=_applied(c, f"odata.maxpagesize={size}" if size else None))


async def _h_subscription_create(c: _Call) -> Response:
    fields = c.emu.check_subscription(c.email, c.obj())
    for url in (fields["url"], fields["lifecycle_url"]):
        if url is None:
            continue
        result = await c.emu.push.validate(url)
        if not result.ok:
            message = (
                "Subscription validation request timed out."
                if result.timed_out
                else "Subscription validation request failed. Notification endpoint must respond with 200 OK to "
                "validation request."
            )
            raise GraphError(400, "ValidationError", message)
    return _ok(
        {
            "@odata.context": f"{c.base}{API_PREFIX}/$metadata#subscriptions/$entity",
            **c.emu.add_subscription(c.email, fields, c.prefer.immutable),
        },
        201,
    )


def _h_subscriptions(c: _Call) -> Response:
    return _ok(c.emu.list_subscriptions(c.email, c.base))


def _h_subscription_get(c: _Call) -> Response:
    return _ok(c.emu.get_subscription(c.email, c.args["sub"]))


async def _h_subscription_patch(c: _Call) -> Response:
    expiration, url = c.emu.subscription_url_for_update(c.email, c.args["sub"], c.obj())
    if url is not None:
        result = await c.emu.push.validate(url)
        if not result.ok:
            raise GraphError(
                400,
                "ValidationError",
                "Subscription validation request failed. Notification endpoint "
                "must respond with 200 OK to validation request.",
            )
    return _ok(c.emu.renew_subscription(c.email, c.args["sub"], expiration, url))


def _h_subscription_delete(c: _Call) -> Response:
    c.emu.delete_subscription(c.email, c.args["sub"])
    return Response(status_code=204)


def _h_subscription_reauthorize(c: _Call) -> Response:
    c.emu.reauthorize_subscription(c.email, c.args["sub"])
    return Response(status_code=204)


_ID = r"[^/]+"
_CALENDAR_PATHS = (r"/me/calendar", rf"/me/calendars/(?P<cal>{_ID})")
_ROUTE_SPECS: list[tuple[str, str, _Handler]] = [
    ("GET", r"/me/calendars", _h_calendars),
    ("POST", r"/me/calendars", _h_calendar_create),
    ("GET", r"/me/calendar", _h_calendar_get),
    ("PATCH", r"/me/calendar", _h_calendar_patch),
    ("GET", rf"/me/calendars/(?P<cal>{_ID})", _h_calendar_get),
    ("PATCH", rf"/me/calendars/(?P<cal>{_ID})", _h_calendar_patch),
    ("DELETE", rf"/me/calendars/(?P<cal>{_ID})", _h_calendar_delete),
    ("GET", r"/me/events", _h_events_list),
    ("POST", r"/me/events", _h_event_create),
    ("GET", rf"/me/events/(?P<ev>{_ID})/instances", _h_instances),
    ("POST", rf"/me/events/(?P<ev>{_ID})/cancel", _h_event_cancel),
    ("GET", rf"/me/events/(?P<ev>{_ID})", _h_event_get),
    ("PATCH", rf"/me/events/(?P<ev>{_ID})", _h_event_patch),
    ("DELETE", rf"/me/events/(?P<ev>{_ID})", _h_event_delete),
    ("GET", r"/me/calendarView/delta(?:\(\))?", _h_delta),
    ("GET", r"/me/calendarView", _h_calendar_view),
    ("POST", r"/subscriptions", _h_subscription_create),
    ("GET", r"/subscriptions", _h_subscriptions),
    ("POST", rf"/subscriptions/(?P<sub>{_ID})/reauthorize", _h_subscription_reauthorize),
    ("GET", rf"/subscriptions/(?P<sub>{_ID})", _h_subscription_get),
    ("PATCH", rf"/subscriptions/(?P<sub>{_ID})", _h_subscription_patch),
    ("DELETE", rf"/subscriptions/(?P<sub>{_ID})", _h_subscription_delete),
]
for _cal_path in _CALENDAR_PATHS:
    _ROUTE_SPECS += [
        ("GET", rf"{_cal_path}/events", _h_events_list),
        ("POST", rf"{_cal_path}/events", _h_event_create),
        ("GET", rf"{_cal_path}/events/(?P<ev>{_ID})/instances", _h_instances),
        ("GET", rf"{_cal_path}/events/(?P<ev>{_ID})(?P<scoped>)", _h_event_get),
        ("PATCH", rf"{_cal_path}/events/(?P<ev>{_ID})(?P<scoped>)", _h_event_patch),
        ("DELETE", rf"{_cal_path}/events/(?P<ev>{_ID})(?P<scoped>)", _h_event_delete),
        ("GET", rf"{_cal_path}/calendarView/delta(?:\(\))?", _h_delta),
        ("GET", rf"{_cal_path}/calendarView", _h_calendar_view),
    ]
_ROUTES: list[tuple[str, re.Pattern[str], _Handler]] = [
    (m, re.compile(p + r"/?$", re.IGNORECASE), h) for m, p, h in _ROUTE_SPECS
]
_USERS_RE = re.compile(r"^/users/([^/]+)(/.*)?$", re.IGNORECASE)


def _normalise_path(path: str, email: str, guid: str) -> str:
    """/users/{address or id}/... of the caller is /me/...; another mailbox is refused."""
    match = _USERS_RE.match(path)
    if match is None:
        return path
    if match.group(1).lower() not in (email, guid):
        raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    return "/me" + (match.group(2) or "")


def _route(method: str, path: str) -> tuple[_Handler, dict[str, str]]:
    known_path = False
    for route_method, pattern, handler in _ROUTES:
        match = pattern.match(path)
        if match:
            known_path = True
            if route_method == method:
                return handler, {k: v for k, v in match.groupdict().items() if v is not None}
    if known_path:
        raise GraphError(405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed for this resource.")
    segment = path.rstrip("/").rsplit("/", 1)[-1] or path
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")


def _not_json() -> GraphError:
    return _body_read("The request body is not valid JSON.")


async def _handle_api(emu: GraphEmulator, request: Request, email: str | None) -> Response:
    """Authenticate, route and run one API call, mapping errors to Graph's JSON shape."""
    client_request_id = request.headers.get("client-request-id")
    try:
        if email is None:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        user = emu.ensure_user(email)
        path = _normalise_path(request.url.path[len(API_PREFIX) :], email, user.guid)
        handler, args = _route(request.method, path)
        body = await read_json_body(request, _not_json) if request.method in ("POST", "PATCH", "PUT") else None
        call = _Call(
            emu,
            email,
            _Params(list(request.query_params.multi_items())),
            request.headers,
            body,
            args,
            str(request.base_url).rstrip("/"),
            request.url.path[len(API_PREFIX) :],
            _parse_prefer(request.headers.getlist("prefer")),
        )
        result = handler(call)
        response = await result if inspect.isawaitable(result) else result
        response.headers.setdefault("client-request-id", client_request_id or str(uuid.uuid4()))
        response.headers.setdefault("request-id", response.headers["client-request-id"])
    except GraphError as err:
        return _error_response(err, client_request_id)
    except Exception:  # a bug must still answer like Graph would, never a bare traceback
        log.exception("graph emulator: unhandled error for %s %s", request.method, request.url.path)
        return _error_response(
            GraphError(500, "ErrorInternalServerError", "An internal server error occurred. The operation failed."),
            client_request_id,
        )
    else:
        return response


async def _serve(emu: GraphEmulator, request: Request, email: str | None) -> Response:
    """One API request as Graph serves it: mailbox throttle, injected faults, the handler."""
    throttled = emu.throttle.enter(email, emu.switches) if email else None
    if throttled is not None:
        return _error_response(throttled, request.headers.get("client-request-id"))
    try:
        return await with_faults(emu.faults, emu.commit_faults, request, lambda: _handle_api(emu, request, email))
    finally:
        if email:
            emu.throttle.leave(email)


BATCH_PATH = API_PREFIX + "/$batch"


async def _serve_batch(emu: GraphEmulator, request: Request, caller: _Caller) -> Response:
    """``POST /v1.0/$batch`` (see ``batch``): faults may hit the outer POST itself; the mailbox
    throttle counts the inner requests only, each of which is served (and logged) like a request
    of its own, its answer inside the outer 200."""
    client_request_id = request.headers.get("client-request-id")
    injected = await emu.faults.maybe_fail(request.method, request.url.path)
    if injected is not None:
        return injected
    if caller.error is not None:
        return _error_response(caller.error, client_request_id)
    if caller.email is None and caller.app_roles is None:
        return _error_response(
            GraphError(401, "InvalidAuthenticationToken", "Access token is empty."), client_request_id
        )
    try:
        items = parse_batch(await request.body(), API_PREFIX, request.headers.get("host", ""))
    except BatchPayloadError as exc:
        return _error_response(GraphError(400, "BadRequest", str(exc)), client_request_id)

    async def dispatch(item: BatchItem, inner: Request) -> Response:
        try:
            email = _mailbox_for(emu, caller, inner.method, inner.url.path[len(API_PREFIX) :])
        except GraphError as err:
            response = _error_response(err, inner.headers.get("client-request-id"))
            email = caller.email
        else:
            response = await _serve(emu, inner, email)
        emu.requests.add(inner.method, inner.url.path, inner.url.query, response.status_code, email, batch_item=item.id)
        return response

    def refuse(status: int, code: str, message: str) -> Response:
        return _error_response(GraphError(status, code, message), None)

    out = await run_batch(
        request, items, API_PREFIX, dispatch, refuse, reverse=bool(emu.switches.get("batch_reverse_responses"))
    )
    response = _ok(out)
    response.headers["client-request-id"] = client_request_id or str(uuid.uuid4())
    response.headers["request-id"] = response.headers["client-request-id"]
    return await emu.commit_faults.maybe_fail(request.method, request.url.path) or response


def create_app(emulator: GraphEmulator | None = None) -> Starlette:
    """The Starlette app: the API under /v1.0 plus the /emulator admin surface."""
    emu = emulator or GraphEmulator()

    async def api(request: Request) -> Response:
        caller = _caller(emu, request.headers.get("authorization"))
        email = caller.email
        if request.method == "POST" and request.url.path.rstrip("/").lower() == BATCH_PATH.lower():
            response = await _serve_batch(emu, request, caller)
        else:
            try:
                email = _mailbox_for(emu, caller, request.method, request.url.path[len(API_PREFIX) :])
            except GraphError as err:
                response = _error_response(err, request.headers.get("client-request-id"))
            else:
                response = await _serve(emu, request, email)
        emu.requests.add(request.method, request.url.path, request.url.query, response.status_code, email)
        return response

    async def not_found(request: Request) -> Response:
        return _error_response(GraphError(400, "BadRequest", "Invalid version."), None)

    return api_app(emu, [*_admin_routes(emu), *microsoft_routes(emu.oauth)], API_PREFIX, api, not_found)
