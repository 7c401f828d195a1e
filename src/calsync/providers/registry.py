"""Every calendar provider kind calsync syncs, in one table: its client factory, a label for people, and
the credentials an account of that kind takes. Adding a kind means adding a row here (and its module);
`provider_for` and `calsync account add` read the table rather than branching per kind.

Factories import their provider module only when called, so reading the table does not import
every provider's dependencies."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from calsync.model import Account

if TYPE_CHECKING:
    from calsync.providers.base import Provider

Factory = Callable[..., "Provider"]


class UnknownProvider(ValueError):
    """An account's or a person's provider kind is none of those in KINDS."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown provider {name!r}; supported: {', '.join(KINDS)}")
        self.name = name


@dataclass(frozen=True)
class Credential:
    """One item of an account's credentials: `key` in Account.credentials, given as the `--<key>` flag.

    A secret is prompted for (hidden) on a terminal when the flag is not given, and its `envvar`
    is named when it cannot be; any other credential must be given as a flag."""

    key: str
    description: str
    secret: bool = False
    envvar: str | None = None
    prompt: str | None = None
    may_be_empty: bool = True


@dataclass(frozen=True)
class ProviderKind:
    """How to make a client for an account of one kind, and what such an account needs."""

    name: str
    label: str
    factory: Factory
    credentials: tuple[Credential, ...]
    needs_url: bool = False
    """True when base_url is the account's server (CalDAV), not an optional API root (an emulator's)."""
    default_name: Callable[[str | None, Mapping[str, Any]], str | None] | None = None
    """The account's name when none is given: (base_url, credentials) -> name."""

    def describe(self) -> str:
        """What an account of this kind takes, for people: "the server URL, a user name and a password"."""
        items = (["the server URL"] if self.needs_url else []) + [c.description for c in self.credentials]
        return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _google(account: Account, **options: Any) -> Provider:
    from calsync.providers.google import GoogleProvider

    return GoogleProvider.from_account(account, **options)


def _caldav(account: Account, **options: Any) -> Provider:
    from calsync.providers.caldav import CalDAVProvider

    return CalDAVProvider.from_account(account, **options)


def _graph(account: Account, **options: Any) -> Provider:
    from calsync.providers.graph import GraphProvider

    return GraphProvider.from_account(account, **options)


def _user_at_host(base_url: str | None, credentials: Mapping[str, Any]) -> str | None:
    """A CalDAV account is recognised by who logs in where."""
    import httpx

    return f"{credentials['username']}@{httpx.URL(base_url or '').host}"


TOKEN = Credential("token", "a bearer token", secret=True, envvar="CALSYNC_TOKEN", prompt="Token", may_be_empty=False)

KINDS: dict[str, ProviderKind] = {
    kind.name: kind
    for kind in (
        ProviderKind("google", "Google Calendar", _google, (TOKEN,)),
        ProviderKind(
            "caldav",
            "CalDAV",
            _caldav,
            (
                Credential("username", "a user name"),
                Credential("password", "a password", secret=True, envvar="CALSYNC_CALDAV_PASSWORD", prompt="Password"),
            ),
            needs_url=True,
            default_name=_user_at_host,
        ),
        ProviderKind("graph", "Microsoft Graph (Outlook)", _graph, (TOKEN,)),
    )
}


def provider_kind(name: str) -> ProviderKind:
    """The kind called `name`; UnknownProvider (listing the supported ones) for any other."""
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownProvider(name) from None
