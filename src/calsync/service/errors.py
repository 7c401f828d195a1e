"""The error answers every `/api/v1` route shares, for the OpenAPI document, and the one HTTP detail
Starlette gets wrong for a client: the Allow header of a 405.

The document is the contract (tests/test_fuzz_api.py holds the service to it): each route declares what
it answers itself (404, 409, 412, 428, 422...) in its decorator; each router declares API_ERRORS, what
the layers in front of every route answer: 413 (limits.BodyLimit), 429 (limits.RateLimit) and 401/403
(authentication and scopes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ProblemOut(BaseModel):
    """An error told in words: {"detail": "..."} (the 422s have their own shape: a list naming fields)."""

    detail: str


def _problem(description: str) -> dict[str, Any]:
    return {"model": ProblemOut, "description": description}


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _problem("No valid API key: send Authorization: Bearer <key> (the answer carries WWW-Authenticate)"),
    403: _problem("The key's scope does not allow this (a read-scoped key writing, or acting for another user)"),
}
TOO_LARGE: dict[int | str, dict[str, Any]] = {
    413: _problem("The request body is over the service's limit (CALSYNC_MAX_BODY_BYTES, 1 MiB by default)"),
}
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {
        **_problem("Too many requests from this caller (CALSYNC_RATE_LIMIT); wait the Retry-After seconds"),
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    },
}


# what the layers in front of every /api/v1 route answer, declared on each router (APIRouter(responses=...)):
# a body over the cap is refused whatever the method, so 413 applies to every route
API_ERRORS: dict[int | str, dict[str, Any]] = {**AUTH_ERRORS, **TOO_LARGE, **RATE_LIMITED}
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class AllowedMethods:
    """A 405's Allow header lists every method the path has (RFC 9110 15.5.6). Starlette lists only those
    of the first route that matched the path, so GET /events then POST /events answered `Allow: GET`."""

    def __init__(self, app: ASGIApp, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_allowed(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allowed = self.allowed(scope)
                if allowed:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    message = {**message, "headers": [*headers, (b"allow", ", ".join(allowed).encode())]}
            await send(message)

        await self.app(scope, receive, send_allowed)

    def allowed(self, scope: Scope) -> list[str]:
        """The methods some route fully matches on this path (routers included in others too: FastAPI
        wraps them, and only their `matches` is public)."""
        routes = self.routes()
        return [
            method
            for method in _METHODS
            if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
        ]
