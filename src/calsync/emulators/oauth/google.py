"""Google's authorization server, as the Google emulator serves it beside the Calendar API
(``../shared/reference/oauth-and-credentials.md`` 1.1-1.12).

Routes, under the emulator's own base URL: ``GET|POST /o/oauth2/v2/auth`` (the consent page and its
answer), ``POST /token`` (``authorization_code`` with PKCE, ``refresh_token``, and the service-account
``urn:ietf:params:oauth:grant-type:jwt-bearer``), ``POST /revoke``, ``GET /oauth2/v3/userinfo``,
``GET /oauth2/v3/certs`` and the OpenID discovery document. Errors are Google's bodies (1.7): a
client library branches on ``error`` and shows ``error_description``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.emulators.common import bearer_token, is_loopback
from calsync.emulators.oauth.admin import admin_body, oauth_admin_routes
from calsync.emulators.oauth.consent import consent_page, error_page, redirect_back, redirect_uri_allowed
from calsync.emulators.oauth.core import AccessToken, AuthServer, Grant, OAuthFailure, TokenStyle
from calsync.emulators.oauth.forms import client_credentials, read_form
from calsync.emulators.oauth.jwt import JwtError, SigningKey, jwt_parts, new_rsa_key, private_pem, verify_rs256

__all__ = ["AUTH_PATH", "GOOGLE_TOKEN_AUDIENCE", "JWT_BEARER", "GoogleAuth", "google_admin_routes", "google_routes"]

AUTH_PATH = "/o/oauth2/v2/auth"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL; google-auth hard-codes it as the assertion's aud
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ISSUER = "https://accounts.google.com"
_OIDC = {"openid", "email", "profile"}
_VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_PROJECT = "calsync-emulator"
_MAX_JWT_LIFETIME_S = 3600
_SKEW_S = 300
_UNAUTHORIZED_CLIENT = (
    "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of "
    "the scopes requested."
)
_SHORT_LIVED = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat "
    "and exp values in the JWT claim."
)

# OAuthFailure kinds -> (status, error, error_description), Google's wording (reference 1.7)
_FAILURES: dict[str, tuple[int, str, str]] = {
    "missing_client": (400, "invalid_request", "Could not determine client ID from request."),
    "unknown_client": (401, "invalid_client", "The OAuth client was not found."),
    "bad_secret": (401, "invalid_client", "Unauthorized"),
    "missing_secret": (400, "invalid_request", "client_secret is missing."),
    "code_unknown": (400, "invalid_grant", "Malformed auth code."),
    "code_used": (400, "invalid_grant", "Bad Request"),
    "code_expired": (400, "invalid_grant", "Bad Request"),
    "code_client": (400, "invalid_grant", "Bad Request"),
    "redirect_mismatch": (400, "redirect_uri_mismatch", "Bad Request"),
    "verifier_missing": (400, "invalid_grant", "Missing code verifier."),
    "verifier_mismatch": (400, "invalid_grant", "Invalid code verifier."),
    "refresh_unknown": (400, "invalid_grant", "Bad Request"),
    "refresh_client": (401, "unauthorized_client", "Unauthorized"),
    "refresh_revoked": (400, "invalid_grant", "Token has been expired or revoked."),
    "refresh_expired": (400, "invalid_grant", "Token has been expired or revoked."),
}


def google_sub(email: str) -> str:
    """A stable numeric ``sub`` per user, 21 digits like Google's."""
    return str(int(hashlib.sha256(email.lower().encode()).hexdigest(), 16))[:21]


@dataclass
class ServiceAccount:
    """A service account the emulator made a key for; ``users``/``scopes`` are its domain-wide
    delegation (None: any user, any scope)."""

    email: str
    client_id: str
    key_id: str
    public_key: rsa.RSAPublicKey
    users: frozenset[str] | None
    scopes: frozenset[str] | None


class _Refusal(Exception):
    def __init__(self, status: int, error: str, description: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status, self.error, self.description, self.extra = status, error, description, extra or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": self.error, "error_description": self.description, **self.extra}, status_code=self.status
        )


def _failure(fail: OAuthFailure) -> _Refusal:
    status, error, description = _FAILURES.get(fail.kind, (400, "invalid_request", "Bad Request"))
    return _Refusal(status, error, description)


class GoogleAuth:
    """Google's authorization server: the shared core plus service accounts and the ID-token key."""

    def __init__(self) -> None:
        self.server = AuthServer(
            TokenStyle(code="4/0A", access="ya29.a0", refresh="1//0g"),
            max_grants_per_client_user=100,
            revoke_user_kills_access=True,
        )
        self.signing = SigningKey("calsync-emulator-google-1")
        self.service_accounts: dict[str, ServiceAccount] = {}

    def reset(self) -> None:
        self.server.reset()
        self.service_accounts = {}

    def user_for(self, token: str) -> tuple[str | None, str]:
        """The user an access token speaks for while it is valid, and its state (valid, expired ...)."""
        issued, state = self.server.check_access(token)
        return (issued.user if issued is not None and state == "valid" else None), state

    def create_service_account(
        self, base_url: str, name: str | None = None, users: list[str] | None = None, scopes: list[str] | None = None
    ) -> dict[str, Any]:
        """A new service account and its key file, in Google's JSON format, ``token_uri`` pointing here."""
        key = new_rsa_key()
        name = name or f"sa-{secrets.token_hex(4)}"
        email = f"{name}@{_PROJECT}.iam.gserviceaccount.com"
        account = ServiceAccount(
            email,
            str(int(secrets.token_hex(10), 16))[:21],
            secrets.token_hex(20),
            key.public_key(),
            None if users is None else frozenset(u.lower() for u in users),
            None if scopes is None else frozenset(scopes),
        )
        self.service_accounts[email] = account
        return {
            "type": "service_account",
            "project_id": _PROJECT,
            "private_key_id": account.key_id,
            "private_key": private_pem(key),
            "client_email": email,
            "client_id": account.client_id,
            "auth_uri": base_url + AUTH_PATH,
            "token_uri": base_url + "/token",
            "auth_provider_x509_cert_url": base_url + "/oauth2/v1/certs",
            "client_x509_cert_url": f"{base_url}/robot/v1/metadata/x509/{email}",
            "universe_domain": "googleapis.com",
        }

    # -- the consent page -----------------------------------------------------------------------

    def authorization_request(self, params: dict[str, str]) -> dict[str, Any]:
        """A validated authorization request; a _Refusal (shown as Google's error page) otherwise."""
        client_id = params.get("client_id", "")
        if not client_id:
            raise _Refusal(400, "invalid_request", "Missing required parameter: client_id")
        try:
            client = self.server.client(client_id)
        except OAuthFailure:
            raise _Refusal(401, "invalid_client", "The OAuth client was not found.") from None
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri:
            raise _Refusal(400, "invalid_request", "Missing required parameter: redirect_uri")
        if not redirect_uri_allowed(redirect_uri, client.redirect_uris if client else ()):
            raise _Refusal(
                400,
                "redirect_uri_mismatch",
                "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy. "
                f"redirect_uri={redirect_uri}",
            )
        if params.get("response_type") != "code":
            raise _Refusal(400, "unsupported_response_type", f"Invalid response_type: {params.get('response_type')}")
        scopes = params.get("scope", "").split()
        if not scopes:
            raise _Refusal(400, "invalid_request", "Missing required parameter: scope")
        challenge = params.get("code_challenge") or None
        method = params.get("code_challenge_method") or "plain"  # Google's default without a method
        if method not in ("S256", "plain") or (challenge is not None and not _VERIFIER_RE.match(challenge)):
            raise _Refusal(400, "invalid_request", "Invalid code_challenge_method value or code_challenge length.")
        access_type = params.get("access_type", "online")
        if access_type not in ("online", "offline"):
            raise _Refusal(400, "invalid_request", f"Invalid access_type: {access_type}")
        return {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scopes": scopes,
            "state": params.get("state"),
            "login_hint": params.get("login_hint") or None,
            "challenge": challenge,
            "method": method,
            "nonce": params.get("nonce") or None,
            "offline": access_type == "offline",
            "prompt": params.get("prompt", "").split(),
        }

    def allow(self, req: dict[str, Any], user: str) -> Response:
        """The user allowed: a code, and a refresh token when offline access is asked for the first time
        (or again with ``prompt=consent``); installed apps (loopback redirect) always get one."""
        host = req["redirect_uri"].split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        installed = req["redirect_uri"].startswith("http://") and is_loopback(host)
        first = not self.server.has_live_grant(req["client_id"], user)
        refresh = installed or (req["offline"] and (first or "consent" in req["prompt"]))
        code = self.server.issue_code(
            req["client_id"],
            req["redirect_uri"],
            user,
            req["scopes"],
            req["challenge"],
            req["method"],
            req["nonce"],
            refresh,
        )
        params = {"state": req["state"]} if req["state"] is not None else {}
        return redirect_back(req["redirect_uri"], {**params, "code": code, "scope": " ".join(req["scopes"])})

    # -- the token endpoint ---------------------------------------------------------------------

    def _id_token(self, client_id: str, user: str, scopes: tuple[str, ...], nonce: str | None = None) -> str | None:
        if not _OIDC & set(scopes):
            return None
        now = int(self.server.now())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "azp": client_id,
            "aud": client_id,
            "sub": google_sub(user),
            "email": user,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
        }
        if nonce:
            claims["nonce"] = nonce
        return self.signing.sign(claims)

    def _answer(self, token: AccessToken, grant: Grant | None, refresh: str | None, id_token: str | None) -> dict:
        out: dict[str, Any] = {
            "access_token": token.value,
            "expires_in": self.server.expires_in(token),
            "scope": " ".join(token.scopes),
            "token_type": "Bearer",
        }
        if refresh:
            out["refresh_token"] = refresh
        if grant is not None and (left := self.server.refresh_expires_in(grant)) is not None:
            out["refresh_token_expires_in"] = left
        if id_token:
            out["id_token"] = id_token
        return out

    def redeem_code(self, form: dict[str, str], client_id: str) -> tuple[str, dict[str, Any]]:
        if not form.get("code"):
            raise _Refusal(400, "invalid_request", "Missing required parameter: code")
        code = self.server.redeem_code(form["code"], client_id, form.get("redirect_uri"), form.get("code_verifier"))
        grant, refresh = (None, None)
        if code.refresh:
            grant, refresh = self.server.start_grant(client_id, code.user, code.scopes)
        token = self.server.issue_access(client_id, code.user, code.scopes, grant)
        id_token = self._id_token(client_id, code.user, code.scopes, code.nonce)
        return code.user, self._answer(token, grant, refresh, id_token)

    def refresh(self, form: dict[str, str], client_id: str) -> tuple[str, dict[str, Any]]:
        if not form.get("refresh_token"):
            raise _Refusal(400, "invalid_request", "Missing required parameter: refresh_token")
        grant = self.server.use_refresh(form["refresh_token"], client_id)
        scopes = grant.scopes
        if form.get("scope"):
            asked = tuple(form["scope"].split())
            invalid = [s for s in asked if s not in grant.scopes]
            if invalid:
                raise _Refusal(
                    400, "invalid_scope", f"Some requested scopes were invalid. {{invalid=[{', '.join(invalid)}]}}"
                )
            scopes = asked
        token = self.server.issue_access(client_id, grant.user, scopes, grant)
        return grant.user, self._answer(token, grant, None, self._id_token(client_id, grant.user, scopes))

    def jwt_bearer(self, form: dict[str, str], token_uri: str) -> tuple[str, dict[str, Any]]:
        """A service account's signed assertion (RFC 7523), impersonating ``sub`` under domain-wide delegation."""
        try:
            header, claims, signed, signature = jwt_parts(form.get("assertion", ""))
        except JwtError:
            raise _Refusal(400, "invalid_grant", "Invalid JWT Signature.") from None
        account = self.service_accounts.get(str(claims.get("iss", "")))
        if account is None:
            raise _Refusal(400, "invalid_grant", "Invalid grant: account not found")
        kid = header.get("kid")
        if (
            header.get("alg") != "RS256"
            or (kid is not None and kid != account.key_id)
            or not verify_rs256(account.public_key, signed, signature)
        ):
            raise _Refusal(400, "invalid_grant", "Invalid JWT Signature.")
        if claims.get("aud") not in (GOOGLE_TOKEN_AUDIENCE, token_uri):
            raise _Refusal(
                400,
                "invalid_grant",
                f"Invalid JWT: Failed audience check. The right audience is {GOOGLE_TOKEN_AUDIENCE}",
            )
        iat, exp, now = claims.get("iat"), claims.get("exp"), self.server.now()
        if (
            not isinstance(iat, int)
            or not isinstance(exp, int)
            or exp - iat > _MAX_JWT_LIFETIME_S
            or exp <= iat
            or iat > now + _SKEW_S
            or exp < now - _SKEW_S
        ):
            raise _Refusal(400, "invalid_grant", _SHORT_LIVED)
        scopes = tuple(str(claims.get("scope", "")).split())
        if not scopes:
            raise _Refusal(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        sub = claims.get("sub")
        user = str(sub).lower() if sub else account.email
        if (sub and account.users is not None and user not in account.users) or (
            account.scopes is not None and not set(scopes) <= account.scopes
        ):
            raise _Refusal(401, "unauthorized_client", _UNAUTHORIZED_CLIENT)
        token = self.server.issue_access(account.client_id, user, scopes)
        return user, {"access_token": token.value, "expires_in": self.server.expires_in(token), "token_type": "Bearer"}

    async def token(self, request: Request) -> Response:
        form = await read_form(request)
        grant_type = form.get("grant_type")
        client_id, secret = client_credentials(request, form)
        user: str | None = None
        try:
            failure = self.server.take_failure()
            if failure is not None:
                status, error = failure
                raise _Refusal(status, error or _fault_error(status), "Injected fault.")
            if not grant_type:
                raise _Refusal(400, "invalid_request", "Missing required parameter: grant_type")
            if grant_type == JWT_BEARER:
                user, body = self.jwt_bearer(form, str(request.base_url).rstrip("/") + "/token")
            elif grant_type in ("authorization_code", "refresh_token"):
                self.server.authenticate(client_id, secret)
                assert client_id is not None
                handle = self.redeem_code if grant_type == "authorization_code" else self.refresh
                user, body = handle(form, client_id)
            else:
                raise _Refusal(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        except OAuthFailure as fail:
            refusal = _failure(fail)
        except _Refusal as exc:
            refusal = exc
        else:
            self.server.log(grant_type, client_id, user, 200, "ok")
            return JSONResponse(body, headers={"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate"})
        self.server.log(grant_type, client_id, user, refusal.status, refusal.error)
        return refusal.response()


def _fault_error(status: int) -> str:
    return {429: "rate_limit_exceeded", 500: "internal_failure", 503: "temporarily_unavailable"}.get(
        status, "server_error" if status >= 500 else "invalid_request"
    )


def google_routes(auth: GoogleAuth) -> list[Route]:
    """The authorization server's public routes, to be served beside the Calendar API."""

    async def authorize(request: Request) -> Response:
        if request.method == "POST":
            form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
            req = auth.server.take_consent(form.get("request", ""))
            if req is None:
                return error_page(400, "Google", "invalid_request", "This consent page has expired or was answered.")
            if form.get("decision") != "allow":
                params = {"error": "access_denied", **({"state": req["state"]} if req["state"] is not None else {})}
                return redirect_back(req["redirect_uri"], params)
            user = req["login_hint"] or form.get("login_hint", "").strip()
            if not user:
                return error_page(400, "Google", "invalid_request", "No account was chosen.")
            return auth.allow(req, user.lower())
        try:
            req = auth.authorization_request(dict(request.query_params))
        except _Refusal as exc:
            return error_page(exc.status, "Google", exc.error, exc.description)
        if "none" in req["prompt"]:
            hint = (req["login_hint"] or "").lower()
            if hint and auth.server.has_live_grant(req["client_id"], hint):
                return auth.allow(req, hint)
            state = {"state": req["state"]} if req["state"] is not None else {}
            return redirect_back(req["redirect_uri"], {"error": "interaction_required", **state})
        ident = auth.server.remember_consent(req)
        return consent_page(AUTH_PATH, ident, "Google", req["client_id"], req["login_hint"], req["scopes"])

    async def revoke(request: Request) -> Response:
        form = await read_form(request)
        if auth.server.revoke_token(form.get("token", "")):
            return JSONResponse({})
        return JSONResponse({"error": "invalid_token", "error_description": "Token expired or revoked"}, 400)

    async def userinfo(request: Request) -> Response:
        token = bearer_token(request.headers.get("authorization")) or request.query_params.get("access_token")
        user = auth.user_for(token)[0] if token else None
        if user is None:
            return JSONResponse(
                {"error": "invalid_request", "error_description": "Invalid Credentials"},
                401,
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
            )
        return JSONResponse({"sub": google_sub(user), "email": user, "email_verified": True})

    async def certs(request: Request) -> Response:
        return JSONResponse(auth.signing.jwks())

    async def discovery(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "issuer": ISSUER,
                "authorization_endpoint": base + AUTH_PATH,
                "token_endpoint": base + "/token",
                "userinfo_endpoint": base + "/oauth2/v3/userinfo",
                "revocation_endpoint": base + "/revoke",
                "jwks_uri": base + "/oauth2/v3/certs",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "code_challenge_methods_supported": ["plain", "S256"],
                "grant_types_supported": ["authorization_code", "refresh_token", JWT_BEARER],
            }
        )

    return [
        Route(AUTH_PATH, authorize, methods=["GET", "POST"]),
        Route("/token", auth.token, methods=["POST"]),
        Route("/revoke", revoke, methods=["POST"]),
        Route("/oauth2/v3/userinfo", userinfo, methods=["GET", "POST"]),
        Route("/oauth2/v3/certs", certs, methods=["GET"]),
        Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
    ]


def google_admin_routes(auth: GoogleAuth) -> list[Route]:
    """The shared ``/emulator/oauth/...`` switches plus ``POST /emulator/oauth/service-accounts``
    (``{"name"?, "users"?, "scopes"?}`` -> a key file whose ``token_uri`` is this emulator)."""

    async def service_accounts(request: Request) -> Response:
        try:
            body = await admin_body(request)
            name, users, scopes = body.get("name"), body.get("users"), body.get("scopes")
            if name is not None and not (isinstance(name, str) and re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", name)):
                raise ValueError("name must be 6-30 characters: lowercase letters, digits, hyphens")
            for value in (users, scopes):
                if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                    raise ValueError("users and scopes must be lists of strings")
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        base = str(request.base_url).rstrip("/")
        return JSONResponse(auth.create_service_account(base, name, users, scopes), status_code=201)

    return oauth_admin_routes(
        auth.server, [Route("/emulator/oauth/service-accounts", service_accounts, methods=["POST"])]
    )
