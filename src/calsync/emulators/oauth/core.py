"""The authorization server's state, shared by the Google and Microsoft flavours: registered clients,
pending consents, authorization codes, grants with their refresh tokens, access tokens, revocation,
the test switches (lifetimes, forced expiry, token-endpoint failures) and a log of token requests.

Provider-neutral on purpose: a refusal is an :class:`OAuthFailure` naming *what* went wrong
(``code_used``, ``refresh_revoked`` ...), and each flavour answers it in its provider's own words
(Google's ``invalid_grant`` descriptions, Entra's ``AADSTSnnnnn`` bodies). Everything sits under
one lock: HTTP handler threads, admin calls and tests share it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from calsync.emulators.common import rfc3339_ms

__all__ = [
    "CODE_LIFETIME_S",
    "AccessToken",
    "AuthServer",
    "Client",
    "Code",
    "Grant",
    "OAuthFailure",
    "TokenStyle",
    "pkce_matches",
]

CODE_LIFETIME_S = 600  # both providers: codes live "about 10 minutes"
_MAX_PENDING = 1000  # consent pages shown but not answered; the oldest are forgotten


class OAuthFailure(Exception):
    """A refused request, by kind; the flavour renders it (status, error, description) its own way."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class TokenStyle:
    """How a provider's opaque strings look (clients store them; sizes and prefixes are familiar)."""

    code: str
    access: str
    refresh: str


@dataclass
class Client:
    """A registered OAuth client: its secret, its redirect URIs (empty: any loopback or https one) and,
    for app-only tokens, the application roles an admin consented to."""

    client_id: str
    secret: str | None
    redirect_uris: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()


@dataclass
class Grant:
    """One consent a user gave a client, the lineage of refresh tokens it produced."""

    id: str
    client_id: str
    user: str
    scopes: tuple[str, ...]
    issued_at: float
    refresh_expires_at: float | None
    last_used: float
    alive: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Code:
    """An authorization code: bound to client, redirect URI, PKCE challenge, scopes and user; single use."""

    value: str
    client_id: str
    redirect_uri: str
    user: str
    scopes: tuple[str, ...]
    challenge: str | None
    method: str
    nonce: str | None
    refresh: bool  # whether redeeming it starts a grant with a refresh token
    issued_at: float
    used: bool = False


@dataclass
class AccessToken:
    """An issued access token: who (None for app-only), what, until when, from which grant."""

    value: str
    client_id: str
    user: str | None
    scopes: tuple[str, ...]
    expires_at: float
    grant_id: str | None
    roles: tuple[str, ...] = ()
    revoked: bool = False


def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    """RFC 7636: ``S256`` is BASE64URL(SHA256(verifier)) without padding, ``plain`` the verifier itself."""
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        computed = base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")
    else:
        computed = verifier
    return hmac.compare_digest(computed, challenge)


class AuthServer:
    """All authorization-server state, in memory, under one lock."""

    def __init__(
        self,
        style: TokenStyle,
        access_lifetime: int = 3599,
        max_grants_per_client_user: int | None = None,
        revoke_user_kills_access: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._style = style
        self._default_lifetime = access_lifetime
        self._max_grants = max_grants_per_client_user
        self.revoke_user_kills_access = revoke_user_kills_access
        self._clock = clock
        self._lock = threading.RLock()
        self.reset()

    # -- lifecycle and switches ------------------------------------------------------------------

    def reset(self) -> None:
        """Forget clients, codes, grants, tokens, switches and the log."""
        with self._lock:
            self.clients: dict[str, Client] = {}
            self._pending: dict[str, dict[str, Any]] = {}
            self._codes: dict[str, Code] = {}
            self._grants: dict[str, Grant] = {}
            self._refresh: dict[str, str] = {}  # refresh token -> grant id
            self._retired: set[str] = set()  # rotated away under strict rotation
            self._access: dict[str, AccessToken] = {}
            self.access_lifetime = self._default_lifetime
            self.refresh_lifetime: float | None = None  # None: refresh tokens do not expire by age
            self.strict_rotation = False
            self._failures: deque[tuple[int, str | None]] = deque()
            self._log: deque[dict[str, Any]] = deque(maxlen=10_000)

    def now(self) -> float:
        return self._clock()

    def set_access_lifetime(self, seconds: int) -> None:
        """Access tokens issued from now on live ``seconds``."""
        with self._lock:
            self.access_lifetime = seconds

    def set_refresh_lifetime(self, seconds: float | None) -> None:
        """Refresh tokens of grants started from now on die ``seconds`` after their grant (Google's
        7-day "Testing" publishing status); None turns it off."""
        with self._lock:
            self.refresh_lifetime = seconds

    def expire_access_tokens(self) -> int:
        """Every access token issued so far is expired now; returns how many."""
        with self._lock:
            now = self.now()
            for token in self._access.values():
                token.expires_at = min(token.expires_at, now - 1)
            return len(self._access)

    def fail_token_requests(self, status: int, count: int, error: str | None = None) -> None:
        """The next ``count`` token-endpoint requests answer ``status`` (with ``error`` when given)."""
        with self._lock:
            self._failures.extend([(status, error)] * count)

    def take_failure(self) -> tuple[int, str | None] | None:
        """The failure the current token request must answer, if one is queued."""
        with self._lock:
            return self._failures.popleft() if self._failures else None

    # -- clients --------------------------------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        secret: str | None,
        redirect_uris: Iterable[str] = (),
        roles: Iterable[str] = (),
    ) -> Client:
        """From now on this client's secret is checked (and unknown client ids are refused)."""
        with self._lock:
            client = Client(client_id, secret, tuple(redirect_uris), tuple(roles))
            self.clients[client_id] = client
            return client

    def client(self, client_id: str) -> Client | None:
        """The registered client; None when it is unknown (any client is accepted while none is registered)."""
        with self._lock:
            client = self.clients.get(client_id)
            if client is None and self.clients:
                raise OAuthFailure("unknown_client", client_id)
            return client

    def authenticate(self, client_id: str | None, secret: str | None, secret_required: bool = False) -> Client | None:
        """Check a token request's client credentials; OAuthFailure ``unknown_client``, ``missing_secret``
        or ``bad_secret``."""
        if not client_id:
            raise OAuthFailure("missing_client")
        client = self.client(client_id)
        if client is None:
            if secret_required and not secret:
                raise OAuthFailure("missing_secret")
            return None
        if client.secret is not None:
            if not secret:
                raise OAuthFailure("missing_secret")
            if not hmac.compare_digest(client.secret.encode(), secret.encode()):
                raise OAuthFailure("bad_secret")
        elif secret_required:
            raise OAuthFailure("missing_secret")
        return client

    # -- consent pages ----------------------------------------------------------------------------

    def remember_consent(self, request: dict[str, Any]) -> str:
        """Keep a validated authorization request until its consent page is answered; returns its id."""
        with self._lock:
            ident = secrets.token_urlsafe(16)
            self._pending[ident] = request
            while len(self._pending) > _MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
            return ident

    def take_consent(self, ident: str) -> dict[str, Any] | None:
        """The authorization request a consent page answers (once)."""
        with self._lock:
            return self._pending.pop(ident, None)

    # -- codes ----------------------------------------------------------------------------------

    def issue_code(
        self,
        client_id: str,
        redirect_uri: str,
        user: str,
        scopes: Iterable[str],
        challenge: str | None,
        method: str,
        nonce: str | None,
        refresh: bool,
    ) -> str:
        """A fresh single-use code for what the user just allowed."""
        with self._lock:
            value = self._style.code + secrets.token_urlsafe(48)
            self._codes[value] = Code(
                value, client_id, redirect_uri, user, tuple(scopes), challenge, method, nonce, refresh, self.now()
            )
            return value

    def redeem_code(self, value: str | None, client_id: str, redirect_uri: str | None, verifier: str | None) -> Code:
        """Spend a code (once, by the client it was issued to, with the same redirect URI and the PKCE
        verifier of its challenge); OAuthFailure names what did not match."""
        with self._lock:
            code = self._codes.get(value or "")
            if code is None:
                raise OAuthFailure("code_unknown")
            if code.used:
                raise OAuthFailure("code_used")
            if self.now() - code.issued_at > CODE_LIFETIME_S:
                raise OAuthFailure("code_expired")
            if code.client_id != client_id:
                raise OAuthFailure("code_client")
            if (redirect_uri or "") != code.redirect_uri:
                raise OAuthFailure("redirect_mismatch")
            if code.challenge is not None:
                if not verifier:
                    raise OAuthFailure("verifier_missing")
                if not pkce_matches(verifier, code.challenge, code.method):
                    raise OAuthFailure("verifier_mismatch")
            code.used = True
            return code

    # -- grants and refresh tokens ----------------------------------------------------------------

    def has_live_grant(self, client_id: str, user: str) -> bool:
        with self._lock:
            return any(g.alive and g.client_id == client_id and g.user == user for g in self._grants.values())

    def start_grant(self, client_id: str, user: str, scopes: Iterable[str]) -> tuple[Grant, str]:
        """A new grant and its first refresh token; past the per-client-and-user cap the oldest dies silently."""
        with self._lock:
            now = self.now()
            expires = None if self.refresh_lifetime is None else now + self.refresh_lifetime
            grant = Grant(secrets.token_hex(12), client_id, user, tuple(scopes), now, expires, now)
            self._grants[grant.id] = grant
            if self._max_grants is not None:
                live = [g for g in self._grants.values() if g.alive and g.client_id == client_id and g.user == user]
                for old in live[: max(0, len(live) - self._max_grants)]:
                    old.alive = False
            return grant, self._new_refresh(grant)

    def _new_refresh(self, grant: Grant) -> str:
        value = self._style.refresh + secrets.token_urlsafe(64)
        self._refresh[value] = grant.id
        return value

    def use_refresh(self, value: str | None, client_id: str) -> Grant:
        """The live grant a refresh token belongs to; OAuthFailure ``refresh_unknown``, ``refresh_revoked``,
        ``refresh_expired`` or ``refresh_client``."""
        with self._lock:
            grant_id = self._refresh.get(value or "")
            grant = self._grants.get(grant_id or "")
            if grant is None:
                raise OAuthFailure("refresh_unknown")
            if grant.client_id != client_id:
                raise OAuthFailure("refresh_client")
            if not grant.alive or value in self._retired:
                raise OAuthFailure("refresh_revoked", str(grant.issued_at))
            if grant.refresh_expires_at is not None and self.now() >= grant.refresh_expires_at:
                raise OAuthFailure("refresh_expired", str(grant.issued_at))
            grant.last_used = self.now()
            return grant

    def rotate(self, grant: Grant, old: str) -> str:
        """A new refresh token of the same grant; the old one keeps working unless rotation is strict."""
        with self._lock:
            if self.strict_rotation:
                self._retired.add(old)
            return self._new_refresh(grant)

    def refresh_expires_in(self, grant: Grant) -> int | None:
        """Seconds the grant's refresh tokens have left (Google's ``refresh_token_expires_in``)."""
        if grant.refresh_expires_at is None:
            return None
        return max(0, int(grant.refresh_expires_at - self.now()) - 1)

    # -- access tokens --------------------------------------------------------------------------

    def issue_access(
        self,
        client_id: str,
        user: str | None,
        scopes: Iterable[str],
        grant: Grant | None = None,
        roles: Iterable[str] = (),
        render: Callable[[AccessToken], str] | None = None,
    ) -> AccessToken:
        """A new access token living ``access_lifetime`` seconds; ``render`` spells it (e.g. as a JWT)."""
        with self._lock:
            token = AccessToken(
                self._style.access + secrets.token_urlsafe(96),
                client_id,
                user,
                tuple(scopes),
                self.now() + self.access_lifetime,
                grant.id if grant else None,
                tuple(roles),
            )
            if render is not None:
                token.value = render(token)
            self._access[token.value] = token
            return token

    def expires_in(self, token: AccessToken) -> int:
        return max(0, round(token.expires_at - self.now()))

    def check_access(self, value: str) -> tuple[AccessToken | None, str]:
        """An access token and its state: ``valid``, ``expired``, ``revoked`` or ``unknown`` (token None)."""
        with self._lock:
            token = self._access.get(value)
            if token is None:
                return None, "unknown"
            if token.revoked:
                return token, "revoked"
            if self.now() >= token.expires_at:
                return token, "expired"
            return token, "valid"

    # -- revocation -----------------------------------------------------------------------------

    def _kill_grant(self, grant_id: str) -> None:
        grant = self._grants.get(grant_id)
        if grant is not None:
            grant.alive = False
        for token in self._access.values():
            if token.grant_id == grant_id:
                token.revoked = True

    def revoke_token(self, value: str) -> bool:
        """RFC 7009: a refresh token kills its grant, an access token itself and its grant; False when unknown."""
        with self._lock:
            grant_id = self._refresh.get(value)
            if grant_id is not None:
                self._kill_grant(grant_id)
                return True
            token = self._access.get(value)
            if token is None or token.revoked:
                return False
            token.revoked = True
            if token.grant_id is not None:
                self._kill_grant(token.grant_id)
            return True

    def revoke_user(self, user: str) -> int:
        """The user withdrew every consent (or an admin revoked their sessions): their grants die, and
        with them issued access tokens where the provider does so; returns how many grants died."""
        with self._lock:
            dead = [g for g in self._grants.values() if g.alive and g.user.lower() == user.lower()]
            for grant in dead:
                grant.alive = False
            if self.revoke_user_kills_access:
                for token in self._access.values():
                    if token.user is not None and token.user.lower() == user.lower():
                        token.revoked = True
            return len(dead)

    # -- the token-request log ------------------------------------------------------------------

    def log(self, grant_type: str | None, client_id: str | None, user: str | None, status: int, result: str) -> None:
        """Record one token-endpoint request: tests count refreshes and check outcomes."""
        now = self.now()
        entry = {
            "time": rfc3339_ms(now),
            "epoch": now,
            "grant_type": grant_type,
            "client_id": client_id,
            "user": user,
            "status": status,
            "result": result,
        }
        with self._lock:
            self._log.append(entry)

    def log_entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()
