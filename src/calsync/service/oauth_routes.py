"""Connecting accounts from the web page: `GET /oauth/{google|microsoft}/start` sends the browser to the
provider's consent page, `GET /oauth/{provider}/callback` takes the answer, redeems the code and
stores (or reconnects) the account, then returns to the page. `GET /api/v1/oauth/providers` tells the
page which of the two it may offer.

The PKCE verifier and the `state` never leave the service: each attempt is kept here, in memory, for
ten minutes and used once, so a replayed or forged redirect (a state we did not hand out, or one
already answered) is refused and nothing is stored. The OAuth clients come from settings:
CALSYNC_GOOGLE_CLIENT_ID / _CLIENT_SECRET (/ _BASE_URL for an emulator) and CALSYNC_MICROSOFT_CLIENT_ID /
_CLIENT_SECRET / _TENANT (/ _AUTHORITY_URL, _CA_FILE, CALSYNC_GRAPH_BASE_URL for an emulator);
CALSYNC_PUBLIC_URL fixes the callback address registered with the provider."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine

from calsync.credentials.connect import (
    Attempt,
    ConnectError,
    GoogleClient,
    MicrosoftClient,
    check_answer,
    google_consent_url,
    google_redeem,
    microsoft_flow,
    microsoft_redeem,
)
from calsync.engine import setup
from calsync.service.api import PREFIX
from calsync.service.auth import CallerDep
from calsync.service.errors import API_ERRORS

ATTEMPT_SECONDS = 600.0  # as long as a provider's authorization code lives, about


@dataclass(frozen=True)
class OAuthClients:
    """The OAuth clients the service connects accounts with; None where one is not configured."""

    google: GoogleClient | None = None
    google_base_url: str | None = None
    microsoft: MicrosoftClient | None = None
    graph_base_url: str | None = None
    public_url: str | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> OAuthClients:
        def get(name: str) -> str | None:
            return settings.get(f"CALSYNC_{name}") or None

        google_id, ms_id = get("GOOGLE_CLIENT_ID"), get("MICROSOFT_CLIENT_ID")
        return cls(
            google=GoogleClient(google_id, get("GOOGLE_CLIENT_SECRET"), get("GOOGLE_BASE_URL")) if google_id else None,
            google_base_url=get("GOOGLE_BASE_URL"),
            microsoft=MicrosoftClient(
                ms_id,
                get("MICROSOFT_CLIENT_SECRET"),
                get("MICROSOFT_TENANT") or "common",
                get("MICROSOFT_AUTHORITY_URL"),
                get("MICROSOFT_CA_FILE"),
            )
            if ms_id
            else None,
            graph_base_url=get("GRAPH_BASE_URL"),
            public_url=get("PUBLIC_URL"),
        )


@dataclass
class _Pending:
    provider: str
    redirect_uri: str
    name: str | None
    started: float
    owner: str  # the calsync user the account is connected for (the caller of /start)
    attempt: Attempt | None = None  # Google: our state and verifier
    flow: dict[str, Any] | None = None  # Microsoft: msal's record (its state, verifier, nonce)


class _Attempts:
    """Consents in progress, by state; each taken once, and forgotten after ATTEMPT_SECONDS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}

    def put(self, state: str, pending: _Pending) -> None:
        with self._lock:
            now = time.monotonic()
            self._pending = {s: p for s, p in self._pending.items() if now - p.started < ATTEMPT_SECONDS}
            self._pending[state] = pending

    def take(self, state: str, provider: str) -> _Pending | None:
        with self._lock:
            pending = self._pending.pop(state, None)
        if pending is None or pending.provider != provider or time.monotonic() - pending.started >= ATTEMPT_SECONDS:
            return None
        return pending


def oauth_router(engine: Engine, clients: OAuthClients) -> APIRouter:
    router = APIRouter(prefix="/oauth", include_in_schema=False)
    attempts = _Attempts()

    def callback_url(request: Request, provider: str) -> str:
        root = clients.public_url.rstrip("/") if clients.public_url else str(request.base_url).rstrip("/")
        return f"{root}/oauth/{provider}/callback"

    @router.get("/{provider}/start")
    def start(
        request: Request, provider: str, caller: CallerDep, login_hint: str | None = None, name: str | None = None
    ) -> Response:
        """Off to the provider's consent page (303), with a state and PKCE challenge of our own. The
        account will be the caller's (service/auth.py: a key, or the open page's user)."""
        redirect_uri = callback_url(request, provider)
        owner, now = caller.user_id, time.monotonic()
        if provider == "google" and clients.google is not None:
            attempt = Attempt()
            attempts.put(attempt.state, _Pending(provider, redirect_uri, name, now, owner, attempt=attempt))
            return RedirectResponse(google_consent_url(clients.google, redirect_uri, attempt, login_hint), 303)
        if provider == "microsoft" and clients.microsoft is not None:
            flow = microsoft_flow(clients.microsoft, redirect_uri, login_hint)
            attempts.put(str(flow["state"]), _Pending(provider, redirect_uri, name, now, owner, flow=flow))
            return RedirectResponse(str(flow["auth_uri"]), 303)
        return _page(404, f"Connecting {provider} accounts is not configured on this server.")

    @router.get("/{provider}/callback")
    def callback(request: Request, provider: str) -> Response:
        """The provider's answer: checked against the attempt it names, redeemed, stored."""
        query = dict(request.query_params)
        pending = attempts.take(str(query.get("state", "")), provider)
        if pending is None:
            return _page(400, "This sign-in answer is unknown, expired or already used: nothing was stored.")
        try:
            if pending.attempt is not None and clients.google is not None:
                code = check_answer(query, pending.attempt)
                credentials = google_redeem(clients.google, code, pending.attempt, pending.redirect_uri)
                kind, base_url = "google", clients.google_base_url
            elif pending.flow is not None and clients.microsoft is not None:
                credentials = microsoft_redeem(clients.microsoft, pending.flow, query)
                kind, base_url = "graph", clients.graph_base_url
            else:
                return _page(404, f"Connecting {provider} accounts is not configured on this server.")
        except ConnectError as exc:
            return _page(400, f"The account was not connected: {exc}")
        name = pending.name or credentials.get("user") or kind
        try:
            connected = setup.connect_account(engine, kind, str(name), base_url, credentials, owner=pending.owner)
        except setup.SetupError as exc:
            return _page(400, f"The account was not connected: {exc}")
        return RedirectResponse(f"/?connected={connected.account_id}", 303)

    return router


def oauth_api_router(clients: OAuthClients) -> APIRouter:
    """What the page may offer: a connect button per configured provider, none for the others."""
    router = APIRouter(prefix=f"{PREFIX}/oauth", responses=API_ERRORS)

    @router.get("/providers")
    def providers() -> dict[str, list[str]]:
        """The providers whose accounts this server can connect through /oauth/{provider}/start."""
        configured = {"google": clients.google, "microsoft": clients.microsoft}
        return {"providers": [name for name, client in configured.items() if client is not None]}

    return router


def _page(status: int, message: str) -> HTMLResponse:
    body = (
        '<!doctype html><html lang="en"><meta charset="utf-8"><title>calsync</title>'
        f'<p>{escape(message)}</p><p><a href="/">Back to calsync</a></p></html>'
    )
    return HTMLResponse(body, status)
