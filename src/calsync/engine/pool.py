"""Provider clients shared by one pass of work: one per account, made on first use."""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from calsync.model import Account
from calsync.providers import provider_for
from calsync.providers.base import Provider
from calsync.store import repo


class ProviderPool:
    def __init__(self, engine: Engine, make: Callable[[Account], Provider] = provider_for) -> None:
        self.engine = engine
        self.make = make
        self._clients: dict[str, Provider] = {}

    def get(self, account_id: str) -> Provider:
        if account_id not in self._clients:
            with self.engine.begin() as conn:
                self._clients[account_id] = self.make(repo.get_account(conn, account_id))
        return self._clients[account_id]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
