"""A loopback reverse proxy that puts the emulators' fault switches and request log in front of a
real server (Radicale, Xandikos, any CalDAV server).

Real CalDAV servers cannot be told to fail the next PUT after storing it, or to answer 503 twice
with a Retry-After. The proxy can: requests pass through unchanged (method, path, query, body,
headers other than Host), and the same admin surface as the Google and Graph emulators
(``/emulator/faults`` with ``after_commit``, ``/emulator/requests``, ``/emulator/reset``) decides
which ones fail. So the provider-neutral tests drive every provider the same way, and the request
counts of a CalDAV sync come from the wire, not from the client's own bookkeeping.
"""

from __future__ import annotations

from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from calsync.emulators.faults import FaultInjector, RequestLog, common_admin_routes

# hop-by-hop headers and the ones httpx sets itself for the upstream request
_DROP_REQUEST = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding"}
_DROP_RESPONSE = {"content-length", "connection", "keep-alive", "transfer-encoding", "content-encoding"}


def _render_error(status: int, reason: str | None, rule: dict[str, Any]) -> Response:
    return Response(f"injected fault: {reason or status}\n", status_code=status, media_type="text/plain")


class FaultProxy:
    """ASGI app: ``/emulator/...`` is the admin surface, everything else goes to ``upstream``."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = FaultInjector(_render_error)
        self.commit_faults = FaultInjector(_render_error)
        self.requests = RequestLog()
        self._client: httpx.AsyncClient | None = None
        self._admin = Starlette(routes=common_admin_routes(self.reset, self.faults, self.commit_faults, self.requests))

    def reset(self) -> None:
        self.faults.clear()
        self.commit_faults.clear()
        self.requests.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/emulator/"):
            await self._admin(scope, receive, send)
            return
        response = await self._forward(Request(scope, receive))
        await response(scope, receive, send)

    async def _forward(self, request: Request) -> Response:
        method, path, query = request.method, request.url.path, request.url.query
        user = request.headers.get("authorization")
        injected = await self.faults.maybe_fail(method, path)
        if injected is not None:
            self.requests.add(method, path, query, injected.status_code, user)
            return injected
        if self._client is None:  # made on the server's own event loop
            self._client = httpx.AsyncClient(timeout=120)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST]
        answer = await self._client.request(
            method, self.upstream + path, params=query or None, content=await request.body(), headers=headers
        )
        after = await self.commit_faults.maybe_fail(method, path)
        if after is not None:  # the server did the work; the client never hears of it
            self.requests.add(method, path, query, after.status_code, user)
            return after
        self.requests.add(method, path, query, answer.status_code, user)
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _DROP_RESPONSE}
        return Response(answer.content, status_code=answer.status_code, headers=kept)
