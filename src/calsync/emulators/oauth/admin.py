"""The ``/emulator/oauth/...`` switches both authorization servers share: token lifetimes, forced
expiry, a user's revocation, token-endpoint failures, strict rotation, registered clients and the
log of token requests. Like every admin route, they are never logged or faulted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.emulators.common import is_int, is_num
from calsync.emulators.faults import admin_error, admin_json, log_route
from calsync.emulators.oauth.core import AuthServer

__all__ = ["admin_body", "oauth_admin_routes"]


async def admin_body(request: Request) -> dict[str, Any]:
    """The admin request's JSON object ({} when empty); ValueError otherwise."""
    body = await admin_json(request)
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")  # noqa: TRY004 - answered as 400
    return body


def _route(path: str, act: Callable[[dict[str, Any]], Any]) -> Route:
    async def handler(request: Request) -> Response:
        try:
            return JSONResponse(act(await admin_body(request)))
        except ValueError as exc:
            return admin_error(400, str(exc))

    return Route(path, handler, methods=["POST"])


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of strings")
    return value


def oauth_admin_routes(server: AuthServer, extra: list[Route] | None = None) -> list[Route]:
    """``POST /emulator/oauth/{token-lifetime, expire-access-tokens, revoke, fail-token,
    refresh-token-lifetime, rotation, clients}`` and ``GET|DELETE /emulator/oauth/requests``."""

    def token_lifetime(body: dict[str, Any]) -> dict[str, Any]:
        seconds = body.get("seconds")
        if not isinstance(seconds, int) or not is_int(seconds, 0, 10**8):
            raise ValueError("seconds must be an integer >= 0")
        server.set_access_lifetime(seconds)
        return {"seconds": seconds}

    def refresh_lifetime(body: dict[str, Any]) -> dict[str, Any]:
        seconds = body.get("seconds")
        if seconds is not None and not is_num(seconds, 0, 10**10):
            raise ValueError("seconds must be a number >= 0 or null")
        server.set_refresh_lifetime(seconds)
        return {"seconds": seconds}

    def expire(body: dict[str, Any]) -> dict[str, Any]:
        return {"expired": server.expire_access_tokens()}

    def revoke(body: dict[str, Any]) -> dict[str, Any]:
        user = body.get("user")
        if not isinstance(user, str) or not user:
            raise ValueError("user must be the login_hint user (an email address)")
        return {"user": user, "grants_revoked": server.revoke_user(user)}

    def fail_token(body: dict[str, Any]) -> dict[str, Any]:
        status, count, error = body.get("status", 503), body.get("count", 1), body.get("error")
        if not is_int(status, 400, 599) or not is_int(count, 0, 10**6):
            raise ValueError("status must be an integer in [400, 599] and count an integer >= 0")
        if error is not None and not isinstance(error, str):
            raise ValueError("error must be a string")
        server.fail_token_requests(status, count, error)
        return {"status": status, "count": count, "error": error}

    def rotation(body: dict[str, Any]) -> dict[str, Any]:
        strict = body.get("strict")
        if not isinstance(strict, bool):
            raise ValueError("strict must be true or false")  # noqa: TRY004 - answered as 400
        server.strict_rotation = strict
        return {"strict": strict}

    def clients(body: dict[str, Any]) -> dict[str, Any]:
        client_id, secret = body.get("client_id"), body.get("client_secret")
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("client_id must be a non-empty string")
        if secret is not None and not isinstance(secret, str):
            raise ValueError("client_secret must be a string or null")
        client = server.register_client(client_id, secret, _strings(body, "redirect_uris"), _strings(body, "roles"))
        return {
            "client_id": client.client_id,
            "client_secret": client.secret,
            "redirect_uris": list(client.redirect_uris),
            "roles": list(client.roles),
        }

    actions: dict[str, Callable[[dict[str, Any]], Any]] = {
        "token-lifetime": token_lifetime,
        "refresh-token-lifetime": refresh_lifetime,
        "expire-access-tokens": expire,
        "revoke": revoke,
        "fail-token": fail_token,
        "rotation": rotation,
        "clients": clients,
    }
    return [
        *(_route(f"/emulator/oauth/{name}", act) for name, act in actions.items()),
        log_route("/emulator/oauth/requests", "requests", server.log_entries, server.clear_log),
        *(extra or []),
    ]
