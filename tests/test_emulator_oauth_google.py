"""Google's emulated authorization server, driven by the official client libraries over real HTTP
(google-auth, google-auth-oauthlib): consent, code + PKCE, refresh, revocation, service accounts with
domain-wide delegation, and the Calendar API in OAuth-required mode (reference 1.1-1.12)."""

# ruff: noqa: S105, S106 - the secrets here are the emulator's test values
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request as GoogleRequest
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from google_auth_oauthlib.flow import Flow

from calsync.emulators.google import GoogleEmulator, create_app
from calsync.emulators.server import RunningServer, serve_in_thread
from tests.oauth_helpers import answer_consent, consent_form, query_of

CAL = "https://www.googleapis.com/auth/calendar"
REDIRECT = "http://127.0.0.1:8765/"
ALICE = "alice@example.com"


@pytest.fixture(scope="module")
def oauth_server() -> Iterator[RunningServer]:
    server = serve_in_thread(create_app(GoogleEmulator(oauth=True)))
    yield server
    server.stop()


@pytest.fixture()
def base(oauth_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> str:
    httpx.post(f"{oauth_server.url}/emulator/reset").raise_for_status()
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the emulator is plain http on loopback
    return oauth_server.url


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def _auth_url(base: str, challenge: str, **extra: str) -> str:
    params = {
        "client_id": "cid.apps.googleusercontent.com",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": f"openid email {CAL}",
        "state": "xyz",
        "login_hint": ALICE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "access_type": "offline",
        **extra,
    }
    return str(httpx.URL(base + "/o/oauth2/v2/auth", params=params))


def _exchange(base: str, code: str, verifier: str | None, **extra: str) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": "cid.apps.googleusercontent.com",
        "client_secret": "s",
        "redirect_uri": REDIRECT,
        **extra,
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    return httpx.post(base + "/token", data=data)


def _tokens(base: str) -> dict[str, Any]:
    verifier, challenge = _pkce()
    code = query_of(answer_consent(_auth_url(base, challenge)))["code"]
    r = _exchange(base, code, verifier)
    assert r.status_code == 200, r.text
    return r.json()


def _calendars(base: str, token: str) -> httpx.Response:
    return httpx.get(base + "/calendar/v3/users/me/calendarList", headers={"Authorization": f"Bearer {token}"})


def _user_creds(base: str, refresh_token: str) -> user_credentials.Credentials:
    return user_credentials.Credentials(
        token=None,
        refresh_token=refresh_token,
        token_uri=base + "/token",
        client_id="cid.apps.googleusercontent.com",
        client_secret="s",
    )


def _jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# -- consent page ---------------------------------------------------------------------------------


def test_consent_page_shows_the_hinted_user_and_allow_redirects_with_code_state_and_scope(base: str) -> None:
    _, challenge = _pkce()
    _, _, html = consent_form(_auth_url(base, challenge))
    assert ALICE in html and ">Allow</button>" in html and ">Deny</button>" in html
    answer = query_of(answer_consent(_auth_url(base, challenge)))
    assert answer["state"] == "xyz" and answer["code"].startswith("4/0") and answer["scope"] == f"openid email {CAL}"


def test_deny_redirects_with_access_denied_and_the_state(base: str) -> None:
    _, challenge = _pkce()
    location = answer_consent(_auth_url(base, challenge), decision="deny")
    assert location.startswith(REDIRECT) and query_of(location) == {"error": "access_denied", "state": "xyz"}


def test_a_redirect_uri_that_is_not_loopback_or_registered_gets_an_error_page(base: str) -> None:
    _, challenge = _pkce()
    r = httpx.get(_auth_url(base, challenge, redirect_uri="http://evil.example/cb"))
    assert r.status_code == 400 and "redirect_uri_mismatch" in r.text and "location" not in r.headers


def test_registered_client_redirects_match_on_any_loopback_port_only(base: str) -> None:
    httpx.post(
        base + "/emulator/oauth/clients",
        json={
            "client_id": "cid.apps.googleusercontent.com",
            "client_secret": "s",
            "redirect_uris": ["http://127.0.0.1:1/"],
        },
    ).raise_for_status()
    _, challenge = _pkce()
    assert httpx.get(_auth_url(base, challenge)).status_code == 200
    assert httpx.get(_auth_url(base, challenge, redirect_uri="https://app.example/cb")).status_code == 400
    assert httpx.get(_auth_url(base, challenge, client_id="other")).status_code == 401


# -- code exchange ----------------------------------------------------------------------------------


def test_code_exchange_answers_tokens_and_an_id_token_naming_the_user(base: str) -> None:
    tokens = _tokens(base)
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] in (3598, 3599)
    assert tokens["refresh_token"].startswith("1//") and tokens["scope"] == f"openid email {CAL}"
    assert _jwt_claims(tokens["id_token"])["email"] == ALICE
    assert "refresh_token_expires_in" not in tokens
    info = httpx.get(base + "/oauth2/v3/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.json()["email"] == ALICE
    listing = _calendars(base, tokens["access_token"])
    assert listing.status_code == 200 and listing.json()["items"][0]["id"] == ALICE


def test_a_code_is_single_use_and_a_garbled_one_is_malformed(base: str) -> None:
    verifier, challenge = _pkce()
    code = query_of(answer_consent(_auth_url(base, challenge)))["code"]
    assert _exchange(base, code, verifier).status_code == 200
    replay = _exchange(base, code, verifier)
    assert (replay.status_code, replay.json()) == (400, {"error": "invalid_grant", "error_description": "Bad Request"})
    garbled = _exchange(base, code[:-3] + "xyz", verifier)
    assert garbled.json() == {"error": "invalid_grant", "error_description": "Malformed auth code."}


def test_pkce_verifier_missing_or_wrong_fails_with_googles_words(base: str) -> None:
    verifier, challenge = _pkce()
    code = query_of(answer_consent(_auth_url(base, challenge)))["code"]
    missing = _exchange(base, code, None)
    assert missing.json() == {"error": "invalid_grant", "error_description": "Missing code verifier."}
    wrong = _exchange(base, code, _pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert _exchange(base, code, verifier).status_code == 200  # the failed attempts did not spend it


def test_web_client_gets_a_refresh_token_on_first_consent_only_unless_prompt_consent(base: str) -> None:
    web = "https://app.example/cb"

    def exchange(**extra: str) -> dict[str, Any]:
        verifier, challenge = _pkce()
        code = query_of(answer_consent(_auth_url(base, challenge, redirect_uri=web, **extra)))["code"]
        return _exchange(base, code, verifier, redirect_uri=web).json()

    assert "refresh_token" in exchange()
    assert "refresh_token" not in exchange()
    assert "refresh_token" in exchange(prompt="consent")
    assert "refresh_token" not in exchange(access_type="online", prompt="consent")


def test_registered_client_secret_is_checked(base: str) -> None:
    httpx.post(
        base + "/emulator/oauth/clients", json={"client_id": "cid.apps.googleusercontent.com", "client_secret": "right"}
    ).raise_for_status()
    verifier, challenge = _pkce()
    code = query_of(answer_consent(_auth_url(base, challenge)))["code"]
    wrong = _exchange(base, code, verifier, client_secret="wrong")
    assert (wrong.status_code, wrong.json()) == (401, {"error": "invalid_client", "error_description": "Unauthorized"})
    assert _exchange(base, code, verifier, client_secret="right").status_code == 200


# -- google-auth-oauthlib: the installed-app flow end to end ---------------------------------------


def test_oauthlib_flow_builds_the_url_and_exchanges_the_code(base: str) -> None:
    config = {
        "installed": {
            "client_id": "desk.apps.googleusercontent.com",
            "client_secret": "d",
            "auth_uri": base + "/o/oauth2/v2/auth",
            "token_uri": base + "/token",
            "redirect_uris": ["http://localhost"],
        }
    }
    flow = Flow.from_client_config(config, scopes=[CAL], redirect_uri="http://localhost:9004/")
    url, state = flow.authorization_url(login_hint=ALICE, prompt="consent")
    assert query_of(url)["code_challenge_method"] == "S256" and query_of(url)["access_type"] == "offline"
    redirect = answer_consent(url)
    assert query_of(redirect)["state"] == state
    flow.fetch_token(authorization_response=redirect)
    creds = flow.credentials
    assert creds.refresh_token and creds.token_uri == base + "/token"
    assert _calendars(base, creds.token).status_code == 200
    old = creds.token
    creds.refresh(GoogleRequest())
    assert creds.token != old and _calendars(base, creds.token).status_code == 200


# -- refresh, revocation, expiry ---------------------------------------------------------------------


def test_google_auth_refreshes_and_keeps_its_refresh_token(base: str) -> None:
    tokens = _tokens(base)
    creds = _user_creds(base, tokens["refresh_token"])
    creds.refresh(GoogleRequest())
    assert creds.valid and creds.refresh_token == tokens["refresh_token"]
    assert _calendars(base, creds.token).status_code == 200
    log = httpx.get(base + "/emulator/oauth/requests").json()["requests"]
    assert [(e["grant_type"], e["user"], e["result"]) for e in log] == [
        ("authorization_code", ALICE, "ok"),
        ("refresh_token", ALICE, "ok"),
    ]


def test_admin_revoke_kills_the_users_grants_and_refresh_raises_invalid_grant(base: str) -> None:
    tokens = _tokens(base)
    r = httpx.post(base + "/emulator/oauth/revoke", json={"user": ALICE})
    assert r.json()["grants_revoked"] == 1
    with pytest.raises(RefreshError) as err:
        _user_creds(base, tokens["refresh_token"]).refresh(GoogleRequest())
    assert "invalid_grant" in str(err.value) and "Token has been expired or revoked." in str(err.value)
    assert err.value.retryable is False
    assert _calendars(base, tokens["access_token"]).status_code == 401


def test_revoke_endpoint_cascades_from_access_token_to_refresh_token(base: str) -> None:
    tokens = _tokens(base)
    assert httpx.post(base + "/revoke", params={"token": tokens["access_token"]}).status_code == 200
    again = httpx.post(base + "/revoke", data={"token": tokens["access_token"]})
    assert again.json() == {"error": "invalid_token", "error_description": "Token expired or revoked"}
    with pytest.raises(RefreshError, match="invalid_grant"):
        _user_creds(base, tokens["refresh_token"]).refresh(GoogleRequest())


def test_expired_access_tokens_get_the_calendar_401_and_a_refresh_fixes_it(base: str) -> None:
    tokens = _tokens(base)
    httpx.post(base + "/emulator/oauth/token-lifetime", json={"seconds": 30}).raise_for_status()
    httpx.post(base + "/emulator/oauth/expire-access-tokens").raise_for_status()
    r = _calendars(base, tokens["access_token"])
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    error = r.json()["error"]
    assert error["status"] == "UNAUTHENTICATED" and error["errors"] == [
        {
            "message": "Invalid Credentials",
            "domain": "global",
            "reason": "authError",
            "location": "Authorization",
            "locationType": "header",
        }
    ]
    creds = _user_creds(base, tokens["refresh_token"])
    creds.refresh(GoogleRequest())
    assert 0 < (creds.expiry - creds.expiry.now()).total_seconds() <= 30  # google-auth's naive UTC expiry is close
    assert _calendars(base, creds.token).status_code == 200


def test_unknown_tokens_are_refused_in_oauth_mode(base: str) -> None:
    assert _calendars(base, ALICE).status_code == 401
    assert httpx.get(base + "/calendar/v3/users/me/calendarList").status_code == 401


def test_testing_mode_refresh_tokens_expire(base: str) -> None:
    httpx.post(base + "/emulator/oauth/refresh-token-lifetime", json={"seconds": 1}).raise_for_status()
    tokens = _tokens(base)
    assert tokens["refresh_token_expires_in"] == 0
    time.sleep(1.05)
    with pytest.raises(RefreshError, match="Token has been expired or revoked"):
        _user_creds(base, tokens["refresh_token"]).refresh(GoogleRequest())


def test_token_endpoint_failures_are_retried_by_google_auth(base: str) -> None:
    tokens = _tokens(base)
    httpx.post(base + "/emulator/oauth/fail-token", json={"status": 503, "count": 1}).raise_for_status()
    creds = _user_creds(base, tokens["refresh_token"])
    creds.refresh(GoogleRequest())
    assert creds.valid
    log = httpx.get(base + "/emulator/oauth/requests").json()["requests"]
    assert [(e["grant_type"], e["status"]) for e in log][-2:] == [("refresh_token", 503), ("refresh_token", 200)]


# -- service accounts (domain-wide delegation) ---------------------------------------------------------


def _key(base: str, **body: Any) -> dict[str, Any]:
    r = httpx.post(base + "/emulator/oauth/service-accounts", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_service_account_with_subject_gets_a_token_the_calendar_api_accepts(base: str) -> None:
    key = _key(base, users=[ALICE])
    assert key["type"] == "service_account" and key["token_uri"] == base + "/token"
    assert key["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    creds = service_account.Credentials.from_service_account_info(key, subject=ALICE, scopes=[CAL])
    creds.refresh(GoogleRequest())
    listing = _calendars(base, creds.token)
    assert listing.status_code == 200 and listing.json()["items"][0]["id"] == ALICE


def test_service_account_refusals_use_googles_bodies(base: str) -> None:
    key = _key(base, users=[ALICE])
    with pytest.raises(RefreshError, match="unauthorized_client"):
        service_account.Credentials.from_service_account_info(key, subject="bob@example.com", scopes=[CAL]).refresh(
            GoogleRequest()
        )
    stranger = dict(key, private_key=_key(base)["private_key"])  # signed by another account's key
    with pytest.raises(RefreshError, match="Invalid JWT Signature"):
        service_account.Credentials.from_service_account_info(stranger, subject=ALICE, scopes=[CAL]).refresh(
            GoogleRequest()
        )
    unknown = dict(key, client_email="ghost@calsync-emulator.iam.gserviceaccount.com")
    with pytest.raises(RefreshError, match="account not found"):
        service_account.Credentials.from_service_account_info(unknown, subject=ALICE, scopes=[CAL]).refresh(
            GoogleRequest()
        )


def test_without_oauth_mode_a_bearer_token_is_still_the_user(google_url: str) -> None:
    r = httpx.get(google_url + "/calendar/v3/users/me/calendarList", headers={"Authorization": "Bearer alice"})
    assert r.status_code == 200 and r.json()["items"][0]["id"] == "alice@example.com"
