"""The emulated Microsoft identity platform v2.0 (served by the Graph emulator over TLS), driven by MSAL
over real HTTPS with the emulator's own CA: discovery, auth code + PKCE, refresh with rotation,
app-only client credentials, Entra's error bodies, and Graph in OAuth-required mode (reference 2.1-2.8)."""

# ruff: noqa: S105, S106, S107 - the secrets here are the emulator's test values
from __future__ import annotations

import base64
import functools
import json
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msal
import pytest
import requests

from calsync.emulators.graph import TENANT_ID, GraphEmulator, create_app
from calsync.emulators.oauth.tls import TlsFiles, ensure_tls_files
from calsync.emulators.server import RunningServer, serve_in_thread
from tests.oauth_helpers import answer_consent, consent_form, query_of

CAL = "https://graph.microsoft.com/Calendars.ReadWrite"
APP = "11111111-2222-3333-4444-555555555555"
ALICE = "alice@contoso.example"
REDIRECT = "http://localhost:53123/"
AADSTS = re.compile(r"^AADSTS\d+: .+\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: [0-9a-f-]{36}\r\nTimestamp: ")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return ensure_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def ms_server(tls: TlsFiles) -> Iterator[RunningServer]:
    server = serve_in_thread(create_app(GraphEmulator(oauth=True)), certfile=tls.cert, keyfile=tls.key)
    yield server
    for session in _SESSIONS:  # open keep-alive connections would hold the server's shutdown
        session.close()
    server.stop()


@pytest.fixture()
def base(ms_server: RunningServer, tls: TlsFiles) -> str:
    httpx.post(f"{ms_server.url}/emulator/reset", verify=_ctx(tls)).raise_for_status()
    return ms_server.url


_SESSIONS: list[requests.Session] = []


@functools.cache
def _ctx_for(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def _ctx(tls: TlsFiles) -> ssl.SSLContext:
    """Trust the emulator's CA (and only it): certificate checks stay on."""
    return _ctx_for(tls.ca_cert)


def _session(tls: TlsFiles) -> requests.Session:
    """MSAL's HTTP client trusting the emulator's CA. Not ``verify=``: requests lets REQUESTS_CA_BUNDLE
    (set on many machines) override a session's ``verify``, unless the session ignores the environment."""
    session = requests.Session()
    _SESSIONS.append(session)
    session.trust_env = False
    session.verify = tls.ca_cert
    return session


def _public(base: str, tls: TlsFiles, tenant: str = "organizations") -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        APP, authority=f"{base}/{tenant}", instance_discovery=False, http_client=_session(tls)
    )


def _confidential(base: str, tls: TlsFiles, secret: str = "s3cret") -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        APP,
        client_credential=secret,
        authority=f"{base}/{TENANT_ID}",
        instance_discovery=False,
        http_client=_session(tls),
    )


def _sign_in(app: msal.ClientApplication, tls: TlsFiles, user: str = ALICE) -> dict[str, Any]:
    flow = app.initiate_auth_code_flow([CAL], redirect_uri=REDIRECT, login_hint=user)
    assert query_of(flow["auth_uri"])["code_challenge_method"] == "S256"
    redirect = answer_consent(flow["auth_uri"], verify=_ctx(tls))
    return app.acquire_token_by_auth_code_flow(flow, query_of(redirect))


def _graph(base: str, tls: TlsFiles, token: str, path: str) -> httpx.Response:
    return httpx.get(f"{base}/v1.0{path}", headers={"Authorization": f"Bearer {token}"}, verify=_ctx(tls))


def _claims(jwt: str) -> dict[str, Any]:
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _token(base: str, tls: TlsFiles, tenant: str = TENANT_ID, **form: str) -> httpx.Response:
    return httpx.post(f"{base}/{tenant}/oauth2/v2.0/token", data=form, verify=_ctx(tls))


def _assert_aad(body: dict[str, Any], error: str, code: int) -> None:
    assert body["error"] == error and body["error_codes"] == [code], body
    assert AADSTS.match(body["error_description"]) and body["error_description"].startswith(f"AADSTS{code}:")
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= set(body)


def test_discovery_points_msal_at_this_host_and_tenant(base: str, tls: TlsFiles) -> None:
    doc = httpx.get(f"{base}/{TENANT_ID}/v2.0/.well-known/openid-configuration", verify=_ctx(tls)).json()
    assert doc["token_endpoint"] == f"{base}/{TENANT_ID}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"] == f"{base}/{TENANT_ID}/oauth2/v2.0/authorize"
    assert doc["issuer"] == f"{base}/{TENANT_ID}/v2.0"


def test_the_certificate_is_checked(base: str) -> None:
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/{TENANT_ID}/v2.0/.well-known/openid-configuration")  # the system store lacks our CA


def test_msal_auth_code_flow_with_pkce_signs_alice_in(base: str, tls: TlsFiles) -> None:
    app = _public(base, tls)
    _, _, html = consent_form(
        app.initiate_auth_code_flow([CAL], redirect_uri=REDIRECT, login_hint=ALICE)["auth_uri"], verify=_ctx(tls)
    )
    assert ALICE in html and ">Allow</button>" in html and ">Deny</button>" in html
    result = _sign_in(app, tls)
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == ALICE and result["refresh_token"]
    assert result["token_type"] == "Bearer" and 3500 <= result["expires_in"] <= 3599
    assert [a["username"] for a in app.get_accounts()] == [ALICE]
    me = _graph(base, tls, result["access_token"], "/me/calendars")
    assert me.status_code == 200 and me.json()["value"][0]["name"] == "Calendar"


def test_deny_redirects_with_access_denied(base: str, tls: TlsFiles) -> None:
    flow = _public(base, tls).initiate_auth_code_flow([CAL], redirect_uri=REDIRECT, login_hint=ALICE)
    answer = query_of(answer_consent(flow["auth_uri"], decision="deny", verify=_ctx(tls)))
    assert answer["error"] == "access_denied" and answer["state"] == flow["state"]
    assert answer["error_description"].startswith("AADSTS65004:")


def test_a_spent_code_and_a_wrong_verifier_get_entra_bodies(base: str, tls: TlsFiles) -> None:
    app = _public(base, tls)
    flow = app.initiate_auth_code_flow([CAL], redirect_uri=REDIRECT, login_hint=ALICE)
    code = query_of(answer_consent(flow["auth_uri"], verify=_ctx(tls)))["code"]
    form = {"client_id": APP, "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "scope": CAL}
    wrong = _token(base, tls, "organizations", **form, code_verifier="x" * 43)
    assert wrong.status_code == 400
    _assert_aad(wrong.json(), "invalid_grant", 501481)
    assert _token(base, tls, "organizations", **form, code_verifier=flow["code_verifier"]).status_code == 200
    replay = _token(base, tls, "organizations", **form, code_verifier=flow["code_verifier"])
    _assert_aad(replay.json(), "invalid_grant", 54005)


def test_refresh_rotates_and_the_previous_refresh_token_keeps_working(base: str, tls: TlsFiles) -> None:
    app = _public(base, tls)
    first = _sign_in(app, tls)["refresh_token"]
    second = app.acquire_token_by_refresh_token(first, [CAL])
    assert second.get("refresh_token") and second["refresh_token"] != first, second
    third = app.acquire_token_by_refresh_token(second["refresh_token"], [CAL])
    assert third["refresh_token"] not in (first, second["refresh_token"])
    assert "access_token" in app.acquire_token_by_refresh_token(first, [CAL])  # documented: not revoked
    assert _graph(base, tls, third["access_token"], "/me/events").status_code == 200
    log = httpx.get(f"{base}/emulator/oauth/requests", verify=_ctx(tls)).json()["requests"]
    assert [e["grant_type"] for e in log].count("refresh_token") == 3


def test_strict_rotation_retires_the_previous_refresh_token(base: str, tls: TlsFiles) -> None:
    httpx.post(f"{base}/emulator/oauth/rotation", json={"strict": True}, verify=_ctx(tls)).raise_for_status()
    app = _public(base, tls)
    first = _sign_in(app, tls)["refresh_token"]
    assert "access_token" in app.acquire_token_by_refresh_token(first, [CAL])
    again = app.acquire_token_by_refresh_token(first, [CAL])
    assert again["error"] == "invalid_grant" and again["error_codes"] == [50173]


def test_admin_revoke_kills_refresh_but_not_issued_access_tokens(base: str, tls: TlsFiles) -> None:
    app = _public(base, tls)
    result = _sign_in(app, tls)
    httpx.post(f"{base}/emulator/oauth/revoke", json={"user": ALICE}, verify=_ctx(tls)).raise_for_status()
    refused = app.acquire_token_by_refresh_token(result["refresh_token"], [CAL])
    assert refused["error"] == "invalid_grant" and refused["error_codes"] == [50173]
    assert refused["error_description"].startswith(
        "AADSTS50173: The provided grant has expired due to it being revoked"
    )
    assert _graph(base, tls, result["access_token"], "/me/calendars").status_code == 200


def test_expired_access_tokens_get_graphs_401(base: str, tls: TlsFiles) -> None:
    token = _sign_in(_public(base, tls), tls)["access_token"]
    httpx.post(f"{base}/emulator/oauth/expire-access-tokens", verify=_ctx(tls)).raise_for_status()
    r = _graph(base, tls, token, "/me/calendars")
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert r.json()["error"]["message"] == "Access token has expired or is not yet valid."
    assert _graph(base, tls, ALICE, "/me/calendars").status_code == 401  # a bare address is no token here


def test_token_lifetime_switch_shortens_new_tokens(base: str, tls: TlsFiles) -> None:
    httpx.post(f"{base}/emulator/oauth/token-lifetime", json={"seconds": 120}, verify=_ctx(tls)).raise_for_status()
    result = _sign_in(_public(base, tls), tls)
    assert 100 <= result["expires_in"] <= 120 and _claims(result["access_token"])["scp"] == "Calendars.ReadWrite"


def test_app_only_token_reads_any_mailbox_by_address_or_id_and_is_refused_on_me(base: str, tls: TlsFiles) -> None:
    bob = "bob@contoso.example"
    result = _confidential(base, tls).acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
    assert "access_token" in result and "refresh_token" not in result, result
    claims = _claims(result["access_token"])
    assert claims["idtyp"] == "app" and claims["roles"] == ["Calendars.ReadWrite"] and "upn" not in claims
    calendars = _graph(base, tls, result["access_token"], f"/users/{bob}/calendars")
    assert calendars.status_code == 200 and calendars.json()["value"][0]["owner"]["address"] == bob
    user_id = _graph(base, tls, result["access_token"], f"/users/{bob}/calendar").json()["id"]
    assert user_id
    me = _graph(base, tls, result["access_token"], "/me/calendars")
    assert me.status_code == 400
    assert me.json()["error"]["message"] == "/me request is only valid with delegated authentication flow."


def test_delegated_tokens_reach_only_their_own_mailbox(base: str, tls: TlsFiles) -> None:
    token = _sign_in(_public(base, tls), tls)["access_token"]
    assert _graph(base, tls, token, f"/users/{ALICE}/calendars").status_code == 200
    assert _graph(base, tls, token, "/users/bob@contoso.example/calendars").status_code == 403


def test_client_credentials_errors_are_entra_bodies(base: str, tls: TlsFiles) -> None:
    common = _token(
        base,
        tls,
        "common",
        client_id=APP,
        client_secret="x",
        grant_type="client_credentials",
        scope="https://graph.microsoft.com/.default",
    )
    _assert_aad(common.json(), "invalid_request", 9001023)
    scope = _token(base, tls, client_id=APP, client_secret="x", grant_type="client_credentials", scope=CAL)
    _assert_aad(scope.json(), "invalid_scope", 1002012)
    httpx.post(
        f"{base}/emulator/oauth/clients", json={"client_id": APP, "client_secret": "right"}, verify=_ctx(tls)
    ).raise_for_status()
    wrong = _confidential(base, tls, "wrong").acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert wrong["error"] == "invalid_client" and wrong["error_codes"] == [7000215]
    ok = _confidential(base, tls, "right").acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert "access_token" in ok
    # registered without roles (no admin consent to Calendars): the token works, Graph refuses it
    assert _graph(base, tls, ok["access_token"], f"/users/{ALICE}/calendars").status_code == 403


def test_token_endpoint_failures_and_the_log(base: str, tls: TlsFiles) -> None:
    httpx.post(
        f"{base}/emulator/oauth/fail-token", json={"status": 503, "count": 1}, verify=_ctx(tls)
    ).raise_for_status()
    app = _confidential(base, tls)
    with pytest.raises(msal.exceptions.MsalServiceError, match="503"):  # MSAL raises on a 5xx answer
        app.acquire_token_for_client(["https://graph.microsoft.com/.default"])
    # MSAL replays a 5xx for a few seconds from its own throttle cache; a fresh app asks again
    assert "access_token" in _confidential(base, tls).acquire_token_for_client(["https://graph.microsoft.com/.default"])
    log = httpx.get(f"{base}/emulator/oauth/requests", verify=_ctx(tls)).json()["requests"]
    assert [(e["grant_type"], e["status"]) for e in log] == [("client_credentials", 503), ("client_credentials", 200)]


def test_tls_files_are_reused(tls: TlsFiles) -> None:
    before = Path(tls.cert).read_bytes()
    assert ensure_tls_files(Path(tls.cert).parent) == tls and Path(tls.cert).read_bytes() == before
    assert Path(tls.key).stat().st_mode & 0o077 == 0
