"""Setting up what calsync syncs: accounts, local calendars, and the bindings between them.

The CLI, the demo and library users write these through here, not through the store, so every one of
them checks its input the same way and a binding added to a calendar that already holds events gets
them queued (otherwise they would reach the new side only when each one changes). Nothing here calls
a provider: whether an account answers, or has the remote calendar named, is asked by the caller,
which holds the client (and decides how long to wait for it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from calsync.engine.outbound import queue_calendar_in
from calsync.model import Account, RemoteCalendar
from calsync.providers.registry import UnknownProvider, provider_kind
from calsync.statuses import CONFLICT_POLICIES, DIRECTIONS, ConflictPolicy, Direction
from calsync.store import accounts as account_store
from calsync.store import scheduling, users
from calsync.store.common import NotFound


class SetupError(ValueError):
    """Bad input to a set-up call. The message is fit to show a person as it is; a missing account or
    local calendar is store.common.NotFound instead, as everywhere else."""


@dataclass(frozen=True)
class NewCalendar:
    """A local calendar to make with its first binding, in the binding's transaction, so a refused
    binding leaves no empty calendar behind."""

    name: str
    time_zone: str | None = None
    color: str | None = None


@dataclass(frozen=True)
class Bound:
    """What bind_calendar made: the local calendar (new or given), the binding, and how many of the
    calendar's events it queued for the binding."""

    calendar_id: str
    binding_id: str
    queued: int


def add_account(
    engine: Engine,
    provider: str,
    name: str,
    base_url: str | None,
    credentials: Mapping[str, Any],
    *,
    owner: str | None = None,
) -> str:
    """Store an account of a known provider kind with the credentials that kind takes, for the user
    `owner` (None: the default owner, store/users.default_owner); returns its id.

    Checked against providers.registry (not per kind here), so an account stored is one a provider
    client can be made for: a kind that does not exist, a missing server URL or credential, a blank
    token or an unknown credential key (a typo) is refused rather than failing at the first sync."""
    try:
        kind = provider_kind(provider)
    except UnknownProvider as exc:
        raise SetupError(str(exc)) from exc
    if not name.strip():
        raise SetupError("an account needs a name")
    if kind.needs_url and not base_url:
        raise SetupError(f"{kind.label} needs a server URL")
    taken = {credential.key for credential in kind.credentials}
    unknown = sorted(set(credentials) - taken)
    if unknown:
        raise SetupError(f"{kind.label} takes no credential {unknown[0]!r} (it takes {', '.join(sorted(taken))})")
    for credential in kind.credentials:
        value = credentials.get(credential.key)
        if value is None:
            raise SetupError(f"{kind.label} needs {credential.description} ({credential.key!r})")
        if not isinstance(value, str):
            raise SetupError(f"the {credential.key} must be a string")
        if not credential.may_be_empty and not value.strip():
            raise SetupError(f"the {credential.key} must not be empty")
    with engine.begin() as conn:
        return account_store.create_account(conn, provider, name, base_url, dict(credentials), _owner(conn, owner))


OAUTH_GRANTS = {  # grant -> the provider kind its tokens are for
    "google-user": "google",
    "google-service-account": "google",
    "microsoft-user": "graph",
    "microsoft-app": "graph",
}


@dataclass(frozen=True)
class Connected:
    """What connect_account did: the account, and whether it was one already stored (a reconnect)."""

    account_id: str
    reconnected: bool


def connect_account(
    engine: Engine,
    provider: str,
    name: str,
    base_url: str | None,
    credentials: Mapping[str, Any],
    *,
    owner: str | None = None,
) -> Connected:
    """Store an account whose credentials renew themselves (an OAuth grant, calsync.credentials), for
    the user `owner` (None: the default owner).

    The same person of the same provider (and server) connected again by the same owner is the same
    account (another calsync user connecting that person gets an account of their own): its
    credentials are replaced and it is back to `ok`, its bindings and their sync tokens untouched,
    so sync resumes where it stopped (no full resync) and they are due at once."""
    grant = credentials.get("grant")
    if OAUTH_GRANTS.get(str(grant)) != provider:
        raise SetupError(f"credentials of grant {grant!r} are not for {provider!r}")
    if not name.strip():
        raise SetupError("an account needs a name")
    user = _who(credentials)
    with engine.begin() as conn:
        owner = _owner(conn, owner)
        for row in account_store.list_accounts(conn, owner):
            if row["provider"] != provider or row["base_url"] != base_url or not user:
                continue
            stored = account_store.get_account(conn, row["id"]).credentials
            if (
                stored.get("grant") == grant
                and (stored.get("user") or stored.get("subject") or stored.get("mailbox")) == user
            ):
                account_store.update_credentials(conn, row["id"], dict(credentials))
                account_store.set_account_state(conn, row["id"], "ok", None)
                for binding in account_store.list_bindings(conn, row["id"]):
                    scheduling.mark_dirty(conn, binding["id"], debounce=0)
                return Connected(row["id"], True)
        return Connected(account_store.create_account(conn, provider, name, base_url, dict(credentials), owner), False)


def _who(credentials: Mapping[str, Any]) -> Any:
    """The person an OAuth account acts for: the consenting user, the impersonated one, or the mailbox."""
    return credentials.get("user") or credentials.get("subject") or credentials.get("mailbox")


def add_calendar(
    engine: Engine,
    name: str,
    time_zone: str | None = None,
    color: str | None = None,
    *,
    owner: str | None = None,
) -> str:
    """Make a local calendar of `owner` (None: the default owner) with no binding yet; returns its id.
    For a calendar that several bindings share from the start (a mirror): bind_calendar(...,
    NewCalendar(...)) makes one with its first binding."""
    _check_calendar_name(name)
    with engine.begin() as conn:
        return account_store.create_calendar(conn, name, time_zone, color, _owner(conn, owner))


def check_binding(
    engine: Engine,
    account_id: str,
    remote_calendar_id: str,
    calendar_id: str | None = None,
    *,
    owner: str | None = None,
) -> Account:
    """The refusals bind_calendar would make, without writing; returns the account.

    For a caller that asks the provider about the remote calendar before binding it: it can refuse at
    once, without a request, what would be refused anyway. bind_calendar checks again in its transaction."""
    with engine.begin() as conn:
        return _check_binding(conn, account_id, remote_calendar_id, calendar_id, owner)[0]


def bind_calendar(
    engine: Engine,
    account_id: str,
    remote_calendar_id: str,
    calendar: str | NewCalendar,
    *,
    direction: Direction = "two-way",
    conflict_policy: ConflictPolicy = "merge",
    owner: str | None = None,
) -> Bound:
    """Bind one remote calendar of an account to a local calendar: an existing one (its id) or a new one.

    The account and the local calendar belong to one user (a new calendar: the account's); with
    `owner`, it must be theirs (SetupError otherwise), so no binding carries one user's events into
    another's calendar.

    A binding that pushes, added to a calendar that already holds events (mirroring), gets them all
    queued (engine/outbound.queue_calendar_in: series before their exceptions); its first sync adopts the
    copies calsync made there earlier, so nothing is duplicated; the queueing commits with the binding.

    SetupError for a direction or policy calsync does not know, a blank name, or a remote calendar
    the account has bound already (also when another writer binds it at the same moment); NotFound
    for an account or local calendar that does not exist."""
    if direction not in DIRECTIONS:  # (callers mypy does not check may pass anything)
        raise SetupError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    if conflict_policy not in CONFLICT_POLICIES:
        raise SetupError(f"conflict policy must be one of {', '.join(CONFLICT_POLICIES)}, not {conflict_policy!r}")
    if isinstance(calendar, NewCalendar):
        _check_calendar_name(calendar.name)
    existing = calendar if isinstance(calendar, str) else None
    try:
        with engine.begin() as conn:
            _account, account_owner = _check_binding(conn, account_id, remote_calendar_id, existing, owner)
            if isinstance(calendar, NewCalendar):
                calendar_id = account_store.create_calendar(
                    conn, calendar.name, calendar.time_zone, calendar.color, account_owner
                )
            else:
                calendar_id = calendar
            binding_id = account_store.create_binding(
                conn, calendar_id, account_id, remote_calendar_id, direction, conflict_policy
            )
            queued = queue_calendar_in(conn, binding_id) if existing else 0
    except IntegrityError:
        # another writer bound the same remote calendar between our check and our insert (the unique
        # constraint on account and remote calendar caught it): the same refusal as the check's
        with engine.begin() as conn:
            if account_store.find_binding(conn, account_id, remote_calendar_id) is None:
                raise
        raise SetupError(_already_bound(remote_calendar_id)) from None
    return Bound(calendar_id, binding_id, queued)


@dataclass(frozen=True)
class BoundMany:
    """What bind_calendars made: one Bound per remote calendar bound (in the order given), and the
    remote calendars it left as they were because the account has them bound already."""

    bound: list[tuple[str, Bound]]  # (remote calendar id, what was made for it)
    already_bound: list[str]


def bind_calendars(
    engine: Engine,
    account_id: str,
    calendars: Sequence[RemoteCalendar],
    *,
    direction: Direction = "two-way",
    conflict_policy: ConflictPolicy = "ask",
    owner: str | None = None,
    skip_bound: bool = False,
) -> BoundMany:
    """Bind many remote calendars of one account at once, each to a new local calendar named after it
    (its name, else its id; its time zone and colour), with one direction and policy, in one
    transaction: all of them or none. For an organisation's thousands of calendars (`calsync
    calendar bind ACCOUNT --all`, `POST /api/v1/accounts/{id}/bindings`).

    The caller lists the account's calendars (nothing here calls a provider). A remote calendar the
    account has bound already is refused (SetupError, nothing written), or with `skip_bound` left
    out and named in `already_bound` (so `--all` can be run again to bind what is new). The same
    refusals as bind_calendar otherwise; a remote id given twice is bound once."""
    if direction not in DIRECTIONS:
        raise SetupError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    if conflict_policy not in CONFLICT_POLICIES:
        raise SetupError(f"conflict policy must be one of {', '.join(CONFLICT_POLICIES)}, not {conflict_policy!r}")
    unique = list({c.remote_id: c for c in calendars}.values())
    try:
        with engine.begin() as conn:
            account_store.get_account(conn, account_id)  # NotFound first, as bind_calendar reports it
            account_owner = users.account_owner(conn, account_id) or ""
            if owner is not None and account_owner != _owner(conn, owner):
                raise SetupError(f"account {account_id} belongs to another user")
            taken = account_store.bound_remote_ids(conn, account_id)
            already = [c.remote_id for c in unique if c.remote_id in taken]
            if already and not skip_bound:
                raise SetupError(_already_bound(already[0]))
            made: list[tuple[str, Bound]] = []
            for info in unique:
                if info.remote_id in taken:
                    continue
                name = info.name if info.name.strip() else info.remote_id
                calendar_id = account_store.create_calendar(conn, name, info.time_zone, info.color, account_owner)
                binding_id = account_store.create_binding(
                    conn, calendar_id, account_id, info.remote_id, direction, conflict_policy
                )
                made.append((info.remote_id, Bound(calendar_id, binding_id, 0)))
    except IntegrityError:
        # another writer bound one of them meanwhile (the unique constraint caught it): nothing was written
        raise SetupError("another writer bound some of these calendars at the same moment; try again") from None
    return BoundMany(made, already)


def _check_binding(
    conn: Connection, account_id: str, remote_calendar_id: str, calendar_id: str | None, owner: str | None
) -> tuple[Account, str]:
    """In the order the CLI has always reported them: the account, the binding, the local calendar;
    then whose they are. Returns the account and its owner."""
    account = account_store.get_account(conn, account_id)
    account_owner = users.account_owner(conn, account_id) or ""
    if account_store.find_binding(conn, account_id, remote_calendar_id) is not None:
        raise SetupError(_already_bound(remote_calendar_id))
    if calendar_id is not None and not account_store.calendar_exists(conn, calendar_id):
        raise NotFound(f"no local calendar with id {calendar_id!r}")
    if owner is not None and account_owner != _owner(conn, owner):
        raise SetupError(f"account {account_id} belongs to another user")
    if calendar_id is not None and users.calendar_owner(conn, calendar_id) != account_owner:
        raise SetupError(f"local calendar {calendar_id} and account {account_id} belong to different users")
    return account, account_owner


def _owner(conn: Connection, owner: str | None) -> str:
    """The user named (checked to exist), or the default owner."""
    if owner is None:
        return users.default_owner(conn)
    return users.find_user(conn, owner)["id"]


def _already_bound(remote_calendar_id: str) -> str:
    return f"{remote_calendar_id!r} is already bound for this account"


def _check_calendar_name(name: str) -> None:
    if not name.strip():
        raise SetupError("a calendar needs a name")
