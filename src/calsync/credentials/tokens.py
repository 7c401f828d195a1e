"""An OAuth account's access tokens, kept in the store and renewed in one place for every provider.

StoredTokens is the TokenSource (providers/auth.py) a provider client gets for an OAuth account:
- the access token is reused until shortly before it expires (REFRESH_AHEAD), then refreshed;
- a 401 renews it once (a token the provider expired or revoked early);
- one refresh at a time per account, across threads and processes (store/token_leases.py); a
  worker that finds the lease held waits for the holder's token instead of asking again;
- the answer is stored before it is used, rotated refresh token and access token in one statement;
  a stored token newer than the one a worker started from is never overwritten;
- `invalid_grant` and kin mark the account `reauth-required` (ReauthRequired): its bindings stop
  calling the provider until the user connects it again; a refused client marks it `auth-failed`;
  a token endpoint that is down raises Unreachable, retried later, the account untouched.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from calsync.credentials import grants
from calsync.model import Account
from calsync.providers.base import AuthError, ReauthRequired, Unreachable
from calsync.store import accounts as account_store
from calsync.store import token_leases

REFRESH_AHEAD = 300.0  # seconds before expiry a token is refreshed (msal: 5 min; google-auth: 3 min 45 s)
LEASE_SECONDS = 60.0  # a refresh that takes longer than this (its own timeouts are shorter) is given up
WAIT_FOR_HOLDER = 45.0  # how long a worker waits for another's refresh before giving up for now

Refresher = Callable[[Mapping[str, Any]], grants.Issued]


def is_oauth(credentials: Mapping[str, Any]) -> bool:
    """Credentials that renew themselves (a `grant`), as opposed to a raw `token` managed elsewhere."""
    return bool(credentials.get("grant"))


class StoredTokens:
    """The TokenSource of one stored OAuth account (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        account: Account,
        *,
        refresher: Refresher = grants.refresh,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.account_id = account.id
        self._credentials = dict(account.credentials)
        self._refresher = refresher
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()  # one refresh at a time within this process, before the store's lease
        self.refreshes = 0  # token-endpoint calls this source made (tests and sync summaries count them)

    def token(self) -> str:
        with self._lock:
            current = self._credentials.get("access_token")
            if current and self._fresh(self._credentials):
                return str(current)
            return self._refresh(stale=current)

    def renew(self, rejected: str) -> str:
        with self._lock:
            return self._refresh(stale=rejected)

    def _fresh(self, credentials: Mapping[str, Any]) -> bool:
        """Good for a while yet: until REFRESH_AHEAD before expiry, or half its life for a short-lived one
        (an emulator's few seconds), so a token is not refreshed for every request."""
        expires_at = float(credentials.get("expires_at") or 0)
        issued_at = float(credentials.get("issued_at") or expires_at - 2 * REFRESH_AHEAD)
        return expires_at - min(REFRESH_AHEAD, (expires_at - issued_at) / 2) > self._clock()

    def _refresh(self, stale: str | None) -> str:
        """A token other than `stale`: another worker's if it refreshed meanwhile, else our own."""
        owner = uuid.uuid4().hex
        deadline = self._clock() + WAIT_FOR_HOLDER
        while True:
            with self.engine.begin() as conn:
                account = account_store.get_account(conn, self.account_id)
                stored = account.credentials
                if account.state != "ok":
                    raise _stopped(account)
                if stored.get("access_token") and stored["access_token"] != stale and self._fresh(stored):
                    self._credentials = dict(stored)  # another worker refreshed it
                    return str(stored["access_token"])
                now = datetime.fromtimestamp(self._clock(), UTC)
                leased = token_leases.take(conn, self.account_id, owner, now, LEASE_SECONDS)
            if leased:
                return self._ask(stored, owner)
            if self._clock() >= deadline:
                raise Unreachable(f"account {self.account_id}: another worker's token refresh did not finish")
            self._sleep(0.2)

    def _ask(self, stored: Mapping[str, Any], owner: str) -> str:
        """Holding the lease: ask the token endpoint, keep its answer, let go of the lease."""
        try:
            self.refreshes += 1
            issued = self._refresher(stored)
        except grants.GrantGone as exc:
            self._stop("reauth-required", exc.reason, owner)
            raise ReauthRequired(f"the grant is gone: {exc.reason}", status=401, reason="invalid_grant") from None
        except grants.GrantRefused as exc:
            self._stop("auth-failed", exc.reason, owner)
            raise AuthError(f"the token endpoint refused calsync's client: {exc.reason}", status=401) from None
        except grants.TokenEndpointDown as exc:
            with self.engine.begin() as conn:
                token_leases.release(conn, self.account_id, owner)
            raise Unreachable(f"token endpoint: {exc.reason}") from None
        except BaseException:
            with self.engine.begin() as conn:
                token_leases.release(conn, self.account_id, owner)
            raise
        fresh = {
            **stored,
            "access_token": issued.access_token,
            "expires_at": issued.expires_at,
            "issued_at": self._clock(),
        }
        if issued.refresh_token:
            fresh["refresh_token"] = issued.refresh_token  # rotated: the newest is the one to keep
        with self.engine.begin() as conn:
            # stored only while the lease is ours: had it run out, another worker may have stored a newer
            # answer, which ours must not overwrite (ours is still a valid token for this client to use)
            if token_leases.held_by(conn, self.account_id, owner):
                account_store.update_credentials(conn, self.account_id, fresh)
                token_leases.release(conn, self.account_id, owner)
        self._credentials = fresh
        return issued.access_token

    def _stop(self, state: Any, reason: str, owner: str) -> None:
        with self.engine.begin() as conn:
            account_store.set_account_state(conn, self.account_id, state, reason)
            token_leases.release(conn, self.account_id, owner)


def _stopped(account: Account) -> AuthError:
    if account.state == "reauth-required":
        return ReauthRequired(f"the account must be connected again: {account.last_error}", status=401)
    return AuthError(f"the account's credentials were rejected: {account.last_error}", status=401)
