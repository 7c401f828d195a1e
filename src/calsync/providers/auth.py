"""How a provider client authenticates its requests: a bearer token from a TokenSource, renewed once
when the service answers 401.

The providers never hold a refresh token or talk to a token endpoint: an account whose access token
expires (OAuth) hands its client a TokenSource that knows how to get a fresh one (calsync.credentials
keeps it in the store, one refresh at a time across workers); an account with a raw token gets a
StaticToken, which has nothing to renew. Either way the client's requests go through BearerAuth.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Protocol

import httpx


class TokenSource(Protocol):
    """Where a client's access token comes from.

    `token()` answers a token that is valid now (a source that can refresh does so shortly before
    expiry). `renew(rejected)` is called when the service answered 401 to `rejected`: it answers a
    token other than `rejected` when it can get one, or `rejected` itself when it cannot (the 401
    then stands). Both raise providers.base.AuthError when the grant is gone (re-authorisation is
    needed) and Unreachable / RateLimited when the token endpoint failed for now."""

    def token(self) -> str: ...

    def renew(self, rejected: str) -> str: ...


class StaticToken:
    """A bearer token managed elsewhere (`calsync account add ... --token`): nothing to renew."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def renew(self, rejected: str) -> str:
        return self._token


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer` from a TokenSource; a 401 is answered by one renewal and one resend."""

    def __init__(self, source: TokenSource) -> None:
        self.source = source

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.source.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        fresh = self.source.renew(token)
        if fresh != token:
            request.headers["Authorization"] = f"Bearer {fresh}"
            yield request
