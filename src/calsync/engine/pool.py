"""Provider clients shared by one pass of work: one per account, made on first use; and the warm
clients a long-running service keeps between passes."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping

from sqlalchemy import Engine

from calsync.credentials import provider_maker
from calsync.model import Account
from calsync.providers.base import Provider
from calsync.store import accounts as account_store


class ProviderPool:
    """`make` gives a client for an account (by default credentials.provider_maker: OAuth accounts
    renew their tokens through the store); `release` takes it back when the pass ends (by default it
    is closed)."""

    def __init__(
        self,
        engine: Engine,
        make: Callable[[Account], Provider] | None = None,
        release: Callable[[Provider], None] | None = None,
        accounts: Mapping[str, Account] | None = None,
    ) -> None:
        self.engine = engine
        self.make = make or provider_maker(engine)
        self.release = release
        self._clients: dict[str, Provider] = {}
        # accounts already read for this pass (a worker's claim reads its bindings' accounts at once)
        self._accounts: dict[str, Account] = dict(accounts or {})

    def prime(self, accounts: Mapping[str, Account]) -> None:
        """Accounts read already (with a claim), so a client made for one of them needs no read."""
        self._accounts.update((k, v) for k, v in accounts.items() if k not in self._clients)

    def get(self, account_id: str) -> Provider:
        if account_id not in self._clients:
            account = self._accounts.pop(account_id, None)
            if account is None:
                with self.engine.begin() as conn:
                    account = account_store.get_account(conn, account_id)
            self._clients[account_id] = self.make(account)
        return self._clients[account_id]

    def close(self) -> None:
        for client in self._clients.values():
            if self.release is not None:
                self.release(client)
            else:
                client.close()
        self._clients.clear()


_RENEWED = frozenset({"access_token", "expires_at", "issued_at", "refresh_token"})


class WarmProviders:
    """Clients kept open between the syncs of a running service, so a sync reuses the connections
    (and TLS sessions) the previous one opened instead of paying a new handshake each time.

    A client is lent to one pass at a time (its request counts and any state stay that pass's own);
    a pass that finds none idle gets a new one. A client is kept for the account's provider, address
    and credentials as they were when it was made: re-adding the account with a new password gets a
    new client, and the old one is closed when it comes back."""

    def __init__(self, make: Callable[[Account], Provider], keep: int = 2, max_idle: int | None = None) -> None:
        self._make = make
        self._keep = keep
        self._max_idle = max_idle  # idle clients kept in all (the least recently given back go first)
        self._lock = threading.Lock()
        self._idle: dict[str, list[Provider]] = {}
        self._order: OrderedDict[int, str] = OrderedDict()  # id(idle client) -> its key, oldest first
        self._lent: dict[int, tuple[str, str]] = {}  # id(client) -> (account id, key it was made for)
        self._current: dict[str, str] = {}  # account id -> key of its latest settings
        self._closed = False

    @staticmethod
    def _key(account: Account) -> str:
        # the tokens an OAuth account renews by itself are not settings: its client renews them in place
        lasting = {k: v for k, v in account.credentials.items() if k not in _RENEWED}
        settings = json.dumps([account.id, account.provider, account.base_url, lasting], sort_keys=True, default=str)
        return hashlib.sha256(settings.encode()).hexdigest()

    def borrow(self, account: Account) -> Provider:
        key = self._key(account)
        with self._lock:
            previous = self._current.get(account.id)
            stale = self._idle.pop(previous, []) if previous is not None and previous != key else []
            self._current[account.id] = key
            idle = self._idle.get(key)
            client = idle.pop() if idle else None
            if client is not None:
                self._order.pop(id(client), None)
            for old in stale:
                self._order.pop(id(old), None)
        for old in stale:  # made with settings the account no longer has
            old.close()
        if client is None:
            client = self._make(account)
        with self._lock:
            self._lent[id(client)] = (account.id, key)
        return client

    def give_back(self, client: Provider) -> None:
        with self._lock:
            account_id, key = self._lent.pop(id(client), ("", ""))
            idle = self._idle.setdefault(key, [])
            keep = not self._closed and self._current.get(account_id) == key and len(idle) < self._keep
            evicted: list[Provider] = []
            if keep:
                idle.append(client)
                self._order[id(client)] = key
                while self._max_idle is not None and len(self._order) > self._max_idle:
                    oldest, oldest_key = self._order.popitem(last=False)
                    clients = self._idle.get(oldest_key, [])
                    for n, c in enumerate(clients):
                        if id(c) == oldest:
                            evicted.append(clients.pop(n))
                            break
        if not keep:
            client.close()
        for old in evicted:
            old.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
            self._order.clear()
        for client in clients:
            client.close()
