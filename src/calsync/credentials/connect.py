"""Connecting an account through its provider's consent page (OAuth 2.0 authorization code + PKCE +
state), for the CLI (a loopback redirect on 127.0.0.1, as installed apps do) and for the service
(its own callback URL): building the consent URL, checking the answer, redeeming the code.

Google's exchange is a plain form POST here rather than google-auth-oauthlib's Flow: Flow refuses an
http token endpoint (an emulator on loopback) unless a process-wide oauthlib switch is set, and it
is four lines of RFC 6749 §4.1.3 either way. Microsoft's goes through msal, which adds its own
checks (nonce, client_info) and is what refreshes the account later.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from calsync.credentials import grants

GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/v2/auth"
# Events read/write on every calendar, plus the calendar list to bind them by (never `calendar`: calsync
# creates no calendars); read-only accounts (pull bindings only) get the read-only events scope
GOOGLE_SCOPES = (
    "openid",
    "email",
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
)
GOOGLE_READ_ONLY_SCOPES = (
    "openid",
    "email",
    "https://www.googleapis.com/auth/calendar.events.readonly",
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
)
GRAPH_SCOPES = ("https://graph.microsoft.com/Calendars.ReadWrite",)  # msal adds offline_access, openid, profile
GRAPH_READ_ONLY_SCOPES = ("https://graph.microsoft.com/Calendars.Read",)


class ConnectError(Exception):
    """The connection did not happen (denied, timed out, refused, tampered with); nothing was stored."""


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge): 86 unreserved characters, the challenge BASE64URL(SHA256) unpadded."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class GoogleClient:
    """calsync's OAuth client at Google (or at an emulator: `base_url` puts every endpoint under it)."""

    client_id: str
    client_secret: str | None
    base_url: str | None = None
    read_only: bool = False

    @property
    def auth_uri(self) -> str:
        return f"{self.base_url.rstrip('/')}/o/oauth2/v2/auth" if self.base_url else GOOGLE_AUTH_URI

    @property
    def token_uri(self) -> str:
        return f"{self.base_url.rstrip('/')}/token" if self.base_url else grants.GOOGLE_TOKEN_URI

    @property
    def scopes(self) -> tuple[str, ...]:
        return GOOGLE_READ_ONLY_SCOPES if self.read_only else GOOGLE_SCOPES

    @classmethod
    def from_client_secrets(cls, path: str, base_url: str | None = None, read_only: bool = False) -> GoogleClient:
        """The JSON file Google Cloud Console downloads for an OAuth client ("installed" or "web")."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
            section = data.get("installed") or data.get("web")
            return cls(section["client_id"], section.get("client_secret"), base_url, read_only)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConnectError(f"{path} is not a Google OAuth client secrets file: {exc}") from None


@dataclass
class Attempt:
    """One consent in progress: the state that names it and the PKCE verifier only calsync knows."""

    state: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    verifier: str = ""
    challenge: str = ""

    def __post_init__(self) -> None:
        if not self.verifier:
            self.verifier, self.challenge = pkce_pair()


def google_consent_url(client: GoogleClient, redirect_uri: str, attempt: Attempt, login_hint: str | None) -> str:
    params = {
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": " ".join(client.scopes),
        "access_type": "offline",  # a refresh token
        "prompt": "consent",  # a new one even when this user consented before (a reconnect)
        "state": attempt.state,
        "code_challenge": attempt.challenge,
        "code_challenge_method": "S256",
    }
    if login_hint:
        params["login_hint"] = login_hint
    return f"{client.auth_uri}?{urlencode(params)}"


def check_answer(query: Mapping[str, str], attempt: Attempt) -> str:
    """The code of a consent answer for this attempt; ConnectError for a denial or a foreign state."""
    if not _same(query.get("state"), attempt.state):
        raise ConnectError("the answer does not carry this attempt's state: refused (a forged or stale redirect)")
    if query.get("error"):
        raise ConnectError(f"consent was not given: {query['error']} {query.get('error_description', '')}".strip())
    code = query.get("code")
    if not code:
        raise ConnectError("the answer carries no authorization code")
    return code


def _same(given: Any, expected: Any) -> bool:
    """Constant-time equality of a state from outside and ours (bytes: compare_digest refuses non-ASCII str)."""
    return bool(expected) and secrets.compare_digest(str(given or "").encode(), str(expected).encode())


def google_redeem(
    client: GoogleClient, code: str, attempt: Attempt, redirect_uri: str, *, timeout: float = 30.0
) -> dict[str, Any]:
    """Exchange the code for tokens; the account's credentials (grant google-user) and its user."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client.client_id,
        "code_verifier": attempt.verifier,
    }
    if client.client_secret:
        form["client_secret"] = client.client_secret
    try:
        response = httpx.post(client.token_uri, data=form, timeout=timeout)
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ConnectError(f"the token endpoint could not be reached or read: {type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise ConnectError("the token endpoint answered something other than a JSON object")
    if response.status_code != 200 or "access_token" not in body:
        raise ConnectError(f"the code was refused: {body.get('error')}: {body.get('error_description', '')}")
    if not body.get("refresh_token"):
        raise ConnectError("Google sent no refresh token (access_type=offline was not honoured): nothing stored")
    granted = set(str(body.get("scope") or " ".join(client.scopes)).split())
    missing = [s for s in client.scopes if s.startswith("https://") and s not in granted]
    if missing:
        raise ConnectError(f"consent was given without {', '.join(missing)}, which calsync needs: nothing stored")
    return {
        "grant": "google-user",
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "token_uri": client.token_uri,
        "scopes": list(client.scopes),
        "refresh_token": body["refresh_token"],
        "access_token": body["access_token"],
        "expires_at": time.time() + float(body.get("expires_in") or 3599),
        "issued_at": time.time(),
        "user": _id_token_email(body.get("id_token")),
    }


def _id_token_email(id_token: Any) -> str | None:
    """The `email` claim of an ID token received straight from the token endpoint over the connection
    calsync opened (OpenID Connect Core 3.1.3.7: its signature need not be checked then)."""
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return None
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    email = claims.get("email") or claims.get("preferred_username")
    return str(email) if email else None


# --- Microsoft (msal) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MicrosoftClient:
    """calsync's app registration in Entra ID (or at an emulator: `authority_host`, with its CA file)."""

    client_id: str
    client_secret: str | None = None
    tenant: str = "common"
    authority_host: str | None = None
    ca_file: str | None = None
    read_only: bool = False

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "tenant": self.tenant,
            "authority_host": self.authority_host,
            "ca_file": self.ca_file,
        }

    @property
    def scopes(self) -> tuple[str, ...]:
        return GRAPH_READ_ONLY_SCOPES if self.read_only else GRAPH_SCOPES


def microsoft_flow(client: MicrosoftClient, redirect_uri: str, login_hint: str | None) -> dict[str, Any]:
    """msal's record of one consent (its state, PKCE verifier and nonce) with the URL to open."""
    app = grants.microsoft_app(client.settings)
    with warnings.catch_warnings():
        # msal recommends response_mode=form_post; calsync's receivers (loopback, the service's callback)
        # take the answer in the query, which Microsoft supports for the authorization code flow
        warnings.filterwarnings("ignore", message=".*form_post.*", category=UserWarning)
        flow: dict[str, Any] = app.initiate_auth_code_flow(
            list(client.scopes), redirect_uri=redirect_uri, login_hint=login_hint, prompt="consent"
        )
    return flow


def microsoft_redeem(client: MicrosoftClient, flow: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
    """Exchange the consent's answer for tokens; the account's credentials (grant microsoft-user)."""
    if not _same(query.get("state"), flow.get("state")):
        raise ConnectError("the answer does not carry this attempt's state: refused (a forged or stale redirect)")
    if query.get("error"):
        raise ConnectError(f"consent was not given: {query['error']} {query.get('error_description', '')}".strip())
    app = grants.microsoft_app(client.settings)
    try:
        result = app.acquire_token_by_auth_code_flow(flow, dict(query), scopes=list(client.scopes))
        issued = grants.issued_from_msal(result)
    except grants.GrantError as exc:
        raise ConnectError(f"the code was refused: {exc.reason}") from None
    except ValueError as exc:  # msal's own checks of the answer (state, nonce)
        raise ConnectError(f"the answer was refused: {exc}") from None
    if not issued.refresh_token:
        raise ConnectError("Microsoft sent no refresh token (offline_access was not granted): nothing stored")
    claims = result.get("id_token_claims") or {}
    return {
        "grant": "microsoft-user",
        **client.settings,
        "scopes": list(client.scopes),
        "refresh_token": issued.refresh_token,
        "access_token": issued.access_token,
        "expires_at": issued.expires_at,
        "issued_at": time.time(),
        "user": claims.get("preferred_username") or claims.get("email"),
    }


# --- the loopback redirect (installed apps) -----------------------------------------------------------


class LoopbackRedirect:
    """A one-shot HTTP listener on 127.0.0.1 (a free port) that takes the consent's redirect.

    Only the path it was opened for answers; the browser gets a short page saying it may close."""

    def __init__(self, path: str = "/", host_name: str = "127.0.0.1") -> None:
        self.path = path
        # the name the redirect URI gives: Google wants 127.0.0.1 for installed apps; Microsoft ignores
        # the port only for `localhost` (its reply-URL rules), so a registered http://localhost matches
        self.host_name = host_name
        self._answer: dict[str, str] | None = None
        self._arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != receiver.path or receiver._arrived.is_set():
                    self.send_error(404)
                    return
                receiver._answer = dict(parse_qsl(parts.query))
                receiver._arrived.set()
                done = "error" not in receiver._answer
                text = "calsync has the answer; you may close this window." if done else "Consent was not given."
                body = f"<!doctype html><title>calsync</title><p>{text}</p>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the hook's signature)
                pass  # the query holds the authorization code: never logged

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def redirect_uri(self) -> str:
        return f"http://{self.host_name}:{self._server.server_address[1]}{self.path}"

    def wait(self, timeout: float, tick: Callable[[], None] | None = None) -> dict[str, str]:
        """The redirect's query; ConnectError when none came within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self._arrived.wait(min(1.0, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                raise ConnectError(f"no answer from the consent page within {timeout:g} s: nothing stored")
            if tick is not None:
                tick()
        assert self._answer is not None
        return self._answer

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def consent_on_loopback(
    client: GoogleClient | MicrosoftClient,
    login_hint: str | None,
    show: Callable[[str], None],
    timeout: float = 300.0,
) -> dict[str, Any]:
    """The installed-app flow, whole: a one-shot listener on loopback, the consent URL handed to `show`
    (print it and open a browser; the demo presses Allow itself), the redirect awaited, the answer
    checked against this attempt and redeemed. Returns the account's credentials; ConnectError
    otherwise (denied, timed out, refused), with nothing stored."""
    # Google wants 127.0.0.1 for installed apps; Entra ignores the port only for `localhost`
    receiver = LoopbackRedirect("/", "localhost" if isinstance(client, MicrosoftClient) else "127.0.0.1")
    try:
        if isinstance(client, MicrosoftClient):
            flow = microsoft_flow(client, receiver.redirect_uri, login_hint)
            show(str(flow["auth_uri"]))
            return microsoft_redeem(client, flow, receiver.wait(timeout))
        attempt = Attempt()
        show(google_consent_url(client, receiver.redirect_uri, attempt, login_hint))
        code = check_answer(receiver.wait(timeout), attempt)
        return google_redeem(client, code, attempt, receiver.redirect_uri)
    finally:
        receiver.close()
