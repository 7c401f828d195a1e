"""The Microsoft identity platform v2.0, as the Graph emulator serves it beside Graph
(``../shared/reference/oauth-and-credentials.md`` 2.1-2.8).

Routes: ``GET /{tenant}/v2.0/.well-known/openid-configuration`` (MSAL's tenant discovery),
``GET /common/discovery/instance`` (for clients that keep instance discovery on),
``GET|POST /{tenant}/oauth2/v2.0/authorize`` (the consent page and its answer),
``POST /{tenant}/oauth2/v2.0/token`` (``authorization_code`` with PKCE, ``refresh_token`` with
rotation, ``client_credentials`` for app-only tokens) and ``GET /{tenant}/discovery/v2.0/keys``.
Errors are Entra's bodies (2.6): ``error``, an ``error_description`` starting ``AADSTSnnnnn:`` with
its trace, correlation and timestamp lines, ``error_codes``, ``timestamp``, ``trace_id``,
``correlation_id`` and ``error_uri``. MSAL requires an https authority: serve the app with the
certificate from ``tls.ensure_tls_files``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from calsync.emulators.oauth.admin import oauth_admin_routes
from calsync.emulators.oauth.consent import consent_page, error_page, redirect_back, redirect_uri_allowed
from calsync.emulators.oauth.core import AccessToken, AuthServer, Client, Grant, OAuthFailure, TokenStyle
from calsync.emulators.oauth.forms import client_credentials, read_form
from calsync.emulators.oauth.jwt import SigningKey, b64url

__all__ = ["GRAPH_RESOURCE", "MicrosoftAuth", "microsoft_admin_routes", "microsoft_routes"]

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
_OIDC = ("openid", "profile", "email", "offline_access")
_GENERIC_TENANTS = ("common", "organizations", "consumers")
_DEFAULT_APP_ROLES = ("Calendars.ReadWrite",)
_NO_CACHE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}

# OAuthFailure kinds -> (status, error, AADSTS code, message); Entra's wording (reference 2.6)
_FAILURES: dict[str, tuple[int, str, int, str]] = {
    "missing_client": (
        400,
        "invalid_request",
        900144,
        "The request body must contain the following parameter: 'client_id'.",
    ),
    "unknown_client": (
        400,
        "unauthorized_client",
        700016,
        (
            "Application with identifier '{client}' was not found in the directory '{tenant}'. This can"
            " happen if the application has not been installed by the administrator of the tenant or "
            "consented to by any user in the tenant. You may have sent your authentication request to "
            "the wrong tenant."
        ),
    ),
    "bad_secret": (
        401,
        "invalid_client",
        7000215,
        (
            "Invalid client secret provided. Ensure the secret being sent in the request is the client "
            "secret value, not the client secret ID, for a secret added to app '{client}'."
        ),
    ),
    "missing_secret": (
        401,
        "invalid_client",
        7000218,
        ("The request body must contain the following parameter: 'client_assertion' or 'client_secret'."),
    ),
    "code_unknown": (400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."),
    "code_client": (400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."),
    "code_used": (
        400,
        "invalid_grant",
        54005,
        (
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use "
            "an existing refresh token."
        ),
    ),
    "code_expired": (
        400,
        "invalid_grant",
        70008,
        (
            "The provided authorization code or refresh token has expired due to inactivity. Send a new"
            " interactive authorization request for this user and resource."
        ),
    ),
    "redirect_mismatch": (
        400,
        "invalid_grant",
        70000,
        ("The request was denied because the redirect_uri does not match the one used in the authorization request."),
    ),
    "verifier_missing": (
        400,
        "invalid_grant",
        501481,
        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
    ),
    "verifier_mismatch": (
        400,
        "invalid_grant",
        501481,
        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
    ),
    "refresh_unknown": (400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."),
    "refresh_client": (400, "invalid_grant", 70000, "Provided grant is invalid or malformed."),
    "refresh_revoked": (
        400,
        "invalid_grant",
        50173,
        (
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The "
            "user might have changed or reset their password. The grant was issued on '{issued}' and "
            "the TokensValidFrom date (before which tokens are not valid) for this user is '{now}'."
        ),
    ),
    "refresh_expired": (
        400,
        "invalid_grant",
        700082,
        (
            "The refresh token has expired due to inactivity. The token was issued on {issued} and was "
            "inactive for {lifetime}."
        ),
    ),
}


class AadError(Exception):
    """A refusal in Entra's words: HTTP status, ``error``, AADSTS code and message (and a ``suberror``)."""

    def __init__(self, status: int, error: str, code: int, message: str, suberror: str | None = None) -> None:
        super().__init__(f"AADSTS{code}: {message}")
        self.status, self.error, self.code, self.message, self.suberror = status, error, code, message, suberror

    def body(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        out: dict[str, Any] = {
            "error": self.error,
            "error_description": (
                f"AADSTS{self.code}: {self.message}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
                f"Timestamp: {stamp}"
            ),
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }
        if self.suberror:
            out["suberror"] = self.suberror
        return out

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=_NO_CACHE)


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%m/%d/%Y %H:%M:%S")


def _missing(name: str) -> AadError:
    return AadError(400, "invalid_request", 900144, f"The request body must contain the following parameter: '{name}'.")


def _qualified(scope: str) -> str:
    """A bare permission (``Calendars.ReadWrite``) means Graph's."""
    return scope if scope in _OIDC or "://" in scope else f"{GRAPH_RESOURCE}/{scope}"


def _resource_of(scope: str) -> str:
    return scope.rsplit("/", 1)[0]


def split_scopes(text: str) -> tuple[list[str], list[str]]:
    """(resource scopes, OIDC scopes) of a scope parameter; one resource only (AADSTS28000)."""
    scopes = [_qualified(s) for s in text.split()]
    resource = [s for s in scopes if s not in _OIDC]
    if len({_resource_of(s).lower() for s in resource}) > 1:
        raise AadError(
            400,
            "invalid_scope",
            28000,
            "Provided value for the input parameter scope is not valid because it contains more than one resource. "
            f"Scope {text} is not valid.",
        )
    return resource, [s for s in scopes if s in _OIDC]


class MicrosoftAuth:
    """Entra's authorization server for one emulated tenant: the shared core plus identities and JWTs."""

    def __init__(self, tenant_id: str, user_id: Callable[[str], str]) -> None:
        self.tenant_id = tenant_id
        self._user_id = user_id  # the Graph emulator's user id for a mailbox: the token's oid
        self.server = AuthServer(
            TokenStyle(code="0.AX", access="", refresh="1.AX"),
            revoke_user_kills_access=False,  # Entra: revoking sessions leaves issued access tokens valid
        )
        self.signing = SigningKey("calsync-emulator-entra-1")

    def reset(self) -> None:
        self.server.reset()

    def check(self, token: str) -> tuple[AccessToken | None, str]:
        """An access token and its state (valid, expired, revoked, unknown)."""
        return self.server.check_access(token)

    def _issuer(self, base: str) -> str:
        return f"{base}/{self.tenant_id}/v2.0"

    def _render_access(self, base: str) -> Callable[[AccessToken], str]:
        """Access tokens as Graph's are: a JWT (clients must treat it as opaque; people may decode it)."""

        def render(token: AccessToken) -> str:
            now = int(self.server.now())
            claims: dict[str, Any] = {
                "aud": GRAPH_APP_ID,
                "iss": f"https://sts.windows.net/{self.tenant_id}/",
                "iat": now,
                "nbf": now,
                "exp": int(token.expires_at),
                "appid": token.client_id,
                "tid": self.tenant_id,
                "uti": b64url(uuid.uuid4().bytes),
                "ver": "1.0",
            }
            if token.user is None:
                claims.update(
                    {"idtyp": "app", "roles": list(token.roles), "oid": self._user_id("app:" + token.client_id)}
                )
            else:
                scp = " ".join(s.rsplit("/", 1)[-1] for s in token.scopes if s not in _OIDC)
                claims.update({"idtyp": "user", "scp": scp, "oid": self._user_id(token.user), "upn": token.user})
            return self.signing.sign(claims)

        return render

    def _id_token(self, base: str, client_id: str, user: str, nonce: str | None) -> str:
        now = int(self.server.now())
        oid = self._user_id(user)
        claims: dict[str, Any] = {
            "aud": client_id,
            "iss": self._issuer(base),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": user.split("@", 1)[0].replace(".", " ").title(),
            "oid": oid,
            "preferred_username": user,
            "sub": b64url(hashlib.sha256(f"{oid}:{client_id}".encode()).digest()),
            "tid": self.tenant_id,
            "ver": "2.0",
        }
        if nonce:
            claims["nonce"] = nonce
        return self.signing.sign(claims)

    def _client_info(self, user: str) -> str:
        raw = json.dumps({"uid": self._user_id(user), "utid": self.tenant_id}, separators=(",", ":")).encode()
        return b64url(raw)

    def _delegated_answer(
        self,
        base: str,
        form: dict[str, str],
        client_id: str,
        user: str,
        scopes: tuple[str, ...],
        refresh: str | None,
        nonce: str | None,
        grant: Grant | None = None,
    ) -> dict[str, Any]:
        token = self.server.issue_access(client_id, user, scopes, grant, render=self._render_access(base))
        expires = self.server.expires_in(token)
        out: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(s for s in scopes if s != "offline_access"),
            "expires_in": expires,
            "ext_expires_in": expires,
            "access_token": token.value,
        }
        if refresh:
            out["refresh_token"] = refresh
        if "openid" in scopes:
            out["id_token"] = self._id_token(base, client_id, user, nonce)
        if form.get("client_info") == "1":
            out["client_info"] = self._client_info(user)
        return out

    def _fail(self, fail: OAuthFailure, client_id: str | None, tenant: str) -> AadError:
        status, error, code, message = _FAILURES.get(
            fail.kind, (400, "invalid_request", 9002313, "Invalid request. Request is malformed or invalid.")
        )
        now = self.server.now()
        issued = _stamp(float(fail.detail)) if fail.detail.replace(".", "").isdigit() else _stamp(now)
        lifetime = self.server.refresh_lifetime or 90 * 86400
        message = message.format(
            client=client_id, tenant=tenant, issued=issued, now=_stamp(now), lifetime=f"{int(lifetime)} seconds"
        )
        return AadError(status, error, code, message)

    # -- the authorization endpoint -------------------------------------------------------------

    def authorization_request(self, params: dict[str, str], tenant: str) -> dict[str, Any]:
        """A validated request; an AadError with ``status`` 0 is redirected to the client, others are
        shown as an error page (the client or its redirect URI is wrong)."""
        client_id = params.get("client_id", "")
        if not client_id:
            raise _missing("client_id")
        try:
            client = self.server.client(client_id)
        except OAuthFailure as fail:
            raise self._fail(fail, client_id, tenant) from None
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri_allowed(redirect_uri, client.redirect_uris if client else ()):
            raise AadError(
                400,
                "invalid_request",
                50011,
                f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
                f"configured for the application '{client_id}'.",
            )
        req: dict[str, Any] = {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": params.get("state"),
            "mode": params.get("response_mode") or "query",
        }
        if params.get("response_type") != "code":
            raise _Redirect(req, "unsupported_response_type", 700054, "response_type is not supported.")
        if not params.get("scope"):
            raise _Redirect(
                req, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'."
            )
        try:
            resource, oidc = split_scopes(params["scope"])
        except AadError as err:
            raise _Redirect(req, err.error, err.code, err.message) from None
        challenge = params.get("code_challenge") or None
        method = params.get("code_challenge_method") or "plain"
        if method not in ("S256", "plain"):
            raise _Redirect(req, "invalid_request", 50149, "Invalid Code_Challenge_method parameter.")
        if challenge is not None and not 43 <= len(challenge) <= 128:
            raise _Redirect(req, "invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
        return {
            **req,
            "scopes": resource + oidc,
            "login_hint": (params.get("login_hint") or "").lower() or None,
            "challenge": challenge,
            "method": method,
            "nonce": params.get("nonce") or None,
            "prompt": params.get("prompt", ""),
        }

    def allow(self, req: dict[str, Any], user: str) -> Response:
        code = self.server.issue_code(
            req["client_id"],
            req["redirect_uri"],
            user,
            req["scopes"],
            req["challenge"],
            req["method"],
            req["nonce"],
            "offline_access" in req["scopes"],
        )
        params = {"code": code}
        if req["state"] is not None:
            params["state"] = req["state"]
        params["session_state"] = str(uuid.uuid5(uuid.NAMESPACE_URL, "session:" + user))
        return redirect_back(req["redirect_uri"], params, req["mode"])

    # -- the token endpoint ---------------------------------------------------------------------

    def _client(
        self, request: Request, form: dict[str, str], tenant: str, secret_required: bool
    ) -> tuple[str, Client | None]:
        client_id, secret = client_credentials(request, form)
        try:
            client = self.server.authenticate(client_id, secret, secret_required)
        except OAuthFailure as fail:
            raise self._fail(fail, client_id, tenant) from None
        assert client_id is not None
        return client_id, client

    def redeem_code(self, request: Request, form: dict[str, str], tenant: str, base: str) -> tuple[str, str, dict]:
        client_id, _ = self._client(request, form, tenant, secret_required=False)
        if not form.get("code"):
            raise _missing("code")
        try:
            code = self.server.redeem_code(form["code"], client_id, form.get("redirect_uri"), form.get("code_verifier"))
        except OAuthFailure as fail:
            raise self._fail(fail, client_id, tenant) from None
        grant, refresh = (None, None)
        if code.refresh:
            grant, refresh = self.server.start_grant(client_id, code.user, code.scopes)
        body = self._delegated_answer(base, form, client_id, code.user, code.scopes, refresh, code.nonce, grant)
        return client_id, code.user, body

    def refresh(self, request: Request, form: dict[str, str], tenant: str, base: str) -> tuple[str, str, dict]:
        """A refresh always answers a new refresh token (rotation); the old one keeps working (2.3)."""
        client_id, _ = self._client(request, form, tenant, secret_required=False)
        if not form.get("refresh_token"):
            raise _missing("refresh_token")
        try:
            grant = self.server.use_refresh(form["refresh_token"], client_id)
        except OAuthFailure as fail:
            raise self._fail(fail, client_id, tenant) from None
        scopes = grant.scopes
        if form.get("scope"):
            resource, oidc = split_scopes(form["scope"])
            missing = [s for s in resource if s.lower() not in {g.lower() for g in grant.scopes}]
            if missing:
                raise AadError(
                    400,
                    "invalid_grant",
                    65001,
                    f"The user or administrator has not consented to use the application with ID '{client_id}'. "
                    "Send an interactive authorization request for this user and resource.",
                    suberror="consent_required",
                )
            scopes = tuple(resource or [s for s in grant.scopes if s not in _OIDC]) + tuple(
                s for s in grant.scopes if s in _OIDC and (s in oidc or s == "offline_access")
            )
        new_refresh = self.server.rotate(grant, form["refresh_token"])
        body = self._delegated_answer(base, form, client_id, grant.user, scopes, new_refresh, None, grant)
        return client_id, grant.user, body

    def client_credentials(
        self, request: Request, form: dict[str, str], tenant: str, base: str
    ) -> tuple[str, None, dict]:
        """App-only: tenant GUID or domain, secret required, ``{resource}/.default``; the token carries roles."""
        if tenant.lower() in _GENERIC_TENANTS:
            raise AadError(
                400,
                "invalid_request",
                9001023,
                "The grant type is not supported over the /common or /consumers endpoints. Please use the "
                "/organizations or tenant-specific endpoint.",
            )
        client_id, client = self._client(request, form, tenant, secret_required=True)
        scope = form.get("scope", "")
        if not scope:
            raise _missing("scope")
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise AadError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value "
                "with /.default suffixed to the resource identifier (application ID URI).",
            )
        roles = client.roles if client is not None else _DEFAULT_APP_ROLES
        token = self.server.issue_access(client_id, None, scopes, None, roles, render=self._render_access(base))
        expires = self.server.expires_in(token)
        body = {"token_type": "Bearer", "expires_in": expires, "ext_expires_in": expires, "access_token": token.value}
        return client_id, None, body

    async def token(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        base = str(request.base_url).rstrip("/")
        form = await read_form(request)
        grant_type = form.get("grant_type")
        client_id, user = form.get("client_id"), None
        handlers = {
            "authorization_code": self.redeem_code,
            "refresh_token": self.refresh,
            "client_credentials": self.client_credentials,
        }
        try:
            failure = self.server.take_failure()
            if failure is not None:
                status, error = failure
                raise AadError(
                    status,
                    error or "temporarily_unavailable",
                    90033,
                    "A transient error has occurred. Please try again.",
                )
            if not grant_type:
                raise _missing("grant_type")
            handler = handlers.get(grant_type)
            if handler is None:
                raise AadError(
                    400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant_type}'."
                )
            client_id, user, body = handler(request, form, tenant, base)
        except AadError as err:
            self.server.log(grant_type, client_id, user, err.status, err.error)
            return err.response()
        self.server.log(grant_type, client_id, user, 200, "ok")
        return JSONResponse(body, headers=_NO_CACHE)


class _Redirect(Exception):
    """An authorization error sent back to the (already validated) redirect URI."""

    def __init__(self, req: dict[str, Any], error: str, code: int, message: str) -> None:
        super().__init__(message)
        self.req, self.error, self.code, self.message = req, error, code, message

    def response(self) -> Response:
        params = {"error": self.error, "error_description": f"AADSTS{self.code}: {self.message}"}
        if self.req["state"] is not None:
            params["state"] = self.req["state"]
        return redirect_back(self.req["redirect_uri"], params, self.req["mode"])


def microsoft_routes(auth: MicrosoftAuth) -> list[Route]:
    """The identity platform's routes, to be served beside Graph (over https for MSAL)."""

    async def authorize(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        if request.method == "POST":
            form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
            req = auth.server.take_consent(form.get("request", ""))
            if req is None:
                return error_page(400, "Microsoft", "invalid_request", "This sign-in page has expired or was answered.")
            if form.get("decision") != "allow":
                return _Redirect(req, "access_denied", 65004, "User declined to consent to access the app.").response()
            user = req["login_hint"] or form.get("login_hint", "").strip().lower()
            if not user:
                return error_page(400, "Microsoft", "invalid_request", "No account was chosen.")
            return auth.allow(req, user)
        try:
            req = auth.authorization_request(dict(request.query_params), tenant)
        except _Redirect as redirect:
            return redirect.response()
        except AadError as err:
            return error_page(err.status, "Microsoft", err.error, f"AADSTS{err.code}: {err.message}")
        if req["prompt"] == "none":
            hint = req["login_hint"]
            if hint and auth.server.has_live_grant(req["client_id"], hint):
                return auth.allow(req, hint)
            return _Redirect(
                req, "interaction_required", 50058, "A silent sign-in request was sent but no user is signed in."
            ).response()
        ident = auth.server.remember_consent(req)
        action = f"/{tenant}/oauth2/v2.0/authorize"
        return consent_page(action, ident, "Microsoft", req["client_id"], req["login_hint"], req["scopes"])

    async def openid_configuration(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        base = str(request.base_url).rstrip("/")
        at = f"{base}/{tenant}"
        return JSONResponse(
            {
                "issuer": auth._issuer(base) if tenant.lower() not in _GENERIC_TENANTS else f"{base}/{{tenantid}}/v2.0",
                "authorization_endpoint": f"{at}/oauth2/v2.0/authorize",
                "token_endpoint": f"{at}/oauth2/v2.0/token",
                "jwks_uri": f"{at}/discovery/v2.0/keys",
                "end_session_endpoint": f"{at}/oauth2/v2.0/logout",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "response_types_supported": ["code"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "code_challenge_methods_supported": ["plain", "S256"],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
            }
        )

    async def keys(request: Request) -> Response:
        return JSONResponse(auth.signing.jwks())

    async def instance(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        host = request.url.netloc
        return JSONResponse(
            {
                "tenant_discovery_endpoint": f"{base}/common/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
            }
        )

    return [
        Route("/common/discovery/instance", instance, methods=["GET"]),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route("/{tenant}/discovery/v2.0/keys", keys, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/authorize", authorize, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/v2.0/token", auth.token, methods=["POST"]),
    ]


def microsoft_admin_routes(auth: MicrosoftAuth) -> list[Route]:
    """The shared ``/emulator/oauth/...`` switches; ``revoke`` here leaves issued access tokens valid, as Entra does."""
    return oauth_admin_routes(auth.server)
