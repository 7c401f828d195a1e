"""How calsync holds an account: OAuth grants (grants.py: token-endpoint exchanges), their tokens kept
and renewed in the store (tokens.py), and the connect flows that create them (connect.py).

`provider_maker(engine)` is what the engine, the service and the CLI use to get a provider client for
a stored account: OAuth accounts get a StoredTokens source, raw-token accounts their token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from calsync.credentials.tokens import StoredTokens, is_oauth
from calsync.model import Account
from calsync.providers import provider_for
from calsync.providers.base import Provider

MakeProvider = Callable[[Account], Provider]


def provider_maker(engine: Engine, **options: Any) -> MakeProvider:
    """A factory of provider clients for stored accounts, their tokens renewed through `engine`'s store."""

    def make(account: Account) -> Provider:
        if is_oauth(account.credentials):
            return provider_for(account, tokens=StoredTokens(engine, account), **options)
        return provider_for(account, **options)

    return make
