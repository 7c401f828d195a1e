"""Google's error answers: the ``{"error": {...}}`` body, its HTTP response, and injected faults.

The shapes follow https://developers.google.com/calendar/api/guides/errors (see also
``../shared/reference/provider-semantics.md`` 1.9): a sync engine branches on status and
reason, so both must be exactly Google's.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from calsync.emulators.common import json_bytes

JSON_TYPE = "application/json; charset=UTF-8"


class ApiError(Exception):
    """An error answered in Google's JSON error shape."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        domain: str = "global",
        location_type: str | None = None,
        location: str | None = None,
        headers: dict[str, str] | None = None,
        top_message: str | None = None,
        status_name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.top_message = top_message  # when Google's summary differs from the item's message
        self.status_name = status_name  # the google.rpc code name some answers carry (UNAUTHENTICATED)
        self.status = status
        self.reason = reason
        self.message = message
        self.domain = domain
        self.location_type = location_type
        self.location = location
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` document Google sends."""
        item: dict[str, Any] = {"domain": self.domain, "reason": self.reason, "message": self.message}
        if self.location_type is not None:
            item["locationType"] = self.location_type
        if self.location is not None:
            item["location"] = self.location
        error: dict[str, Any] = {"code": self.status, "message": self.top_message or self.message, "errors": [item]}
        if self.status_name is not None:
            error["status"] = self.status_name
        return {"error": error}


class _NotModified(Exception):
    """Raised by a conditional get whose If-None-Match names the current ETag."""

    def __init__(self, etag: str) -> None:
        super().__init__(etag)
        self.etag = etag


def invalid_credentials(token_sent: bool) -> ApiError:
    """The 401 Calendar answers for a missing, unknown, expired or revoked access token (reference 1.10)."""
    headers = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'}
    return ApiError(
        401,
        "authError",
        "Invalid Credentials",
        "global",
        "header",
        "Authorization",
        headers=headers if token_sent else None,
        top_message=(
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
            "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
        ),
        status_name="UNAUTHENTICATED",
    )


def _not_found() -> ApiError:
    return ApiError(404, "notFound", "Not Found")


def _invalid(message: str, location: str | None = None, reason: str = "invalid", domain: str = "global") -> ApiError:
    return ApiError(400, reason, message, domain, "parameter" if location else None, location)


def _required(message: str, location: str | None = None) -> ApiError:
    return ApiError(400, "required", message, "global", "parameter" if location else None, location)


def _full_sync_required() -> ApiError:
    return ApiError(
        410,
        "fullSyncRequired",
        "Sync token is no longer valid, a full sync is required.",
        "calendar",
        "parameter",
        "syncToken",
    )


def _precondition_failed() -> ApiError:
    return ApiError(412, "conditionNotMet", "Precondition Failed", "global", "header", "If-Match")


def _deleted() -> ApiError:
    return ApiError(410, "deleted", "Resource has been deleted")


def _time_range_empty() -> ApiError:
    return ApiError(400, "timeRangeEmpty", "The specified time range is empty.", "calendar", "parameter", "timeMax")


_FAULT_REASONS: dict[str, tuple[str, str]] = {
    "rateLimitExceeded": ("usageLimits", "Rate Limit Exceeded"),
    "userRateLimitExceeded": ("usageLimits", "User Rate Limit Exceeded"),
    "quotaExceeded": ("usageLimits", "Calendar usage limits exceeded."),
    "backendError": ("global", "Backend Error"),
    "authError": ("global", "Invalid Credentials"),
    "notFound": ("global", "Not Found"),
    "deleted": ("global", "Resource has been deleted"),
    "fullSyncRequired": ("calendar", "Sync token is no longer valid, a full sync is required."),
}


def error_for_status(status: int, reason: str | None = None) -> ApiError:
    """Google's error body for an injected fault: rate limits, backend errors, auth, or a given reason."""
    if reason is None:
        reason = {
            429: "rateLimitExceeded",
            403: "rateLimitExceeded",
            401: "authError",
            404: "notFound",
            410: "deleted",
        }.get(status, "backendError" if status >= 500 else "invalid")
    domain, message = _FAULT_REASONS.get(reason, ("global", "Injected fault: " + reason))
    if reason == "authError":
        return ApiError(status, reason, message, domain, "header", "Authorization")
    if reason == "fullSyncRequired":
        return ApiError(status, reason, message, domain, "parameter", "syncToken")
    return ApiError(status, reason, message, domain)


def _error_response(err: ApiError) -> Response:
    headers = dict(err.headers)
    if err.status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/"')
    return Response(json_bytes(err.body()), status_code=err.status, media_type=JSON_TYPE, headers=headers)
