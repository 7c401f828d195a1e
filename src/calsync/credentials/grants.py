"""Getting an access token for an account from its provider's token endpoint: one function per kind of
grant, each a pure exchange over HTTP (nothing stored here; credentials/tokens.py keeps the result).

Google user and service-account grants go through google-auth (its refresh, its RS256 JWT assertion
for domain-wide delegation); Microsoft's go through msal (authority discovery, refresh-token rotation,
client credentials). Their errors are sorted into three kinds the engine acts on:
GrantGone (the user must connect again: `invalid_grant` and its Microsoft equivalents),
GrantRefused (calsync's own app registration is wrong: `invalid_client`, `unauthorized_client`;
an operator must fix it) and TokenEndpointDown (5xx, 429, timeouts: retried later like any
provider error, the account untouched).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 (an address, no secret)
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"

# Google and Microsoft answers that mean "this grant is over; the user must consent again"
_GONE_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})
# answers that mean calsync's own registration (client id, secret, delegation) is wrong
_REFUSED_ERRORS = frozenset({"invalid_client", "unauthorized_client", "deleted_client", "invalid_scope"})


class GrantError(Exception):
    """A token request that did not give a token; `reason` is the provider's words, safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GrantGone(GrantError):
    """Revoked, expired, consent withdrawn, password changed: only a new consent brings it back."""


class GrantRefused(GrantError):
    """The token endpoint refuses calsync's client (wrong secret, deleted app, delegation not allowed)."""


class TokenEndpointDown(GrantError):
    """No answer worth acting on (5xx, 429, a timeout): try again later."""


@dataclass(frozen=True)
class Issued:
    """An access token and when it expires (epoch seconds); `refresh_token` when the answer brought
    one (Microsoft rotates it on every refresh: the newest must be kept)."""

    access_token: str
    expires_at: float
    refresh_token: str | None = None


def refresh(credentials: Mapping[str, Any], *, timeout: float = 30.0) -> Issued:
    """A new access token for stored OAuth credentials, by their `grant`."""
    grant = credentials.get("grant")
    if grant == "google-user":
        return _google_user(credentials, timeout)
    if grant == "google-service-account":
        return _google_service_account(credentials, timeout)
    if grant in ("microsoft-user", "microsoft-app"):
        return _microsoft(credentials, timeout)
    raise ValueError(f"credentials of grant {grant!r} cannot be refreshed")


def _classified(error: str, description: str) -> GrantError:
    reason = f"{error}: {description}" if description else error
    if error in _GONE_ERRORS:
        return GrantGone(reason)
    if error in _REFUSED_ERRORS:
        return GrantRefused(reason)
    return TokenEndpointDown(reason)


# --- Google (google-auth) ----------------------------------------------------------------------


def _google_request(timeout: float) -> Any:
    import google.auth.transport.requests
    import requests

    session = requests.Session()
    request = google.auth.transport.requests.Request(session)

    def call(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", timeout)
        return request(*args, **kwargs)

    return call


def _google_answer(credentials: Any, timeout: float) -> Issued:
    import google.auth.exceptions

    try:
        credentials.refresh(_google_request(timeout))
    except google.auth.exceptions.RefreshError as exc:
        body = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
        error = str(body.get("error") or "")
        if not error:  # no JSON error body: a 5xx page or the like after google-auth's own retries
            raise TokenEndpointDown(str(exc.args[0]) if exc.args else "the token endpoint failed") from None
        raise _classified(error, str(body.get("error_description") or "")) from None
    except google.auth.exceptions.TransportError as exc:
        raise TokenEndpointDown(f"the token endpoint could not be reached: {type(exc).__name__}") from None
    expiry = credentials.expiry  # naive UTC, google-auth's convention
    expires_at = expiry.replace(tzinfo=UTC).timestamp() if expiry else time.time() + 3000
    new_refresh = getattr(credentials, "refresh_token", None)
    return Issued(str(credentials.token), expires_at, new_refresh)


def _google_user(c: Mapping[str, Any], timeout: float) -> Issued:
    from google.oauth2.credentials import Credentials

    creds = Credentials(  # type: ignore[no-untyped-call]  # google-auth leaves __init__ unannotated
        token=None,
        refresh_token=c["refresh_token"],
        token_uri=c.get("token_uri") or GOOGLE_TOKEN_URI,
        client_id=c["client_id"],
        client_secret=c.get("client_secret"),
        scopes=c.get("scopes"),
    )
    issued = _google_answer(creds, timeout)
    # Google sends no new refresh token on refresh; the stored one stays
    rotated = issued.refresh_token if issued.refresh_token != c["refresh_token"] else None
    return Issued(issued.access_token, issued.expires_at, rotated)


def _google_service_account(c: Mapping[str, Any], timeout: float) -> Issued:
    from google.oauth2 import service_account

    creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
        dict(c["key"]), scopes=c.get("scopes"), subject=c["subject"]
    )
    issued = _google_answer(creds, timeout)
    return Issued(issued.access_token, issued.expires_at)


# --- Microsoft (msal) ---------------------------------------------------------------------------


def microsoft_app(c: Mapping[str, Any], timeout: float = 30.0) -> Any:
    """An msal client for the account's app registration (confidential with a secret, else public);
    `ca_file` is the CA to trust instead of the system's (an emulator's); checks are never turned off."""
    import msal
    import requests

    authority = f"{str(c.get('authority_host') or MICROSOFT_AUTHORITY).rstrip('/')}/{c.get('tenant') or 'common'}"
    options: dict[str, Any] = {"authority": authority, "timeout": timeout}
    if c.get("ca_file"):
        # its own session: requests lets REQUESTS_CA_BUNDLE override a `verify=` given to msal
        session = requests.Session()
        session.trust_env = False
        session.verify = str(c["ca_file"])
        options["http_client"] = session
    if c.get("authority_host"):  # not Microsoft's own cloud: no instance discovery against it
        options["instance_discovery"] = False
    if c.get("client_secret"):
        return msal.ConfidentialClientApplication(c["client_id"], client_credential=c["client_secret"], **options)
    return msal.PublicClientApplication(c["client_id"], **options)


def issued_from_msal(result: Mapping[str, Any] | None) -> Issued:
    """msal answers a dict: the token, or `error` / `error_description` (it raises only on transport)."""
    if not result:
        raise TokenEndpointDown("the token endpoint gave no answer")
    if "access_token" not in result:
        error = str(result.get("error") or "")
        description = str(result.get("error_description") or "").split("\r\n")[0]
        if not error:
            raise TokenEndpointDown(description or "the token endpoint failed")
        raise _classified(error, description)
    return Issued(
        str(result["access_token"]),
        time.time() + float(result.get("expires_in") or 3599),
        result.get("refresh_token"),
    )


def _microsoft(c: Mapping[str, Any], timeout: float) -> Issued:
    import requests

    app = microsoft_app(c, timeout)
    try:
        if c["grant"] == "microsoft-app":
            result = app.acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])
        else:
            result = app.acquire_token_by_refresh_token(c["refresh_token"], scopes=list(c.get("scopes") or []))
    except (requests.RequestException, OSError, ValueError) as exc:
        raise TokenEndpointDown(f"the token endpoint could not be reached: {type(exc).__name__}") from None
    return issued_from_msal(result)
