"""Calendar providers. Each module implements providers.base.Provider; `provider_for` picks one."""
from __future__ import annotations

from typing import Any

from calsync.model import Account
from calsync.providers.base import Provider

SUPPORTED = ("google", "caldav", "graph")


def provider_for(account: Account, **options: Any) -> Provider:
    """A provider client for one stored account."""
    if account.provider == "google":
        from calsync.providers.google import GoogleProvider

        return GoogleProvider.from_account(account, **options)
    if account.provider == "caldav":
        from calsync.providers.caldav import CalDAVProvider

        return CalDAVProvider.from_account(account, **options)
    if account.provider == "graph":
        from calsync.providers.graph import GraphProvider

        return GraphProvider.from_account(account, **options)
    raise ValueError(f"unsupported provider {account.provider!r} (supported: {', '.join(SUPPORTED)})")
