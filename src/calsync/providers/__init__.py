"""Calendar providers. Each module implements providers.base.Provider; the kinds calsync knows, with
their factories and credentials, are listed in providers.registry, and `provider_for` picks one."""

from __future__ import annotations

from typing import Any

from calsync.model import Account
from calsync.providers.base import Provider
from calsync.providers.registry import (
    KINDS,
    ProviderKind,
    UnknownProvider,
    provider_kind,
)

__all__ = ["KINDS", "SUPPORTED", "ProviderKind", "UnknownProvider", "provider_for", "provider_kind"]

SUPPORTED = tuple(KINDS)


def provider_for(account: Account, **options: Any) -> Provider:
    """A provider client for one stored account (UnknownProvider, a ValueError, for a kind not in KINDS)."""
    return provider_kind(account.provider).factory(account, **options)
