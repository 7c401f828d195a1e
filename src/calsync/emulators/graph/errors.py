"""Graph's error answers: ``{"error": {"code", "message", "innerError"}}``, its HTTP response, and
the errors of injected faults (https://learn.microsoft.com/graph/errors)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from calsync.emulators.common import json_bytes

JSON_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"


class GraphError(Exception):
    """An error answered in Graph's shape: ``{"error": {"code", "message", "innerError": {...}}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self, request_id: str, client_request_id: str | None) -> dict[str, Any]:
        inner: dict[str, Any] = {
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id,
            "client-request-id": client_request_id or request_id,
        }
        return {"error": {"code": self.code, "message": self.message, "innerError": inner}}


def _not_found() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


def _malformed_id() -> GraphError:
    return GraphError(400, "ErrorInvalidIdMalformed", "Id is malformed.")


def _bad(message: str, code: str = "ErrorInvalidRequest") -> GraphError:
    return GraphError(400, code, message)


def _body_read(message: str) -> GraphError:
    return GraphError(400, "RequestBodyRead", message)


def _conflict_412() -> GraphError:
    return GraphError(
        412,
        "ErrorIrresolvableConflict",
        "The send or update operation could not be performed because the change key passed in the "
        "request does not match the current change key for the item.",
    )


_FAULT_CODES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "Injected fault."),
    401: ("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
    403: ("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
    404: ("ErrorItemNotFound", "The specified object was not found in the store."),
    409: ("ErrorIrresolvableConflict", "Injected conflict."),
    410: ("SyncStateNotFound", "The sync state generation is not found."),
    412: ("ErrorIrresolvableConflict", _conflict_412().message),
    429: ("ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
    500: ("ErrorInternalServerError", "An internal server error occurred. The operation failed."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceNotAvailable", "The service is not available. Try the request again after a delay."),
    504: ("GatewayTimeout", "The gateway did not receive a timely response."),
}


def error_for_status(status: int, reason: str | None = None) -> GraphError:
    """Graph's error body for an injected fault; ``reason`` overrides the code (e.g. activityLimitReached)."""
    code, message = _FAULT_CODES.get(
        status, ("generalException" if status >= 500 else "BadRequest", f"Injected fault ({status}).")
    )
    return GraphError(status, reason or code, message)


def _error_response(err: GraphError, client_request_id: str | None) -> Response:
    request_id = str(uuid.uuid4())
    headers = {"request-id": request_id, "client-request-id": client_request_id or request_id, **err.headers}
    if err.status == 401:
        headers.setdefault(
            "WWW-Authenticate",
            'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
            'common/oauth2/authorize", '
            'client_id="00000003-0000-0000-c000-000000000000"',
        )
    return Response(
        json_bytes(err.body(request_id, client_request_id)),
        status_code=err.status,
        media_type=JSON_TYPE,
        headers=headers,
    )
