"""`calsync calendar ...`: the calendars an account sees at its provider, and the local calendars
bound to them."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer
from sqlalchemy import Engine

from calsync.cli.common import DbOption, JsonOption, database
from calsync.cli.ids import resolve_id
from calsync.cli.output import console, err, fail, print_json, print_table
from calsync.cli.users import UserOption, acting_user
from calsync.credentials import provider_maker
from calsync.engine import setup
from calsync.engine.channels import unbind
from calsync.engine.pool import ProviderPool
from calsync.model import utcnow
from calsync.providers.base import ProviderError
from calsync.statuses import (
    CONFLICT_POLICIES,
    DIRECTIONS,
    ConflictPolicy,
    Direction,
    is_conflict_policy,
    is_direction,
)
from calsync.store import accounts as account_store
from calsync.store import events as event_store
from calsync.store import users as user_store
from calsync.store.rows import UserRow
from calsync.views import binding_json

app = typer.Typer(help="Remote calendars and the local calendars bound to them.", no_args_is_help=True)


@app.command("remote")
def calendar_remote(account_id: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List the calendars an account can see at its provider."""
    with database(db) as engine:
        with engine.begin() as conn:
            account = account_store.get_account(conn, resolve_id(conn, "account", account_id))
        client = provider_maker(engine)(account)
        try:
            calendars = client.list_calendars()
        except (ProviderError, httpx.HTTPError) as exc:
            raise fail(str(exc)) from exc
        finally:
            client.close()
    if as_json:
        print_json([c.__dict__ for c in calendars])
        return
    print_table(
        ("remote id", "name", "time zone", "primary", "access"),
        ((c.remote_id, c.name, c.time_zone or "", "yes" if c.primary else "", c.access_role or "") for c in calendars),
    )


@app.command("bind")
def calendar_bind(
    account_id: str,
    remote_calendar_ids: Annotated[
        list[str] | None, typer.Argument(help="Remote calendar id(s) (`calsync calendar remote ACCOUNT`).")
    ] = None,
    bind_all: Annotated[
        bool, typer.Option("--all", help="Bind every remote calendar of the account not bound yet.")
    ] = False,
    name: Annotated[str | None, typer.Option(help="Local calendar name (default: the remote name).")] = None,
    direction: Annotated[str, typer.Option(help="two-way, pull or push.")] = "two-way",
    policy: Annotated[
        str, typer.Option(help="Conflict policy: merge, ask, local-wins, remote-wins, latest-wins.")
    ] = "merge",
    calendar: Annotated[
        str | None, typer.Option(help="Bind to this existing local calendar instead of making a new one (mirroring).")
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user", help="The calsync user (name or id) of the account and calendar; default: the account's."
        ),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Bind a remote calendar to a local one; prints the local calendar id and the binding id.

    Several remote ids, or --all (every calendar of the account not bound yet), bind each to a new
    local calendar named after it, with the same --direction and --policy, in one transaction (all
    or none); prints a line per binding.

    The account and the local calendar must belong to one calsync user; a new local calendar is the
    account's user's (with --user, that must be the account's user)."""
    if not is_direction(direction):
        raise fail(f"--direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}", 2)
    if not is_conflict_policy(policy):
        raise fail(f"--policy must be one of {', '.join(CONFLICT_POLICIES)}, not {policy!r}", 2)
    if name and not name.strip():
        raise fail("--name must not be empty", 2)
    remote_ids = list(remote_calendar_ids or [])
    if bind_all and remote_ids:
        raise fail("give remote calendar ids or --all, not both", 2)
    if not bind_all and not remote_ids:
        raise fail(f"name a remote calendar (see `calsync calendar remote {account_id}`) or give --all", 2)
    if bind_all or len(remote_ids) > 1:
        if name or calendar:
            raise fail("--name and --calendar bind one remote calendar; each of several gets a calendar of its own", 2)
        _bind_many(account_id, None if bind_all else remote_ids, direction, policy, user, db, as_json)
        return
    remote_calendar_id = remote_ids[0]
    with database(db) as engine:
        owner = _owner_of(engine, account_id, user)
        owner_id = owner["id"] if owner else None
        try:
            account = setup.check_binding(engine, account_id, remote_calendar_id, calendar or None, owner=owner_id)
        except setup.SetupError as exc:
            raise fail(str(exc)) from exc
        client = provider_maker(engine)(account)
        try:
            remote = {c.remote_id: c for c in client.list_calendars()}
        except (ProviderError, httpx.HTTPError) as exc:
            raise fail(str(exc)) from exc
        finally:
            client.close()
        if remote_calendar_id not in remote:
            raise fail(
                f"the account has no calendar {remote_calendar_id!r}; see `calsync calendar remote {account_id}`"
            )
        info = remote[remote_calendar_id]
        if not calendar and not (name or info.name).strip():
            raise fail(f"the remote calendar {remote_calendar_id!r} has no name; give the local one a --name", 2)
        try:
            # mirroring (--calendar): the calendar's events are queued for the new binding
            bound = setup.bind_calendar(
                engine,
                account_id,
                remote_calendar_id,
                calendar or setup.NewCalendar(name or info.name, info.time_zone, info.color),
                direction=direction,
                conflict_policy=policy,
                owner=owner_id,
            )
        except setup.SetupError as exc:
            raise fail(str(exc)) from exc
        calendar_id, binding_id = bound.calendar_id, bound.binding_id
    if owner is not None:
        err.print(f"calendar {calendar_id} bound for user {owner['name']}", highlight=False)
    if as_json:
        print_json({"calendar_id": calendar_id, "binding_id": binding_id})
    else:
        console.print(f"calendar {calendar_id}\nbinding {binding_id}", highlight=False)


def _owner_of(engine: Engine, account_id: str, user: str | None) -> UserRow | None:
    """The user named by --user, else the account's user (None: an account that does not exist)."""
    with engine.begin() as conn:
        owner = acting_user(conn, user) if user else None
        if owner is None and user_store.account_owner(conn, account_id) is not None:
            owner = user_store.find_user(conn, user_store.account_owner(conn, account_id) or "")
    return owner


def _bind_many(
    account_id: str,
    remote_ids: list[str] | None,
    direction: Direction,
    policy: ConflictPolicy,
    user: str | None,
    db: str | None,
    as_json: bool,
) -> None:
    """Several remote calendars (None: all of the account's not bound yet), one transaction."""
    with database(db) as engine:
        owner = _owner_of(engine, account_id, user)
        with engine.begin() as conn:
            account = account_store.get_account(conn, account_id)
        client = provider_maker(engine)(account)
        try:
            listed = client.list_calendars()
        except (ProviderError, httpx.HTTPError) as exc:
            raise fail(str(exc)) from exc
        finally:
            client.close()
        by_id = {c.remote_id: c for c in listed}
        missing = [r for r in remote_ids or [] if r not in by_id]
        if missing:
            raise fail(f"the account has no calendar {missing[0]!r}; see `calsync calendar remote {account_id}`")
        chosen = listed if remote_ids is None else [by_id[r] for r in remote_ids]
        try:
            made = setup.bind_calendars(
                engine,
                account_id,
                chosen,
                direction=direction,
                conflict_policy=policy,
                owner=owner["id"] if owner else None,
                skip_bound=remote_ids is None,
            )
        except setup.SetupError as exc:
            raise fail(str(exc)) from exc
    rows = [
        {"remote_calendar_id": remote_id, "calendar_id": b.calendar_id, "binding_id": b.binding_id}
        for remote_id, b in made.bound
    ]
    if as_json:
        print_json({"bindings": rows, "already_bound": made.already_bound})
        return
    print_table(
        ("remote id", "calendar", "binding"),
        ((r["remote_calendar_id"], r["calendar_id"], r["binding_id"]) for r in rows),
    )
    whose = f" for user {owner['name']}" if owner else ""
    err.print(
        f"{len(rows)} calendar(s) bound{whose}, {direction}, policy {policy}"
        + (f"; {len(made.already_bound)} already bound" if made.already_bound else ""),
        highlight=False,
    )


@app.command("list")
def calendar_list(user: UserOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """A user's local calendars with their bindings."""
    with database(db) as engine, engine.begin() as conn:
        owner = acting_user(conn, user)["id"]
        calendars = account_store.list_calendars(conn, owner)
        bindings = account_store.list_bindings(conn, user_id=owner)
        counts = {c["id"]: event_store.count_events(conn, c["id"]) for c in calendars}
    now = utcnow()
    out: list[dict[str, Any]] = [
        {
            **c,
            "events": counts[c["id"]],
            "bindings": [binding_json(b, now) for b in bindings if b["calendar_id"] == c["id"]],
        }
        for c in calendars
    ]
    if as_json:
        print_json(out)
        return
    print_table(
        ("id", "name", "events", "bindings"),
        (
            (
                c["id"],
                c["name"],
                str(c["events"]),
                [f"{b['id']} {b['direction']} {b['remote_calendar_id']}" for b in c["bindings"]],
            )
            for c in out
        ),
    )


@app.command("unbind")
def calendar_unbind(binding_id: str, db: DbOption = None) -> None:
    """Remove a binding: its notification channels are stopped first; local events stay."""
    with database(db) as engine:
        with engine.connect() as conn:
            binding_id = resolve_id(conn, "binding", binding_id)
        pool = ProviderPool(engine)
        try:
            stopped = unbind(engine, pool, binding_id)
        finally:
            pool.close()
    console.print(f"binding {binding_id} removed ({stopped} channel(s) stopped)", highlight=False)
